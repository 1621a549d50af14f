"""The composition root (agent/daemon.py): the agent built whole, served, observed.

``build`` makes every part from the flags' options; these tests use what it built (over a
FakeDatapath: no kernel) through the agent's real socket and real HTTP, and check the
wiring that used to be attached afterwards: GC reclaims reach the metrics as the service's
events, every store opened is recorded for `flatnet ipam ls`, the status op and /metrics
read one counter system.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from flatnet.agent.daemon import AgentOptions, Daemon, MetricsUnavailable, build
from flatnet.agent.protocol import request
from flatnet.datapath.fake import FakeDatapath


def _options(tmp: Path, metrics_port: int | None = 0) -> AgentOptions:
    return AgentOptions(
        socket=str(tmp / "run" / "agent.sock"),
        node="fnd-node",
        default_store={"type": "sqlite", "path": str(tmp / "default.db")},
        lock_dir=str(tmp / "locks"),
        allowed_uids=frozenset({os.getuid()}),
        reconcile_every=0,
        state_dir=str(tmp / "state"),
        metrics_at=None if metrics_port is None else ("127.0.0.1", metrics_port),
    )


def _conf(store: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    ipam: dict[str, Any] = {"pools": [{"name": "fnd-p", "subnet": "198.18.11.0/29"}]}
    if store is not None:
        ipam["store"] = store
    return {"cniVersion": "1.1.0", "name": "fnd-net", "type": "flatnet", "master": "vlan100", "ipam": ipam, **extra}


def _cni(d: Daemon, verb: str, conf: dict[str, Any], cid: str = "") -> dict[str, Any]:
    env = {"CNI_COMMAND": verb, "CNI_PATH": "/opt/cni/bin"}
    if cid:
        env.update({"CNI_CONTAINERID": cid, "CNI_IFNAME": "eth0", "CNI_NETNS": f"/run/netns/fnd-{cid}"})
    return request(d.options.socket, {"v": 1, "env": env, "stdin": json.dumps(conf)}, timeout=30)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = build(_options(tmp_path), datapath_factory=lambda mode: FakeDatapath(masters={"vlan100"}))
    thread = threading.Thread(target=d.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield d
    finally:
        d.server.shutdown()
        thread.join(5)
        d.close()


def _metrics(d: Daemon) -> str:
    assert d.http is not None
    with urllib.request.urlopen("http://%s:%d/metrics" % d.http.address, timeout=15) as resp:
        return str(resp.read().decode())


def test_the_built_agent_counts_gc_reclaims_and_requests_in_one_system(daemon: Daemon) -> None:
    for cid in ("c0", "c1", "c2"):
        assert _cni(daemon, "ADD", _conf(), cid)["exit"] == 0
    gc = _conf(**{"cni.dev/valid-attachments": [{"containerID": "c0", "ifname": "eth0"}]})
    reply = _cni(daemon, "GC", gc)
    assert reply["exit"] == 0, reply
    text = _metrics(daemon)
    assert "flatnet_gc_reclaimed_attachments_total 2.0" in text  # the service's events, heard by obs
    assert "flatnet_cni_requests_in_flight 0.0" in text
    status = request(daemon.options.socket, {"v": 1, "op": "status"}, timeout=10)["metrics"]
    assert (status["adds"], status["gcs"], status["errors"], status["in_flight"]) == (3, 1, 0, 0)
    assert daemon.server.metrics is daemon.metrics


def test_every_store_the_agent_opens_is_recorded(daemon: Daemon, tmp_path: Path) -> None:
    explicit = {"type": "sqlite", "path": str(tmp_path / "explicit.db")}
    assert _cni(daemon, "ADD", _conf(explicit), "e1")["exit"] == 0
    record = json.loads((tmp_path / "run" / "stores.json").read_text())
    paths = json.dumps(record)
    assert str(tmp_path / "default.db") in paths and str(tmp_path / "explicit.db") in paths


def test_a_metrics_port_in_use_is_refused_and_nothing_stays_bound(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(MetricsUnavailable):
            build(_options(tmp_path, taken.getsockname()[1]), datapath_factory=lambda mode: FakeDatapath())
    finally:
        taken.close()
    assert not (tmp_path / "run" / "agent.sock").exists()  # the socket was closed and removed
