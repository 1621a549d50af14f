"""The chaos harness's etcd: one member, or a three-member cluster on loopback ports.

Both keep data dirs and ports across ``stop``/``start`` (a restart, not a new member), run
Debian's etcd-server, and are only ever signalled by the pid the harness started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from typing import Callable

from flatnet.errors import FlatnetError
from flatnet.ipam.store.etcd_setup import endpoint_health
from flatnet_lab.testbed.net import stop_proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(pred: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def _binary() -> str:
    binary = shutil.which("etcd") or "/usr/bin/etcd"
    if not os.path.exists(binary):
        raise FlatnetError("etcd is not installed", "apt-get install etcd-server, or use --store sqlite")
    return binary


class Member:
    """One etcd member of ``cluster`` (name -> peer URL) with its own data dir and ports."""

    def __init__(self, workdir: str, name: str) -> None:
        self.binary, self.name = _binary(), name
        self.data = os.path.join(workdir, name)
        self.client, self.peer = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.client}"
        self.peer_url = f"http://127.0.0.1:{self.peer}"
        self.proc: subprocess.Popen | None = None
        self.cluster = f"{name}={self.peer_url}"
        self.token = name

    def healthy(self) -> bool:
        return endpoint_health(self.endpoint, 1.0) is None

    def launch(self) -> None:
        log = open(self.data + ".log", "ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--name",
                self.name,
                "--data-dir",
                self.data,
                "--listen-client-urls",
                self.endpoint,
                "--advertise-client-urls",
                self.endpoint,
                "--listen-peer-urls",
                self.peer_url,
                "--initial-advertise-peer-urls",
                self.peer_url,
                "--initial-cluster",
                self.cluster,
                "--initial-cluster-token",
                self.token,
                # a loaded 2-core machine: a wider election timeout than the 1 s default keeps
                # the leader from flapping under load (the faults here are kills, not slowness)
                "--heartbeat-interval",
                "200",
                "--election-timeout",
                "2000",
                "--log-level",
                "error",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()

    def stop(self, sig: int = signal.SIGKILL) -> None:
        stop_proc(self.proc, sig)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Etcd:
    """A private single-member etcd; ``stop``/``start`` keep data and ports."""

    def __init__(self, workdir: str) -> None:
        self.member = Member(workdir, "fnk")
        self.endpoint = self.member.endpoint
        self.endpoints = [self.endpoint]
        self.proc: subprocess.Popen | None = None

    def healthy(self) -> bool:
        return self.member.healthy()

    def start(self) -> None:
        self.member.launch()
        self.proc = self.member.proc
        if not wait(self.healthy, 30, 0.1):
            raise FlatnetError(f"etcd did not become healthy in 30 s (log: {self.member.data}.log)")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        self.member.stop(sig)
        self.proc = None


class EtcdCluster:
    """Three members (fnk0..fnk2) on loopback; the store is given all three endpoints."""

    def __init__(self, workdir: str, size: int = 3, token: str = "fnk") -> None:
        self.members = [Member(workdir, f"fnk{i}") for i in range(size)]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.cluster, m.token = initial, f"fnk-{token}"
        self.endpoints = [m.endpoint for m in self.members]
        self.endpoint = self.endpoints[0]

    def healthy(self) -> bool:
        """Every member up and healthy (a member's /health needs a leader it can see)."""
        return all(m.running and m.healthy() for m in self.members)

    def start(self) -> None:
        """Start every member that is not running; wait until all are healthy."""
        for m in self.members:
            if not m.running:
                m.launch()
        if not wait(self.healthy, 60, 0.2):
            raise FlatnetError(
                "etcd cluster did not become healthy in 60 s "
                f"(logs: {', '.join(m.data + '.log' for m in self.members)})"
            )

    def stop(self, sig: int = signal.SIGKILL) -> None:
        for m in self.members:
            m.stop(sig)

    def leader(self) -> Member | None:
        """The member that says it leads (None if no answer)."""
        for m in self.members:
            if not m.running:
                continue
            req = urllib.request.Request(m.endpoint + "/v3/maintenance/status", data=b"{}", method="POST")
            try:
                with urllib.request.urlopen(req, timeout=2.0) as resp:
                    st = json.loads(resp.read())
            except (OSError, ValueError):
                continue
            if st.get("leader") and st.get("leader") == (st.get("header") or {}).get("member_id"):
                return m
        return None
