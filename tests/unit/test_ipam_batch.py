"""Group commit (``flatnet.ipam._batch``): concurrent allocations of one node share a txn.

The store here is slow on purpose (each txn sleeps), so the threads' calls overlap the way
an agent's concurrent ADDs overlap a real store's round trip.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from flatnet.errors import PoolExhausted
from flatnet.ipam import Ipam, Owner, PoolSpec
from flatnet.ipam._batch import Combiner
from flatnet.ipam.store import MemoryStore

ip = ipaddress.ip_address
BIG = PoolSpec("b", ipaddress.ip_network("198.18.0.0/24"), range_start=ip("198.18.0.1"), range_end=ip("198.18.0.200"))


class SlowStore(MemoryStore):
    """A MemoryStore whose txns take a few ms, and that counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.txns = 0

    def txn(self, *a: Any, **kw: Any) -> bool:
        time.sleep(0.003)
        self.txns += 1
        return super().txn(*a, **kw)


def own(cid: str, node: str = "n1") -> Owner:
    return Owner(cid, "eth0", "net1", node=node)


def burst(ipam: Ipam, owners: list[Owner], pool: PoolSpec = BIG) -> list[Any]:
    """Every owner's allocation at once, on its own thread: its lease IP or its exception."""
    start = threading.Barrier(len(owners))

    def one(o: Owner) -> Any:
        start.wait()
        try:
            return ipam.allocate([pool], o)[0].address.ip
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            return exc

    with ThreadPoolExecutor(len(owners)) as ex:
        return list(ex.map(one, owners))


def test_concurrent_allocations_of_a_node_share_txns() -> None:
    store = SlowStore()
    ipam = Ipam(store, chunk_min_pool=16, chunk_size=64)
    ipam.allocate([BIG], own("warm"))  # the node's chunk exists
    before = store.txns
    got = burst(ipam, [own(f"c{i}") for i in range(40)])
    assert len(set(got)) == 40 and all(isinstance(x, ipaddress.IPv4Address) for x in got)
    assert store.txns - before < 20  # one by one it is 40 txns
    assert ipam._batches.calls > ipam._batches.batches  # some batch held more than one call
    assert len(ipam.leases("b")) == 41


def test_a_repeated_add_in_a_batch_gets_its_one_lease() -> None:
    ipam = Ipam(SlowStore(), chunk_min_pool=16, chunk_size=64)
    ipam.allocate([BIG], own("warm"))
    held = ipam.allocate([BIG], own("c0"))[0].address.ip
    got = burst(ipam, [own("c0"), own("c1"), own("c1"), own("c2"), own("c0")])
    assert got[0] == got[4] == held and got[1] == got[2]
    assert len({got[0], got[1], got[3]}) == 3
    assert len(ipam.leases("b")) == 4  # warm, c0, c1, c2: nothing half written


def test_a_batch_that_runs_the_pool_dry_fails_only_its_tail() -> None:
    small = PoolSpec(
        "s", ipaddress.ip_network("198.18.1.0/24"), range_start=ip("198.18.1.1"), range_end=ip("198.18.1.20")
    )
    ipam = Ipam(SlowStore(), chunk_min_pool=16, chunk_size=4)
    got = burst(ipam, [own(f"c{i}") for i in range(26)], small)
    addrs = [x for x in got if isinstance(x, ipaddress.IPv4Address)]
    assert sorted(int(str(a).rsplit(".", 1)[1]) for a in addrs) == list(range(1, 21))
    assert sum(isinstance(x, PoolExhausted) for x in got) == 6


def test_nodes_are_batched_apart() -> None:
    store = SlowStore()
    ipam = Ipam(store, chunk_min_pool=16, chunk_size=8)
    got = burst(ipam, [own(f"c{i}", f"n{i % 3}") for i in range(30)])
    assert len(set(got)) == 30
    by_node: dict[str, set[int]] = {}
    for lease in ipam.leases("b"):
        by_node.setdefault(lease.owner.node or "", set()).add(int(str(lease.address.ip).rsplit(".", 1)[1]))
    chunks = {n: {(x - 1) // 8 for x in offs} for n, offs in by_node.items()}
    assert not (chunks["n0"] & chunks["n1"]) and not (chunks["n1"] & chunks["n2"])


def test_combiner_hands_the_turn_on_and_never_loses_a_call() -> None:
    seen: list[list[int]] = []
    gate = threading.Event()

    def run(items: list[int]) -> list[int]:
        seen.append(items)
        gate.wait(1)
        return [i * 10 for i in items]

    comb: Combiner[int, int] = Combiner(run, limit=3)
    with ThreadPoolExecutor(8) as ex:
        first = ex.submit(comb.submit, "k", 0)
        time.sleep(0.05)  # the first is in flight: the rest queue behind it
        rest = [ex.submit(comb.submit, "k", i) for i in range(1, 8)]
        time.sleep(0.05)
        gate.set()
        assert first.result(5) == 0 and [f.result(5) for f in rest] == [i * 10 for i in range(1, 8)]
    assert seen[0] == [0] and all(len(b) <= 3 for b in seen) and sorted(sum(seen, [])) == list(range(8))
    assert comb.batches == len(seen) < 8


def test_combiner_gives_an_error_to_every_caller_of_the_batch() -> None:
    def run(items: list[int]) -> list[int]:
        raise RuntimeError("store down")

    comb: Combiner[int, int] = Combiner(run)
    with pytest.raises(RuntimeError):
        comb.submit("k", 1)
    with pytest.raises(RuntimeError):  # and the key is free again
        comb.submit("k", 2)
