"""dispatch: verbs, version gates, error JSON, and a fuzz that it never raises."""

from __future__ import annotations

import io
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flatnet.cni import ABOUT, SUPPORTED, CmdArgs, Interface, IPConfig, Result, dispatch
from flatnet.errors import PoolExhausted

SPEC_CODES = {1, 2, 3, 4, 5, 6, 7, 11, 50, 51}


class FakeHandler:
    """Records calls; ``fail`` makes every verb raise it."""

    def __init__(self, fail: BaseException | None = None, add_returns: Any = None) -> None:
        self.calls: list[tuple[str, CmdArgs]] = []
        self.fail = fail
        self.add_returns = add_returns

    def _record(self, verb: str, cmd: CmdArgs) -> None:
        self.calls.append((verb, cmd))
        if self.fail is not None:
            raise self.fail

    def add(self, cmd: CmdArgs) -> Result:
        self._record("add", cmd)
        if self.add_returns is not None:
            return self.add_returns
        return Result(
            [Interface(cmd.ifname, "02:00:00:00:00:01", cmd.netns, 1500)],
            [IPConfig(ipaddress.ip_interface("198.18.100.40/24"), ipaddress.ip_address("198.18.100.1"), 0)],
        )

    def delete(self, cmd: CmdArgs) -> None:
        self._record("delete", cmd)

    def check(self, cmd: CmdArgs) -> None:
        self._record("check", cmd)

    def gc(self, cmd: CmdArgs) -> None:
        self._record("gc", cmd)

    def status(self, cmd: CmdArgs) -> None:
        self._record("status", cmd)


def config(version: str = "1.1.0", **extra: Any) -> bytes:
    d = {
        "cniVersion": version,
        "name": "flat100",
        "type": "flatnet",
        "master": "vlan100",
        "ipam": {"pools": [{"subnet": "198.18.100.0/24"}]},
        **extra,
    }
    return json.dumps(d).encode()


def env(command: str, **changes: str) -> dict[str, str]:
    e = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "abc123",
        "CNI_NETNS": "/run/netns/fnt-1",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
    }
    e.update(changes)
    return e


def run(handler: Any, e: dict[str, str], stdin: bytes, **kw: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = dispatch(handler, e, stdin, out, err, **kw)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("version", SUPPORTED)
def test_add_prints_the_result_in_the_config_version(version: str) -> None:
    h = FakeHandler()
    rc, out, err = run(h, env("ADD"), config(version))
    assert rc == 0 and err == ""
    doc = json.loads(out)
    assert doc["cniVersion"] == version
    assert doc["interfaces"][0]["sandbox"] == "/run/netns/fnt-1"
    assert ("version" in doc["ips"][0]) == (version in ("0.3.0", "0.3.1", "0.4.0"))
    verb, cmd = h.calls[0]
    assert verb == "add" and cmd.conf is not None and cmd.conf.name == "flat100"
    assert cmd.stdin == config(version) and cmd.container_id == "abc123"


@pytest.mark.parametrize("command, method", [("DEL", "delete"), ("CHECK", "check"), ("GC", "gc"), ("STATUS", "status")])
def test_other_verbs_print_nothing(command: str, method: str) -> None:
    h = FakeHandler()
    rc, out, _ = run(h, env(command), config("1.1.0"))
    assert (rc, out) == (0, "")
    assert [verb for verb, _ in h.calls] == [method]


@pytest.mark.parametrize("command, version", [("CHECK", "0.3.1"), ("GC", "1.0.0"), ("STATUS", "0.4.0")])
def test_verbs_newer_than_the_config_are_code_1(command: str, version: str) -> None:
    h = FakeHandler()
    rc, out, _ = run(h, env(command), config(version))
    doc = json.loads(out)
    assert rc == 1 and doc["code"] == 1 and command in doc["msg"]
    assert doc["cniVersion"] == version and h.calls == []


def test_gc_gets_the_valid_attachments() -> None:
    h = FakeHandler()
    stdin = config(**{"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]})
    assert run(h, {"CNI_COMMAND": "GC"}, stdin)[0] == 0
    conf = h.calls[0][1].conf
    assert conf is not None and conf.valid_attachments is not None
    assert conf.valid_attachments[0].container_id == "a"


@pytest.mark.parametrize(
    "stdin, expected",
    [
        (b'{"cniVersion": "0.4.0"}', "0.4.0"),
        (b"", "1.1.0"),
        (b"garbage", "1.1.0"),
        (b'{"cniVersion": "7.0.0"}', "1.1.0"),
    ],
)
def test_version(stdin: bytes, expected: str) -> None:
    rc, out, _ = run(FakeHandler(), {"CNI_COMMAND": "VERSION"}, stdin)
    assert rc == 0
    assert json.loads(out) == {"cniVersion": expected, "supportedVersions": list(SUPPORTED)}


def test_no_command_prints_about_to_stderr() -> None:
    rc, out, err = run(FakeHandler(), {}, b"")
    assert (rc, out) == (0, "")
    assert err.startswith(ABOUT + "\n") and ABOUT.startswith("CNI flatnet plugin v")
    assert "CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0" in err


def test_no_command_without_about_is_an_env_error() -> None:
    rc, out, _ = run(FakeHandler(), {}, b"", about="")
    assert rc == 1 and json.loads(out)["code"] == 4


def test_unknown_command_is_code_4() -> None:
    rc, out, _ = run(FakeHandler(), env("GET"), config())
    assert rc == 1 and json.loads(out)["code"] == 4 and "GET" in json.loads(out)["msg"]


def test_env_error_speaks_the_configs_version() -> None:
    rc, out, _ = run(FakeHandler(), env("ADD", CNI_IFNAME="bad/name"), config("0.3.1"))
    doc = json.loads(out)
    assert rc == 1 and doc == {"cniVersion": "0.3.1", "code": 4, "msg": doc["msg"]}
    assert "CNI_IFNAME" in doc["msg"]


@pytest.mark.parametrize("stdin, code", [(b"{", 6), (config(mode="nope"), 7), (config("0.2.0"), 1)])
def test_config_errors(stdin: bytes, code: int) -> None:
    h = FakeHandler()
    rc, out, _ = run(h, env("ADD"), stdin)
    assert rc == 1 and json.loads(out)["code"] == code and h.calls == []


def test_flatnet_error_from_the_handler_keeps_its_code() -> None:
    rc, out, _ = run(
        FakeHandler(PoolExhausted("pool flat100 is full", details="160 used")), env("ADD"), config("1.0.0")
    )
    assert rc == 1
    assert json.loads(out) == {"cniVersion": "1.0.0", "code": 101, "msg": "pool flat100 is full", "details": "160 used"}


def test_unexpected_exception_is_code_100_without_traceback(tmp_path: Path) -> None:
    log = tmp_path / "flatnet.log"
    rc, out, err = run(FakeHandler(KeyError("boom")), env("DEL", FLATNET_LOG=str(log)), config())
    doc = json.loads(out)
    assert rc == 1 and doc["code"] == 100 and doc["msg"] == "internal error: KeyError: 'boom'"
    assert "Traceback" not in out + err
    assert "Traceback" in log.read_text() and "KeyError" in log.read_text()


def test_unwritable_log_does_not_change_the_answer(tmp_path: Path) -> None:
    rc, out, _ = run(
        FakeHandler(RuntimeError("x")), env("DEL", FLATNET_LOG=str(tmp_path / "no" / "such" / "dir.log")), config()
    )
    assert rc == 1 and json.loads(out)["code"] == 100


def test_add_returning_a_non_result_is_an_internal_error() -> None:
    rc, out, _ = run(FakeHandler(add_returns={"ips": []}), env("ADD"), config())
    assert rc == 1 and json.loads(out)["code"] == 100 and "Result" in json.loads(out)["msg"]


class _BrokenStream(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError("runtime went away")


def test_broken_stdout_still_returns_1() -> None:
    assert dispatch(FakeHandler(), env("ADD"), config(), _BrokenStream(), None) == 1


# ----------------------------------------------------------------- fuzz

_env_keys = st.sampled_from(
    ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH", "OTHER"]
)
_env_values = st.sampled_from(
    ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", "eth0", "abc", "/run/netns/x", "IP=1.2.3.4", ""]
) | st.text(max_size=20)
_stdins = st.binary(max_size=200) | st.builds(
    lambda d: json.dumps(d).encode(),
    st.fixed_dictionaries(
        {
            "cniVersion": st.sampled_from(SUPPORTED + ("0.2.0",)),
            "name": st.sampled_from(["n", "-x", ""]),
            "type": st.just("flatnet"),
        },
        optional={
            "master": st.text(max_size=17),
            "mode": st.sampled_from(["macvlan", "vxlan", "x"]),
            "ipam": st.recursive(
                st.none() | st.integers() | st.text(),
                lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3),
            ),
            "prevResult": st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
        },
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_env_keys, _env_values), _stdins, st.booleans())
def test_fuzz_dispatch_never_raises(env_: dict[str, str], stdin: bytes, failing: bool) -> None:
    h = FakeHandler(ValueError("fuzz") if failing else None)
    rc, out, _ = run(h, env_, stdin)
    assert rc in (0, 1)
    if rc == 1:
        doc = json.loads(out)
        assert isinstance(doc["code"], int) and (doc["code"] in SPEC_CODES or doc["code"] >= 100)
        assert isinstance(doc["msg"], str) and doc["msg"]
    elif out:
        json.loads(out)
