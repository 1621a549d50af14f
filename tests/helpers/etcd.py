"""pytest fixtures that run a real etcd on 127.0.0.1 (random ports, temp data dir).

``etcd_server`` is per test (the down/up test stops and restarts it); ``etcd_shared``
is one server per session for tests that only need a clean key prefix each. The process is
the tooling's one etcd launcher (flatnet_lab.etcd.EtcdMember), as the lab, bench and chaos use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from flatnet.errors import FlatnetError
from flatnet_lab.etcd import EtcdMember


class EtcdServer(EtcdMember):
    """One etcd process; ``stop``/``start`` keep data dir and ports, like a real restart.
    A missing binary or a start that fails is a test failure (with the log's tail), never a skip."""

    def __init__(self, data_dir: Path, tls: "dict[str, str] | None" = None, name: str = "fnt") -> None:
        """``tls``: {"cert", "key", "ca", "client_cert", "client_key"}: https with client-cert auth."""
        try:
            super().__init__(str(data_dir / "data"), name, str(data_dir / "etcd.log"), tls=tls)
        except FlatnetError as e:
            pytest.fail(f"{e}: {e.details}")

    def start(self, timeout: float = 20.0) -> None:
        try:
            super().start(timeout)
        except FlatnetError as e:
            pytest.fail(f"{e}; {e.details}")

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
