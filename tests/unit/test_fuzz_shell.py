"""Fuzz: interface names and CNI_ARGS full of shell metacharacters never reach a shell.

Every way of starting a process (subprocess, os.system/popen, exec*/spawn*/posix_spawn)
is replaced by a recorder that refuses to start anything (so nothing can touch this
machine). The real Service with the real datapath then runs ADD/DEL/CHECK with hostile
values against a node netns that does not exist; the recorder must see no shell and no
argv carrying the hostile text, and the answer must be a clean CNI error.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flatnet.agent.service import Service
from flatnet.cni import dispatch
from flatnet.datapath import antispoof, nft
from flatnet.errors import FlatnetError
from tests.unit.test_fuzz_cni import SPEC_CODES

META = ";|&$`'\"\\<>(){}*?!~#"
hostile = st.text(alphabet=META + "abcXYZ019-_.=", min_size=1, max_size=14).filter(lambda s: any(c in META for c in s))


class Spawned(Exception):
    pass


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict]] = []

    def hook(self, name: str):
        def fake(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            raise OSError(1, f"process start blocked by the test ({name})")

        return fake


@pytest.fixture
def spawns(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(subprocess.Popen, "__init__", rec.hook("Popen"))
    for name in (
        "system",
        "popen",
        "execv",
        "execve",
        "execvp",
        "execvpe",
        "execl",
        "execlp",
        "spawnv",
        "spawnve",
        "spawnvp",
        "posix_spawn",
        "posix_spawnp",
    ):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, rec.hook(name))
    return rec


def _conf(mode: str) -> dict:
    conf = {
        "cniVersion": "1.1.0",
        "name": "flat",
        "type": "flatnet",
        "mode": mode,
        "master": "eth9",
        "hostNetns": "fnk-absent-node-0",
        "agentSocket": "/nonexistent/fnk.sock",
        "ipam": {"pools": [{"name": "v4", "subnet": "198.18.100.0/24"}], "store": {"type": "memory"}},
    }
    if mode == "vxlan":
        conf.update(clusterSubnet="198.18.64.0/18", vni=42)
        del conf["ipam"]["pools"]
    return conf


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    ifname=hostile,
    key=hostile.filter(lambda s: "=" not in s and ";" not in s),
    value=hostile,
    verb=st.sampled_from(["ADD", "DEL", "CHECK"]),
    mode=st.sampled_from(["macvlan", "bridge", "ipvlan"]),
)
def test_hostile_names_never_spawn_a_shell(
    spawns: Recorder, tmp_path_factory: Any, ifname: str, key: str, value: str, verb: str, mode: str
) -> None:
    svc = Service(node="node1", lock_dir=str(tmp_path_factory.mktemp("locks")))
    value = value.replace(";", "").replace("=", "") or "x"
    env = {
        "CNI_COMMAND": verb,
        "CNI_CONTAINERID": "c0ffee",
        "CNI_IFNAME": ifname,
        "CNI_NETNS": f"/run/netns/fnk-absent-{ifname}",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAME={value};{key}={value}",
    }
    conf = _conf(mode)
    if verb == "CHECK":
        conf["prevResult"] = {"cniVersion": "1.1.0", "interfaces": [], "ips": []}
    out = io.StringIO()
    code = dispatch(svc, env, json.dumps(conf).encode(), out, io.StringIO())
    svc.close()
    doc = json.loads(out.getvalue()) if out.getvalue().strip() else {}
    if code != 0:
        assert doc["code"] in SPEC_CODES and "Traceback" not in out.getvalue()
    for name, args, kwargs in spawns.calls:
        assert name == "Popen" and not kwargs.get("shell"), (name, args, kwargs)
        argv = args[0] if args else kwargs.get("args")
        assert isinstance(argv, (list, tuple)), f"a command line string reached {name}: {argv!r}"
        assert not any(t in " ".join(map(str, argv)) for t in (ifname, value, key))


@pytest.mark.parametrize("bad", ["eth0;reboot", "a$(id)", "x`id`", 'q"w', "n\nflush ruleset", "a" * 16])
def test_antispoof_refuses_hostile_port_names_before_any_process(spawns: Recorder, bad: str) -> None:
    with pytest.raises(Exception) as info:
        antispoof.install("fnk-absent-node-0", bad, "02:00:00:00:00:01", ["198.18.100.5"])
    assert "not a valid Linux interface name" in str(info.value)
    assert spawns.calls == []


def test_nft_runs_as_argv_without_shell(spawns: Recorder) -> None:
    """The one process flatnet starts (nft) gets a fixed argv and the ruleset on stdin."""
    with pytest.raises(FlatnetError):
        nft.apply("fnk-absent-node-0", "add table ip flatnet\n")
    if spawns.calls:  # run_in may fail on the absent netns before spawning: both are fine
        name, args, kwargs = spawns.calls[0]
        assert not kwargs.get("shell") and list(args[0])[1:] == ["-f", "-"]
