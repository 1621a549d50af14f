"""Lanes of a chunked pool (``flatnet.ipam._chunks``): nodes claim chunks from different cursors.

A pool of a few lanes' worth of chunks is cut into lanes, each with its own cursor; a node
starts at the lane its name hashes to. These tests pin what must not change with lanes: every
address is handed out once, a release is never lost (no address leaks out of every cursor and
the FIFO), a pool used before lanes existed is not handed out again, and exhaustion is honest.
"""

from __future__ import annotations

import ipaddress
import json
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flatnet.errors import AddressUnavailable, PoolExhausted
from flatnet.ipam import Ipam, Owner, PoolRange, PoolSpec
from flatnet.ipam import records as r
from flatnet.ipam._chunks import LANE_MIN_CHUNKS, MAX_LANES, ChunkSource
from flatnet.ipam._txn import Txns
from flatnet.ipam.api import Entry, Store
from flatnet.ipam.store import MemoryStore

ip = ipaddress.ip_address
SIZE = 64  # 198.18.0.1 .. .64: 4 lanes of 4 chunks of 4
P = PoolSpec("lp", ipaddress.ip_network("198.18.0.0/24"), range_start=ip("198.18.0.1"), range_end=ip("198.18.0.64"))
PR = PoolRange(P)


def make(store: Store) -> Ipam:
    return Ipam(store, chunk_min_pool=16, chunk_size=4, max_lanes=4)


def own(cid: str, node: str | None) -> Owner:
    return Owner(cid, "eth0", "net1", node=node)


def last(lease_ip: object) -> int:
    return int(str(lease_ip).rsplit(".", 1)[1])


def node_in_lane(lane: int, lanes: int = 4) -> str:
    """A node name that hashes to ``lane``."""
    return next(f"n{i}" for i in range(1000) if zlib.crc32(f"n{i}".encode()) % lanes == lane)


def test_lane_geometry_of_real_pools() -> None:
    src = ChunkSource(Txns(MemoryStore()))

    def geometry(size: int) -> tuple[int, int]:
        base = ip("2001:db8:c::1")
        pr = PoolRange(
            PoolSpec("x", ipaddress.ip_network("2001:db8:c::/104"), range_start=base, range_end=base + size - 1)
        )
        return src.lanes(pr), src.chunk_len(pr)

    # a /24's worth: 15 lanes of 4 chunks of 4; a 1k pool 35 lanes of ~4 chunks of 7 (more
    # lanes than the 32 nodes that share it in the bench)
    assert [geometry(n) for n in (64, 254, 1_000, 4_000, 1_000_000)] == [
        (4, 4),
        (15, 4),
        (35, 7),
        (32, 31),
        (64, 64),
    ]
    assert (MAX_LANES, LANE_MIN_CHUNKS) == (64, 4)


class RacedStore(MemoryStore):
    """A MemoryStore where the next txn comparing ``state`` fails, as if another node had
    claimed from lane 0 at the same moment (``state`` is written again: a new version)."""

    def __init__(self) -> None:
        super().__init__()
        self.race = False

    def txn(self, compares, puts=None, deletes=(), *a, **kw):  # type: ignore[no-untyped-def]
        state = next((c.key for c in compares if c.key.endswith("/state")), None)
        if self.race and state is not None:
            self.race = False
            cur = super().get(state)  # the other node's claim moved it (its version, here)
            super().txn([], {state: cur.value if cur else r.dumps({"cursor": 0, "seq": 0})})
            return False
        return super().txn(compares, puts, deletes, *a, **kw)


def test_nodes_fill_the_pool_in_order_until_they_race() -> None:
    store = RacedStore()
    ipam = make(store)
    a, b = node_in_lane(0), node_in_lane(2)
    assert [last(ipam.allocate([P], own(f"a{i}", a))[0].address.ip) for i in range(2)] == [1, 2]
    assert last(ipam.allocate([P], own("b0", b))[0].address.ip) == 5  # lane 0's next chunk: no race yet
    assert store.get(r.laned_key("lp")) is None
    # b's chunk .5-.8 runs out; its next claim on lane 0 loses: it moves to its own lane
    for i in range(1, 4):
        ipam.allocate([P], own(f"b{i}", b))
    store.race = True
    assert last(ipam.allocate([P], own("b4", b))[0].address.ip) == 33  # lane 2: .33-.48
    assert json.loads(store.get(r.lane_key("lp", 2)).value) == {"cursor": 37}  # offsets: chunk [33, 37)
    assert json.loads(store.get(r.pool_key("lp", "state")).value)["cursor"] == 9
    assert store.get(r.laned_key("lp")) is not None
    # a never raced: lane 0 still, after its own chunk .1-.4
    assert [last(ipam.allocate([P], own(f"a{i}", a))[0].address.ip) for i in range(2, 4)] == [3, 4]
    assert last(ipam.allocate([P], own("a4", a))[0].address.ip) == 9


def test_every_address_once_then_exhausted() -> None:
    store = MemoryStore()
    ipams = [make(store), make(store)]  # two processes
    got = [last(ipams[i % 2].allocate([P], own(f"c{i}", f"n{i % 5}"))[0].address.ip) for i in range(SIZE)]
    assert sorted(got) == list(range(1, SIZE + 1))
    with pytest.raises(PoolExhausted):
        ipams[0].allocate([P], own("full", "n9"))


def test_release_in_a_lane_ahead_of_state_goes_to_the_fifo() -> None:
    """Lane 2's addresses are all beyond ``state``'s cursor: released, they go to the FIFO
    (``laned``), or they would be lost: lane 2's cursor has passed them."""
    store = RacedStore()
    ipam = make(store)
    b = node_in_lane(2)
    store.race = True  # b loses its first claim on lane 0 and moves to lane 2
    lease = ipam.allocate([P], own("b0", b))[0]
    assert last(lease.address.ip) == 33
    ipam.release("b0", "eth0")
    assert [e.value for e in store.range(r.pool_key("lp", "free/"))] == [str(lease.address.ip)]
    # the pool still ends with every address handed out once
    got = [last(ipam.allocate([P], own(f"c{i}", f"n{i % 3}"))[0].address.ip) for i in range(SIZE)]
    assert sorted(got) == list(range(1, SIZE + 1))


def test_requested_ahead_of_every_cursor_before_lanes_is_handed_out_once() -> None:
    store = MemoryStore()
    ipam = make(store)
    ipam.allocate([P], own("req", None), [ip("198.18.0.40")])
    ipam.release("req", "eth0")  # no lane moved yet: never-used territory, not the FIFO
    assert store.range(r.pool_key("lp", "free/")) == []
    got = [last(ipam.allocate([P], own(f"c{i}", f"n{i % 4}"))[0].address.ip) for i in range(SIZE)]
    assert sorted(got) == list(range(1, SIZE + 1))


def test_a_pool_used_before_lanes_is_not_handed_out_again() -> None:
    """Before lanes, chunks came from ``state`` alone: its cursor at 40 says offsets below were
    given. A lane's first claim starts after that, so no lane steps over 39 held addresses."""
    store = MemoryStore()
    old = Ipam(store, chunk_min_pool=16, chunk_size=4, max_lanes=1)
    for i in range(40):
        old.allocate([P], own(f"o{i}", "n0"))
    ipam = make(store)
    ipam._ops.chunks._home[("lp", node_in_lane(1))] = 1  # as after a lost race
    calls = []
    real_txn = store.txn

    def counting(*a: object, **kw: object) -> bool:
        ok = real_txn(*a, **kw)  # type: ignore[arg-type]
        calls.append(ok)
        return ok

    store.txn = counting  # type: ignore[method-assign]
    got = [last(ipam.allocate([P], own(f"c{i}", node_in_lane(1)))[0].address.ip) for i in range(24)]
    assert sorted(got) == list(range(41, 65))
    assert calls.count(False) == 0  # no claim lost on an address the old cursor gave


def counting_ranges(store: Store) -> list[str]:
    """The prefixes of every ``range`` the store serves from now on."""
    seen: list[str] = []
    real = store.range

    def counting(prefix: str, limit: int | None = None) -> list:  # type: ignore[type-arg]
        seen.append(prefix)
        return real(prefix, limit)

    store.range = counting  # type: ignore[method-assign]
    return seen


def counting_gets(store: Store) -> list[str]:
    """The keys of every ``get`` the store serves from now on."""
    seen: list[str] = []
    real = store.get

    def counting(key: str):  # type: ignore[no-untyped-def]
        seen.append(key)
        return real(key)

    store.get = counting  # type: ignore[method-assign]
    return seen


def store_calls(store: Store) -> list[tuple[str, str]]:
    """Every get (its key), range (its prefix) and txn (the lane key it writes, or "") the
    store serves from now on, in order."""
    seen: list[tuple[str, str]] = []
    get, rng, txn = store.get, store.range, store.txn

    def counting_get(key: str):  # type: ignore[no-untyped-def]
        seen.append(("get", key))
        return get(key)

    def counting_range(prefix: str, limit: int | None = None) -> list:  # type: ignore[type-arg]
        seen.append(("range", prefix))
        return rng(prefix, limit)

    def counting_txn(compares, puts, *rest):  # type: ignore[no-untyped-def]
        seen.append(("txn", next((k for k in puts if "/lane/" in k), "")))
        return txn(compares, puts, *rest)

    store.get, store.range, store.txn = counting_get, counting_range, counting_txn  # type: ignore[method-assign]
    return seen


def test_a_node_whose_lane_ran_dry_stays_in_the_lane_it_moved_to() -> None:
    """Lane 0 used up, the node reads every lane's cursor once, claims from lane 1 and makes it
    its lane: its later claims read lane 1's cursor alone, not every lane's each time."""
    store = MemoryStore()
    ipam = make(store)
    got = [last(ipam.allocate([P], own(f"a{i}", "n0"))[0].address.ip) for i in range(16)]
    assert got == list(range(1, 17))  # lane 0, in order
    ranges, gets = counting_ranges(store), counting_gets(store)
    got = [last(ipam.allocate([P], own(f"b{i}", "n0"))[0].address.ip) for i in range(12)]
    assert got == list(range(17, 29))  # lane 1, three chunks
    assert [p for p in ranges if p.endswith("lane/")] == [r.pool_key("lp", "lane/")]  # once
    assert r.pool_key("lp", "state") not in gets  # as its own claims in lane 0 left it


def test_a_node_that_raced_moves_on_to_the_lane_with_most_room() -> None:
    """Nodes that raced and whose lanes ran dry would all walk to the lane after theirs and
    race there again: a raced node takes the lane with the most room left instead."""
    store = MemoryStore()
    ipam = make(store)
    homes = ipam._ops.chunks._home
    homes.update({("lp", "x"): 0, ("lp", "y"): 1, ("lp", "z"): 3})  # as after lost races
    for i in range(8):
        ipam.allocate([P], own(f"y{i}", "y"))  # lane 1: half used
    for i in range(4):
        ipam.allocate([P], own(f"z{i}", "z"))  # lane 3: a quarter
    assert [last(ipam.allocate([P], own(f"x{i}", "x"))[0].address.ip) for i in range(16)] == list(range(1, 17))
    assert last(ipam.allocate([P], own("x16", "x"))[0].address.ip) == 33  # lane 2 (untouched), not lane 1's .25
    assert homes[("lp", "x")] == 2


def test_a_node_claims_again_from_its_lane_without_reading_the_cursor() -> None:
    """The lane's cursor as this node last wrote it is what its next claim compares. When
    another node claimed in between, the failed claim brings the cursor back (etcd: in the
    same request); a node that lost there after moving away from a race shares the lane with
    another, so it reads every lane's cursor once and takes a lane nobody claimed from."""
    store = MemoryStore()
    ipam = make(store)
    x = node_in_lane(2)  # a lost race keeps it in lane 2 (.33-.48)
    ipam._ops.chunks._home[("lp", x)] = 2
    lane2 = r.lane_key("lp", 2)
    got = [last(ipam.allocate([P], own("x0", x))[0].address.ip)]
    reads = counting_gets(store)
    got += [last(ipam.allocate([P], own(f"x{i}", x))[0].address.ip) for i in range(1, 8)]
    assert got == list(range(33, 41)) and lane2 not in reads  # x's second chunk: no cursor read
    other = make(store)  # another process: node y claims lane 2's next chunk (.41-.44)
    other._ops.chunks._home[("lp", "y")] = 2
    assert last(other.allocate([P], own("y0", "y"))[0].address.ip) == 41
    # x's cached cursor (41) is stale: its claim fails; x shares lane 2 with y, so it reads
    # the lanes (once) and takes lane 1 (.17) or 3 (.49), whichever its name ranks first
    ranges = counting_ranges(store)
    first = min((1, 3), key=lambda ln: zlib.crc32(f"{x}/{ln}".encode()))
    assert last(ipam.allocate([P], own("x8", x))[0].address.ip) == {1: 17, 3: 49}[first]
    assert ranges == [r.pool_key("lp", "lane/")] and ipam._ops.chunks._home[("lp", x)] == first


def test_a_node_moving_to_a_lane_it_never_saw_claims_it_unread() -> None:
    """A node that lost a race moves to the lane its name hashes to and claims it as if nobody
    had yet: no read of that lane's cursor first. When another node did claim there, the
    failed claim brings the cursor back and the node claims after that node's chunk, reading
    nothing (it only learnt a cursor, it did not lose a race on a lane it knew)."""
    store = MemoryStore()
    ipam, other = make(store), make(store)
    assert last(ipam.allocate([P], own("a0", "a"))[0].address.ip) == 1  # lane 0: state seen
    z = node_in_lane(3)
    ipam._ops.chunks._home[("lp", z)] = 3  # as after a lost race in lane 0
    log = store_calls(store)
    assert last(ipam.allocate([P], own("z0", z))[0].address.ip) == 49  # lane 3 as untouched
    lane3 = r.lane_key("lp", 3)
    assert [c for c in log if lane3 in c or c[0] == "range"] == [("txn", lane3)]  # its cursor unread
    other._ops.chunks._home[("lp", "w")] = 3
    assert last(other.allocate([P], own("w0", "w"))[0].address.ip) == 53
    for i in range(1, 4):
        ipam.allocate([P], own(f"z{i}", z))  # z's chunk: .50-.52
    z2 = f"{z}b"  # a node of the same process that never saw lane 3 after w's claim
    ipam._ops.chunks._home[("lp", z2)] = 3
    ipam._ops.chunks._lanes.pop(r.lane_key("lp", 3))
    log.clear()
    assert last(ipam.allocate([P], own("v0", z2))[0].address.ip) == 57  # after w's .53-.56
    # the claim, its failure's read of the cursor (etcd: the same request), the claim again
    assert [c for c in log if c[0] != "get" or c[1] == lane3][:3] == [("txn", lane3), ("get", lane3), ("txn", lane3)]
    assert not [c for c in log if c[0] == "range"]
    assert ipam._ops.chunks._home[("lp", z2)] == 3 and not ipam._ops.chunks._rescan


def test_a_lanes_last_chunk_takes_the_rest() -> None:
    """A lane whose length is not a multiple of the chunk: its last chunk takes what is left
    (a lane of 17 offsets in chunks of 4: 4, 4, 4, 5), not a claim for one address."""
    base = ip("198.18.0.1")
    p70 = PoolSpec("lp", ipaddress.ip_network("198.18.0.0/24"), range_start=base, range_end=base + 69)
    store = MemoryStore()
    ipam = make(store)
    bounds = ChunkSource.lane_bounds(PoolRange(p70), 0, 4)
    assert bounds == (1, 18)  # lane 0: .1-.17
    claims: list[dict[str, str]] = []
    real = store.txn

    def txn(compares, puts, *rest):  # type: ignore[no-untyped-def]
        if r.pool_key("lp", "state") in puts:
            claims.append(puts)
        return real(compares, puts, *rest)

    store.txn = txn  # type: ignore[method-assign]
    got = [last(ipam.allocate([p70], own(f"a{i}", "n0"))[0].address.ip) for i in range(17)]
    assert got == list(range(1, 18))
    chunks = [json.loads(c[r.chunk_key("lp", "n0")]) for c in claims]
    assert [c["end"] - c["start"] for c in chunks] == [4, 4, 4, 5]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("alloc"), st.integers(0, 79), st.integers(0, 5)),
            st.tuples(st.just("release"), st.integers(0, 79)),
            st.tuples(st.just("request"), st.integers(0, 79), st.integers(1, SIZE)),
        ),
        max_size=120,
    ),
    st.lists(st.integers(0, 3), min_size=6, max_size=6),
)
def test_random_sequences_on_lanes_never_duplicate_or_leak(ops: list[tuple], homes: list[int]) -> None:
    """No address twice, and a full pool only when every address is held (nothing leaked).
    ``homes``: the lane each node claims from first (as after lost races)."""
    store = MemoryStore()
    ipams = [make(store), make(store)]
    for ipam in ipams:
        ipam._ops.chunks._home.update({("lp", f"n{i}"): h for i, h in enumerate(homes)})
    model: dict[str, int] = {}
    for k, step in enumerate(ops):
        cid, ipam = f"c{step[1]}", ipams[k % 2]
        if step[0] == "alloc":
            owner = own(cid, f"n{step[2]}")
            if cid not in model and len(model) == SIZE:
                with pytest.raises(PoolExhausted):
                    ipam.allocate([P], owner)
                continue
            got = last(ipam.allocate([P], owner)[0].address.ip)
            assert model.setdefault(cid, got) == got
        elif step[0] == "request":
            want = step[2]
            holder = next((c for c, a in model.items() if a == want), None)
            owner = own(cid, "n0")
            if (cid in model and model[cid] != want) or holder not in (None, cid):
                with pytest.raises(AddressUnavailable):
                    ipam.allocate([P], owner, [ip(f"198.18.0.{want}")])
            else:
                assert last(ipam.allocate([P], owner, [ip(f"198.18.0.{want}")])[0].address.ip) == want
                model[cid] = want
        else:
            ipam.release(cid, "eth0")
            model.pop(cid, None)
        assert len(set(model.values())) == len(model)
    # drain: every address not held must still be reachable
    free = SIZE - len(model)
    got = [last(ipams[0].allocate([P], own(f"d{i}", f"n{i % 6}"))[0].address.ip) for i in range(free)]
    assert sorted(got + list(model.values())) == list(range(1, SIZE + 1))
    with pytest.raises(PoolExhausted):
        ipams[1].allocate([P], own("over", "n1"))


def test_lane_zero_is_claimed_again_without_reading_state_and_keeps_the_fifo() -> None:
    """Lane 0's cursor (``state``) is cached like the others'. A release moves ``state`` (the
    FIFO's sequence): the next claim's compare fails, and the retry, with ``state`` as the
    failed txn read it, keeps the sequence the release wrote."""
    store = MemoryStore()
    ipam = make(store)
    a = node_in_lane(0)
    skey = r.pool_key("lp", "state")
    got = [last(ipam.allocate([P], own(f"a{i}", a))[0].address.ip) for i in range(4)]
    reads = counting_gets(store)
    got.append(last(ipam.allocate([P], own("a4", a))[0].address.ip))  # claims .5-.8
    assert skey not in reads
    ipam.release("a0", "eth0")  # .1 to the FIFO: state's sequence moves
    seq = json.loads(MemoryStore.get(store, skey).value)["seq"]
    got += [last(ipam.allocate([P], own(f"a{i}", a))[0].address.ip) for i in range(5, 9)]
    assert got == [1, 2, 3, 4, 5, 6, 7, 8, 9]  # .9: the claim after the release
    assert json.loads(MemoryStore.get(store, skey).value) == {"cursor": 13, "seq": seq}


def test_nodes_that_raced_spread_over_the_lanes_nobody_claimed_from() -> None:
    """Nodes whose lanes ran dry at the same moment read the same cursors: "the lane with most
    room" sent them all to one lane, to race there again. A raced node takes the lanes nobody
    claimed from first, in an order its name picks, then the others by room."""
    src = ChunkSource(Txns(MemoryStore()))
    base = ip("2001:db8:c::1")
    pr = PoolRange(PoolSpec("x", ipaddress.ip_network("2001:db8:c::/104"), range_start=base, range_end=base + 999))
    lanes = src.lanes(pr)
    bounds = [src.lane_bounds(pr, ln, lanes) for ln in range(lanes)]
    state = Entry(r.pool_key("x", "state"), r.dumps({"cursor": bounds[0][1], "seq": 0}), 9)  # lane 0 used up
    # lane 5 a few chunks in, lane 9 nearly used up
    cursors = {5: bounds[5][0] + 10, 9: bounds[9][1] - 3}
    lane = {ln: Entry(r.lane_key("x", ln), r.dumps({"cursor": cur}), 2) for ln, cur in cursors.items()}
    read: dict[int, Entry | None] = {0: state, **lane}
    nodes = [f"node{i}" for i in range(32)]
    firsts = [min(range(lanes), key=lambda ln: src._rank(pr, n, ln, lanes, read)) for n in nodes]
    assert len(set(firsts)) >= 15  # spread: most room would send all 32 to one lane
    assert not {0, 5, 9} & set(firsts)  # lanes claimed from come after every untouched one
    order = sorted(range(lanes), key=lambda ln: src._rank(pr, "node0", ln, lanes, read))
    assert order[-3:] == [5, 9, 0]  # then lane 5 (a chunk left), then by room: 9 (3 left), 0 (none)
    # every lane claimed from, most with a chunk or more left: those in the node's order too
    # (by room alone every node goes to the same lane), then the nearly used-up ones
    read = {
        0: state,
        **{
            ln: Entry(r.lane_key("x", ln), r.dumps({"cursor": lo + ln % 5}), 2)
            for ln, (lo, _) in enumerate(bounds)
            if ln
        },
    }
    read[9] = lane[9]
    firsts = [min(range(lanes), key=lambda ln: src._rank(pr, n, ln, lanes, read)) for n in nodes]
    assert len(set(firsts)) >= 15 and not {0, 9} & set(firsts)
    assert sorted(range(lanes), key=lambda ln: src._rank(pr, "node0", ln, lanes, read))[-2:] == [9, 0]


def test_a_node_that_never_raced_spreads_out_once_other_nodes_claim_from_the_lanes() -> None:
    """A pool only this process fills is filled in order (lane 0, then lane 1: the test
    above); once a scan shows a lane another process claimed from, a node whose lane ran dry
    takes an untouched lane in its name's order, as a raced one does."""
    store = MemoryStore()
    ipam, other = make(store), make(store)
    other._ops.chunks._home[("lp", "y")] = 2  # y raced and claims from lane 2
    assert last(other.allocate([P], own("y0", "y"))[0].address.ip) == 33
    x = next(f"x{i}" for i in range(1000) if zlib.crc32(f"x{i}/3".encode()) < zlib.crc32(f"x{i}/1".encode()))
    got = [last(ipam.allocate([P], own(f"a{i}", x))[0].address.ip) for i in range(17)]
    assert got[:16] == list(range(1, 17))  # lane 0, in order (x never raced)
    assert got[16] == 49  # lane 3, its name's first untouched lane; in order it would be .17
