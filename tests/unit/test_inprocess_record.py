"""The no-agent mode's per-attachment record: whatever turned the mode on for ADD turns it
on for that attachment's DEL and CHECK (podman's exit cleanup runs DEL without the
environment ``podman run`` had, docs/PODMAN.md).

The forwarder is exec'd as a runtime execs it; the entry point it runs is a script that
echoes its call, or flatnet-inprocess itself. Records are written in the real directory
(/run/flatnet/inprocess, the forwarder has it compiled in) under random container ids,
and removed by each test.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Iterator

import pytest

from flatnet import defaults
from flatnet.agent import inprocess
from tests.helpers.cnirun import tree_inprocess_entry
from tests.helpers.forwarder import cni_env, conf, one_json, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cid() -> Iterator[str]:
    """A fresh container id; its records go at teardown."""
    value = "fnrec" + secrets.token_hex(12)
    yield value
    for p in Path(defaults.INPROCESS_DIR).glob(f"{value}.*") if os.path.isdir(defaults.INPROCESS_DIR) else ():
        p.unlink(missing_ok=True)


def _echo_entry(tmp_path: Path) -> str:
    script = tmp_path / "echo-entry"
    script.write_text(
        f"#!{sys.executable}\nimport os, sys, json\nsys.stdin.buffer.read()\n"
        "print(json.dumps({'cmd': os.environ.get('CNI_COMMAND'), 'argv0': sys.argv[0]}))\n"
    )
    script.chmod(0o755)
    return str(script)


def _record(cid: str, body: str, mode: int = 0o600) -> Path:
    os.makedirs(defaults.INPROCESS_DIR, mode=0o700, exist_ok=True)
    path = Path(defaults.INPROCESS_DIR) / f"{cid}.eth0"
    path.write_text(body)
    path.chmod(mode)
    return path


def test_forwarder_and_python_agree_on_the_record_directory() -> None:
    source = (ROOT / "native" / "forwarder" / "flatnet.c").read_text()
    assert re.search(r'#define INPROCESS_RECORDS "([^"]+)"', source).group(1) == defaults.INPROCESS_DIR  # type: ignore[union-attr]


def test_del_without_config_key_or_environment_runs_the_recorded_entry(tmp_path: Path, cid: str) -> None:
    entry = _echo_entry(tmp_path)
    _record(cid, f"{entry}\nFLATNET_NODE=n1\n")
    body = json.dumps(conf(agentSocket=str(tmp_path / "none.sock"))).encode()
    for verb in ("DEL", "CHECK"):
        assert one_json(run(cni_env(verb, cid=cid), body)) == {"cmd": verb, "argv0": entry}


def test_a_record_anyone_could_have_written_is_not_believed(tmp_path: Path, cid: str) -> None:
    _record(cid, f"{_echo_entry(tmp_path)}\n", mode=0o622)
    body = json.dumps(conf(agentSocket=str(tmp_path / "none.sock"))).encode()
    proc = run(cni_env("DEL", cid=cid), body)
    doc = one_json(proc)
    assert proc.returncode == 1 and doc["code"] == 11, doc
    # the config key is the advice; the environment variable comes after it
    assert doc["msg"].index('"inProcess"') < doc["msg"].index("FLATNET_INPROCESS"), doc["msg"]


def test_a_recorded_entry_that_is_gone_names_the_record_and_the_fix(tmp_path: Path, cid: str) -> None:
    path = _record(cid, f"{tmp_path / 'gone'}\n")
    body = json.dumps(conf(agentSocket=str(tmp_path / "none.sock"))).encode()
    doc = one_json(run(cni_env("DEL", cid=cid), body))
    assert doc["code"] == 11 and str(path) in doc["msg"] and '"inProcess"' in doc["msg"], doc


def test_path_characters_in_the_container_id_never_reach_a_file_name() -> None:
    assert inprocess.record_path({"CNI_CONTAINERID": "../etc/x", "CNI_IFNAME": "eth0"}) is None
    assert inprocess.record_path({"CNI_CONTAINERID": "abc", "CNI_IFNAME": ".."}) is None
    assert (
        inprocess.record_path({"CNI_CONTAINERID": "abc", "CNI_IFNAME": "eth0"}) == f"{defaults.INPROCESS_DIR}/abc.eth0"
    )


def _real_body(tmp_path: Path, **extra: object) -> bytes:
    return json.dumps(
        conf(
            agentSocket=str(tmp_path / "none.sock"),
            ipam={
                "pools": [{"subnet": "198.18.100.0/24"}],
                "store": {"type": "sqlite", "path": str(tmp_path / "ipam.db")},
            },
            **extra,
        )
    ).encode()


def test_flatnet_inprocess_del_takes_the_recorded_knobs_and_drops_the_record(tmp_path: Path, cid: str) -> None:
    """A DEL with no FLATNET_* at all (podman's cleanup) runs with ADD's lock dir, and a
    successful DEL leaves no record behind."""
    entry = tree_inprocess_entry(str(tmp_path / "bin"))
    locks = tmp_path / "locks"
    path = _record(cid, f"{entry}\nFLATNET_LOCK_DIR={locks}\nFLATNET_NODE=fnf-n1\nPATH=/evil\n")
    proc = run(cni_env("DEL", cid=cid, CNI_NETNS=""), _real_body(tmp_path), timeout=60)
    assert proc.returncode == 0 and proc.stdout == b"", proc.stdout + proc.stderr
    assert not path.exists(), "a successful DEL must drop the record"
    assert locks.is_dir(), "DEL must have taken its lock in the lock dir ADD recorded"
    assert inprocess.read_record(str(path)) is None


def test_a_failed_add_leaves_no_record(tmp_path: Path, cid: str) -> None:
    entry = tree_inprocess_entry(str(tmp_path / "bin"))
    env = {**cni_env("ADD", cid=cid, CNI_NETNS="/nonexistent/netns"), "FLATNET_INPROCESS": entry}
    env["FLATNET_LOCK_DIR"] = str(tmp_path / "locks")
    proc = run(env, _real_body(tmp_path), timeout=60)
    assert proc.returncode == 1 and one_json(proc)["code"] != 0
    assert not (Path(defaults.INPROCESS_DIR) / f"{cid}.eth0").exists()


def test_records_keep_only_flatnet_knobs(tmp_path: Path) -> None:
    path = str(tmp_path / "r" / "c.eth0")
    inprocess.write_record(path, "/x/flatnet-inprocess", {"FLATNET_NODE": "n1", "PATH": "/bin", "FLATNET_LOG": "a\nb"})
    assert inprocess.read_record(path) == ("/x/flatnet-inprocess", {"FLATNET_NODE": "n1"})
    assert os.stat(path).st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "key, meant", [("inprocess", "inProcess"), ("inProces", "inProcess"), ("agentsocket", "agentSocket")]
)
def test_a_typo_of_a_key_the_forwarder_reads_is_named_when_no_agent_would_see_it(
    tmp_path: Path, key: str, meant: str
) -> None:
    """Without an agent no parser reads the config: the forwarder names the typo itself."""
    body = json.dumps(conf(agentSocket=str(tmp_path / "none.sock"), **{key: "/x"})).encode()
    if key == "agentsocket":
        body = json.dumps({**conf(), key: str(tmp_path / "none.sock")}).encode()
    proc = run(cni_env("ADD", FLATNET_AGENT_SOCKET=str(tmp_path / "none.sock")), body)
    doc = one_json(proc)
    assert proc.returncode == 1 and doc["code"] == 7, doc
    assert f'"{key}"' in doc["msg"] and f'did you mean "{meant}"?' in doc["msg"], doc
