"""pytest fixtures that run a real etcd on 127.0.0.1 (random ports, temp data dir).

``etcd_server`` is per test (the down/up test stops and restarts it); ``etcd_shared``
is one server per session for tests that only need a clean key prefix each.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from flatnet.ipam.store.etcd_setup import endpoint_health

ETCD_BIN = "/usr/bin/etcd"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdServer:
    """One etcd process; ``stop``/``start`` keep data dir and ports, like a real restart."""

    def __init__(self, data_dir: Path, tls: "dict[str, str] | None" = None, name: str = "fnt") -> None:
        """``tls``: {"cert", "key", "ca"} makes the client side https with client-cert auth."""
        binary = shutil.which("etcd") or ETCD_BIN
        if not os.path.exists(binary):
            pytest.fail("etcd binary not found: install it with `apt-get install etcd-server`")
        self.binary = binary
        self.data_dir = data_dir
        self.client_port = _free_port()
        self.peer_port = _free_port()
        self.tls = tls
        self.name = name
        scheme = "https" if tls else "http"
        self.endpoint = f"{scheme}://127.0.0.1:{self.client_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "etcd.log"

    def start(self, wait: float = 20.0) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            self.binary,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir / "data"),
            "--listen-client-urls",
            self.endpoint,
            "--advertise-client-urls",
            self.endpoint,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            f"{self.name}={peer}",
            "--log-level",
            "warn",
        ]
        if self.tls:
            args += [
                "--cert-file",
                self.tls["cert"],
                "--key-file",
                self.tls["key"],
                "--trusted-ca-file",
                self.tls["ca"],
                "--client-cert-auth",
            ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.healthy():
                return
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        pytest.fail(f"etcd did not become healthy within {wait}s; log tail:\n{tail}")

    def healthy(self) -> bool:
        cfg = None
        if self.tls:
            cfg = {"caFile": self.tls["ca"], "certFile": self.tls["client_cert"], "keyFile": self.tls["client_key"]}
        return endpoint_health(self.endpoint, 1.0, cfg) is None

    def etcdctl(self, *args: str) -> str:
        """Run etcdctl (v3 API) against this server; raises with its stderr on failure."""
        cmd = ["etcdctl", "--endpoints", self.endpoint, *args]
        if self.tls:
            cmd[1:1] = ["--cacert", self.tls["ca"], "--cert", self.tls["client_cert"], "--key", self.tls["client_key"]]
        res = subprocess.run(
            cmd, capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"}, check=False
        )
        if res.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _server() -> Iterator[EtcdServer]:
    tmp = Path(tempfile.mkdtemp(prefix="fnt-etcd-"))
    server = EtcdServer(tmp)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def etcd_server() -> Iterator[EtcdServer]:
    """A private etcd for one test; always killed at teardown."""
    yield from _server()


@pytest.fixture(scope="session")
def etcd_shared() -> Iterator[EtcdServer]:
    """One etcd for the session; tests isolate themselves with ``etcd_prefix``."""
    yield from _server()


@pytest.fixture
def etcd_prefix() -> str:
    """A fresh key prefix so tests sharing one etcd never see each other's keys."""
    return f"/fnt-{uuid.uuid4().hex[:8]}/"
