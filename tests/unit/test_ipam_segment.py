"""One holder per address per L2 segment, whatever pool or network allocated it (issue 26).

Pools are keyed by name, so before the segment key three network configs sharing a subnet
handed one address to three pods. Every test here takes a ``store`` fixture only, so
tests/integration/test_etcd_segment.py runs them unchanged on a real etcd.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter

import pytest

from flatnet.errors import AddressUnavailable, PoolExhausted
from flatnet.ipam import Ipam, Owner, PoolSpec
from flatnet.ipam import records as r
from flatnet.ipam.api import Store

ip = ipaddress.ip_address
NET = ipaddress.ip_network("198.18.86.0/24")


def pool(name: str, first: int = 50, last: int = 60, vlan: int | None = 86, **kw) -> PoolSpec:
    """198.18.86.<first>..<last> of 198.18.86.0/24 on ``vlan``."""
    return PoolSpec(
        name,
        kw.pop("subnet", NET),
        range_start=ip(f"198.18.86.{first}"),
        range_end=ip(f"198.18.86.{last}"),
        vlan=vlan,
        **kw,
    )


def own(cid: str, net: str, pod: str | None = None) -> Owner:
    ns, _, name = (pod or "").partition("/")
    return Owner(cid, "eth0", net, ns or None, name or None, node="n1")


def addr(leases: list) -> str:
    return str(leases[0].address.ip)


def seg_keys(store: Store) -> dict[str, str]:
    return {e.key: e.value for e in store.range("seg/")}


def test_three_networks_one_subnet_never_share_an_address(store: Store) -> None:
    """The repro of issue 26: neta allocates, netb requests the same address, netc asks for any."""
    ipam = Ipam(store)
    a = addr(ipam.allocate([pool("neta")], own("ca", "neta")))
    assert a == "198.18.86.50"
    with pytest.raises(AddressUnavailable) as exc:
        ipam.allocate([pool("netb")], own("cb", "netb"), [ip(a)])
    assert "pool 'neta'" in exc.value.msg and "container ca" in exc.value.msg
    assert ipam.lookup("cb", "eth0") == []
    c = addr(ipam.allocate([pool("netc")], own("cc", "netc")))
    assert c == "198.18.86.51"
    assert seg_keys(store) == {"seg/86/198.18.86.50": "neta", "seg/86/198.18.86.51": "netc"}


def test_partly_overlapping_ranges_and_subnets_collide(store: Store) -> None:
    ipam = Ipam(store)
    wide = pool("wide", 50, 60)
    # a /25 inside the /24, its range overlapping only .58-.60
    narrow = pool("narrow", 58, 70, subnet=ipaddress.ip_network("198.18.86.0/25"))
    got = [addr(ipam.allocate([wide], own(f"w{i}", "wide"))) for i in range(9)]  # .50-.58
    assert got[-1] == "198.18.86.58"
    n = addr(ipam.allocate([narrow], own("n0", "narrow")))
    assert n == "198.18.86.59"  # stepped over .58
    assert addr(ipam.allocate([wide], own("w9", "wide"))) == "198.18.86.60"
    assert addr(ipam.allocate([narrow], own("n1", "narrow"))) == "198.18.86.61"
    with pytest.raises(PoolExhausted):
        ipam.allocate([wide], own("w10", "wide"))


def test_another_vlan_is_another_segment(store: Store) -> None:
    ipam = Ipam(store)
    assert addr(ipam.allocate([pool("a", vlan=86)], own("c1", "a"))) == "198.18.86.50"
    assert addr(ipam.allocate([pool("b", vlan=87)], own("c2", "b"), [ip("198.18.86.50")])) == "198.18.86.50"
    assert addr(ipam.allocate([pool("u", vlan=None)], own("c3", "u"))) == "198.18.86.50"
    assert set(seg_keys(store)) == {"seg/86/198.18.86.50", "seg/87/198.18.86.50", "seg/untagged/198.18.86.50"}


def test_a_released_address_is_free_for_the_other_pool_and_keys_go_with_it(store: Store) -> None:
    ipam = Ipam(store)
    ipam.allocate([pool("neta")], own("ca", "neta"))
    ipam.release("ca", "eth0")
    assert seg_keys(store) == {}
    got = ipam.allocate([pool("netb")], own("cb", "netb"), [ip("198.18.86.50")])
    assert addr(got) == "198.18.86.50"
    ipam.release_address("netb", ip("198.18.86.50"))
    assert seg_keys(store) == {}


def test_sticky_reservation_and_quarantine_hold_across_pools(store: Store) -> None:
    ipam = Ipam(store)
    sticky = pool("sts", sticky=True)
    lease = ipam.allocate([sticky], own("c1", "sts", "db/redis-0"))[0]
    ipam.release("c1", "eth0")  # reserved for db/redis-0 in pool sts
    q = ipam.allocate([pool("neta")], own("c2", "neta"))[0]  # .51: .50 is reserved
    assert str(q.address.ip) == "198.18.86.51"
    assert ipam.quarantine(q, "answered ARP from 02:00:00:00:00:01")
    with pytest.raises(AddressUnavailable, match="reserved .sticky. for pod db/redis-0"):
        ipam.allocate([pool("netb")], own("c3", "netb"), [lease.address.ip])
    with pytest.raises(AddressUnavailable, match="quarantined"):
        ipam.allocate([pool("netb")], own("c3", "netb"), [q.address.ip])
    assert addr(ipam.allocate([pool("netb")], own("c3", "netb"))) == "198.18.86.52"
    # the pod comes back to its own address
    assert ipam.allocate([sticky], own("c4", "sts", "db/redis-0"))[0].address.ip == lease.address.ip
    # forgetting the sticky address frees the segment key too
    ipam.release("c4", "eth0")
    assert ipam.forget_sticky("sts", "db/redis-0") == lease.address.ip
    assert "seg/86/198.18.86.50" not in seg_keys(store)


def test_sticky_address_held_by_another_pool_falls_back_to_a_fresh_one(store: Store) -> None:
    ipam = Ipam(store)
    sticky = pool("sts", sticky=True)
    first = ipam.allocate([sticky], own("c1", "sts", "db/redis-0"))[0].address.ip
    ipam.release("c1", "eth0")
    assert ipam.forget_sticky("sts", "db/redis-0") == first
    # record the pod's sticky address by hand, then let another pool take it: the pod
    # must get another address, not fail and not share
    assert addr(ipam.allocate([pool("neta")], own("c2", "neta"), [first])) == str(first)
    store.txn([], {r.sticky_key("sts", "db/redis-0"): str(first)})
    again = ipam.allocate([sticky], own("c3", "sts", "db/redis-0"))[0].address.ip
    assert again != first


def test_exhaustion_counts_the_other_pools_and_finds_their_released_addresses(store: Store) -> None:
    ipam = Ipam(store)
    a, b = pool("a", 50, 53), pool("b", 50, 53)
    assert [addr(ipam.allocate([a], own(f"a{i}", "a"))) for i in range(2)] == ["198.18.86.50", "198.18.86.51"]
    assert [addr(ipam.allocate([b], own(f"b{i}", "b"))) for i in range(2)] == ["198.18.86.52", "198.18.86.53"]
    for p, cid in ((a, "a9"), (b, "b9")):
        with pytest.raises(PoolExhausted):
            ipam.allocate([p], own(cid, p.name))
    ipam.release("b0", "eth0")  # .52 goes to b's FIFO; a's cursor stepped over it
    assert addr(ipam.allocate([a], own("a9", "a"))) == "198.18.86.52"
    ipam.release("a0", "eth0")  # .50 goes to a's FIFO; b never had it
    assert addr(ipam.allocate([b], own("b9", "b"))) == "198.18.86.50"
    held = Counter(seg_keys(store).values())
    assert held == {"a": 2, "b": 2}


def test_concurrent_allocators_of_three_pools_never_duplicate(store: Store) -> None:
    pools = [pool(n, 50, 73) for n in ("neta", "netb", "netc")]  # 24 addresses, three pools
    got: list[str] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        ipam = Ipam(store)
        for i in range(10):
            p = pools[(t + i) % 3]
            try:
                lease = ipam.allocate([p], own(f"t{t}-{i}", p.name))[0]
            except PoolExhausted:
                continue
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
                continue
            with lock:
                got.append(str(lease.address.ip))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(got) == 24 and len(set(got)) == 24
    assert sorted(seg_keys(store)) == sorted(f"seg/86/{a}" for a in got)
