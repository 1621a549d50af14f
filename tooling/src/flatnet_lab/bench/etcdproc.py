"""A private etcd for the IPAM bench: free ports on 127.0.0.1, data in the run's tmp dir.

Started and stopped by the bench itself (never the lab's etcd, which others may be using),
so its numbers are not disturbed by anyone else's keys and it always goes away at the end.
"""

from __future__ import annotations

import os
import socket
import subprocess


from flatnet_lab.bench.nsenv import Scratch, stop, wait_until
from flatnet.errors import FlatnetError
from flatnet.ipam.store.etcd_setup import endpoint_health

ETCD_BIN = "/usr/bin/etcd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(endpoint: str) -> bool:
    return endpoint_health(endpoint, 1.0) is None


def version() -> str:
    """``etcd --version``'s first line, or "not installed"."""
    if not os.access(ETCD_BIN, os.X_OK):
        return "not installed"
    out = subprocess.run([ETCD_BIN, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    return out.splitlines()[0].split(":", 1)[-1].strip() if out else "unknown"


def start(tmp: str, scratch: Scratch) -> str:
    """Start etcd (tracked by ``scratch`` for cleanup); return its client endpoint."""
    if not os.access(ETCD_BIN, os.X_OK):
        raise FlatnetError(f"bench: {ETCD_BIN} not found", "apt-get install etcd-server")
    client, peer = _free_port(), _free_port()
    endpoint, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    argv = [
        ETCD_BIN,
        "--name",
        "fnb",
        "--data-dir",
        os.path.join(tmp, "etcd"),
        "--listen-client-urls",
        endpoint,
        "--advertise-client-urls",
        endpoint,
        "--listen-peer-urls",
        peer_url,
        "--initial-advertise-peer-urls",
        peer_url,
        "--initial-cluster",
        f"fnb={peer_url}",
        "--log-level",
        "warn",
    ]
    with open(os.path.join(tmp, "etcd.log"), "ab") as log:
        proc = scratch.track(
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        )
    if not wait_until(lambda: proc.poll() is not None or _healthy(endpoint), 20.0) or proc.poll() is not None:
        stop(proc)
        raise FlatnetError("bench: etcd did not become healthy in 20 s", f"see {os.path.join(tmp, 'etcd.log')}")
    return endpoint
