"""Node-affine chunks of large pools: allocations of different nodes never touch one key.

With one cursor per pool (``state``), every allocation in the cluster compares that one
key, so concurrent allocators lose races to each other and a pool serves ~150 alloc/s on
etcd however many nodes ask. Like Calico's block affinity, a node instead claims
``CHUNK_SIZE`` consecutive offsets from the pool's cursor (one txn on ``state`` per chunk)
and records them under ``pools/<pool>/chunk/<node>``; it then hands out addresses from
its chunk with a txn comparing only that key (and the address's key, create-only).

Chunks come from lanes: the pool's offsets cut into up to ``MAX_LANES`` stretches of at least
``LANE_MIN_CHUNKS`` chunks, each with its own cursor (lane 0's is ``state``'s, the others'
``pools/<pool>/lane/<i>``); a lane's last chunk takes what is left of it, so no lane ends in a
claim for one or two addresses. A node claims from lane 0 and the lanes after it in order, so
a quiet pool fills address after address as with one cursor; a node that loses a claim race
moves to the lane its name hashes to (claimed as if untouched: no read of its cursor first), so
nodes claiming at the same moment stop comparing the same key; one that loses again there
shares that lane with another node, and reads every lane's cursor to pick another as below. A
node whose lane runs dry reads every lane's cursor once and makes the lane it claims from its
own. In a pool other nodes claim from too (it raced, or the cursors it read show a lane another
process claimed from), it takes a lane no node claimed from yet, in an order its name picks,
then a lane with a whole chunk left in that order too, then the one with most room, so nodes
whose lanes ran dry at the same moment spread out instead of racing again on the next lane or
on the one with most room; a pool only this process fills goes on in order. A 1k pool has 35
lanes, more than the 32 nodes that share it in the bench: 1.38 -> 1.22 requests per
allocation, p99 ~90 -> ~55 ms; with the moves above, 1.20 and ~42 ms.

A node claims again with the lane cursor it last wrote, unread; a claim that loses gets the
cursor and its chunk back in the failed txn's own request (``txn_else_read``: etcd's failure
branch); lane 0's cursor (``state``) is cached the same way, and a scan of the lanes uses it as
cached too (a stale one costs at most a failed claim in lane 0). The claim's txn also makes the new
chunk's first address the asking pod's lease, so in a small pool (a claim every 7 allocations
in a 1k pool) a claim costs no request of its own. Once any lane other than 0 moved
(``pools/<pool>/laned``), ``state``'s cursor no longer tells never-used addresses from used
ones, and every release goes to the FIFO (a stale FIFO entry for an address a lane hands out
again is dropped when it comes up).

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
gone only when every lane's cursor is at its end *and* no node's chunk has an unused address left:
``leftover`` takes one from another node's remainder (bounded by the node count), starting
at a place that depends on the node, so nodes short of addresses do not all queue on the
same chunk. That is how parked addresses are given back under scarcity: no node keeps them
from another that needs them, and no ADD fails while any chunk still has one.

``take_many`` and ``refill`` serve a batch of one node's concurrent allocations in one txn
(``flatnet.ipam._batch``).
"""

from __future__ import annotations

import json
import zlib

from flatnet.ipam import records as r
from flatnet.ipam._txn import Outcome, OwnerHolds, Step, Txns
from flatnet.ipam.api import Compare, Entry, Lease, Owner, txn_else_read
from flatnet.ipam.pool import PoolRange

CHUNK_SIZE = 64  # consecutive offsets a node claims at once: one ``state`` txn per 64 allocations
CHUNK_MIN_POOL = 64  # usable addresses from which a pool is chunked (below, the cursor: few allocators)
SMALL_CHUNK = 4  # the smallest chunk: one ``state`` txn per 4 allocations
CHUNKS_PER_POOL = 128  # a small pool's chunk is this fraction of it (a /24: 4 addresses; 4k: 32)
MAX_LANES = 64  # chunks are claimed from up to this many lanes of the pool, each with its own cursor
LANE_MIN_CHUNKS = 4  # a lane is at least this many chunks long (a /24: 15 lanes; 1k: 35; 4k: 32)


class ChunkSource:
    """A ``FreshSource``: the owner's node chunk; keeps a per-process cache of each chunk.

    The cache saves the read of the chunk before each allocation when this process is the
    only one allocating for that node (a node agent). It is trusted only while it proves
    right: after a lost compare the chunk is read first, until a read finds the cache was
    still current (so several processes sharing a node cost a read, not a failed txn).
    """

    def __init__(
        self, txns: Txns, min_pool: int = CHUNK_MIN_POOL, size: int = CHUNK_SIZE, max_lanes: int = MAX_LANES
    ) -> None:
        if size < 1 or min_pool < 1 or max_lanes < 1:
            raise ValueError(
                f"chunks: size, min_pool and max_lanes must be positive, got {size}, {min_pool}, {max_lanes}"
            )
        self.txns = txns
        self.min_pool = min_pool
        self.size = size
        self.max_lanes = max_lanes
        #: (pool, node) -> the lane the node claims from first: lane 0 (the pool's order,
        #: address after address) until it lost a claim race, then the lane its name hashes to
        self._home: dict[tuple[str, str], int] = {}
        #: pools this process saw (or made) ``laned``: no need to write it again
        self.laned: set[str] = set()
        self._cache: dict[str, tuple[Entry, bool]] = {}  # chunk key -> (entry, trusted)
        #: chunk key -> the entry a lost race just read: the retry uses it instead of reading
        #: the chunk again (once; it never makes the cache trusted)
        self._fresh: dict[str, Entry] = {}
        #: lane key (lanes >= 1) -> its cursor entry as this process last saw or wrote it: a
        #: node claiming again from its lane commits without reading the cursor first
        self._lanes: dict[str, Entry] = {}
        #: (pool, lane) -> (its last offset, lanes), once the lane's cursor was seen at its end
        #: (a widened range has another last offset, so it is read again)
        self._spent: dict[tuple[str, int], tuple[int, int]] = {}
        #: (pool, lane) this process claimed a chunk from: the lanes >= 1 a scan finds claimed
        #: from that are not among them say other nodes claim in the pool (``_others_in``)
        self._claimed: set[tuple[str, int]] = set()
        #: (pool, node) whose next claim reads every lane's cursor first (``_claim_chunk``)
        self._rescan: set[tuple[str, str]] = set()

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
            # the claim also takes the new chunk's first address for the owner, in its own txn
            return self._claim_chunk(pr, owner.node or "", key, ch, trusted, first=(owner, sticky_absent))

        return self.txns.retry(f"allocating from the chunk of node {owner.node!r} in pool {pr.spec.name!r}", step)

    # -- lanes: where chunks come from -------------------------------------------
    def lanes(self, pr: PoolRange) -> int:
        """How many lanes the pool's offsets are cut into: up to ``max_lanes``, each at least
        ``LANE_MIN_CHUNKS`` chunks long (a pool too small for two is one lane: ``state``)."""
        return max(1, min(self.max_lanes, pr.total // (self.chunk_len(pr) * LANE_MIN_CHUNKS)))

    @staticmethod
    def lane_bounds(pr: PoolRange, lane: int, lanes: int) -> tuple[int, int]:
        """Offsets [lo, hi) of lane ``lane`` of ``lanes``."""
        span = pr.last - pr.first + 1
        return pr.first + span * lane // lanes, pr.first + span * (lane + 1) // lanes

    def _claim_chunk(
        self,
        pr: PoolRange,
        node: str,
        key: str,
        ch: Entry | None,
        trusted: bool,
        length: int = 0,
        first: tuple[Owner, bool] | None = None,
    ) -> Step[Lease]:
        """Move the next chunk of offsets into the node's chunk, from the node's home lane first.

        Nodes claim from lane 0 and the lanes after it in order, so a pool fills address after
        address as with one cursor, until a node loses a claim race: from then on it starts at
        the lane its name hashes to, so nodes claiming at the same moment compare different
        keys (one ``state`` key for the whole pool had 32 clients of a 1k pool queue on it:
        issue 21). It moves on to the next lane when one is used up.
        ``first`` (owner, sticky_absent): the claim's txn also makes the chunk's first address
        that owner's lease (``_claim_in_lane``), so a claim costs no request of its own.
        DONE with that lease; STEPPED: claimed (take from it next); LOST: lost a race; EMPTY:
        every lane is used up.
        """
        lanes, name = self.lanes(pr), pr.spec.name
        length = length or self.chunk_len(pr)
        raced = (name, node) in self._home
        own = self._home.get((name, node), 0) % lanes
        # a node that lost a race in the lane it moved to after an earlier loss shares that
        # lane with another: it reads the lanes and takes one by ``_rank``, not the same again
        rescan = (name, node) in self._rescan
        self._rescan.discard((name, node))
        # a lane's cursor never moves back: one seen at its end is not read again
        todo = [ln for ln in ((own + i) % lanes for i in range(lanes)) if not self._is_spent(pr, ln, lanes)]
        read: dict[int, Entry | None] | None = None  # every lane's cursor, read at once
        while todo:
            if (todo[0] != own or rescan) and read is None:
                # the node's own lane is used up: one range read of every lane's cursor, not
                # a read per lane, to find the next with room; ``state`` as this process last
                # saw it (read only if never seen): a stale one costs a failed claim in lane 0
                # at worst, which reads it back
                st = self._state(name)
                lanes_read = self.txns.store.range(r.pool_key(name, "lane/"))
                got = read = {0: st, **{int(e.key.rsplit("/", 1)[1]): e for e in lanes_read}}
                self._lanes.update({e.key: e for e in lanes_read})
                if st is not None:
                    self._lanes[st.key] = st
                if raced or self._others_in(name, got):
                    # nodes whose lanes ran dry would all walk on to the lane after theirs and
                    # race there again: in a pool other nodes claim from too, a node takes a
                    # lane nobody claimed from yet (a pool only this process fills: in order)
                    todo.sort(key=lambda ln: self._rank(pr, node, ln, lanes, got))
            lane = todo.pop(0)
            blind = read is None and self._unread(name, lane)  # claimed without reading its cursor
            outcome, lease = self._claim_in_lane(pr, lane, lanes, key, ch, trusted, read, length, first)
            if outcome is Outcome.LOST and lanes > 1:
                if not raced:
                    # another node claimed from this lane at the same moment: from now on
                    # this node starts at the lane its name hashes to (or, that one used up,
                    # another its name picks), away from the others
                    self._home[(name, node)] = self._away(pr, node, lanes)
                elif read is None and not blind:
                    # lost again, in a lane it claimed from before: it shares that lane with
                    # another node; its next claim reads every lane's cursor and takes the
                    # lane ``_rank`` picks (a blind claim that found the lane in use only
                    # learnt its cursor: it claims there again)
                    self._rescan.add((name, node))
            elif outcome in (Outcome.STEPPED, Outcome.DONE):
                self._claimed.add((name, lane))
                if lane != own:
                    # its own lane is used up: the lane it claimed from is its lane from now
                    # on, so its next claim reads one cursor rather than every lane's
                    self._home[(name, node)] = lane
            if outcome is not Outcome.EMPTY:
                return outcome, lease
            self._spent[(name, lane)] = (pr.last, lanes)
        return Outcome.EMPTY, None

    def _state(self, name: str) -> Entry | None:
        """The pool's ``state`` as this process last saw it; read only if it never did."""
        skey = r.pool_key(name, "state")
        return self._lanes[skey] if skey in self._lanes else self.txns.store.get(skey)

    def _unread(self, name: str, lane: int) -> bool:
        """Whether a claim in lane ``lane`` (no scan at hand) commits without reading the cursor
        first, as if nobody claimed from the lane yet: a lane >= 1 this process never saw, once
        it saw ``state`` (the lane's first claim starts after its cursor). If somebody did claim
        there, the compare fails and brings the cursor back, one request as a read would be."""
        return bool(lane) and r.lane_key(name, lane) not in self._lanes and r.pool_key(name, "state") in self._lanes

    def _is_spent(self, pr: PoolRange, lane: int, lanes: int) -> bool:
        return self._spent.get((pr.spec.name, lane)) == (pr.last, lanes)

    def _away(self, pr: PoolRange, node: str, lanes: int) -> int:
        """The lane a node that lost a claim race moves to: the one its name hashes to, or
        when this process saw that one used up, the next its name picks (bounded)."""
        for k in range(lanes):
            lane = zlib.crc32(f"{node}/{k}".encode() if k else node.encode()) % lanes
            if not self._is_spent(pr, lane, lanes):
                return lane
        return zlib.crc32(node.encode()) % lanes

    def _others_in(self, name: str, read: dict[int, Entry | None]) -> bool:
        """Whether the cursors in ``read`` show a lane >= 1 claimed from by another process."""
        return any(ln and e is not None and (name, ln) not in self._claimed for ln, e in read.items())

    def _rank(self, pr: PoolRange, node: str, lane: int, lanes: int, read: dict[int, Entry | None]) -> tuple[int, int]:
        """Where lane ``lane`` comes in the walk of a node in a pool other nodes claim from (it
        raced, or ``_others_in``), by the cursors in ``read``:
        lanes no node claimed from yet first, in an order the node's name picks (nodes whose
        lanes ran dry at the same moment go to different ones: "the one with most room" sent
        them all to the same, and a 1k pool at 32 clients lost a claim race for every chunk
        it claimed), then lanes with a whole chunk left in that order too, then the others,
        most room first."""
        room = self._room(pr, lane, lanes, read)
        if lane and read.get(lane) is None and room:
            return 0, zlib.crc32(f"{node}/{lane}".encode())
        if room >= self.chunk_len(pr):
            # lanes with a whole chunk left, in the node's order too: by room alone, every node
            # of a pool nearly full went to the same lane
            return 1, zlib.crc32(f"{node}/{lane}".encode())
        return 2, -room

    def _room(self, pr: PoolRange, lane: int, lanes: int, read: dict[int, Entry | None]) -> int:
        """Offsets lane ``lane`` has left by the cursors in ``read``."""
        lo, hi = self.lane_bounds(pr, lane, lanes)
        cur = read.get(lane)
        if lane == 0 or cur is None:  # a lane's first claim starts after state's cursor too
            st = read.get(0)
            at = r.state_of(st.value if st else None)["cursor"]
        else:
            at = json.loads(cur.value)["cursor"]
        return max(0, hi - max(at, lo))

    def _claim_in_lane(
        self,
        pr: PoolRange,
        lane: int,
        lanes: int,
        key: str,
        ch: Entry | None,
        trusted: bool,
        read: dict[int, Entry | None] | None,
        length: int,
        first: tuple[Owner, bool] | None = None,
    ) -> Step[Lease]:
        """One chunk of ``length`` offsets from lane ``lane`` (its cursor and ``state`` as in
        ``read``, else as this process last saw it, else read now).

        With ``first`` (owner, sticky_absent) the same txn makes the chunk's first address the
        owner's lease (DONE); when only that address's part failed (taken by an explicit request
        or another pool of the segment: the lane and the chunk are as they were), the chunk is
        claimed alone and the caller steps over the address as usual.
        """
        store, name = self.txns.store, pr.spec.name
        lkey = r.lane_key(name, lane)
        lo, hi = self.lane_bounds(pr, lane, lanes)
        if read is not None:
            cur = read.get(lane)
        elif lkey in self._lanes:
            # as this process last saw or wrote it: a stale one fails the compare, and the
            # failed txn brings the cursor back (lane 0, ``state``, also moves on releases)
            cur = self._lanes[lkey]
        elif self._unread(name, lane):
            cur = None  # the lane a node that lost a race moves to, never seen here
        else:
            cur = store.get(lkey)
        puts: dict[str, str] = {}
        if lane == 0:  # the pool's state: its cursor, and the FIFO's sequence kept as it is
            state = r.state_of(cur.value if cur else None)
            at = state["cursor"]
        elif cur is not None:
            state, at = {}, json.loads(cur.value)["cursor"]
        else:
            # a lane's first claim: a pool used before it had lanes has its state cursor past
            # addresses it handed out; start after them
            st = read.get(0) if read is not None else self._state(name)
            state, at = {}, r.state_of(st.value if st else None)["cursor"]
        if name not in self.laned and lane:
            puts[r.laned_key(name)] = "1"  # the FIFO must take every release from now on
        start = pr.next_usable(max(at, lo))
        if start is None or start >= hi:
            return Outcome.EMPTY, None
        end = min(start + length, hi)
        if hi - end < length:
            # the lane's last chunk takes the rest: a lane of 29 offsets in chunks of 7 left
            # one offset at its end, a whole claim for one address
            end = hi
        compares = [Compare(lkey, cur.version if cur else 0), self._guard(key, ch)]
        puts[lkey] = r.dumps({**state, "cursor": end})
        # with ``first``, the chunk's first offset is taken in this txn: its cursor is past it
        cursor = start + 1 if first is not None else start
        value = r.dumps({"start": start, "end": end, "cursor": cursor})
        puts[key] = value
        reads = [lkey, key]
        lease: Lease | None = None
        okey = ""
        if first is not None:
            ip = pr.address(start)
            compares, puts, lease, okey = self.txns.claim_ops(
                pr, ip, first[0], compares + [Compare(r.ip_key(name, ip), 0)], puts, first[1]
            )
            reads.append(okey)
        ok, seen = txn_else_read(store, compares, puts, reads)
        if ok:
            if lane:
                self.laned.add(name)
            self._lanes[lkey] = Entry(lkey, puts[lkey], cur.version + 1 if cur else 1)
            # a chunk this txn created (none was there) is exactly as cached: trust it
            self._remember(key, value, ch.version + 1 if ch else 1, trusted or ch is None)
            return (Outcome.DONE, lease) if lease is not None else (Outcome.STEPPED, None)
        if okey and seen.get(okey) is not None:
            raise OwnerHolds(okey)
        # lost: the txn's failure branch read the lane's cursor and the chunk as they are now,
        # for the retry (no reads after the loss)
        now, chunk = seen.get(lkey), seen.get(key)
        if first is not None and now == cur and chunk == ch:
            # the lane and the chunk are as they were: the first address (or the pod's sticky
            # record) was the cause; claim the chunk alone, the take steps over the address
            return self._claim_in_lane(pr, lane, lanes, key, ch, trusted, read, length)
        if now is not None:
            self._lanes[lkey] = now
        else:
            self._lanes.pop(lkey, None)
        if ch is not None and chunk == ch:
            self._remember(key, ch.value, ch.version, trusted)  # the lane moved, not the chunk
        elif chunk is not None:
            self._distrust(key)
            self._fresh[key] = chunk
        else:
            self._cache.pop(key, None)
        return Outcome.LOST, None

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

    def refill(self, pr: PoolRange, node: str, want: int) -> Outcome:
        """A batch found the node's chunk used up: claim a new one of at least ``want``
        offsets (``chunk_len`` if that is more). STEPPED, LOST or EMPTY (every lane used up)."""
        key = r.chunk_key(pr.spec.name, node)
        ch, trusted = self._read(key)
        return self._claim_chunk(pr, node, key, ch, trusted, max(want, self.chunk_len(pr)))[0]

    def take_many(self, pr: PoolRange, owners: list[Owner]) -> tuple[list[Lease], bool]:
        """Addresses for the first owners (all of one node, none sticky) from the node's chunk,
        in one txn: as many as the chunk has left. Also says whether the chunk is used up
        now. No leases when it was, or the txn failed: the callers decide (``_batch``)."""
        key = r.chunk_key(pr.spec.name, owners[0].node or "")
        ch, trusted = self._read(key)
        if ch is None:
            return [], True
        c = json.loads(ch.value)
        offsets: list[int] = []
        off = pr.next_usable(c["cursor"])
        while off is not None and off < c["end"] and len(offsets) < len(owners):
            offsets.append(off)
            off = pr.next_usable(off + 1)
        used_up = off is None or off >= c["end"]  # the chunk has nothing after these
        if not offsets:
            return [], True
        value = r.dumps({"start": c["start"], "end": c["end"], "cursor": offsets[-1] + 1})
        compares, puts, leases = [self._guard(key, ch)], {key: value}, []
        name = pr.spec.name
        for off, owner in zip(offsets, owners, strict=False):  # as many owners as offsets found
            ip = pr.address(off)
            rec, lease = r.new_lease(pr.spec, ip, owner, False)
            ikey, gkey = r.ip_key(name, ip), r.seg_key(pr.spec.vlan, ip)
            okey = r.owner_key(owner.container_id, owner.ifname, name)
            compares += [Compare(ikey, 0), Compare(gkey, 0), Compare(okey, 0)]
            puts.update({ikey: rec, okey: rec, gkey: name})
            leases.append(lease)
        if self.txns.store.txn(compares, puts):
            self._remember(key, value, ch.version + 1, trusted)
            return leases, used_up
        self._distrust(key)
        return [], False

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
