""" "No scan": one allocation costs the same store calls for a pool of 100 and of 1,000,000.

This is the deterministic check of O(1) allocation: a wrapper counts every call the
allocator makes, so a hidden walk over the pool (or over its FIFO) would show up as a
difference, independent of machine speed.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Iterable, Sequence

from flatnet.ipam import Ipam, Owner, PoolSpec
from flatnet.ipam.api import Compare, Entry
from flatnet.ipam.store import MemoryStore


class CountingStore(MemoryStore):
    """MemoryStore that counts calls per method (and keys returned by range)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def get(self, key: str) -> Entry | None:
        self.calls["get"] += 1
        return super().get(key)

    def range(self, prefix: str, limit: int | None = None) -> list[Entry]:
        self.calls["range"] += 1
        out = super().range(prefix, limit)
        self.calls["range_rows"] += len(out)
        return out

    def txn(self, compares: Sequence[Compare], puts: dict[str, str] | None = None, deletes: Iterable[str] = ()) -> bool:
        self.calls["txn"] += 1
        return super().txn(compares, puts, deletes)


def v6pool(size: int) -> PoolSpec:
    start = ipaddress.ip_address("2001:db8::1")
    return PoolSpec(f"p{size}", ipaddress.ip_network("2001:db8::/104"), range_start=start, range_end=start + size - 1)


def cost(store: CountingStore, ipam: Ipam, pool: PoolSpec, cid: str, pod: str | None = None) -> Counter[str]:
    store.calls.clear()
    ns, _, name = (pod or "").partition("/")
    ipam.allocate([pool], Owner(cid, "eth0", "n", ns or None, name or None))
    return Counter(store.calls)


def test_fresh_allocation_cost_does_not_depend_on_pool_size() -> None:
    results = []
    for size in (100, 1_000_000):
        store = CountingStore()
        ipam = Ipam(store)
        pool = v6pool(size)
        cold = cost(store, ipam, pool, "c0")
        warm = [cost(store, ipam, pool, f"c{i}") for i in range(1, 4)]
        assert warm[0] == warm[1] == warm[2]
        results.append((cold, warm[0]))
    assert results[0] == results[1]
    assert sum(results[0][1].values()) <= 6  # a handful of calls, not a walk


def test_recycled_allocation_cost_does_not_depend_on_fifo_length() -> None:
    results = []
    for size, freed in ((10, 1), (1000, 900)):
        store = CountingStore()
        ipam = Ipam(store)
        pool = v6pool(size)
        for i in range(size):
            ipam.allocate([pool], Owner(f"c{i}", "eth0", "n"))
        store.calls.clear()
        for i in range(freed):
            ipam.release(f"c{i}", "eth0")
        per_release = store.calls["txn"] / freed
        results.append((cost(store, ipam, pool, "again"), per_release))
    assert results[0] == results[1]


def test_sticky_allocation_cost_does_not_depend_on_pool_size() -> None:
    results = []
    for size in (100, 1_000_000):
        store = CountingStore()
        ipam = Ipam(store)
        pool = PoolSpec(f"s{size}", v6pool(size).subnet, v6pool(size).range_start, v6pool(size).range_end, sticky=True)
        cost(store, ipam, pool, "warm", "ns/warm")
        first = cost(store, ipam, pool, "c1", "ns/redis-0")
        ipam.release("c1", "eth0")
        back = cost(store, ipam, pool, "c2", "ns/redis-0")
        results.append((first, back))
    assert results[0] == results[1]


def test_node_chunk_allocation_cost_does_not_depend_on_pool_size() -> None:
    results = []
    for size in (256, 4096, 1_000_000):  # all node-chunked (CHUNK_MIN_POOL is 64; a /24-sized pool too)
        store = CountingStore()
        ipam = Ipam(store)
        pool = v6pool(size)
        costs = []
        for i in range(4):
            store.calls.clear()
            ipam.allocate([pool], Owner(f"c{i}", "eth0", "n", node="node-a"))
            costs.append(Counter(store.calls))
        assert costs[1] == costs[2] == costs[3]
        results.append(costs)
    assert results[0] == results[1] == results[2]
    assert sum(results[0][1].values()) <= 3  # owner lookup + one txn: the chunk is cached


def test_lost_chunk_race_rereads_the_chunk_once() -> None:
    """Two allocators of one node: the one whose cached chunk went stale loses one txn, and
    retries with the chunk read after the loss (no second read of the same key)."""
    store = CountingStore()
    a, b = Ipam(store), Ipam(store)
    pool = v6pool(1_000_000)
    got = [str(a.allocate([pool], Owner("a0", "eth0", "n", node="node-a"))[0].address.ip)]
    got.append(str(b.allocate([pool], Owner("b0", "eth0", "n", node="node-a"))[0].address.ip))
    store.calls.clear()
    got.append(str(a.allocate([pool], Owner("a1", "eth0", "n", node="node-a"))[0].address.ip))
    # a lost txn, reads of the owner key (not held) and of the chunk, then the winning txn
    assert (store.calls["txn"], store.calls["get"]) == (2, 2)
    assert len(set(got)) == 3
    store.calls.clear()
    got.append(str(a.allocate([pool], Owner("a2", "eth0", "n", node="node-a"))[0].address.ip))
    assert (store.calls["txn"], store.calls["get"]) == (1, 1)  # distrusted: read, then one txn
    assert len(set(got)) == 4
