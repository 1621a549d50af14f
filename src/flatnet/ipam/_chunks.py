"""Node-affine chunks of large pools: allocations of different nodes never touch one key.

With one cursor per pool (``state``), every allocation in the cluster compares that one
key, so concurrent allocators lose races to each other and a pool serves ~150 alloc/s on
etcd however many nodes ask. Like Calico's block affinity, a node instead claims
``CHUNK_SIZE`` consecutive offsets from the pool's cursor (one txn on ``state`` per chunk)
and records them under ``pools/<pool>/chunk/<node>``; it then hands out addresses from
its chunk with a txn comparing only that key (and the address's key, create-only).

Only owners that name their node use chunks, and only in pools of at least
``CHUNK_MIN_POOL`` usable addresses. A chunk is ``CHUNK_SIZE`` offsets in a large pool and
smaller in a small one (``chunk_len``: a 128th of the pool, at least ``SMALL_CHUNK``), so a
/24 or /22 shared by many nodes is not all parked on a few of them. Small pools were once
left on the cursor to keep their exact address order, and paid for it on etcd: every
allocation in the cluster compared the one ``state`` key, 32 clients on a 1k pool collided
and retried (114 alloc/s, p99 1.4 s; issue 21). With chunks an allocation is one txn on keys
no other node touches; within one node the order is still the cursor's.

Guarantees are the cursor's: the create-only compare on ``ips/<ip>`` is what rules out
duplicates (a requested address inside a chunk is simply taken; the chunk steps over
it); released addresses go to the pool's FIFO as before. The pool's fresh addresses are
gone only when the cursor is at the end *and* no node's chunk has an unused address left:
``leftover`` takes one from another node's remainder (bounded by the node count), starting
at a place that depends on the node, so nodes short of addresses do not all queue on the
same chunk. That is how parked addresses are given back under scarcity: no node keeps them
from another that needs them, and no ADD fails while any chunk still has one.
"""

from __future__ import annotations

import json
import zlib

from flatnet.ipam import records as r
from flatnet.ipam._txn import Outcome, Step, Txns
from flatnet.ipam.api import Compare, Entry, Lease, Owner
from flatnet.ipam.pool import PoolRange

CHUNK_SIZE = 64  # consecutive offsets a node claims at once: one ``state`` txn per 64 allocations
CHUNK_MIN_POOL = 64  # usable addresses from which a pool is chunked (below, the cursor: few allocators)
SMALL_CHUNK = 4  # the smallest chunk: one ``state`` txn per 4 allocations
CHUNKS_PER_POOL = 128  # a small pool's chunk is this fraction of it (a /24: 4 addresses; 4k: 32)


class ChunkSource:
    """A ``FreshSource``: the owner's node chunk; keeps a per-process cache of each chunk.

    The cache saves the read of the chunk before each allocation when this process is the
    only one allocating for that node (a node agent). It is trusted only while it proves
    right: after a lost compare the chunk is read first, until a read finds the cache was
    still current (so several processes sharing a node cost a read, not a failed txn).
    """

    def __init__(self, txns: Txns, min_pool: int = CHUNK_MIN_POOL, size: int = CHUNK_SIZE) -> None:
        if size < 1 or min_pool < 1:
            raise ValueError(f"chunks: size and min_pool must be positive, got {size}, {min_pool}")
        self.txns = txns
        self.min_pool = min_pool
        self.size = size
        self._cache: dict[str, tuple[Entry, bool]] = {}  # chunk key -> (entry, trusted)
        #: chunk key -> the entry a lost race just read: the retry uses it instead of reading
        #: the chunk again (once; it never makes the cache trusted)
        self._fresh: dict[str, Entry] = {}
        #: pool -> its last offset, once its cursor was seen at the end (a widened range
        #: has another last offset, so it is read again)
        self._spent: dict[str, int] = {}

    def serves(self, pr: PoolRange, owner: Owner) -> bool:
        return bool(owner.node) and pr.total >= self.min_pool

    def chunk_len(self, pr: PoolRange) -> int:
        """Offsets per chunk of this pool: ``size`` in large pools, a 128th of a small one."""
        return min(self.size, max(SMALL_CHUNK, pr.total // CHUNKS_PER_POOL))

    # -- the node's chunk ----------------------------------------------------
    def _read(self, key: str) -> tuple[Entry | None, bool]:
        """The chunk entry and whether the cache proved right: cached if trusted, else read."""
        cached = self._cache.get(key)
        if cached is not None and cached[1]:
            return cached
        fresh = self._fresh.pop(key, None)
        cur = fresh if fresh is not None else self.txns.store.get(key)
        if cur is None:
            self._cache.pop(key, None)
            return None, False
        trusted = fresh is None and cached is not None and cached[0] == cur
        self._cache[key] = (cur, trusted)
        return cur, trusted

    def _remember(self, key: str, value: str, version: int, trusted: bool) -> None:
        self._cache[key] = (Entry(key, value, version), trusted)

    def _distrust(self, key: str) -> None:
        cached = self._cache.get(key)
        if cached is not None:
            self._cache[key] = (cached[0], False)

    def take(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        """Next address of the node's chunk, claiming chunks as needed; None at the pool's end."""
        key = r.chunk_key(pr.spec.name, owner.node or "")

        def step() -> Step[Lease]:
            ch, trusted = self._read(key)
            if ch is not None:
                outcome, lease = self._take_from(pr, owner, sticky_absent, ch, trusted)
                if outcome is not Outcome.EMPTY:
                    return outcome, lease
            return self._claim_chunk(pr, key, ch, trusted), None

        return self.txns.retry(f"allocating from the chunk of node {owner.node!r} in pool {pr.spec.name!r}", step)

    def _claim_chunk(self, pr: PoolRange, key: str, ch: Entry | None, trusted: bool) -> Outcome:
        """Move the next ``size`` offsets of the pool cursor into the node's chunk.

        STEPPED: claimed (take from it next); LOST: lost a race; EMPTY: the cursor is at the end.
        """
        store, skey = self.txns.store, r.pool_key(pr.spec.name, "state")
        if self._spent.get(pr.spec.name) == pr.last:
            return Outcome.EMPTY  # the cursor never moves back: no need to read it again
        st = store.get(skey)
        state = r.state_of(st.value if st else None)
        start = pr.next_usable(state["cursor"])
        if start is None:
            self._spent[pr.spec.name] = pr.last
            return Outcome.EMPTY
        end = min(start + self.chunk_len(pr), pr.last + 1)
        value = r.dumps({"start": start, "end": end, "cursor": start})
        cmp = [Compare(skey, st.version if st else 0), self._guard(key, ch)]
        if store.txn(cmp, {skey: r.dumps({"cursor": end, "seq": state["seq"]}), key: value}):
            self._remember(key, value, ch.version + 1 if ch else 1, trusted)
            return Outcome.STEPPED
        self._cache.pop(key, None)
        return Outcome.LOST

    def _split(self, pr: PoolRange, ch: Entry, own_key: str, own: Entry | None) -> Entry | None:
        """Move the upper half of what chunk ``ch`` has left into the node's own chunk; the
        new own chunk entry, or None (fewer than two left, or a race lost: the caller goes on).
        The own chunk is empty (the caller took from it first); its compare makes sure."""
        c = json.loads(ch.value)
        off = pr.next_usable(c["cursor"])
        if off is None or c["end"] - off < 2:
            return None
        mid = off + (c["end"] - off) // 2
        theirs = r.dumps({"start": c["start"], "end": mid, "cursor": c["cursor"]})
        mine = r.dumps({"start": mid, "end": c["end"], "cursor": mid})
        if not self.txns.store.txn(
            [self._guard(ch.key, ch), self._guard(own_key, own)], {ch.key: theirs, own_key: mine}
        ):
            self._distrust(own_key)
            return None
        version = own.version + 1 if own is not None else 1
        self._remember(own_key, mine, version, True)
        return Entry(own_key, mine, version)

    @staticmethod
    def _guard(key: str, ch: Entry | None) -> Compare:
        return Compare(key, ch.version, ch.value) if ch else Compare(key, 0)

    def _take_from(
        self, pr: PoolRange, owner: Owner, sticky_absent: bool, ch: Entry, trusted: bool, keep_fresh: bool = True
    ) -> Step[Lease]:
        """One address from chunk ``ch``: DONE, EMPTY, STEPPED (over a taken one) or LOST.

        ``keep_fresh``: on LOST, keep the chunk as just read for the retry (``_read``).
        """
        store = self.txns.store
        c = json.loads(ch.value)
        off = pr.next_usable(c["cursor"])
        if off is None or off >= c["end"]:
            return Outcome.EMPTY, None
        ip = pr.address(off)
        ikey = r.ip_key(pr.spec.name, ip)
        value = r.dumps({"start": c["start"], "end": c["end"], "cursor": off + 1})
        guard = self._guard(ch.key, ch)
        outcome, lease = self.txns.commit_claim(
            pr, ip, owner, [guard, Compare(ikey, 0)], {ch.key: value}, [], sticky_absent
        )
        if outcome is Outcome.DONE:
            self._remember(ch.key, value, ch.version + 1, trusted)
            return outcome, lease
        self._distrust(ch.key)
        cur = store.get(ch.key)
        holder = self.txns.taken(pr, ip) if cur == ch else None
        if holder is not None:
            # taken by an explicit request, a leftover taker or another pool of the
            # segment: step over it
            if self.txns.step_over(pr, holder, [guard], {ch.key: value}):
                self._remember(ch.key, value, ch.version + 1, False)
            return Outcome.STEPPED, None
        if cur is not None and keep_fresh:
            self._fresh[ch.key] = cur
        return Outcome.LOST, None

    def leftover(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        """Last fresh resort: unused addresses left in other nodes' chunks.

        From a chunk with two or more left, the node takes the upper half into its own chunk
        (one txn comparing both chunks), so its next allocations are one txn again instead
        of this scan each; from a chunk with one left, that one address.
        """
        own_key = r.chunk_key(pr.spec.name, owner.node or "")

        def step() -> Step[Lease]:
            chunks = self.txns.store.range(r.chunk_prefix(pr.spec.name))
            own = next((ch for ch in chunks if ch.key == own_key), None)
            if own is not None:  # another process of this node may have refilled it
                outcome, lease = self._take_from(pr, owner, sticky_absent, own, False, keep_fresh=False)
                if outcome is not Outcome.EMPTY:
                    return outcome, lease
            others = [ch for ch in chunks if ch.key != own_key]
            at = zlib.crc32((owner.node or "").encode()) % len(others) if others else 0
            for ch in others[at:] + others[:at]:  # not every needy node on the first chunk
                mine = self._split(pr, ch, own_key, own)
                if mine is not None:
                    outcome, lease = self._take_from(pr, owner, sticky_absent, mine, True)
                    return (Outcome.STEPPED, None) if outcome is Outcome.EMPTY else (outcome, lease)
                outcome, lease = self._take_from(pr, owner, sticky_absent, ch, False, keep_fresh=False)
                if outcome is not Outcome.EMPTY:
                    return outcome, lease  # LOST/STEPPED: the chunks moved, read them again
            return Outcome.EMPTY, None

        return self.txns.retry(f"allocating a left-over chunk address in pool {pr.spec.name!r}", step)
