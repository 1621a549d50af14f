"""The agent socket protocol over a real unix socket in a tmp dir.

The handler here is a small stand-in (the server's job is transport, framing, limits,
metrics and peers; the Service has its own tests), so these run fast and without root
kernel work.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import pytest

from flatnet.agent.server import MAX_REQUEST, AgentServer
from flatnet.cni import Interface, IPConfig, Result
from flatnet.agent.protocol import request

CONF = json.dumps(
    {
        "cniVersion": "1.0.0",
        "name": "flat",
        "type": "flatnet",
        "master": "eth9",
        "ipam": {"pools": [{"subnet": "198.18.100.0/24"}], "store": {"type": "memory"}},
    }
)


class SlowHandler:
    """Answers ADD with an address derived from the container id, after a short pause."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def add(self, cmd: Any) -> Result:
        import ipaddress

        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.2)
        with self._lock:
            self.active -= 1
        n = int(cmd.container_id.removeprefix("c"))
        return Result(
            interfaces=[Interface(cmd.ifname, "02:00:00:00:00:01", cmd.netns)],
            ips=[IPConfig(ipaddress.ip_interface(f"198.18.100.{n + 10}/24"), None, 0)],
        )

    def delete(self, cmd: Any) -> None: ...
    def check(self, cmd: Any) -> None: ...
    def gc(self, cmd: Any) -> None: ...
    def status(self, cmd: Any) -> None: ...


def env(cid: str, verb: str = "ADD") -> dict[str, str]:
    return {
        "CNI_COMMAND": verb,
        "CNI_CONTAINERID": cid,
        "CNI_IFNAME": "eth0",
        "CNI_NETNS": "/run/netns/x",
        "CNI_PATH": "/opt/cni/bin",
    }


@pytest.fixture
def served(tmp_path: Any) -> Iterator[tuple[str, AgentServer, SlowHandler]]:
    handler = SlowHandler()
    path = str(tmp_path / "run" / "agent.sock")
    server = AgentServer(path, handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield path, server, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def raw(path: str, data: bytes, shut: bool = True) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(15)
        s.connect(path)
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may close early on oversize input
        if shut:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    return json.loads(buf)


def test_socket_permissions(served: Any) -> None:
    path, _server, _ = served
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


def test_add_roundtrip(served: Any) -> None:
    path, _, _ = served
    reply = request(path, {"v": 1, "env": env("c5"), "stdin": CONF}, timeout=10)
    assert reply["exit"] == 0
    out = json.loads(reply["stdout"])
    assert out["cniVersion"] == "1.0.0" and out["ips"][0]["address"] == "198.18.100.15/24"


@pytest.mark.parametrize(
    "payload,code",
    [
        (b"{not json", 6),
        (b"[1, 2]", 6),
        (b"\xff\xfe", 6),
        (json.dumps({"v": 2, "env": {}, "stdin": ""}).encode(), 106),
        (json.dumps({"env": {}, "stdin": ""}).encode(), 106),
        (json.dumps({"v": 1, "env": {"CNI_COMMAND": 5}, "stdin": ""}).encode(), 6),
    ],
)
def test_bad_requests_get_cni_errors(served: Any, payload: bytes, code: int) -> None:
    path, server, _ = served
    reply = raw(path, payload)
    assert reply["exit"] == 1
    err = json.loads(reply["stdout"])
    assert err["code"] == code and err["msg"]


def test_oversize_request(served: Any) -> None:
    path, _, _ = served
    reply = raw(path, b"{" + b" " * (MAX_REQUEST + 10) + b"}")
    assert reply["exit"] == 1 and json.loads(reply["stdout"])["code"] == 106
    # the server is still healthy afterwards
    assert request(path, {"v": 1, "op": "status"}, timeout=10)["exit"] == 0


def test_cni_errors_pass_through(served: Any) -> None:
    path, _, _ = served
    e = env("c1")
    del e["CNI_CONTAINERID"]
    reply = request(path, {"v": 1, "env": e, "stdin": CONF}, timeout=10)
    assert reply["exit"] == 1 and json.loads(reply["stdout"])["code"] == 4


def test_concurrent_requests_and_metrics(served: Any) -> None:
    path, _, handler = served
    with ThreadPoolExecutor(8) as pool:
        replies = list(
            pool.map(lambda n: request(path, {"v": 1, "env": env(f"c{n}"), "stdin": CONF}, timeout=30), range(8))
        )
    addrs = [json.loads(r["stdout"])["ips"][0]["address"] for r in replies]
    assert addrs == [f"198.18.100.{n + 10}/24" for n in range(8)]
    assert handler.peak > 1  # served in parallel, not one after another
    request(path, {"v": 1, "env": {**env("c1"), "CNI_IFNAME": "bad/name"}, "stdin": CONF}, timeout=10)
    metrics = request(path, {"v": 1, "op": "status"}, timeout=10)["metrics"]
    assert metrics["adds"] == 9 and metrics["errors"] == 1 and metrics["in_flight"] == 0


def test_rejects_other_uids(tmp_path: Any) -> None:
    path = str(tmp_path / "agent.sock")
    server = AgentServer(path, SlowHandler(), allowed_uids=frozenset({4242}) - {os.getuid()})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        reply = request(path, {"v": 1, "op": "status"}, timeout=10)
        assert reply["exit"] == 1 and json.loads(reply["stdout"])["code"] == 106
        assert server.metrics.snapshot()["rejected"] == 1
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert not os.path.exists(path)


def test_refuses_second_agent_and_replaces_stale_socket(served: Any, tmp_path: Any) -> None:
    path, _, _ = served
    with pytest.raises(OSError, match="already serving"):
        AgentServer(path, SlowHandler())
    stale = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()  # a socket file with nobody listening, as after a crash
    server = AgentServer(stale, SlowHandler())
    server.server_close()


def test_at_most_max_parallel_requests_are_served_at_once(tmp_path: Any) -> None:
    """--max-parallel: the others wait their turn (and are all answered)."""
    handler = SlowHandler()
    path = str(tmp_path / "run" / "agent.sock")
    server = AgentServer(path, handler, max_parallel=2)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with ThreadPoolExecutor(6) as pool:
            replies = list(
                pool.map(lambda n: request(path, {"v": 1, "env": env(f"c{n}"), "stdin": CONF}, timeout=30), range(6))
            )
        assert [r["exit"] for r in replies] == [0] * 6
        assert handler.peak == 2
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
