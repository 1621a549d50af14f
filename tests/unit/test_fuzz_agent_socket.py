"""Fuzz: random, malformed and oversized frames against a real AgentServer on a tmp socket.

The server runs the real Service (memory store, FakeDatapath). Every bad frame must be
refused with one JSON answer (exit 1, a CNI error with a spec code) or, for a peer that
vanishes, simply dropped; and the server must serve a valid ADD/DEL right afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flatnet.agent.server import MAX_REQUEST, AgentServer
from flatnet.agent.service import Service
from flatnet.datapath.fake import FakeDatapath
from flatnet.ipam.store import open_store
from tests.unit.test_fuzz_cni import BASE_CONF, BASE_ENV, SPEC_CODES, json_any, junk


class Served:
    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "agent.sock")
        self.dp = FakeDatapath(masters={"vlan100"})
        store = open_store({"type": "memory"})
        svc = Service(
            node="node1",
            lock_dir=os.path.join(directory, "locks"),
            datapath_factory=lambda mode: self.dp,
            store_factory=lambda cfg: store,
        )
        uid = os.getuid()
        self.server = AgentServer(self.path, svc, allowed_uids=frozenset({0, uid}), io_timeout=0.5)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.n = 0

    def exchange(self, frame: bytes, shutdown: bool = True, close_early: bool = False) -> dict | None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(self.path)
            try:
                s.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may refuse before reading it all
            if close_early:
                return None
            if shutdown:
                s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                data += chunk
            return json.loads(data)
        finally:
            s.close()

    def valid_roundtrip(self) -> None:
        """ADD then DEL of a fresh container: the server still works and leaks nothing."""
        self.n += 1
        env = dict(BASE_ENV, CNI_CONTAINERID=f"ok{self.n}")
        add = self.exchange(json.dumps({"v": 1, "env": env, "stdin": json.dumps(BASE_CONF)}).encode())
        assert add is not None and add["exit"] == 0, add
        assert json.loads(add["stdout"])["ips"][0]["address"].startswith("198.18.100.")
        env["CNI_COMMAND"] = "DEL"
        dele = self.exchange(json.dumps({"v": 1, "env": env, "stdin": json.dumps(BASE_CONF)}).encode())
        assert dele is not None and dele["exit"] == 0, dele
        assert self.dp.attachments == {}


_served: Served | None = None


def served() -> Served:
    global _served
    if _served is None:
        _served = Served(tempfile.mkdtemp(prefix="fnk-fuzz-sock-"))
    return _served


@pytest.fixture(scope="module", autouse=True)
def _stop_server() -> Iterator[None]:
    yield
    if _served is not None:
        _served.server.shutdown()
        _served.server.server_close()


def assert_refused(reply: dict | None) -> None:
    assert isinstance(reply, dict) and reply.get("exit") == 1, reply
    doc = json.loads(reply["stdout"])
    assert doc["code"] in SPEC_CODES and doc["msg"] and not doc["msg"].startswith("internal error"), doc


frames = st.one_of(
    st.binary(max_size=2000),
    json_any.map(lambda v: json.dumps(v).encode()),
    st.builds(
        lambda v: json.dumps({"v": v, "env": dict(BASE_ENV), "stdin": "{}"}).encode(),
        json_any.filter(lambda v: v != 1 or isinstance(v, bool)),
    ),
    st.builds(
        lambda env, stdin: json.dumps({"v": 1, "env": env, "stdin": stdin}).encode(),
        st.one_of(json_any, st.dictionaries(junk, json_any, max_size=4)),
        json_any,
    ),
    st.builds(
        lambda env, stdin: json.dumps({"v": 1, "env": env, "stdin": stdin}).encode(),
        st.dictionaries(st.sampled_from(sorted(BASE_ENV)), junk, max_size=6),
        junk,
    ),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames)
def test_random_frames_refused_then_still_served(frame: bytes) -> None:
    s = served()
    reply = s.exchange(frame)
    if reply is not None and reply.get("exit") == 0:
        # a random frame that happens to be a valid STATUS/VERSION: harmless, no lease
        assert s.dp.attachments == {}
    else:
        assert_refused(reply)
    s.valid_roundtrip()


@pytest.mark.parametrize("kind", ["oversized", "no_shutdown", "vanish", "nul_bytes", "deep_nesting"])
def test_hostile_transport_refused_then_still_served(kind: str) -> None:
    s = served()
    if kind == "oversized":
        assert_refused(s.exchange(b'{"v":1,"env":{},"stdin":"' + b"x" * (MAX_REQUEST + 10) + b'"}'))
    elif kind == "no_shutdown":  # sends half a request and waits: answered after io_timeout
        assert_refused(s.exchange(b'{"v":1,"env":', shutdown=False))
    elif kind == "vanish":
        for _ in range(20):
            s.exchange(os.urandom(512), close_early=True)
    elif kind == "nul_bytes":
        assert_refused(s.exchange(b"\x00" * 4096))
    else:
        assert_refused(s.exchange(b"[" * 100_000 + b"]" * 100_000))
    s.valid_roundtrip()
