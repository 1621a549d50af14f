"""The scale harness (``flatnet_lab.bench.scale``) at 10 nodes against a real three-member etcd.

It must measure what it says (etcd's own counters moved, the churn allocated), kill one
node (an ordinary one, or the elected sweeper itself) and see exactly one live node reclaim
it, and leave nothing behind: no etcd member
running, no data directory. Its numbers are judged in docs/SCALE.md, not here.
"""

from __future__ import annotations

import os

import pytest

from flatnet_lab.bench import scale

pytestmark = [pytest.mark.etcd, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.mark.parametrize("kill", ["node", "sweeper"])
def test_ten_nodes_measured_one_dead_node_reclaimed_once_and_nothing_left(tmp_path, kill: str) -> None:
    s = scale.Settings(
        ttl=2, grace=4, reconcile=5, pods_per_node=2, warmup=2, idle=5, churn=5, procs=2, threads=3, kill=kill
    )
    r = scale.run_size(10, s, str(tmp_path), log=lambda _msg: None)
    assert r.pods == 20
    assert r.idle["by_method"].get("LeaseKeepAlive", 0) > 0, r.idle
    assert r.churn["by_method"].get("Txn", 0) > 0, r.churn  # allocations are txns
    assert r.allocs > 0 and r.alloc_errors == 0 and r.alloc_p99_ms >= r.alloc_p50_ms > 0
    assert r.db_bytes > 0 and r.keys > 0
    assert r.leases == 9, "one lease per live node (the dead node's ran out)"
    assert r.reclaim_s is not None, "the dead node was never reclaimed"
    assert len(r.reclaimers) == 1, f"reclaimed by {r.reclaimers}: one sweeper, one reclaim"
    assert r.victim not in r.reclaimers  # when the sweeper died, another node took over
    assert r.tick_errors == 0
    assert not os.path.exists(tmp_path / "n10"), "etcd's data dir left behind"
    mine = [
        p
        for p in os.listdir("/proc")
        if p.isdigit() and _cmd(p).startswith("/usr/bin/etcd") and str(tmp_path) in _cmd(p)
    ]
    assert mine == [], "an etcd member of the run is still running"


def _cmd(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
