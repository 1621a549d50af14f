"""``flatnet lab redis --runtime cri``'s verdict: what a good run looks like, and that each
way of going wrong is named (so the CRI test's ``problems(out) == []`` can fail)."""

from __future__ import annotations

import copy

from flatnet_lab.lab.redis_cri import CriOutcome, Seed
from flatnet_lab.lab.redis_cri_report import problems

NO_PV = "0/3 nodes are available: 3 node(s) didn't find available persistent volumes to bind."


def good() -> CriOutcome:
    return CriOutcome(
        nodes=["keludev05", "keludev06", "keludev07"],
        placement={"redis-0": "keludev05", "redis-1": "keludev06", "redis-2": "keludev07"},
        ips={"redis-0": "198.18.100.20", "redis-1": "198.18.100.21", "redis-2": "198.18.100.22"},
        master_before="198.18.100.20:6379",
        master_after="198.18.100.21:6379",
        redis0_ip_after="198.18.100.20",
        redis0_node_after="keludev05",
        failover_s=2.1,
        acked_at_kill=300,
        on_volume=300,
        acked=1000,
        replicated=999,
        present={"redis-0": 1000, "redis-1": 1000, "redis-2": 1000},
        vm_seen_as="198.18.101.250",
        replicas_seen=["198.18.100.22:6379", "198.18.100.20:6379"],
        seed=Seed(
            pod="redis-3",
            pv="local-pv-redis-3",
            typed="KeluDev05",
            pending=NO_PV,
            sandboxes=0,
            findings=[{"code": "pv-hostname-case", "object": "PersistentVolume/local-pv-redis-3"}],
            doctor_exit=2,
            fixed_node="keludev05",
            errors_after_fix=0,
        ),
    )


def test_a_good_run_has_no_problems_and_each_defect_is_named() -> None:
    assert problems(good()) == []
    cases = {
        "master_after": ("198.18.100.20:6379", "did not follow a failover"),
        "redis0_ip_after": ("198.18.100.30", "came back at 198.18.100.30"),
        "redis0_node_after": ("keludev06", "not on its PV's node"),
        "on_volume": (0, "found 0 of its 300 keys"),
        "vm_seen_as": ("198.18.100.11", "NAT?"),
        "replicas_seen": (["198.18.100.22:6379"], "not redis-0 at"),
        "present": ({"redis-0": 1000, "redis-1": 998, "redis-2": 1000}, "redis-1 holds 998"),
        "error": ("timed out", "timed out"),
    }
    for attr, (value, expect) in cases.items():
        out = copy.deepcopy(good())
        setattr(out, attr, value)
        got = problems(out)
        assert any(expect in p for p in got), (attr, got)
    # an acknowledged write no replica had may be lost in a failover (asynchronous replication)
    out = good()
    out.present = {"redis-0": 999, "redis-1": 999, "redis-2": 999}
    assert problems(out) == []
    out.present = {"redis-0": 1000, "redis-1": 1000}
    assert any("not on every Redis" in p for p in problems(out))


def test_the_seed_failure_must_leave_the_pod_pending_and_the_doctor_must_name_the_pv() -> None:
    out = good()
    out.seed.node, out.seed.pending = "keludev05", ""
    assert any("did not leave redis-3 Pending" in p for p in problems(out))
    out = good()
    out.seed.findings = [{"code": "sched-no-pv", "object": "Pod/redis/redis-3"}]
    assert any("did not name the case mismatch" in p for p in problems(out))
    out = good()
    out.seed.fixed_node = ""
    assert any("fix did not let the pod be placed" in p for p in problems(out))
