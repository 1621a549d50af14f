"""What an agent's heartbeat costs etcd, and who sweeps for dead nodes (real etcd).

One agent at a time sweeps (the ``sweeper`` key, bound to its heartbeat lease); when it
stops, the next to look takes over; the others never read the members. An idle beat is
one lease keepalive: the ``alive`` key is read back every ``VERIFY_EVERY`` beats. Counted
where etcd counts them: its own ``/metrics``.
"""

from __future__ import annotations

import urllib.request

import pytest

from flatnet.agent import Service
from flatnet.agent.heartbeat import SWEEPER_KEY, VERIFY_EVERY, NodeHeartbeat, node_key
from flatnet.datapath.fake import FakeDatapath
from flatnet.ipam.store import open_store
from flatnet_lab.bench.etcdmetrics import parse

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def node(etcd_shared, etcd_prefix, tmp_path):
    cfg = {"type": "etcd", "endpoints": [etcd_shared.endpoint], "prefix": etcd_prefix}
    made = []

    def make(name: str, clock: Clock) -> NodeHeartbeat:
        dp = FakeDatapath()
        svc = Service(
            node=name, default_store=cfg, lock_dir=str(tmp_path / name / "locks"), datapath_factory=lambda mode: dp
        )
        made.append(svc)
        hb = NodeHeartbeat(svc, cfg, ttl=5, grace=30, state_dir=str(tmp_path / name), clock=clock)
        hb.beat()
        return hb

    store = open_store(cfg)
    try:
        yield make, store
    finally:
        store.close()
        for svc in made:
            svc.close()


def _calls(endpoint: str) -> dict[str, float]:
    with urllib.request.urlopen(endpoint + "/metrics", timeout=5) as resp:
        samples = parse(resp.read().decode())
    return {
        labels["grpc_method"]: value
        for name, labels, value in samples
        if name == "grpc_server_started_total" and "grpc_method" in labels
    }


def test_one_sweeper_and_the_next_takes_over_when_it_stops(node) -> None:
    make, store = node
    clock = Clock()
    a, b, c = make("fns-a", clock), make("fns-b", clock), make("fns-c", clock)
    assert [hb.is_sweeper() for hb in (a, b, c)] == [True, False, False]
    assert a.is_sweeper(), "the sweeper keeps the role while its lease lives"
    a.stop_beating()  # a clean stop revokes the lease: the sweeper key goes with it
    assert store.get(SWEEPER_KEY) is None
    assert [b.is_sweeper(), c.is_sweeper()] == [True, False]


def test_only_the_sweeper_looks_and_reclaims_after_the_grace(node) -> None:
    make, store = node
    clock = Clock()
    a, b, dead = make("fns-a", clock), make("fns-b", clock), make("fns-dead", clock)
    store.revoke_lease(dead.lease_id)  # as its lease running out would: alive is gone
    for _ in range(int(a.grace / a.sweep_period()) + 2):
        clock.t += a.sweep_period()
        a.tick()
        b.tick()
    assert a.reclaimed_by_me == ["fns-dead"]
    assert store.get(node_key("fns-dead", "fence")) is not None
    assert b.reclaimed_by_me == [] and b._missing == {}, "a non-sweeper read the members"
    b.beat()  # b is unaffected: still announced
    assert store.get(node_key("fns-b", "alive")) is not None


def test_an_idle_beat_is_one_keepalive(node, etcd_shared) -> None:
    make, _store = node
    clock = Clock()
    sweeper, hb = make("fns-s", clock), make("fns-idle", clock)
    assert sweeper.is_sweeper()
    hb.tick()  # the first tick also looks for a sweeper (one read); the clock then stands still
    before = _calls(etcd_shared.endpoint)
    beats = 4 * VERIFY_EVERY
    first = hb._beats + 1
    for _ in range(beats):
        hb.tick()
    after = _calls(etcd_shared.endpoint)
    delta = {m: after.get(m, 0) - before.get(m, 0) for m in after}
    verifies = sum(1 for n in range(first, first + beats) if n % VERIFY_EVERY == 0)
    assert delta.get("LeaseKeepAlive") == beats
    assert delta.get("Range", 0) == verifies == 4  # the alive key, read back; nothing else
    assert delta.get("Txn", 0) == 0 and delta.get("Put", 0) == 0
