"""Starting the tooling's helper processes: a free port, a bounded wait, the agent's argv.

The lab, the bench, the chaos harness, the CRI test-bed and the tests all start ``flatnet
agent`` children and poll for them: one place spells the command line (so a renamed flag is
changed once) and one place polls (always bounded in time).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Callable

from flatnet.errors import FlatnetError


#: ports ``free_port`` handed out in this process: never handed out twice (the kernel may pick a
#: port again as soon as it was released, before the first taker bound it)
_given: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the kernel's pick; bound and released at once), and
    none this process was given before. It can still be taken before its user binds it (an
    outgoing connection's port): launchers that can, retry on new ports (``EtcdCluster``)."""
    for _ in range(64):
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port
    raise OSError(f"no free TCP port on {host} that this process was not given already")


def wait_until(pred: Callable[[], object], timeout: float, step: float = 0.05) -> bool:
    """Poll ``pred`` until it is truthy (True) or ``timeout`` seconds pass (its last answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def spawn(argv: list[str], log_path: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``argv`` in its own session, stdin closed, stdout and stderr appended to ``log_path``."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True, env=env
        )
    finally:
        log.close()


def stop_proc(
    proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10.0, kill_wait: float = 10.0
) -> None:
    """Send ``sig`` to a child still running; SIGKILL it if it has not exited within ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(kill_wait)


def agent_argv(
    socket_path: str,
    *,
    node: str | None = None,
    netns: str | None = None,
    store: str | None = None,
    lock_dir: str | None = None,
    state_dir: str | None = None,
    reconcile_every: float | None = None,
    log_format: str | None = None,
    metrics_address: str | None = None,
    quiet: bool = False,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """``flatnet agent`` of this interpreter's flatnet, with the options given (None: its default)."""
    argv = [sys.executable, "-m", "flatnet.cli.main", "agent", "--socket", socket_path]
    for flag, value in (
        ("--netns", netns),
        ("--node", node),
        ("--store", store),
        ("--lock-dir", lock_dir),
        ("--state-dir", state_dir),
        ("--reconcile-every", reconcile_every),
        ("--log-format", log_format),
        ("--metrics-address", metrics_address),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if quiet:
        argv.append("--quiet")
    return argv + list(extra)


def child_env() -> dict[str, str]:
    """This process's environment with its sys.path as PYTHONPATH: the child imports the same tree."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def agent_answers(socket_path: str, timeout: float = 2.0) -> bool:
    """True when an agent answers a status request on ``socket_path``."""
    from flatnet.agent import protocol

    return protocol.status(socket_path, timeout) is not None


def wait_agent(proc: subprocess.Popen[bytes], socket_path: str, timeout: float, log_path: str) -> None:
    """Return once the agent ``proc`` answers on ``socket_path``; FlatnetError (log tail) if it
    exits first or ``timeout`` seconds pass (bounded, the caller stops it)."""
    wait_until(lambda: proc.poll() is not None or agent_answers(socket_path), timeout, 0.05)
    if proc.poll() is None and agent_answers(socket_path):
        return
    state = f"exited ({proc.returncode})" if proc.poll() is not None else f"did not answer within {timeout:.0f}s"
    raise FlatnetError(f"the agent on {socket_path} {state}", f"log {log_path}: {log_tail(log_path)}")


def log_tail(log_path: str, lines: int = 8) -> str:
    """The last ``lines`` of a log, joined on one line (for an error message)."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            return " | ".join(fh.read().strip().splitlines()[-lines:])
    except FileNotFoundError:
        return ""
