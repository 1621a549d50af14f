"""flatnet.agent.protocol: the messages, the client's error mapping, and its lightness."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from flatnet.agent import protocol
from flatnet.agent.protocol import AgentReplyError, NoAgent, ProtocolError
from tests.helpers.sockets import Behaviour, scripted_servers


def test_request_round_trip_keeps_only_cni_env() -> None:
    data = protocol.encode_request({"CNI_COMMAND": "ADD", "PATH": "/bin", "CNI_ARGS": "a=é"}, '{"x": "\\u00e9"}')
    req = protocol.decode_request(data)
    assert req == {"v": 1, "env": {"CNI_COMMAND": "ADD", "CNI_ARGS": "a=é"}, "stdin": '{"x": "\\u00e9"}'}
    assert protocol.decode_request(json.dumps(protocol.status_request()).encode())["op"] == "status"


@pytest.mark.parametrize(
    "data,code",
    [
        (b"{not json", 6),
        (b"\xff", 6),
        (b"[1]", 6),
        (b'{"v": 2, "op": "status"}', 106),
        (b'{"v": 1, "env": {"CNI_COMMAND": 1}, "stdin": ""}', 6),
        (b'{"v": 1, "env": {}, "stdin": 5}', 6),
        (b"[" * 100_000, 6),
    ],
)
def test_bad_requests_carry_their_code(data: bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.decode_request(data)
    assert info.value.code == code


def test_response_round_trip_and_malformed_answers() -> None:
    resp = protocol.error_response(7, "bad mode")
    assert protocol.decode_response(protocol.encode_response(resp)) == resp
    assert json.loads(resp["stdout"]) == {"cniVersion": "1.1.0", "code": 7, "msg": "bad mode"}
    for bad in (b"garbage", b'{"exit": "0", "stdout": ""}', b'{"stdout": ""}', b"\xff"):
        with pytest.raises(ProtocolError) as info:
            protocol.decode_response(bad)
        assert info.value.code == 106


@pytest.fixture
def one_shot(tmp_path: Path) -> Iterator[Callable[[Behaviour], str]]:
    with scripted_servers(tmp_path, "fnf-p", backlog=1) as make:
        yield make


def _drain(conn: socket.socket) -> None:
    while conn.recv(65536):
        pass


def test_client_errors(tmp_path: Path, one_shot) -> None:
    with pytest.raises(NoAgent):
        protocol.request(str(tmp_path / "none.sock"), protocol.status_request(), timeout=2)
    assert protocol.status(str(tmp_path / "none.sock")) is None
    with pytest.raises(AgentReplyError) as info:
        protocol.request(one_shot(lambda c: c.recv(10)), protocol.status_request(), timeout=5)
    assert info.value.code == 11 and "without answering" in info.value.msg
    with pytest.raises(AgentReplyError) as info:
        protocol.request(one_shot(lambda c: (_drain(c), c.sendall(b"nope"))), protocol.status_request(), timeout=5)
    assert info.value.code == 106 and "malformed" in info.value.msg
    answer = {"exit": 0, "stdout": "{}", "metrics": {"adds": 3}}
    path = one_shot(lambda c: (_drain(c), c.sendall(protocol.encode_response(answer))))
    assert protocol.status(path, timeout=5) == {"adds": 3}


def test_light_modules_do_not_import_the_service() -> None:
    """protocol (and the agent package itself) load without the service, cni or pyroute2."""
    code = (
        "import sys, flatnet.agent, flatnet.agent.protocol, flatnet_lab.forwarder; "
        "print([m for m in sys.modules if m.split('.')[0] in ('pyroute2', 'httpx', 'rich') or "
        "m.startswith(('flatnet.agent.service', 'flatnet.agent.server', 'flatnet.cni', "
        "'flatnet.ipam', 'flatnet.datapath'))])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )
    assert out.stdout.strip() == "[]", out.stderr
