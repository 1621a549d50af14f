"""Exec the working tree's CNI forwarder as a runtime does, and serve it a real agent.

``FORWARDER`` is built from native/forwarder (``make``, a no-op when up to date) on first
use. ``Agent`` is the real ``AgentServer`` over the real ``Service`` with a FakeDatapath
and a memory store: the protocol, the dispatcher and the service are the product's; only
the kernel work is faked (the integration tests plumb real namespaces).
"""

from __future__ import annotations

import faulthandler
import json
import os
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from flatnet.agent.server import AgentServer
from flatnet.agent.service import Service
from flatnet.datapath.fake import FakeDatapath

EXEC_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 20.0


def forwarder_path() -> str:
    from flatnet_lab import forwarder

    return forwarder.path()


def run(env: dict[str, str], stdin: bytes = b"", timeout: float = EXEC_TIMEOUT) -> subprocess.CompletedProcess:
    """One exec: only ``env`` (plus PATH) in the environment, ``stdin`` on stdin."""
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run([forwarder_path()], input=stdin, env=full, capture_output=True, timeout=timeout)


def cni_env(verb: str, cid: str = "c1", **over: str) -> dict[str, str]:
    env = {
        "CNI_COMMAND": verb,
        "CNI_CONTAINERID": cid,
        "CNI_IFNAME": "eth0",
        "CNI_NETNS": "/run/netns/fnf-pod",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": "",
    }
    env.update(over)
    return env


def conf(version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    out = {
        "cniVersion": version,
        "name": "fnf-flat",
        "type": "flatnet",
        "mode": "macvlan",
        "master": "vlan100",
        "ipam": {
            "pools": [
                {
                    "name": "fnf-v4",
                    "subnet": "198.18.100.0/24",
                    "rangeStart": "198.18.100.32",
                    "rangeEnd": "198.18.100.63",
                    "gateway": "198.18.100.1",
                }
            ],
            "store": {"type": "memory"},
        },
    }
    out.update(extra)
    return out


def one_json(proc: subprocess.CompletedProcess) -> dict[str, Any]:
    """stdout holds exactly one JSON object (and no traceback anywhere)."""
    assert b"Traceback" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert isinstance(doc, dict), doc
    return doc


class Agent:
    """A real agent on ``path`` (FakeDatapath, memory store) served from a thread."""

    def __init__(self, path: str, lock_dir: str) -> None:
        self.dp = FakeDatapath(masters={"vlan100"})
        self.stores: dict[str, Any] = {}

        def store_factory(cfg: dict) -> Any:
            from flatnet.ipam.store import open_store

            return self.stores.setdefault(json.dumps(cfg, sort_keys=True), open_store(cfg))

        self.service = Service(
            node="fnf-node", lock_dir=lock_dir, datapath_factory=lambda mode: self.dp, store_factory=store_factory
        )
        self.server = AgentServer(path, self.service, allowed_uids=frozenset({os.getuid()}))
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        # shutdown() waits for serve_forever without a bound: a hang there is the agent's
        # bug, reported with every thread's stack rather than as the suite's timeout
        stopper = threading.Thread(target=self.server.shutdown, daemon=True)
        stopper.start()
        stopper.join(SHUTDOWN_TIMEOUT)
        if stopper.is_alive():
            faulthandler.dump_traceback(all_threads=True)
            raise AssertionError(f"the agent did not shut down within {SHUTDOWN_TIMEOUT}s (stacks above)")
        self.server.server_close()
        self.thread.join(5)
        self.service.close()


@contextmanager
def running_agent(tmp_dir: Path) -> Iterator[tuple[str, Agent]]:
    """An ``Agent`` on ``tmp_dir/run/agent.sock`` (locks in ``tmp_dir/locks``), closed on exit."""
    path = str(tmp_dir / "run" / "agent.sock")
    a = Agent(path, str(tmp_dir / "locks"))
    try:
        yield path, a
    finally:
        a.close()
