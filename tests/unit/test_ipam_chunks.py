"""Node-affine chunks of large pools (``flatnet.ipam._chunks``), on the memory and SQLite stores.

The threshold and chunk size are Ipam parameters, so these tests use pools of a few
dozen addresses; ``test_default_threshold`` checks the real constants once.
tests/integration/test_etcd_ipam.py runs the same tests on etcd.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Callable

import pytest

from flatnet.errors import AddressUnavailable, PoolExhausted
from flatnet.ipam import Ipam, Owner, PoolSpec
from flatnet.ipam import records as r
from flatnet.ipam._chunks import CHUNK_MIN_POOL, CHUNK_SIZE
from flatnet.ipam.api import Store

ip = ipaddress.ip_address
MakeIpam = Callable[..., Ipam]


@pytest.fixture
def make(store: Store) -> MakeIpam:
    """Ipam instances over one store (each like another process): chunks of 4 from 16 up, one
    lane (the ``state`` cursor) unless a test asks for more."""

    def _make(**kw: int) -> Ipam:
        kw.setdefault("chunk_min_pool", 16)
        kw.setdefault("chunk_size", 4)
        kw.setdefault("max_lanes", 1)
        return Ipam(store, **kw)

    return _make


def pool(size: int = 20, name: str = "big", **kw) -> PoolSpec:
    """198.18.0.1 .. 198.18.0.<size> (a gateway or excludes are taken out of it)."""
    return PoolSpec(
        name,
        ipaddress.ip_network("198.18.0.0/24"),
        range_start=ip("198.18.0.1"),
        range_end=ip(f"198.18.0.{size}"),
        **kw,
    )


def own(i: int | str, node: str | None = "a", pod: str | None = None) -> Owner:
    ns, _, name = (pod or "").partition("/")
    return Owner(f"c{i}", "eth0", "net1", ns or None, name or None, node=node)


def take(ipam: Ipam, p: PoolSpec, i: int | str, node: str | None = "a", **kw) -> int:
    """Allocate; return the last octet."""
    lease = ipam.allocate([p], own(i, node, kw.get("pod")), kw.get("want", ()))[0]
    return int(str(lease.address.ip).rsplit(".", 1)[1])


def chunk(store: Store, node: str) -> dict:
    e = store.get(r.chunk_key("big", node))
    return json.loads(e.value) if e else {}


def test_default_threshold_and_chunk_lengths(store: Store) -> None:
    from flatnet.ipam import PoolRange
    from flatnet.ipam._chunks import ChunkSource
    from flatnet.ipam._txn import Txns

    assert (CHUNK_MIN_POOL, CHUNK_SIZE) == (64, 64)
    src = ChunkSource(Txns(store))

    def length(size: int) -> int:
        net = ipaddress.ip_network("2001:db8:c::/104")
        base = ip("2001:db8:c::1")
        return src.chunk_len(PoolRange(PoolSpec("x", net, range_start=base, range_end=base + size - 1)))

    # a small pool's chunk is a 128th of it (at least 4); large pools get 64
    assert [length(n) for n in (64, 256, 1_000, 4_000, 8_192, 1_000_000)] == [4, 4, 7, 31, 64, 64]
    assert not src.serves(PoolRange(pool(63)), own(1)) and src.serves(PoolRange(pool(64)), own(1))


def test_node_claims_a_chunk_and_allocates_from_it(make: MakeIpam, store: Store) -> None:
    ipam, p = make(), pool(gateway=ip("198.18.0.2"))
    assert [take(ipam, p, i) for i in range(5)] == [1, 3, 4, 5, 6]  # gateway .2 skipped
    assert chunk(store, "a") == {"start": 5, "end": 9, "cursor": 7}  # offsets, second chunk
    assert json.loads(store.get(r.pool_key("big", "state")).value)["cursor"] == 9


def test_two_nodes_get_disjoint_chunks(make: MakeIpam, store: Store) -> None:
    ipam = make()
    p = pool()
    got = {n: [take(ipam, p, f"{n}{i}", n) for i in range(3)] for n in ("a", "b")}
    assert got == {"a": [1, 2, 3], "b": [5, 6, 7]}
    assert take(ipam, p, "a3", "a") == 4 and take(ipam, p, "a4", "a") == 9  # a's next chunk
    assert (chunk(store, "a")["start"], chunk(store, "b")["start"]) == (9, 5)


def test_processes_sharing_a_node_never_duplicate(make: MakeIpam) -> None:
    p = pool(40)
    ipams = [make(), make(), make()]
    got = [take(ipams[i % 3], p, i, f"n{i % 2}") for i in range(40)]
    assert sorted(got) == list(range(1, 41))
    with pytest.raises(PoolExhausted):
        take(ipams[0], p, 99)


def test_small_pools_and_nodeless_owners_keep_the_cursor(make: MakeIpam, store: Store) -> None:
    ipam = make()
    assert [take(ipam, pool(15, "small"), i, f"n{i}") for i in range(3)] == [1, 2, 3]
    # another VLAN: another segment, so the same addresses (on one VLAN they would be 4, 5, 6)
    assert [take(ipam, pool(vlan=7), f"x{i}", None) for i in range(3)] == [1, 2, 3]
    assert store.range(r.chunk_prefix("small")) == store.range(r.chunk_prefix("big")) == []


def test_exhaustion_takes_other_nodes_remainders_first(make: MakeIpam, store: Store) -> None:
    ipam, p = make(), pool()
    for n in "abcde":  # five nodes take one address each: 5 chunks hold 20 addresses
        take(ipam, p, f"{n}0", n)
    got = [take(ipam, p, f"a{i}", "a") for i in range(1, 16)]
    assert sorted(got) == sorted(set(range(1, 21)) - {1, 5, 9, 13, 17})
    assert ipam.usage(p) == (20, 20)
    with pytest.raises(PoolExhausted):
        take(ipam, p, "z", "z")


def test_exhaustion_prefers_the_fifo_and_stays_honest(make: MakeIpam) -> None:
    ipam, p = make(), pool(16)
    for i in range(16):
        take(ipam, p, i, f"n{i % 3}")
    freed = ipam.release("c7", "eth0")[0].address.ip
    assert take(ipam, p, "again", "n0") == int(str(freed).rsplit(".", 1)[1])
    with pytest.raises(PoolExhausted):
        take(ipam, p, "full", "n1")


def test_requested_address_inside_a_chunk(make: MakeIpam, store: Store) -> None:
    ipam, p = make(), pool()
    assert take(ipam, p, 0) == 1  # a's chunk is .1-.4
    assert take(make(), p, "req", "b", want=[ip("198.18.0.2")]) == 2
    with pytest.raises(AddressUnavailable):
        take(ipam, p, "req2", "c", want=[ip("198.18.0.2")])
    assert [take(ipam, p, i) for i in (1, 2)] == [3, 4]  # the chunk steps over .2


def test_requested_and_released_inside_a_chunk_is_never_handed_out_twice(make: MakeIpam) -> None:
    ipam, p = make(), pool(16)
    take(ipam, p, 0)  # a: .1-.4
    take(ipam, p, "req", "b", want=[ip("198.18.0.3")])
    ipam.release("creq", "eth0")  # .3 -> the FIFO, though a's chunk will hand it out too
    got = [take(ipam, p, i, f"n{i % 2}") for i in range(1, 16)]
    assert sorted(got) == list(range(2, 17))  # .3 once, the stale FIFO entry dropped
    with pytest.raises(PoolExhausted):
        take(ipam, p, "full")


def test_sticky_address_comes_back_in_a_chunked_pool(make: MakeIpam) -> None:
    ipam, p = make(), pool(sticky=True)
    first = take(ipam, p, 0, "a", pod="ns/redis-0")
    take(ipam, p, 1, "a")
    ipam.release("c0", "eth0")
    assert take(ipam, p, 2, "b", pod="ns/redis-0") == first
    assert take(ipam, p, 3, "a") != first


def test_stale_cache_is_corrected_by_the_compare(make: MakeIpam) -> None:
    one, two = make(), make()
    p = pool(40)
    a = [take(one, p, 0), take(two, p, 1), take(one, p, 2), take(two, p, 3), take(one, p, 4)]
    assert a == [1, 2, 3, 4, 5]


def test_repeat_allocate_returns_the_held_lease(make: MakeIpam) -> None:
    ipam, p = make(), pool()
    first = ipam.allocate([p], own(0))
    assert make().allocate([p], own(0)) == first  # another process: no cache, same answer
    assert ipam.allocate([p], own(0)) == first
    assert take(ipam, p, 1) == 2 and len(ipam.leases()) == 2


def test_a_node_short_of_addresses_takes_half_of_another_nodes_rest(make: MakeIpam, store: Store) -> None:
    """Scarcity (issue 21): the cursor is at the end, node e has no chunk. It moves the upper
    half of what another node has left into its own chunk (one txn comparing both), so its
    next allocation is one txn from its own chunk, not a scan of every chunk again."""
    ipam, p = make(), pool(16)  # offsets 1..16, chunks of 4
    first = {n: take(ipam, p, f"{n}0", n) for n in "abcd"}
    assert first == {"a": 1, "b": 5, "c": 9, "d": 13}
    before = {n: chunk(store, n) for n in "abcd"}
    got = [take(ipam, p, "e0", "e"), take(ipam, p, "e1", "e")]
    shrunk = [n for n in "abcd" if chunk(store, n) != before[n]]
    assert len(shrunk) == 1
    victim = chunk(store, shrunk[0])
    assert victim["end"] - before[shrunk[0]]["cursor"] == 1  # it kept the lower half of its 3
    assert chunk(store, "e") == {"start": victim["end"], "end": before[shrunk[0]]["end"], "cursor": got[1] + 1}
    assert got == [victim["end"], victim["end"] + 1]
    # the victim still allocates what it kept, and the pool ends with every address used once
    rest = [take(ipam, p, f"x{i}", n) for i, n in enumerate("abcdabcdabcdabcd"[:10])]
    assert sorted(list(first.values()) + got + rest) == list(range(1, 17))
    with pytest.raises(PoolExhausted):
        take(ipam, p, "late", "e")


def count_txns(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every txn sent to ``store`` from now on (etcd's ``txn_else_read`` too), by method."""
    sent: list[str] = []
    for name in ("txn", "txn_else_read"):
        real = getattr(store, name, None)
        if real is None:
            continue

        def counted(*a, _real=real, _name=name, **kw):  # type: ignore[no-untyped-def]
            sent.append(_name)
            return _real(*a, **kw)

        monkeypatch.setattr(store, name, counted)
    return sent


def test_a_claim_takes_its_chunks_first_address_in_the_same_txn(
    make: MakeIpam, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk claim costs no request of its own: the txn that moves the lane's cursor also
    makes the new chunk's first address the pod's lease (lease, owner and segment keys)."""
    ipam, p = make(), pool()
    take(ipam, p, 0)  # a: .1-.4
    sent = count_txns(store, monkeypatch)
    assert [take(ipam, p, i) for i in range(1, 8)] == [2, 3, 4, 5, 6, 7, 8]
    assert len(sent) == 7  # one per address: .5 came with the claim of .5-.8
    assert chunk(store, "a") == {"start": 5, "end": 9, "cursor": 9}
    assert [lease.address.ip for lease in ipam.lookup("c4", "eth0")] == [ip("198.18.0.5")]
    seg = store.get(r.seg_key(None, ip("198.18.0.5")))
    assert seg is not None and seg.value == "big"


def test_a_claim_whose_first_address_is_taken_claims_alone_and_steps_over_it(make: MakeIpam, store: Store) -> None:
    ipam, p = make(), pool()
    assert [take(ipam, p, i) for i in range(4)] == [1, 2, 3, 4]
    assert take(make(), p, "req", "b", want=[ip("198.18.0.5")]) == 5  # ahead of the cursor
    assert [take(ipam, p, i) for i in range(4, 8)] == [6, 7, 8, 9]  # a's claim .5-.8 steps over .5
    held = [str(lease.address.ip) for lease in ipam.leases()]
    assert len(held) == len(set(held)) == 9


def test_a_repeat_add_that_meets_a_used_up_chunk_gets_its_lease(make: MakeIpam) -> None:
    """The repeat's claim txn fails on the attachment's own key: nothing is claimed, and the
    held lease is the answer."""
    ipam, p = make(), pool()
    first = [ipam.allocate([p], own(i)) for i in range(4)]  # a's chunk .1-.4 used up
    assert ipam.allocate([p], own(3)) == first[3]
    assert take(ipam, p, 4) == 5 and len(ipam.leases()) == 5
