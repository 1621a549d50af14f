"""Dead nodes with a real etcd: heartbeats as etcd leases, one live agent reclaims a node
whose heartbeat has been gone longer than the grace (sticky addresses stay reserved),
a node back before the grace keeps everything, one back after it finds out, says so, tears
the reclaimed addresses off its pods and doctor reports it. First with agent services in
this process (a fake clock decides the grace, etcd decides everything else), then with two
real `flatnet agent` processes, one of them frozen with SIGSTOP."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from flatnet.agent import Service
from flatnet.agent.heartbeat import NodeHeartbeat, node_key, state_file
from flatnet.cni import dispatch
from flatnet.datapath.fake import FakeDatapath
from flatnet.doctor.reclaimed import reclaimed_findings
from flatnet.errors import STATE_MISMATCH
from flatnet.ipam import Ipam, Owner, PoolSpec
from flatnet.ipam import records as r
from flatnet.ipam.store import open_store
from flatnet_lab.launch import stop_proc

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(180)]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _conf(store: dict) -> bytes:
    return json.dumps(
        {
            "cniVersion": "1.1.0",
            "name": "fne-dn",
            "type": "flatnet",
            "master": "fne-none",
            "ipam": {"pools": [{"subnet": "198.18.122.0/24", "sticky": True}], "store": store},
        }
    ).encode()


def _cni(service: Service, verb: str, cid: str, store: dict, pod: str = "", prev: dict | None = None):
    env = {
        "CNI_COMMAND": verb,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": f"/run/netns/{cid}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
    }
    if pod:
        env["CNI_ARGS"] = f"K8S_POD_NAMESPACE=fne;K8S_POD_NAME={pod}"
    conf = json.loads(_conf(store))
    if prev is not None:
        conf["prevResult"] = prev
    out = io.StringIO()
    code = dispatch(service, env, json.dumps(conf).encode(), out, io.StringIO())
    return code, json.loads(out.getvalue() or "{}")


@pytest.fixture
def cluster(etcd_shared, etcd_prefix, tmp_path):
    cfg = {"type": "etcd", "endpoints": [etcd_shared.endpoint], "prefix": etcd_prefix}
    made = []

    def node(name: str) -> tuple[Service, FakeDatapath, NodeHeartbeat, Clock]:
        dp = FakeDatapath()
        svc = Service(
            node=name, default_store=cfg, lock_dir=str(tmp_path / name / "locks"), datapath_factory=lambda mode: dp
        )
        clock = Clock()
        hb = NodeHeartbeat(svc, cfg, ttl=2, grace=30, state_dir=str(tmp_path / name), clock=clock)
        made.append(svc)
        return svc, dp, hb, clock

    store = open_store(cfg)
    try:
        yield cfg, node, store
    finally:
        store.close()
        for svc in made:
            svc.close()


def _leases_of(store, node: str) -> list:
    return [l for l in Ipam(store).leases() if l.owner.node == node]


def test_reclaim_after_grace_keeps_sticky_and_the_returning_node_tears_down(cluster, caplog) -> None:
    cfg, node, store = cluster
    svc_a, dp_a, hb_a, _ = node("fne-a")
    _, _, hb_b, clock_b = node("fne-b")
    _, _, hb_c, clock_c = node("fne-c")
    code, res_sticky = _cni(svc_a, "ADD", "fne-c1", cfg, pod="redis-0")
    assert code == 0, res_sticky
    code, res_plain = _cni(svc_a, "ADD", "fne-c2", cfg)
    assert code == 0, res_plain
    for hb in (hb_a, hb_b, hb_c):
        hb.beat()
    assert hb_b.sweep() == [] and hb_c.sweep() == []

    store.revoke_lease(hb_a.lease_id)  # node a stops beating: etcd drops its heartbeat
    assert hb_b.sweep() == []  # b starts counting the grace from here
    clock_b.t += 29
    assert hb_b.sweep() == [], "reclaimed before the grace"
    clock_b.t += 2
    clock_c.t += 31
    assert hb_c.sweep() == []  # c only started counting now
    assert hb_b.sweep() == ["fne-a"]
    clock_c.t += 31
    assert hb_c.sweep() == [], "a second agent reclaimed the same node"
    assert _leases_of(store, "fne-a") == []
    sticky_ip = res_sticky["ips"][0]["address"].split("/")[0]
    held = store.get(r.ip_key("fne-dn-198.18.122.0_24", __import__("ipaddress").ip_address(sticky_ip)))
    assert held is not None and json.loads(held.value).get("reserved_for") == "fne/redis-0"

    # a comes back: it finds out, says so at error level, tears down, announces again
    with caplog.at_level(logging.ERROR, logger="flatnet.agent"):
        hb_a.beat()
    assert any("WAS DECLARED DEAD by node fne-b" in m for m in caplog.messages), caplog.messages
    assert dp_a.attachments == {}, "the reclaimed addresses are still on the pods' interfaces"
    assert store.range(node_key("fne-a", "lost/")) == [] and store.get(node_key("fne-a", "fence")) is None
    assert store.get(node_key("fne-a", "alive")) is not None
    code, res = _cni(svc_a, "CHECK", "fne-c2", cfg, prev=res_plain)
    assert code == 1 and res["code"] == STATE_MISMATCH, res
    doc = json.loads(Path(state_file(hb_a.state_dir, "fne-a")).read_text())
    assert {a["address"] for a in doc["attachments"]} == {
        res_sticky["ips"][0]["address"],
        res_plain["ips"][0]["address"],
    }
    found = reclaimed_findings(hb_a.state_dir)
    assert [f.code for f in found] == ["node-reclaimed"] and "fne-b" in found[0].what
    # the pod recreated within the hold gets its sticky address back
    code, res = _cni(svc_a, "ADD", "fne-c3", cfg, pod="redis-0")
    assert code == 0 and res["ips"][0]["address"].split("/")[0] == sticky_ip, res


def test_a_node_back_before_the_grace_keeps_everything(cluster) -> None:
    cfg, node, store = cluster
    svc_a, dp_a, hb_a, _ = node("fne-a")
    _, _, hb_b, clock_b = node("fne-b")
    code, res = _cni(svc_a, "ADD", "fne-c1", cfg)
    assert code == 0, res
    hb_a.beat()
    hb_b.beat()
    store.revoke_lease(hb_a.lease_id)
    assert hb_b.sweep() == []
    clock_b.t += 20
    hb_a.beat()  # back within the grace: a new heartbeat lease
    clock_b.t += 20
    assert hb_b.sweep() == []
    assert [l.owner.container_id for l in _leases_of(store, "fne-a")] == ["fne-c1"]
    assert len(dp_a.attachments) == 1 and store.get(node_key("fne-a", "fence")) is None


# ---- two agent processes ----------------------------------------------------------------
def _agent(tmp: Path, name: str, cfg: dict) -> tuple[subprocess.Popen, Path]:
    log = tmp / f"{name}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                os.path.join(os.path.dirname(sys.executable), "flatnet"),
                "agent",
                "--socket",
                str(tmp / f"{name}.sock"),
                "--node",
                name,
                "--store",
                json.dumps(cfg),
                "--lock-dir",
                str(tmp / name / "locks"),
                "--state-dir",
                str(tmp / name),
                "--reconcile-every",
                "0",
                "--heartbeat-ttl",
                "2",
                "--dead-node-grace",
                "3",
            ],
            stdout=fh,
            stderr=fh,
            start_new_session=True,
        )
    return proc, log


def _wait(cond, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    pytest.fail(f"gave up waiting ({limit:.0f}s) for: {what}")


@pytest.fixture
def two_agents(etcd_shared, etcd_prefix, tmp_path) -> Iterator[tuple]:
    cfg = {"type": "etcd", "endpoints": [etcd_shared.endpoint], "prefix": etcd_prefix}
    procs = [_agent(tmp_path, n, cfg) for n in ("fne-pa", "fne-pb")]
    store = open_store(cfg)
    try:
        yield cfg, store, procs, tmp_path
    finally:
        for proc, _ in procs:
            proc.send_signal(signal.SIGCONT)
            stop_proc(proc, signal.SIGTERM, timeout=10)
        store.close()


def test_two_agent_processes_one_stops_the_other_reclaims(two_agents) -> None:
    cfg, store, procs, tmp = two_agents
    (a, a_log), (b, b_log) = procs
    _wait(lambda: all(store.get(node_key(n, "alive")) for n in ("fne-pa", "fne-pb")), "both agents heartbeating")
    sticky = PoolSpec(name="fne-pdn", subnet=__import__("ipaddress").ip_network("198.18.123.0/24"), sticky=True)
    ipam = Ipam(store)  # leases as agent a's ADDs would record them
    held = [
        ipam.allocate([sticky], Owner(f"fne-p{i}", "eth0", "fne-net", "fne", f"web-{i}", node="fne-pa"))[0]
        for i in range(3)
    ]
    os.kill(a.pid, signal.SIGSTOP)  # a freezes: no keepalive, its etcd lease runs out
    _wait(lambda: not _leases_of(store, "fne-pa"), "agent b reclaiming agent a's leases")
    assert set(ipam.sticky(sticky).values()) == {l.address.ip for l in held}, "sticky lost"
    fence = json.loads(store.get(node_key("fne-pa", "fence")).value)
    assert fence["by"] == "fne-pb"
    os.kill(a.pid, signal.SIGCONT)
    _wait(lambda: os.path.exists(state_file(str(tmp / "fne-pa"), "fne-pa")), "agent a noticing it was reclaimed")
    _wait(lambda: store.get(node_key("fne-pa", "alive")) is not None, "agent a beating again")
    assert "WAS DECLARED DEAD by node fne-pb" in a_log.read_text()
    out = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "flatnet"),
            "doctor",
            "node",
            "--no-probe",
            "--json",
            "--state-dir",
            str(tmp / "fne-pa"),
            "--socket",
            str(tmp / "fne-pa.sock"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "node-reclaimed" in out.stdout and "fne-pb" in out.stdout, out.stdout + out.stderr
    assert a.poll() is None and b.poll() is None
