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

import httpx
import pytest

ETCD_BIN = "/usr/bin/etcd"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdServer:
    """One etcd process; ``stop``/``start`` keep data dir and ports, like a real restart."""

    def __init__(self, data_dir: Path) -> None:
        binary = shutil.which("etcd") or ETCD_BIN
        if not os.path.exists(binary):
            pytest.fail("etcd binary not found: install it with `apt-get install etcd-server`")
        self.binary = binary
        self.data_dir = data_dir
        self.client_port = _free_port()
        self.peer_port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.client_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "etcd.log"

    def start(self, wait: float = 20.0) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            self.binary, "--name", "fnt", "--data-dir", str(self.data_dir / "data"),
            "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"fnt={peer}", "--log-level", "warn",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.endpoint + "/health", timeout=1.0).json().get("health") == "true":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        pytest.fail(f"etcd did not become healthy within {wait}s; log tail:\n{tail}")

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
