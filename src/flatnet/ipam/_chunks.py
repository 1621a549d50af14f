"""Node-affine chunks of large pools: allocations of different nodes never touch one key.

With one cursor per pool (``state``), every allocation in the cluster compares that one
key, so concurrent allocators lose races to each other and a pool serves ~150 alloc/s on
etcd however many nodes ask. Like Calico's block affinity, a node instead claims
``CHUNK_SIZE`` consecutive offsets from the pool's cursor (one txn on ``state`` per chunk)
and records them under ``pools/<pool>/chunk/<node>``; it then hands out addresses from
its chunk with a txn comparing only that key (and the address's key, create-only).

Only pools with at least ``CHUNK_MIN_POOL`` usable addresses are chunked, and only for an
owner that names its node: in a small pool, 64 addresses parked on a node would be a
large share of it, and small pools keep their exact address order.

Guarantees are the cursor's: the create-only compare on ``ips/<ip>`` is what rules out
duplicates (a requested address inside a chunk is simply taken; the chunk steps over
it); released addresses go to the pool's FIFO as before. A pool is exhausted only when
the cursor is at the end, the FIFO is empty *and* no node's chunk has an unused address
left: the last step takes one from another node's remainder (bounded by the node count).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from flatnet.ipam import records as r
from flatnet.ipam.api import Compare, Entry, Lease, Owner
from flatnet.ipam.pool import PoolRange

if TYPE_CHECKING:
    from flatnet.ipam._ops import PoolOps

CHUNK_SIZE = 64  # consecutive offsets a node claims at once: one ``state`` txn per 64 allocations
CHUNK_MIN_POOL = 4096  # usable addresses from which a pool is chunked (64 chunks of 64)


class NodeChunks:
    """Allocation from the owner's node chunk; keeps a per-process cache of each chunk.

    The cache saves the read of the chunk before each allocation when this process is the
    only one allocating for that node (a node agent). It is trusted only while it proves
    right: after a lost compare the chunk is read first, until a read finds the cache was
    still current (so several processes sharing a node cost a read, not a failed txn).
    """

    def __init__(self, ops: PoolOps, min_pool: int = CHUNK_MIN_POOL, size: int = CHUNK_SIZE) -> None:
        if size < 1 or min_pool < 1:
            raise ValueError(f"chunks: size and min_pool must be positive, got {size}, {min_pool}")
        self.ops = ops
        self.min_pool = min_pool
        self.size = size
        self._cache: dict[str, tuple[Entry, bool]] = {}  # chunk key -> (entry, trusted)

    # -- the node's chunk ----------------------------------------------------
    def _read(self, key: str) -> tuple[Entry | None, bool]:
        """The chunk entry and whether the cache proved right: cached if trusted, else read."""
        cached = self._cache.get(key)
        if cached is not None and cached[1]:
            return cached
        cur = self.ops.store.get(key)
        if cur is None:
            self._cache.pop(key, None)
            return None, False
        trusted = cached is not None and cached[0] == cur
        self._cache[key] = (cur, trusted)
        return cur, trusted

    def _remember(self, key: str, value: str, version: int, trusted: bool) -> None:
        self._cache[key] = (Entry(key, value, version), trusted)

    def _distrust(self, key: str) -> None:
        cached = self._cache.get(key)
        if cached is not None:
            self._cache[key] = (cached[0], False)

    def take(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        """Next address of the node's chunk (claiming chunks as needed), else FIFO, else steal."""
        ops, name = self.ops, pr.spec.name
        key = r.chunk_key(name, owner.node or "")
        attempt = 0  # counts lost races only
        while attempt < ops.attempts:
            ch, trusted = self._read(key)
            if ch is not None:
                got = self._take_from(pr, owner, sticky_absent, ch, trusted)
                if isinstance(got, Lease):
                    return got
                if got == "lost":
                    ops._backoff(attempt)
                    attempt += 1
                if got != "empty":
                    continue
            claimed = self._claim_chunk(pr, key, ch, trusted)
            if claimed is None:  # the cursor is at the end of the pool
                lease = ops.take_free(pr, owner, sticky_absent)
                return lease if lease is not None else self._steal(pr, owner, sticky_absent)
            if not claimed:
                ops._backoff(attempt)
                attempt += 1
        raise ops._contended(f"allocating from the chunk of node {owner.node!r} in pool {name!r}")

    def _claim_chunk(self, pr: PoolRange, key: str, ch: Entry | None, trusted: bool) -> bool | None:
        """Move the next ``size`` offsets of the pool cursor into the node's chunk.

        True: claimed; False: lost a race (re-read and retry); None: the cursor is at the end.
        """
        store, skey = self.ops.store, r.pool_key(pr.spec.name, "state")
        st = store.get(skey)
        state = r.state_of(st.value if st else None)
        start = pr.next_usable(state["cursor"])
        if start is None:
            return None
        end = min(start + self.size, pr.last + 1)
        value = r.dumps({"start": start, "end": end, "cursor": start})
        cmp = [Compare(skey, st.version if st else 0), self._guard(key, ch)]
        if store.txn(cmp, {skey: r.dumps({"cursor": end, "seq": state["seq"]}), key: value}):
            self._remember(key, value, ch.version + 1 if ch else 1, trusted)
            return True
        self._cache.pop(key, None)
        return False

    @staticmethod
    def _guard(key: str, ch: Entry | None) -> Compare:
        return Compare(key, ch.version, ch.value) if ch else Compare(key, 0)

    def _take_from(
        self, pr: PoolRange, owner: Owner, sticky_absent: bool, ch: Entry, trusted: bool
    ) -> Lease | str:
        """One address from chunk ``ch``; else "empty", "stepped" (over a taken one) or "lost"."""
        ops, store = self.ops, self.ops.store
        c = json.loads(ch.value)
        off = pr.next_usable(c["cursor"])
        if off is None or off >= c["end"]:
            return "empty"
        ip = pr.address(off)
        ikey = r.ip_key(pr.spec.name, ip)
        value = r.dumps({"start": c["start"], "end": c["end"], "cursor": off + 1})
        guard = self._guard(ch.key, ch)
        lease = ops._commit_claim(pr, ip, owner, [guard, Compare(ikey, 0)], {ch.key: value}, [],
                                  sticky_absent)
        if lease is not None:
            self._remember(ch.key, value, ch.version + 1, trusted)
            return lease
        self._distrust(ch.key)
        cur = store.get(ch.key)
        if cur == ch and store.get(ikey) is not None:
            # taken by an explicit request (or a steal): step over it
            if store.txn([guard], {ch.key: value}):
                self._remember(ch.key, value, ch.version + 1, False)
            return "stepped"
        return "lost"

    def _steal(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        """Last resort before "exhausted": an unused address left in any node's chunk."""
        ops = self.ops
        attempt = 0
        while attempt < ops.attempts:
            got = "empty"
            for ch in ops.store.range(r.chunk_prefix(pr.spec.name)):
                got = self._take_from(pr, owner, sticky_absent, ch, False)
                if isinstance(got, Lease):
                    return got
                if got != "empty":
                    break  # the chunks moved under us: read them again
            if got == "empty":
                return None
            if got == "lost":
                ops._backoff(attempt)
                attempt += 1
        raise ops._contended(f"allocating a left-over chunk address in pool {pr.spec.name!r}")
