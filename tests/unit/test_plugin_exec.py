"""The plugin executable as a runtime runs it: a subprocess with CNI_* env and stdin.

Every failure must be: non-zero exit, one CNI error JSON on stdout, no traceback. The
agent socket points at a tmp path nobody listens on, so the in-process path is used and
no machine state (/run/flatnet, /var/lib/flatnet) is touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any, Iterator

import pytest

from flatnet import SUPPORTED_VERSIONS, __version__

GOOD = {"cniVersion": "1.0.0", "name": "flat", "type": "flatnet", "mode": "macvlan",
        "master": "eth9", "ipam": {"pools": [{"subnet": "198.18.100.0/24"}],
                                    "store": {"type": "memory"}}}


def run_plugin(tmp_path: Any, env: dict[str, str], stdin: bytes = b"",
               extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "FLATNET_AGENT_SOCKET": str(tmp_path / "no-agent.sock"),
            "FLATNET_LOCK_DIR": str(tmp_path / "locks"),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run([sys.executable, "-m", "flatnet.plugin"], input=stdin,
                          env={**base, **env, **(extra_env or {})}, capture_output=True, timeout=60)


def cni_env(verb: str = "ADD", **over: str) -> dict[str, str]:
    env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": "abc123", "CNI_IFNAME": "eth0",
           "CNI_NETNS": "/run/netns/fnt-nonexistent", "CNI_PATH": "/opt/cni/bin"}
    env.update(over)
    return {k: v for k, v in env.items() if v is not None}


def assert_error(proc: subprocess.CompletedProcess, code: int, word: str = "") -> dict:
    assert proc.returncode != 0
    assert b"Traceback" not in proc.stdout + proc.stderr
    err = json.loads(proc.stdout)
    assert err["code"] == code, err
    assert word.lower() in err["msg"].lower(), err
    return err


def test_about_text(tmp_path: Any) -> None:
    proc = run_plugin(tmp_path, {})
    assert proc.returncode == 0 and proc.stdout == b""
    text = proc.stderr.decode()
    assert f"flatnet plugin v{__version__}" in text
    assert ", ".join(SUPPORTED_VERSIONS) in text


@pytest.mark.parametrize("asked,answered", [("0.4.0", "0.4.0"), ("1.1.0", "1.1.0"), ("9.9.9", "1.1.0")])
def test_version(tmp_path: Any, asked: str, answered: str) -> None:
    proc = run_plugin(tmp_path, {"CNI_COMMAND": "VERSION"}, json.dumps({"cniVersion": asked}).encode())
    assert proc.returncode == 0
    out = json.loads(proc.stdout)
    assert out == {"cniVersion": answered, "supportedVersions": list(SUPPORTED_VERSIONS)}


def test_malformed_json(tmp_path: Any) -> None:
    assert_error(run_plugin(tmp_path, cni_env(), b'{"cniVersion": "1.0.0", "name": '), 6)


def test_missing_container_id(tmp_path: Any) -> None:
    env = cni_env()
    del env["CNI_CONTAINERID"]
    assert_error(run_plugin(tmp_path, env, json.dumps(GOOD).encode()), 4, "CNI_CONTAINERID")


def test_unknown_mode(tmp_path: Any) -> None:
    conf = {**GOOD, "mode": "teleport"}
    assert_error(run_plugin(tmp_path, cni_env(), json.dumps(conf).encode()), 7, "mode")


def test_unknown_command(tmp_path: Any) -> None:
    assert_error(run_plugin(tmp_path, cni_env("FROB"), json.dumps(GOOD).encode()), 4, "CNI_COMMAND")


def test_not_utf8(tmp_path: Any) -> None:
    assert_error(run_plugin(tmp_path, cni_env(), b"\xff\xfe{}"), 6)


def test_del_without_state_succeeds(tmp_path: Any) -> None:
    """DEL of something never added (and no netns) is a success, with nothing printed."""
    conf = {**GOOD, "ipam": {**GOOD["ipam"], "store": {"type": "sqlite", "path": str(tmp_path / "ipam.db")}}}
    proc = run_plugin(tmp_path, cni_env("DEL", CNI_NETNS=""), json.dumps(conf).encode(),
                      {"FLATNET_NODE": "n1"})
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout == b"" and b"Traceback" not in proc.stderr


@pytest.fixture
def fake_agent(tmp_path: Any) -> Iterator[tuple[str, list[dict]]]:
    """A socket that records the request and answers like an agent would."""
    import socket
    path = str(tmp_path / "agent.sock")
    seen: list[dict] = []
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(30)

    def serve() -> None:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            buf = b""
            while chunk := conn.recv(65536):
                buf += chunk
            seen.append(json.loads(buf))
            conn.sendall(json.dumps({"exit": 0, "stdout": '{"cniVersion": "1.0.0", "dns": {}}\n'}).encode())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield path, seen
    finally:
        srv.close()
        t.join(5)


def test_forwards_to_agent_named_in_config(tmp_path: Any, fake_agent: tuple[str, list[dict]]) -> None:
    path, seen = fake_agent
    conf = {**GOOD, "agentSocket": path}
    proc = run_plugin(tmp_path, cni_env(CNI_ARGS="K8S_POD_NAME=web-0;IgnoreUnknown=1"),
                      json.dumps(conf).encode(), {"UNRELATED": "x"})
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"cniVersion": "1.0.0", "dns": {}}
    req = seen[0]
    assert req["v"] == 1 and json.loads(req["stdin"]) == conf
    assert req["env"]["CNI_ARGS"] == "K8S_POD_NAME=web-0;IgnoreUnknown=1"
    assert all(k.startswith("CNI_") for k in req["env"])


def test_broken_agent_answer(tmp_path: Any) -> None:
    import socket
    path = str(tmp_path / "bad.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"garbage")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        proc = run_plugin(tmp_path, cni_env(), json.dumps({**GOOD, "agentSocket": path}).encode())
        assert_error(proc, 106, "malformed")
    finally:
        srv.close()
        t.join(5)


def test_start_imports_stdlib_only(tmp_path: Any) -> None:
    """Fast start: importing the plugin pulls in no pyroute2, httpx or flatnet.agent."""
    code = ("import sys, flatnet.plugin; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('pyroute2', 'httpx', 'rich') or m.startswith(('flatnet.agent', 'flatnet.cni', "
            "'flatnet.ipam', 'flatnet.datapath'))]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    assert out.stdout.strip() == "[]", out.stderr


def test_agent_closing_without_an_answer_is_try_again(tmp_path) -> None:
    """An agent killed mid-request: the runtime must retry (code 11), not blame versions."""
    import socket as socketmod
    import threading

    from flatnet import plugin

    path = str(tmp_path / "agent.sock")
    srv = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def accept_and_drop() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.close()

    t = threading.Thread(target=accept_and_drop)
    t.start()
    try:
        with pytest.raises(plugin.AgentReplyError) as info:
            plugin.request(path, {"v": 1, "env": {}, "stdin": "{}"}, 5.0)
    finally:
        t.join(5)
        srv.close()
    assert info.value.code == 11
    assert "closed the connection without answering" in str(info.value)
