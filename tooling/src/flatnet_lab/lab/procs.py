"""The lab's processes and files: state dir, pid files, agents, the local etcd.

Everything the lab starts or writes lives under ``LAB_DIR`` (/run/flatnet/lab: tmpfs, so a
reboot clears it), and every process gets a pid file there. ``lab down`` stops processes
by those pids only after checking that the pid still runs a lab command line (its
arguments name ``LAB_DIR``), so a recycled pid of some unrelated program is never hit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any

from flatnet.errors import FlatnetError
from flatnet_lab import launch
from flatnet_lab.etcd import EtcdMember
from flatnet_lab.launch import agent_answers

LAB_DIR = "/run/flatnet/lab"
AGENT_READY_TIMEOUT = 20.0
ETCD_READY_TIMEOUT = 20.0


def path(*parts: str) -> str:
    return os.path.join(LAB_DIR, *parts)


def ensure_dir() -> None:
    os.makedirs(path("pods"), exist_ok=True)
    os.makedirs(path("net.d"), exist_ok=True)


def read_json(p: str) -> dict[str, Any] | None:
    try:
        with open(p, encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_json(p: str, data: dict[str, Any]) -> None:
    """Write atomically (tmp + rename): a crash never leaves half a state file."""
    tmp = f"{p}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, p)


def all_pids() -> list[int]:
    """Every pid recorded in a pid file of the lab."""
    try:
        names = [n[:-4] for n in os.listdir(LAB_DIR) if n.endswith(".pid")]
    except FileNotFoundError:
        return []
    return [pid for pid in map(read_pid, names) if pid]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def pid_alive(pid: int | None, marker: str = LAB_DIR) -> bool:
    """True when ``pid`` runs and its command line mentions ``marker`` (it is ours)."""
    if not pid:
        return False
    return marker in _cmdline(pid) and not _is_zombie(pid)


def read_pid(name: str) -> int | None:
    try:
        with open(path(f"{name}.pid"), encoding="ascii") as fh:
            return int(fh.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def stop_pid(pid: int, marker: str | None = LAB_DIR, timeout: float = 5.0) -> None:
    """SIGTERM, wait (bounded), then SIGKILL; only if the pid is still the lab's (marker)."""
    if marker is not None and not pid_alive(pid, marker):
        _reap(pid)  # a crashed child of ours: collect the zombie
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if _is_zombie(pid) or not os.path.exists(f"/proc/{pid}"):
                _reap(pid)
                return
            time.sleep(0.05)


def _reap(pid: int) -> None:
    """Collect our own exited children so they do not linger as zombies."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def agent_status(sock_path: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The agent's status answer (its metrics), or None when nothing answers there."""
    from flatnet.agent import protocol

    return protocol.status(sock_path, timeout)


def _spawn(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` logging to ``<name>.log``; its pid goes to ``<name>.pid`` (lab down's list)."""
    proc = launch.spawn(argv, path(f"{name}.log"))
    with open(path(f"{name}.pid"), "w", encoding="ascii") as fh:
        fh.write(str(proc.pid))
    return proc


def log_tail(name: str, lines: int = 8) -> str:
    """The last lines of the lab's ``<name>.log``, on one line."""
    return launch.log_tail(path(f"{name}.log"), lines)


def agent_socket(node: str) -> str:
    return path(f"{node}.sock")


def start_agent(node: str, ns: str, store_url: str, metrics_address: str | None = None) -> int:
    """Start (or keep) the agent of ``node``; return once its socket answers (bounded).

    ``metrics_address`` (HOST:PORT in the node's netns): its /metrics, /healthz, /readyz.
    The lab's agents log JSON lines (``--log-format json``) to ``<node>.log``.
    """
    sock = agent_socket(node)
    pid = read_pid(node)
    if pid_alive(pid, sock) and agent_answers(sock):
        return pid  # type: ignore[return-value]
    if pid:
        stop_pid(pid, sock)
    if os.path.exists(sock):
        os.unlink(sock)  # stale socket of a dead agent
    argv = launch.agent_argv(
        sock,
        netns=ns,
        node=node,
        store=store_url,
        lock_dir=path("locks"),
        log_format="json",
        metrics_address=metrics_address,
    )
    proc = _spawn(node, argv)
    try:
        launch.wait_agent(proc, sock, AGENT_READY_TIMEOUT, path(f"{node}.log"))
    except FlatnetError as e:
        stop_pid(proc.pid, sock)
        raise FlatnetError(f"lab: the agent of {node} did not start", e.details) from None
    return proc.pid


def etcd_healthy(port: int) -> bool:
    from flatnet.ipam.store.etcd_setup import endpoint_health

    return endpoint_health(f"http://127.0.0.1:{port}", 1.0) is None


def start_etcd(port: int | None) -> int:
    """Start (or keep) the lab's etcd on 127.0.0.1; return its client port once healthy."""
    data = path("etcd")
    pid = read_pid("etcd")
    if port and pid_alive(pid, data) and etcd_healthy(port):
        return port
    if pid:
        stop_pid(pid, data)
    member = EtcdMember(data, "fnlab", path("etcd.log"))  # FlatnetError if etcd is not installed
    proc = _spawn("etcd", member.argv())
    launch.wait_until(lambda: proc.poll() is not None or member.healthy(), ETCD_READY_TIMEOUT, 0.2)
    if proc.poll() is None and member.healthy():
        return member.client_port
    stop_pid(proc.pid, data)
    raise FlatnetError(f"lab: etcd not healthy within {ETCD_READY_TIMEOUT:.0f}s", log_tail("etcd"))


def lab_markers() -> tuple[str, ...]:
    """Command-line fragments that only the lab's agents and etcd carry."""
    return (f"--socket {LAB_DIR}/", f"--data-dir {path('etcd')}")


def lab_pids() -> list[int]:
    """Every live agent or etcd of the lab, pid file or not.

    The scan is the safety net for a crash between spawn and pid-file write; it matches
    only the lab's own ``--socket``/``--data-dir`` arguments (a shell that merely reads a
    lab log does not match).
    """
    me = os.getpid()
    found = []
    for e in os.listdir("/proc"):
        if e.isdigit() and int(e) != me:
            if any(pid_alive(int(e), m) for m in lab_markers()):
                found.append(int(e))
    return found
