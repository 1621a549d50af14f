"""Ipam behaviour on the memory and SQLite stores (etcd: tests/integration/test_etcd_*)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Iterator

import pytest

from flatnet.errors import AddressUnavailable, ConfigError, PoolExhausted
from flatnet.ipam import Ipam, Owner, PoolSpec
from flatnet.ipam.store import MemoryStore, SqliteStore

ip = ipaddress.ip_address
net = ipaddress.ip_network


@pytest.fixture(params=["memory", "sqlite"])
def ipam(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ipam]:
    store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "ipam.db")
    try:
        yield Ipam(store)
    finally:
        store.close()


def own(i: int | str, pod: str | None = None, network: str = "net1") -> Owner:
    ns, _, name = (pod or "").partition("/")
    return Owner(f"c{i}", "eth0", network, ns or None, name or None, node="node-a")


def addr(leases: list) -> list[str]:
    return [str(lease.address.ip) for lease in leases]


def v4(name: str = "p4", cidr: str = "198.18.0.0/29", **kw) -> PoolSpec:
    kw.setdefault("gateway", ip(str(net(cidr).network_address + 1)))
    return PoolSpec(name, net(cidr), **kw)


def test_hands_out_addresses_in_order_skipping_gateway_and_exclude(ipam: Ipam) -> None:
    pool = v4(exclude=frozenset({ip("198.18.0.3")}))
    got = [addr(ipam.allocate([pool], own(i)))[0] for i in range(4)]
    assert got == ["198.18.0.2", "198.18.0.4", "198.18.0.5", "198.18.0.6"]
    lease = ipam.lookup("c0", "eth0")[0]
    assert lease.address == ipaddress.ip_interface("198.18.0.2/29")
    assert lease.gateway == ip("198.18.0.1") and lease.owner.node == "node-a"


def test_exhaustion_names_pool_and_size(ipam: Ipam) -> None:
    pool = v4()
    for i in range(5):
        ipam.allocate([pool], own(i))
    with pytest.raises(PoolExhausted) as info:
        ipam.allocate([pool], own(99))
    assert info.value.code == 101
    assert "'p4'" in info.value.msg and "5 usable" in info.value.msg
    assert ipam.usage(pool) == (5, 5)


def test_next_pool_of_family_is_used_on_exhaustion(ipam: Ipam) -> None:
    a, b = v4("a", "198.18.0.0/30"), v4("b", "198.18.1.0/29")
    got = [ipam.allocate([a, b], own(i))[0] for i in range(3)]
    assert [lease.pool for lease in got] == ["a", "b", "b"]


def test_fresh_addresses_first_then_fifo_oldest_released(ipam: Ipam) -> None:
    pool = v4()
    first = addr(ipam.allocate([pool], own(0)))[0]
    ipam.release("c0", "eth0")
    # a released address is not reused while never-used ones remain (stale ARP caches)
    assert addr(ipam.allocate([pool], own(1)))[0] != first
    got = [addr(ipam.allocate([pool], own(i)))[0] for i in range(2, 5)]
    assert got == ["198.18.0.4", "198.18.0.5", "198.18.0.6"]
    for i in (4, 2):
        ipam.release(f"c{i}", "eth0")
    order = [addr(ipam.allocate([pool], own(10 + i)))[0] for i in range(3)]
    assert order == ["198.18.0.2", "198.18.0.6", "198.18.0.4"]  # released c0, then c4, then c2
    with pytest.raises(PoolExhausted):
        ipam.allocate([pool], own(20))


def test_requested_address_ok_and_taken(ipam: Ipam) -> None:
    pool = v4()
    assert addr(ipam.allocate([pool], own(0, "ns/a"), [ip("198.18.0.5")])) == ["198.18.0.5"]
    with pytest.raises(AddressUnavailable) as info:
        ipam.allocate([pool], own(1), [ip("198.18.0.5")])
    assert info.value.code == 102
    assert "198.18.0.5" in info.value.msg and "c0" in info.value.msg and "ns/a" in info.value.msg


@pytest.mark.parametrize(
    "want, why",
    [
        ("198.18.0.1", "gateway"),
        ("198.18.0.4", "exclude"),
        ("198.18.9.9", "outside every pool"),
        ("198.18.0.7", "broadcast"),
        ("2001:db8::1", "no IPv6 pool"),
    ],
)
def test_requested_address_refused_with_reason(ipam: Ipam, want: str, why: str) -> None:
    with pytest.raises(AddressUnavailable) as info:
        ipam.allocate([v4(exclude=frozenset({ip("198.18.0.4")}))], own(0), [ip(want)])
    assert want in info.value.msg and why in info.value.msg
    assert ipam.leases() == []


def test_cursor_steps_over_an_address_requested_ahead_of_it(ipam: Ipam) -> None:
    pool = v4()
    ipam.allocate([pool], own(0), [ip("198.18.0.3")])
    got = [addr(ipam.allocate([pool], own(i)))[0] for i in range(1, 5)]
    assert got == ["198.18.0.2", "198.18.0.4", "198.18.0.5", "198.18.0.6"]


def test_requesting_a_released_address_takes_it_out_of_the_fifo(ipam: Ipam) -> None:
    pool = v4()
    for i in range(5):
        ipam.allocate([pool], own(i))
    ipam.release("c1", "eth0")  # 198.18.0.3 -> FIFO
    ipam.allocate([pool], own(7), [ip("198.18.0.3")])
    with pytest.raises(PoolExhausted):  # the FIFO must not hand 198.18.0.3 out again
        ipam.allocate([pool], own(8))


def test_repeat_allocate_is_idempotent(ipam: Ipam) -> None:
    pools = [v4(), PoolSpec("p6", net("2001:db8::/120"))]
    first = ipam.allocate(pools, own(0))
    assert ipam.allocate(pools, own(0)) == first
    assert len(ipam.leases()) == 2
    with pytest.raises(AddressUnavailable, match="already holds"):
        ipam.allocate(pools, own(0), [ip("198.18.0.6")])


def test_dual_stack_gives_one_lease_per_family(ipam: Ipam) -> None:
    pools = [v4(), PoolSpec("p6", net("2001:db8::/120"), gateway=ip("2001:db8::1"))]
    leases = ipam.allocate(pools, own(0), [ip("2001:db8::42")])
    assert addr(leases) == ["198.18.0.2", "2001:db8::42"]
    assert [lease.pool for lease in leases] == ["p4", "p6"]
    assert ipam.release("c0", "eth0") == ipam.release("c0", "eth0") + leases  # second is []


def test_v6_failure_rolls_back_the_v4_lease(ipam: Ipam) -> None:
    pool4, pool6 = v4(), PoolSpec("p6", net("2001:db8::/127"))
    ipam.allocate([pool6], own("x"))
    ipam.allocate([pool6], own("y"))
    before = ipam.usage(pool4)
    with pytest.raises(PoolExhausted, match="p6"):
        ipam.allocate([pool4, pool6], own(0))
    assert ipam.lookup("c0", "eth0") == []
    assert ipam.usage(pool4) == before


@pytest.mark.parametrize(
    "cidr, n", [("198.18.0.0/31", 2), ("198.18.0.9/32", 1), ("2001:db8::/127", 2), ("2001:db8::7/128", 1)]
)
def test_tiny_prefixes_use_every_address(ipam: Ipam, cidr: str, n: int) -> None:
    pool = PoolSpec("tiny", net(cidr))
    got = {addr(ipam.allocate([pool], own(i)))[0] for i in range(n)}
    assert got == {str(a) for a in net(cidr)}
    with pytest.raises(PoolExhausted):
        ipam.allocate([pool], own(n))


def test_sticky_address_survives_release_and_readd(ipam: Ipam) -> None:
    pool = v4(sticky=True)
    redis = addr(ipam.allocate([pool], own(0, "db/redis-0")))[0]
    ipam.allocate([pool], own(1, "db/redis-1"))
    ipam.release("c0", "eth0")
    # the reserved address is handed to nobody else while fresh ones last
    others = {addr(ipam.allocate([pool], own(i)))[0] for i in range(2, 5)}
    assert redis not in others
    back = ipam.allocate([pool], own("new", "db/redis-0"))
    assert addr(back) == [redis] and back[0].sticky
    assert ipam.sticky(pool)["db/redis-0"] == ip(redis)


def test_sticky_address_held_by_live_attachment_is_refused(ipam: Ipam) -> None:
    pool = v4(sticky=True)
    ipam.allocate([pool], own(0, "db/redis-0"))
    with pytest.raises(AddressUnavailable) as info:
        ipam.allocate([pool], own(1, "db/redis-0"))
    assert "c0" in info.value.msg and "sticky" in info.value.msg


def test_forget_sticky_makes_the_address_reusable(ipam: Ipam) -> None:
    pool = v4(sticky=True)
    for i in range(5):
        ipam.allocate([pool], own(i, f"db/r-{i}"))
    ipam.release("c3", "eth0")
    assert [r.pod for r in ipam.reservations(pool)] == ["db/r-3"]
    assert ipam.forget_sticky(pool, "db/r-3") == ip("198.18.0.5")
    assert addr(ipam.allocate([pool], own(9))) == ["198.18.0.5"]
    assert "db/r-3" not in ipam.sticky("p4") and ipam.reservations(pool) == []


def test_gc_releases_only_stale_leases_of_that_network(ipam: Ipam) -> None:
    pool = v4()
    ipam.allocate([pool], own(0))
    ipam.allocate([pool], own(1))
    ipam.allocate([pool], own(2, network="other"))
    released = ipam.gc("net1", {("c1", "eth0")})
    assert [lease.owner.container_id for lease in released] == ["c0"]
    assert sorted(lease.owner.container_id for lease in ipam.leases()) == ["c1", "c2"]


def test_release_address_frees_it_for_reuse(ipam: Ipam) -> None:
    pool = v4()
    lease = ipam.allocate([pool], own(0))[0]
    assert ipam.release_address("p4", lease.address.ip) == lease
    assert ipam.release_address("p4", lease.address.ip) is None
    assert ipam.lookup("c0", "eth0") == []
    assert ipam.leases("p4") == []


def test_pool_subnet_cannot_change_under_the_same_name(ipam: Ipam) -> None:
    ipam.allocate([v4()], own(0))
    other = Ipam(ipam.store)
    with pytest.raises(ConfigError, match="differs from the stored subnet"):
        other.allocate([v4(cidr="198.18.5.0/29")], own(1))
