"""The CRI Redis scenario's objects (from examples/redis) and the reduced volume binding.

No root, no runtime: the objects are read from the example, placed by
``flatnet_lab.testbed.scheduler`` and checked with the doctor, as the CRI scenario does.
"""

from __future__ import annotations

import os

import pytest

from flatnet.doctor.cluster import analyze
from flatnet_lab.lab.redis_cri import seed_typo
from flatnet_lab.lab.redis_objects import (
    NAMESPACE,
    claim,
    cluster_objects,
    hand_written_pv,
    load_example,
    pvs,
    redis_pod,
)
from flatnet_lab.testbed.scheduler import CONFLICT, NO_PV, pending_message, schedule
from tests.helpers.cli import flatnet_cli

NODES = ["keludev05", "keludev06", "keludev07"]


def test_the_example_gives_three_redis_three_sentinels_and_one_pv_per_node() -> None:
    rs = load_example()
    assert (rs.redis, rs.sentinels, rs.quorum, rs.master_set) == (3, 3, 2, "mymaster")
    assert (rs.storage_class, rs.size, rs.path) == ("local-storage-redis", "8Gi", "/app/kelu/local-storage/redis")
    objs = cluster_objects(rs, NODES)
    cluster = objs.cluster()
    assert sorted(cluster.pvs) == [f"local-pv-redis-{n}" for n in NODES]
    assert cluster.classes["local-storage-redis"]["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sorted(cluster.pods) == [f"redis/{p}-{k}" for p in ("redis", "sentinel") for k in range(3)]


def test_statefulset_pods_land_on_their_pv_node_and_come_back_there() -> None:
    rs = load_example()
    objs = cluster_objects(rs, NODES)
    placed = [schedule(objs, f"redis-{k}", NAMESPACE) for k in range(3)]
    assert placed == NODES  # one PV per node, spread by the app label
    for k, node in enumerate(NODES):
        pvc = objs.get("PersistentVolumeClaim", f"redis-data-redis-{k}", NAMESPACE)
        assert pvc["spec"]["volumeName"] == f"local-pv-redis-{node}" and pvc["status"]["phase"] == "Bound"
    objs.delete("Pod", "redis-0", NAMESPACE)
    objs.apply(redis_pod("redis-0"))
    assert schedule(objs, "redis-0", NAMESPACE) == "keludev05"  # the bound claim pins it
    assert [f for f in analyze(objs.dump()) if f.severity != "ok"] == []


def test_the_seeds_hand_typed_pv_leaves_the_pod_pending_and_the_doctor_names_it() -> None:
    rs = load_example()
    objs = cluster_objects(rs, NODES)
    for k in range(3):
        schedule(objs, f"redis-{k}", NAMESPACE)
    typed = seed_typo("keludev05")
    assert typed == "KeluDev05"
    objs.apply(
        hand_written_pv(rs, "local-pv-redis-3", typed, rs.path + "-3"), claim(rs, "redis-3"), redis_pod("redis-3")
    )
    assert schedule(objs, "redis-3", NAMESPACE) is None
    msg = pending_message(objs.get("Pod", "redis-3", NAMESPACE))
    assert msg == f"0/3 nodes are available: 3 node(s) {NO_PV}. preemption: not eligible."
    found = {(f.code, f.object) for f in analyze(objs.dump())}
    assert ("pv-hostname-case", "PersistentVolume/local-pv-redis-3") in found
    assert ("sched-no-pv", "Pod/redis/redis-3") in found
    # the fix the doctor gives: the PV again, from the node's real name
    objs.delete("PersistentVolume", "local-pv-redis-3")
    objs.apply(*pvs(rs, NODES, only=["keludev05"], name="local-pv-redis-3", path=rs.path + "-3"))
    assert schedule(objs, "redis-3", NAMESPACE) == "keludev05"
    assert [f for f in analyze(objs.dump()) if f.severity == "error"] == []


def test_a_bound_claim_whose_pv_moved_is_a_volume_node_affinity_conflict() -> None:
    rs = load_example()
    objs = cluster_objects(rs, NODES)
    schedule(objs, "redis-0", NAMESPACE)
    pv = objs.get("PersistentVolume", "local-pv-redis-keludev05")
    pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] = ["gone"]
    objs.delete("Pod", "redis-0", NAMESPACE)
    objs.apply(redis_pod("redis-0"))
    assert schedule(objs, "redis-0", NAMESPACE) is None
    assert f"3 node(s) {CONFLICT}" in pending_message(objs.get("Pod", "redis-0", NAMESPACE))


def test_the_cri_runtime_refuses_the_overlay_and_bad_key_counts_before_building_anything() -> None:
    if os.geteuid() != 0:
        pytest.skip("flatnet lab needs root (it checks before parsing the scenario's options)")
    proc = flatnet_cli("lab", "redis", "--runtime", "cri", "--network", "overlay")
    assert proc.returncode != 0 and "--network overlay is not available with --runtime cri" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = flatnet_cli("lab", "redis", "--runtime", "cri", "--keys", "0")
    assert proc.returncode != 0 and "--keys 0 is out of range" in proc.stderr
