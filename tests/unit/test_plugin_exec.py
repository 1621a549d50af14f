"""The CNI forwarder (/opt/cni/bin/flatnet) exec'd as a runtime execs it.

Every failure must be: exit 1, one CNI error JSON on stdout with the spec code. Agents
here are scripted sockets (to break the protocol on purpose) or the real agent over a
FakeDatapath; the no-agent socket is a tmp path nobody listens on.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

from flatnet import SUPPORTED_VERSIONS, __version__
from tests.helpers.forwarder import Agent, cni_env, conf, one_json, run, running_agent
from tests.helpers.sockets import Behaviour, scripted_servers


def error(proc, code: int, *words: str) -> dict:
    assert proc.returncode == 1, (proc.returncode, proc.stdout)
    doc = one_json(proc)
    assert doc["code"] == code, doc
    for word in words:
        assert word.lower() in doc["msg"].lower(), doc
    return doc


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[str, Agent]]:
    with running_agent(tmp_path) as pa:
        yield pa


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[Callable[[Behaviour], str]]:
    """scripted(behaviour) -> socket path; ``behaviour(conn)`` plays the agent once."""
    with scripted_servers(tmp_path, "fnf-", backlog=4) as make:
        yield make


def read_request(conn: socket.socket) -> bytes:
    buf = b""
    while chunk := conn.recv(65536):
        buf += chunk
    return buf


def test_about_text() -> None:
    proc = run({})
    assert proc.returncode == 0 and proc.stdout == b""
    text = proc.stderr.decode()
    assert f"flatnet plugin v{__version__}" in text and ", ".join(SUPPORTED_VERSIONS) in text


@pytest.mark.parametrize(
    "stdin,answered",
    [
        (b'{"cniVersion": "0.4.0"}', "0.4.0"),
        (b'{"cniVersion": "1.1.0"}', "1.1.0"),
        (b'{"cniVersion": "9.9.9"}', "1.1.0"),
        (b"{not json", "1.1.0"),
        (b"", "1.1.0"),
    ],
)
def test_version_is_answered_locally(tmp_path: Path, stdin: bytes, answered: str) -> None:
    """No agent needed; the list is flatnet.SUPPORTED_VERSIONS (the build reads it)."""
    proc = run({"CNI_COMMAND": "VERSION", "FLATNET_AGENT_SOCKET": str(tmp_path / "none.sock")}, stdin)
    assert proc.returncode == 0
    assert one_json(proc) == {"cniVersion": answered, "supportedVersions": list(SUPPORTED_VERSIONS)}


@pytest.mark.parametrize(
    "stdin,word",
    [
        (b"{not json", "not valid JSON"),  # the bug of the Python forwarder: code 100
        (b'{"cniVersion": "1.0.0", "name": ', "not valid JSON"),
        (b'{"a": 1} {"b": 2}', "extra data"),
        (b'{"a": NaN}', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"", "empty"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"name": "\xed\xa0\x80"}', "UTF-8"),  # an encoded surrogate is not UTF-8
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'{"x": "' + b"a" * (1 << 20) + b'"}', "larger than"),
    ],
)
def test_undecodable_config_is_code_6(tmp_path: Path, stdin: bytes, word: str) -> None:
    env = cni_env("ADD", FLATNET_AGENT_SOCKET=str(tmp_path / "none.sock"))
    error(run(env, stdin), 6, word)


@pytest.mark.parametrize("version", ["9.9.9", "0.2.0", 1, ["1.0.0"]])
def test_unsupported_cni_version_is_code_1(tmp_path: Path, version: object) -> None:
    env = cni_env("ADD", FLATNET_AGENT_SOCKET=str(tmp_path / "none.sock"))
    doc = error(run(env, json.dumps(conf(version=version)).encode()), 1, "not supported", "0.3.0")  # type: ignore[arg-type]
    assert doc["cniVersion"] == SUPPORTED_VERSIONS[-1]


def test_no_agent_is_try_again_naming_the_socket_and_the_fix(tmp_path: Path) -> None:
    sock = str(tmp_path / "none.sock")
    for where in ({"agentSocket": sock}, {}):
        env = cni_env("ADD", **({} if where else {"FLATNET_AGENT_SOCKET": sock}))
        doc = error(
            run(env, json.dumps(conf(**where)).encode()), 11, sock, "flatnet agent --socket", "FLATNET_INPROCESS"
        )
        assert doc["cniVersion"] == "1.0.0"


def test_config_socket_wins_over_the_environment(tmp_path: Path, scripted) -> None:
    seen: list[bytes] = []

    def answer(conn: socket.socket) -> None:
        seen.append(read_request(conn))
        conn.sendall(json.dumps({"exit": 0, "stdout": "{}\n"}).encode())

    path = scripted(answer)
    env = cni_env("ADD", FLATNET_AGENT_SOCKET=str(tmp_path / "none.sock"))
    assert run(env, json.dumps(conf(agentSocket=path)).encode()).returncode == 0
    env = cni_env("ADD", FLATNET_AGENT_SOCKET=scripted(answer))
    assert run(env, json.dumps(conf()).encode()).returncode == 0
    assert len(seen) == 2


def test_request_carries_cni_env_and_stdin_exactly(scripted) -> None:
    seen: list[dict] = []
    answer_text = '{"cniVersion": "1.0.0", "dns": {}, "note": "é ✓ \\u0000 \U0001f600"}'

    def answer(conn: socket.socket) -> None:
        seen.append(json.loads(read_request(conn)))
        conn.sendall(json.dumps({"exit": 0, "stdout": answer_text}).encode() + b"\n")

    path = scripted(answer)
    stdin = json.dumps(conf(agentSocket=path, note='tab\there "q" \\ é\u2028 \x01'), ensure_ascii=False).encode()
    env = cni_env("ADD", CNI_ARGS="K8S_POD_NAMESPACE=fnf;K8S_POD_NAME=web-0", UNRELATED="x", FLATNET_NODE="n")
    proc = run(env, stdin)
    assert proc.returncode == 0
    assert proc.stdout == answer_text.encode()  # byte for byte, no newline added
    req = seen[0]
    assert req["v"] == 1 and req["stdin"].encode() == stdin
    assert req["env"] == {k: v for k, v in env.items() if k.startswith("CNI_")}


def test_agent_error_answer_exits_1_with_its_stdout(scripted) -> None:
    text = '{"cniVersion": "1.0.0", "code": 7, "msg": "bad"}\n'
    path = scripted(lambda c: (read_request(c), c.sendall(json.dumps({"exit": 1, "stdout": text}).encode())))
    proc = run(cni_env("ADD"), json.dumps(conf(agentSocket=path)).encode())
    assert proc.returncode == 1 and proc.stdout == text.encode()


def test_agent_closing_without_an_answer_is_try_again(scripted) -> None:
    path = scripted(lambda c: c.recv(10))
    error(run(cni_env("DEL"), json.dumps(conf(agentSocket=path)).encode()), 11, "without answering", path)


def test_silent_agent_times_out_as_try_again(scripted) -> None:
    stop = threading.Event()
    path = scripted(lambda c: (read_request(c), stop.wait(20)))
    try:
        proc = run(cni_env("ADD", FLATNET_AGENT_TIMEOUT="1"), json.dumps(conf(agentSocket=path)).encode())
    finally:
        stop.set()
    error(proc, 11, "did not answer within 1s")


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage",
        b"[1]",
        b'{"exit": "0", "stdout": ""}',
        b'{"exit": 0}',
        b'{"exit": 0.5, "stdout": ""}',
        b'{"exit": 0, "stdout": "x"',
        b'{"exit": 0, "stdout": "\xff"}',
    ],
)
def test_malformed_agent_answer_is_106(scripted, answer: bytes) -> None:
    path = scripted(lambda c: (read_request(c), c.sendall(answer)))
    error(run(cni_env("ADD"), json.dumps(conf(agentSocket=path)).encode()), 106, "malformed")


def test_non_utf8_cni_env_is_code_4(tmp_path: Path) -> None:
    env = {k.encode(): v.encode() for k, v in cni_env("ADD", FLATNET_AGENT_SOCKET=str(tmp_path / "n")).items()}
    env[b"CNI_ARGS"] = b"K8S_POD_NAME=\xff"
    env[b"PATH"] = os.environ.get("PATH", "/usr/bin:/bin").encode()
    from tests.helpers.forwarder import forwarder_path
    import subprocess

    proc = subprocess.run(
        [forwarder_path()], input=json.dumps(conf()).encode(), env=env, capture_output=True, timeout=30
    )
    error(proc, 4, "CNI_ARGS")


# ---- the real agent (FakeDatapath): errors of the service travel back unchanged ----
def test_real_agent_add_check_del(agent) -> None:
    path, a = agent
    body = json.dumps(conf(agentSocket=path)).encode()
    res = one_json(run(cni_env("ADD"), body))
    assert res["cniVersion"] == "1.0.0" and res["ips"][0]["address"] == "198.18.100.32/24"
    with_prev = json.dumps(conf(agentSocket=path, prevResult=res)).encode()
    assert run(cni_env("CHECK"), with_prev).returncode == 0
    proc = run(cni_env("DEL"), with_prev)
    assert proc.returncode == 0 and proc.stdout == b""
    assert a.server.metrics.snapshot()["adds"] == 1


@pytest.mark.parametrize(
    "env_over,extra,code,word",
    [
        ({"CNI_CONTAINERID": ""}, {}, 4, "CNI_CONTAINERID"),
        ({"CNI_COMMAND": "FROB"}, {}, 4, "CNI_COMMAND"),
        ({}, {"mode": "teleport"}, 7, "mode"),
    ],
)
def test_real_agent_errors(agent, env_over: dict, extra: dict, code: int, word: str) -> None:
    path, _ = agent
    error(run({**cni_env("ADD"), **env_over}, json.dumps(conf(agentSocket=path, **extra)).encode()), code, word)


# ---- no agent: the in-process mode is exec'd, not forwarded to ----
def _echo_entry(tmp_path: Path) -> str:
    script = tmp_path / "fnf-entry"
    script.write_text(
        f"#!{sys.executable}\nimport os, sys, json\n"
        "data = sys.stdin.buffer.read()\n"
        "print(json.dumps({'stdin': data.decode(), 'cmd': os.environ.get('CNI_COMMAND')}))\n"
    )
    script.chmod(0o755)
    return str(script)


def test_no_agent_execs_the_inprocess_entry_with_the_same_stdin(tmp_path: Path) -> None:
    entry = _echo_entry(tmp_path)
    body = json.dumps(conf(agentSocket=str(tmp_path / "none.sock"))).encode()
    out = one_json(run(cni_env("ADD", FLATNET_INPROCESS=entry), body))
    assert out == {"stdin": body.decode(), "cmd": "ADD"}
    body = json.dumps(conf(agentSocket=str(tmp_path / "none.sock"), inProcess=entry)).encode()
    assert one_json(run(cni_env("DEL", FLATNET_INPROCESS="/nonexistent"), body))["cmd"] == "DEL"


def test_missing_inprocess_entry_is_a_clear_error(tmp_path: Path) -> None:
    body = json.dumps(conf(agentSocket=str(tmp_path / "none.sock"))).encode()
    error(run(cni_env("ADD", FLATNET_INPROCESS=str(tmp_path / "nope")), body), 4, "FLATNET_INPROCESS", "nope")
    body = json.dumps(conf(agentSocket=str(tmp_path / "none.sock"), inProcess=str(tmp_path / "nope"))).encode()
    error(run(cni_env("ADD"), body), 7, "inProcess")


def test_real_inprocess_del_without_state_succeeds(tmp_path: Path) -> None:
    """flatnet-inprocess itself: DEL of something never added is a success, nothing printed."""
    from tests.helpers.cnirun import inprocess_env

    body = json.dumps(
        conf(
            agentSocket=str(tmp_path / "none.sock"),
            ipam={
                "pools": [{"subnet": "198.18.100.0/24"}],
                "store": {"type": "sqlite", "path": str(tmp_path / "ipam.db")},
            },
        )
    ).encode()
    env = {
        **cni_env("DEL", CNI_NETNS=""),
        **inprocess_env(),
        "FLATNET_NODE": "fnf-n1",
        "FLATNET_LOCK_DIR": str(tmp_path / "locks"),
    }
    proc = run(env, body, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == b"" and b"Traceback" not in proc.stderr
