"""Metrics, health endpoints and request logs of an agent over a fake datapath.

A real ``AgentServer`` serves a real ``Service`` (FakeDatapath, SQLite store in a tmp dir)
on a unix socket; requests go through the plugin's client like the runtime's would, and
``/metrics``, ``/healthz`` and ``/readyz`` are fetched over real HTTP.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flatnet.agent.server import AgentServer
from flatnet.agent.service import Service
from flatnet.datapath.fake import FakeDatapath
from flatnet.ipam import Ipam
from flatnet.obs.agent import instrument, serve_metrics
from flatnet.obs.logs import setup_logging
from flatnet.obs.metrics import AgentMetrics
from flatnet.obs.store import instrumented_factory
from flatnet.agent.protocol import request

POOL = {"name": "fno-p4", "subnet": "198.18.7.0/29"}  # 6 usable addresses


def conf(store: dict, pools: list | None = None) -> str:
    return json.dumps(
        {
            "cniVersion": "1.1.0",
            "name": "fno-net",
            "type": "flatnet",
            "mode": "macvlan",
            "master": "vlan100",
            "ipam": {"pools": pools or [POOL], "store": store},
        }
    )


def env(cid: str, verb: str = "ADD", pod: str = "web") -> dict[str, str]:
    return {
        "CNI_COMMAND": verb,
        "CNI_CONTAINERID": cid,
        "CNI_IFNAME": "eth0",
        "CNI_NETNS": f"/run/netns/fno-{cid}",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": f"K8S_POD_NAMESPACE=fno;K8S_POD_NAME={pod}",
    }


class Agent:
    def __init__(self, tmp: Path) -> None:
        import os

        self.store_cfg = {"type": "sqlite", "path": str(tmp / "ipam.db")}
        self.metrics = AgentMetrics()
        self.factory = instrumented_factory(self.metrics)
        self.service = Service(
            node="node1",
            lock_dir=str(tmp / "locks"),
            datapath_factory=lambda mode: FakeDatapath(masters={"vlan100"}),
            store_factory=self.factory,
        )
        self.path = str(tmp / "run" / "agent.sock")
        self.server = AgentServer(self.path, self.service, allowed_uids=frozenset({os.getuid()}), metrics=self.metrics)
        readiness = instrument(self.server, self.service, None, self.store_cfg)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.http = serve_metrics(self.server, self.metrics, "127.0.0.1", 0, None, readiness)
        self.base = "http://%s:%d" % self.http.address

    def cni(self, cid: str, verb: str = "ADD", stdin: str | None = None, pod: str = "web") -> dict:
        reply = request(
            self.path, {"v": 1, "env": env(cid, verb, pod), "stdin": stdin or conf(self.store_cfg)}, timeout=30
        )
        return {"exit": reply["exit"], "out": json.loads(reply["stdout"]) if reply["stdout"].strip() else {}}

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=15) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def samples(self) -> dict[tuple[str, tuple], float]:
        status, text = self.get("/metrics")
        assert status == 200
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def close(self) -> None:
        self.http.stop()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.service.close()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    a = Agent(tmp_path)
    try:
        yield a
    finally:
        a.close()


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_cni_requests_are_counted_by_verb_network_mode_and_result(agent: Agent) -> None:
    for i in range(6):
        assert agent.cni(f"c{i}")["exit"] == 0
    failed = agent.cni("c6")  # the /29 has 6 usable addresses: the 7th ADD fails
    assert failed["exit"] == 1 and failed["out"]["code"] == 101
    assert agent.cni("c0", "DEL")["exit"] == 0
    s = agent.samples()
    lab = {"verb": "ADD", "network": "fno-net", "mode": "macvlan"}
    assert value(s, "flatnet_cni_request_duration_seconds_count", **lab, result="0") == 6
    assert value(s, "flatnet_cni_request_duration_seconds_count", **lab, result="101") == 1
    assert value(s, "flatnet_cni_request_duration_seconds_count", **{**lab, "verb": "DEL"}, result="0") == 1
    assert value(s, "flatnet_cni_request_duration_seconds_bucket", **lab, result="0", le="+Inf") == 6
    # store calls were timed, by store type
    assert value(s, "flatnet_store_request_duration_seconds_count", store="sqlite", op="txn") > 0


def test_pool_gauges_equal_what_the_store_holds(agent: Agent) -> None:
    for i in range(4):
        assert agent.cni(f"c{i}", pod=f"web-{i}")["exit"] == 0
    agent.cni("c3", "DEL")
    s = agent.samples()
    ipam = Ipam(agent.service.stores()[0])
    held = len(ipam.leases("fno-p4"))  # what 'flatnet ipam ls --pool fno-p4' counts
    assert held == 3
    lab = {"pool": "fno-p4", "store": "sqlite"}
    assert value(s, "flatnet_ipam_pool_in_use_addresses", **lab) == held
    assert value(s, "flatnet_ipam_pool_size_addresses", **lab) == 6
    assert value(s, "flatnet_ipam_pool_allocated_addresses", **lab) == held


def test_sticky_reservations_are_reported(agent: Agent) -> None:
    sticky = [{**POOL, "sticky": True}]
    assert agent.cni("c1", stdin=conf(agent.store_cfg, sticky), pod="redis-0")["exit"] == 0
    assert agent.cni("c1", "DEL", stdin=conf(agent.store_cfg, sticky), pod="redis-0")["exit"] == 0
    s = agent.samples()
    lab = {"pool": "fno-p4", "store": "sqlite"}
    assert value(s, "flatnet_ipam_pool_in_use_addresses", **lab) == 0
    assert value(s, "flatnet_ipam_pool_sticky_reserved_addresses", **lab) == 1
    assert value(s, "flatnet_ipam_pool_allocated_addresses", **lab) == 0  # a hold can be taken over
    # six more pods in the six-address pool: the last one takes redis-0's hold over
    for i in range(6):
        assert agent.cni(f"d{i}", stdin=conf(agent.store_cfg, sticky), pod=f"web-{i}")["exit"] == 0
    s = agent.samples()
    assert value(s, "flatnet_ipam_pool_sticky_reserved_addresses", **lab) == 0
    assert value(s, "flatnet_ipam_pool_sticky_takeovers_total", **lab) == 1
    assert value(s, "flatnet_ipam_pool_allocated_addresses", **lab) == 6


def test_gc_reclaims_are_counted(agent: Agent) -> None:
    for i in range(3):
        assert agent.cni(f"c{i}")["exit"] == 0
    gc_conf = json.loads(conf(agent.store_cfg))
    gc_conf["cni.dev/valid-attachments"] = [{"containerID": "c0", "ifname": "eth0"}]
    reply = request(
        agent.path,
        {"v": 1, "env": {"CNI_COMMAND": "GC", "CNI_PATH": "/opt/cni/bin"}, "stdin": json.dumps(gc_conf)},
        timeout=30,
    )
    assert reply["exit"] == 0, reply
    s = agent.samples()
    assert value(s, "flatnet_gc_reclaimed_attachments_total") == 2
    assert (
        value(s, "flatnet_cni_request_duration_seconds_count", verb="GC", network="fno-net", mode="macvlan", result="0")
        == 1
    )


def test_healthz_and_readyz_answer_ok(agent: Agent) -> None:
    assert agent.get("/healthz") == (200, "ok\n")
    assert agent.get("/readyz") == (200, "ok\n")
    assert agent.get("/nope")[0] == 404


def test_healthz_fails_when_the_serving_loop_is_wedged(agent: Agent) -> None:
    agent.http.probe_timeout = 1.0
    agent.server.shutdown()  # the socket still accepts connections, nobody answers them
    status, body = agent.get("/healthz")
    assert status == 503 and "agent" in body, body


def test_readyz_fails_when_the_store_does_not_answer(agent: Agent, tmp_path: Path) -> None:
    (tmp_path / "ipam.db").unlink(missing_ok=True)
    (tmp_path / "ipam.db").mkdir()  # the store path is now a directory: SQLite cannot open it
    status, body = agent.get("/readyz")
    assert status == 503 and "sqlite store does not answer" in body, body
    assert agent.get("/healthz")[0] == 200  # alive, just not ready


def test_json_log_line_has_every_request_field(agent: Agent) -> None:
    buf = io.StringIO()
    handler = setup_logging("json", logging.INFO, buf)
    try:
        agent.cni("c1", pod="web-1")
        agent.cni("c2", stdin=conf(agent.store_cfg, [{"name": "fno-p4", "subnet": "not-a-subnet"}]))
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(l) for l in buf.getvalue().splitlines() if '"verb"' in l]
    ok, bad = lines
    for key in (
        "timestamp",
        "level",
        "verb",
        "network",
        "pod_namespace",
        "pod_name",
        "container_id",
        "ifname",
        "addresses",
        "duration_seconds",
        "result",
    ):
        assert key in ok, key
    assert (
        ok["verb"],
        ok["network"],
        ok["pod_namespace"],
        ok["pod_name"],
        ok["container_id"],
        ok["ifname"],
        ok["result"],
        ok["level"],
    ) == ("ADD", "fno-net", "fno", "web-1", "c1", "eth0", 0, "INFO")
    assert ok["addresses"] and ok["addresses"][0].startswith("198.18.7.")
    assert ok["timestamp"][:4].isdigit() and "T" in ok["timestamp"]
    assert bad["result"] == 7 and bad["level"] == "WARNING" and "subnet" in bad["error"]


def test_text_log_line_has_date_and_level(agent: Agent) -> None:
    buf = io.StringIO()
    handler = setup_logging("text", logging.INFO, buf)
    try:
        agent.cni("c1")
    finally:
        logging.getLogger().removeHandler(handler)
    line = next(l for l in buf.getvalue().splitlines() if " ADD " in l)
    import re

    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO flatnet\.agent: ADD ", line), line
    assert "fno/web" in line and "198.18.7." in line


def test_every_exported_metric_is_documented(agent: Agent) -> None:
    agent.cni("c1")
    names = {name for name, _labels in agent.samples()}
    base = {n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for n in names}
    assert "flatnet_ipam_pool_in_use_addresses" in base and "flatnet_build_info" in base
    doc = (Path(__file__).resolve().parents[2] / "docs" / "OBSERVABILITY.md").read_text()
    missing = sorted(n for n in base if f"`{n}`" not in doc)
    assert not missing, f"docs/OBSERVABILITY.md does not explain {missing}"
    assert all(n.startswith("flatnet_") for n in base), base


def test_quarantined_addresses_are_counted(agent: Agent) -> None:
    """An address quarantined after a conflict: a gauge of its own, part of allocated, not in use."""
    assert agent.cni("c1")["exit"] == 0
    assert agent.cni("c2")["exit"] == 0
    ipam = Ipam(agent.service.stores()[0])
    lease = next(l for l in ipam.leases("fno-p4") if l.owner.container_id == "c2")
    assert ipam.quarantine(lease, "answered an ARP probe", "02:00:00:00:00:09")  # the IPAM's own API
    s = agent.samples()
    lab = {"pool": "fno-p4", "store": "sqlite"}
    assert value(s, "flatnet_ipam_pool_quarantined_addresses", **lab) == 1 == len(ipam.quarantined("fno-p4"))
    assert value(s, "flatnet_ipam_pool_in_use_addresses", **lab) == 1 == len(ipam.leases("fno-p4"))
    assert value(s, "flatnet_ipam_pool_allocated_addresses", **lab) == 2


def test_store_wrapper_counts_errors_and_lost_races() -> None:
    from prometheus_client import generate_latest

    from flatnet.errors import StoreUnavailable
    from flatnet.ipam.api import Compare
    from flatnet.ipam.store import MemoryStore
    from flatnet.obs.store import InstrumentedStore

    class Down(MemoryStore):
        def range(self, prefix: str, limit: int | None = None) -> list:
            raise StoreUnavailable("etcd at http://127.0.0.1:1 does not answer")

    metrics = AgentMetrics()
    st = InstrumentedStore(Down(), "etcd", metrics)
    assert st.txn([Compare("k", 0)], {"k": "v"}) is True
    assert st.txn([Compare("k", 0)], {"k": "w"}) is False  # another writer came first
    with pytest.raises(StoreUnavailable):
        st.range("pools/")
    text = generate_latest(metrics.registry).decode()
    assert 'flatnet_store_txn_conflicts_total{store="etcd"} 1.0' in text
    assert 'flatnet_store_errors_total{error="StoreUnavailable",op="range",store="etcd"} 1.0' in text
    assert 'flatnet_store_request_duration_seconds_count{op="txn",store="etcd"} 2.0' in text
    assert st.get("k").value == "v"
    # a txn that reads on failure (a chunk claim) is a txn too, its loss a lost race
    ok, seen = st.txn_else_read([Compare("k", 0)], {"k": "x"}, ["k"])
    assert not ok and seen["k"].value == "v"
    text = generate_latest(metrics.registry).decode()
    assert 'flatnet_store_txn_conflicts_total{store="etcd"} 2.0' in text
    assert 'flatnet_store_request_duration_seconds_count{op="txn",store="etcd"} 3.0' in text


def test_store_internal_retries_come_from_the_stores_own_count() -> None:
    """flatnet_store_internal_retries_total sums ``retries`` of the stores (wrapped or not);
    stores that do not count (sqlite, memory) add no series."""
    from prometheus_client import generate_latest

    from flatnet.ipam.store.memory import MemoryStore
    from flatnet.obs.store import InstrumentedStore, StoreRetriesCollector

    class Counting(MemoryStore):
        retries = 0

    metrics = AgentMetrics()
    a, b = Counting(), Counting()
    stores = [InstrumentedStore(a, "etcd", metrics), b, MemoryStore()]
    metrics.registry.register(StoreRetriesCollector(lambda: stores))

    def series() -> dict[tuple[str, ...], float]:
        text = generate_latest(metrics.registry).decode()
        return {
            tuple(s.labels.values()): s.value
            for fam in text_string_to_metric_families(text)
            if fam.name == "flatnet_store_internal_retries"
            for s in fam.samples
        }

    a.retries, b.retries = 3, 1
    assert series() == {("etcd",): 3.0, ("Counting",): 1.0}
    a.retries = 5
    assert series()[("etcd",)] == 5.0


def test_build_info_carries_the_installed_version() -> None:
    """flatnet_build_info names pyproject's version (the distribution is flatnet-cni), never "unknown"."""
    import tomllib
    from importlib.metadata import version

    from flatnet.obs.metrics import _version

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    assert _version() == version(project["name"]) == project["version"]
