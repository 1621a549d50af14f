"""The network config is decoded and parsed once per request on the agent's Python side.

A real ``AgentServer`` serves a real ``Service`` (FakeDatapath, SQLite in a tmp dir) over
its unix socket; the request goes through the plugin's client as the forwarder's would.
``parse_netconf`` and the JSON decoding of the config text are counted where the request
path calls them (dispatcher, service, observer): each config is parsed exactly once.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

import flatnet.cni.config as config_mod
import flatnet.cni.skel as skel
from flatnet.agent.protocol import request
from flatnet.agent.server import AgentServer
from flatnet.agent.service import Service
from flatnet.datapath.fake import FakeDatapath


def _conf(tmp: Path, store: bool) -> str:
    ipam: dict[str, Any] = {"pools": [{"name": "fpo-p", "subnet": "198.18.9.0/29"}]}
    if store:
        ipam["store"] = {"type": "sqlite", "path": str(tmp / "explicit.db")}
    return json.dumps({"cniVersion": "1.1.0", "name": "fpo-net", "type": "flatnet", "master": "vlan100", "ipam": ipam})


def _env(verb: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": verb,
        "CNI_CONTAINERID": "fpo-c1",
        "CNI_IFNAME": "eth0",
        "CNI_NETNS": "/run/netns/fpo-c1",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": "K8S_POD_NAMESPACE=fpo;K8S_POD_NAME=web",
    }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Service]]:
    svc = Service(
        node="n1",
        lock_dir=str(tmp_path / "locks"),
        default_store={"type": "sqlite", "path": str(tmp_path / "default.db")},
        datapath_factory=lambda mode: FakeDatapath(masters={"vlan100"}),
    )
    path = str(tmp_path / "run" / "agent.sock")
    server = AgentServer(path, svc, allowed_uids=frozenset({os.getuid()}))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield path, svc
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        svc.close()


class _Counted:
    """Wraps a function and records each call's first argument."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.calls = fn, []  # type: list[Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(args[0] if args else None)
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("store", [False, True], ids=["agent-store", "explicit-store"])
def test_each_request_parses_its_config_once(
    served: tuple[str, Service], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: bool
) -> None:
    path, svc = served
    stdin = _conf(tmp_path, store)
    parses = _Counted(config_mod.parse_netconf)
    monkeypatch.setattr(skel, "parse_netconf", parses)
    loads = _Counted(json.loads)  # every json.loads in the process: the config text is counted
    monkeypatch.setattr(json, "loads", loads)

    result: dict[str, Any] = {}
    for n, verb in enumerate(("ADD", "CHECK", "DEL"), start=1):
        conf = stdin
        if verb == "CHECK":
            conf = json.dumps({**json.loads(stdin), "prevResult": result})
        reply = request(path, {"v": 1, "env": _env(verb), "stdin": conf}, timeout=30)
        assert reply["exit"] == 0, reply
        if verb == "ADD":
            result = json.loads(reply["stdout"])
        assert len(parses.calls) == n, f"{verb}: parse_netconf ran {len(parses.calls)} times for {n} requests"
        decoded = [c for c in loads.calls if isinstance(c, str) and c == conf]
        assert len(decoded) == 1, f"{verb}: the config text was decoded {len(decoded)} times"
        loads.calls.clear()

    # the store chosen without re-reading the raw JSON: explicit ipam.store wins over --store
    served_conf = svc.served_networks()[0]
    assert served_conf.store_explicit is store
    assert svc.store_config(served_conf)["path"].endswith("explicit.db" if store else "default.db")


def test_a_config_that_is_not_json_is_still_named_and_answered(served: tuple[str, Service]) -> None:
    """The error path decodes again to name the fault; the answer is unchanged (code 6)."""
    path, _svc = served
    reply = request(path, {"v": 1, "env": _env("ADD"), "stdin": '{"name": '}, timeout=30)
    assert reply["exit"] == 1
    out = json.loads(reply["stdout"])
    assert out["code"] == 6 and "not valid JSON" in out["msg"]


def test_the_log_line_names_what_the_answer_gave(served: tuple[str, Service], caplog: pytest.LogCaptureFixture) -> None:
    """The observer reads network, mode and ADD's addresses from the parsed request and the
    answered Result: they must equal what the runtime got on stdout."""
    path, _svc = served
    with caplog.at_level("INFO", logger="flatnet.agent"):
        reply = request(path, {"v": 1, "env": _env("ADD"), "stdin": _conf(Path("/nonexistent"), False)}, timeout=30)
    assert reply["exit"] == 0
    given = [ip["address"] for ip in json.loads(reply["stdout"])["ips"]]
    records = [r for r in caplog.records if getattr(r, "verb", "") == "ADD"]
    assert len(records) == 1
    rec = records[0]
    assert (rec.network, rec.mode, rec.addresses) == ("fpo-net", "macvlan", given)  # type: ignore[attr-defined]
    assert given and f"ok {given[0]}" in rec.getMessage()
