"""The chaos harness's smoke profile: load + faults on real namespaces, then invariants.

Full runs (10,000 calls, >= 50 agent kills): ``python -m flatnet_lab.chaos`` (see
docs/RELIABILITY.md). Here: 300 calls with 5 agent SIGKILLs, a SQLite writer killed in
its transaction, a node lost then GC; and on etcd, etcd killed and restarted mid-load.
Each scenario must also prove its faults really struck (kills counted, calls made).
"""

from __future__ import annotations

import os
import shutil

import pytest

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.timeout(600),
]

from flatnet_lab.chaos import PROFILES, run  # noqa: E402
from flatnet_lab.chaos.report import ScenarioResult  # noqa: E402

SMOKE = PROFILES["smoke"]


def _assert_sound(results: list[ScenarioResult], expected: set[str]) -> None:
    assert {r.scenario for r in results} == expected
    for r in results:
        assert r.ok, f"{r.scenario}/{r.store}: dup={r.duplicates} lost={r.lost} leaks={r.leaks}\n" + "\n".join(r.notes)
        wanted = SMOKE.ops if r.scenario == "agent-kill" else SMOKE.side_ops
        assert r.operations >= wanted
        want_kills = {
            "agent-kill": SMOKE.kills,
            "shared-subnet": SMOKE.kills,
            "sqlite-txn-kill": SMOKE.txn_kills,
            "etcd-restart": SMOKE.etcd_stops,
            "node-lost": 1,
            "etcd-member-loss": SMOKE.member_kills,
        }[r.scenario]
        assert r.kills >= want_kills, f"{r.scenario}: only {r.kills} faults struck"


def test_smoke_sqlite() -> None:
    _assert_sound(run(SMOKE, ["sqlite"]), {"agent-kill", "sqlite-txn-kill", "node-lost", "shared-subnet"})


@pytest.mark.etcd
@pytest.mark.skipif(shutil.which("etcd") is None and not os.path.exists("/usr/bin/etcd"), reason="etcd not installed")
def test_smoke_etcd_restart() -> None:
    _assert_sound(run(SMOKE, ["etcd"], only=("etcd-restart",)), {"etcd-restart"})


@pytest.mark.etcd
def test_smoke_etcd_member_loss() -> None:
    """Three etcd members, the leader SIGKILLed mid-load and restarted: the other two serve."""
    results = run(SMOKE, ["etcd"], only=("etcd-member-loss",))
    _assert_sound(results, {"etcd-member-loss"})
    assert any("SIGKILLed fnk" in n and "restarted" in n for n in results[0].notes), results[0].notes


@pytest.mark.etcd
def test_smoke_etcd_shared_subnet() -> None:
    """Three networks' pools on one subnet (one in part), agents killed: 0 duplicates across pools."""
    _assert_sound(run(SMOKE, ["etcd"], only=("shared-subnet",)), {"shared-subnet"})
