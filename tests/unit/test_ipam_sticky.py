"""Sticky addresses that cannot exhaust a pool (``flatnet.ipam._held``), on every store.

memory and SQLite here (the ``store`` fixture of tests/unit/conftest.py); etcd runs the
very same tests in tests/integration/test_etcd_ipam.py.
"""

from __future__ import annotations

import ipaddress
import json

import pytest

from flatnet.errors import PoolExhausted
from flatnet.ipam import Ipam, Owner, PoolSpec
from flatnet.ipam import records as r
from flatnet.ipam.api import Store

ip = ipaddress.ip_address


def pool(size: int = 5, hold: float = 3600.0, name: str = "sp") -> PoolSpec:
    """198.18.7.1 .. 198.18.7.<size>, sticky."""
    return PoolSpec(
        name,
        ipaddress.ip_network("198.18.7.0/24"),
        range_start=ip("198.18.7.1"),
        range_end=ip(f"198.18.7.{size}"),
        sticky=True,
        sticky_hold=hold,
    )


def pod(cid: str, name: str | None = None, node: str | None = "node-a") -> Owner:
    return Owner(cid, "eth0", "net1", "default" if name else None, name, node=node)


def add(ipam: Ipam, p: PoolSpec, cid: str, name: str | None = None, want: str | None = None) -> int:
    """Allocate; return the last octet."""
    lease = ipam.allocate([p], pod(cid, name), [ip(want)] if want else ())[0]
    return int(str(lease.address.ip).rsplit(".", 1)[1])


def test_deployment_churn_never_exhausts_a_sticky_pool(store: Store) -> None:
    """The issue's case, small: every pod name ever seen leaves a reservation; 4x the pool's
    size of Deployment-style pods, each started and removed in turn, all get an address."""
    ipam, p = Ipam(store), pool(5)
    for i in range(20):
        add(ipam, p, f"c{i}", f"web-7d9f-{i:05d}")
        ipam.release(f"c{i}", "eth0")
    assert len(ipam.reservations(p)) == 5 and ipam.leases() == []
    assert ipam.stats(p) == {"takeovers": 15}


def test_fresh_then_released_then_oldest_reservation(store: Store) -> None:
    ipam, p = Ipam(store), pool(5)
    assert [add(ipam, p, "a", "a"), add(ipam, p, "b", "b"), add(ipam, p, "c")] == [1, 2, 3]
    for cid in ("a", "b", "c"):  # a, b: reserved (in that order); c (no pod name): released
        ipam.release(cid, "eth0")
    assert [(x.pod, int(str(x.ip).rsplit(".", 1)[1])) for x in ipam.reservations(p)] == [
        ("default/a", 1),
        ("default/b", 2),
    ]
    got = [add(ipam, p, f"n{i}", f"n{i}") for i in range(5)]
    assert got == [4, 5, 3, 1, 2]  # fresh, fresh, released, oldest reservation, next one
    assert ipam.reservations(p) == [] and ipam.stats(p) == {"takeovers": 2}
    assert "default/a" not in ipam.sticky(p) and ipam.sticky(p)["default/n3"] == ip("198.18.7.1")
    with pytest.raises(PoolExhausted) as info:  # every address is used by a live pod
        add(ipam, p, "late", "a")
    assert "in use by live pods" in info.value.msg
    ipam.release("n0", "eth0")  # n0's reservation is the only non-live one: "a" takes it over
    assert add(ipam, p, "late", "a") == 4


def test_statefulset_pod_recreated_within_its_hold_gets_its_address_back_amid_churn(store: Store) -> None:
    ipam, p = Ipam(store), pool(5)
    redis = add(ipam, p, "redis-a", "redis-0")
    churn = 0
    for round_ in range(3):  # redis-0 deleted, 3 Deployment pods churn, redis-0 comes back
        ipam.release(f"redis-{'abc'[round_]}", "eth0")
        for _ in range(3):
            add(ipam, p, f"d{churn}", f"web-{churn:05d}")
            ipam.release(f"d{churn}", "eth0")
            churn += 1
        assert add(ipam, p, f"redis-{'abc'[round_ + 1] if round_ < 2 else 'z'}", "redis-0") == redis


def test_a_pod_whose_reservation_was_taken_over_gets_a_new_address(store: Store) -> None:
    ipam, p = Ipam(store), pool(2)
    assert add(ipam, p, "r", "redis-0") == 1
    ipam.release("r", "eth0")
    assert add(ipam, p, "x", "x") == 2
    assert add(ipam, p, "y", "y") == 1  # took over redis-0's reservation
    ipam.release("x", "eth0")
    assert add(ipam, p, "r2", "redis-0") == 2  # x's reservation is the oldest now
    assert ipam.sticky(p)["default/redis-0"] == ip("198.18.7.2")


def test_requested_address_reserved_for_another_pod_is_taken_over(store: Store) -> None:
    ipam, p = Ipam(store), pool(5)
    add(ipam, p, "r", "redis-0")
    ipam.release("r", "eth0")
    assert add(ipam, p, "want", "other", want="198.18.7.1") == 1
    assert ipam.reservations(p) == [] and "default/redis-0" not in ipam.sticky(p)
    assert ipam.stats(p) == {"takeovers": 1}


def test_expired_reservations_go_back_to_the_released_addresses(store: Store) -> None:
    """A hold of 0: each reservation has expired by the time its release sweeps the queue."""
    ipam, p = Ipam(store), pool(5, hold=0)
    add(ipam, p, "a", "a")
    ipam.release("a", "eth0")  # reserved, expired, swept into the FIFO
    add(ipam, p, "b", "b")  # a fresh address first
    ipam.release("b", "eth0")
    assert ipam.reservations(p) == [] and ipam.stats(p) == {"expired": 2}
    assert ipam.sticky(p) == {}
    fifo = [e.value for e in store.range(r.pool_key("sp", "free/"))]
    assert fifo == ["198.18.7.1", "198.18.7.2"]


def test_hold_is_recorded_with_the_lease_and_shown_with_the_reservation(store: Store) -> None:
    ipam, p = Ipam(store), pool(5, hold=120)
    add(ipam, p, "a", "a")
    rec = json.loads(store.get(r.ip_key("sp", ip("198.18.7.1"))).value)
    assert rec["hold"] == 120
    ipam.release("a", "eth0")
    (res,) = ipam.reservations()
    assert res.pool == "sp" and res.pod == "default/a" and 119 <= res.until - res.since <= 121


def test_reservations_from_before_the_queue_are_taken_over_too(store: Store) -> None:
    """A store written by an older flatnet: reservations without a queue entry."""
    ipam, p = Ipam(store), pool(1)
    add(ipam, p, "old", "redis-0")
    ikey = r.ip_key("sp", ip("198.18.7.1"))
    cur = store.get(ikey)
    legacy = r.dumps({"pool": "sp", "ip": "198.18.7.1", "reserved_for": "default/redis-0", "time": 1.0})
    okey = r.owner_key("old", "eth0", "sp")
    assert store.txn([], {ikey: legacy}, [okey]) and cur is not None
    assert add(ipam, p, "new", "web-1") == 1
    assert ipam.stats(p) == {"expired": 1} and "default/redis-0" not in ipam.sticky(p)


def test_a_quarantined_address_is_skipped_then_retried_when_its_time_is_up(store: Store) -> None:
    ipam, p = Ipam(store), pool(3)
    lease = ipam.allocate([p], pod("c1", "web-1"))[0]
    assert ipam.quarantine(lease, "answered ARP from 02:00:00:00:00:99", "02:00:00:00:00:99", hold=0)
    assert ipam.lookup("c1", "eth0") == [] and "default/web-1" not in ipam.sticky(p)
    (q,) = ipam.quarantined(p)
    assert q["address"] == "198.18.7.1" and q["mac"] == "02:00:00:00:00:99"
    assert add(ipam, p, "c1", "web-1") == 2  # the same pod gets the next address
    assert add(ipam, p, "c3", "x") == 3
    # pool dry: the quarantine is over (hold 0), so the address is retried before failing
    assert add(ipam, p, "c4", "y") == 1
    assert ipam.quarantined(p) == []


def test_a_quarantined_address_is_nobodys_until_its_time_is_up(store: Store) -> None:
    ipam, p = Ipam(store), pool(1)
    lease = ipam.allocate([p], pod("c1"))[0]
    assert ipam.quarantine(lease, "conflict", None, hold=3600)
    with pytest.raises(PoolExhausted):
        add(ipam, p, "c2")
    with pytest.raises(Exception, match="quarantined"):
        add(ipam, p, "c3", want="198.18.7.1")
