"""Per-pool transactions of the allocator: take, claim, release, forget.

Each operation reads a few keys, then commits one ``txn`` whose compares guard what it
read (optimistic concurrency, etcd style), through ``Txns.retry`` (``_txn``): on a lost
race it re-reads and tries again after a short random sleep, a bounded number of times;
nothing ever holds a lock across a whole ADD. Store calls per operation do not depend on
the pool's size: the pool is never scanned, only its cursor (or the node's chunk), the
head of its FIFO, the head of its reservation queue and single addresses.

Where an address comes from, in order: a never-used one (``FreshSource``: the pool cursor,
or the node's chunk of a large pool), the oldest released one (the FIFO), a never-used one
parked in another node's chunk, and only then a quarantined address whose time is up
(``_quarantine``) or the oldest reservation (``_held``).
"""

from __future__ import annotations

import ipaddress
import json
import random
from typing import Callable, cast

from flatnet.errors import AddressUnavailable
from flatnet.ipam import records as r
from flatnet.ipam._chunks import CHUNK_MIN_POOL, CHUNK_SIZE, MAX_LANES, ChunkSource
from flatnet.ipam._fresh import CursorSource, FreshSource
from flatnet.ipam._held import Held
from flatnet.ipam._quarantine import Quarantine
from flatnet.ipam._txn import Outcome, OwnerHolds, SegDrop, Step, Txns
from flatnet.ipam.api import DEFAULT_STICKY_HOLD, Compare, IPAddress, Lease, Owner, Store
from flatnet.ipam.pool import PoolRange

__all__ = ["PoolOps", "OwnerHolds", "HeldInSegment"]


class HeldInSegment(AddressUnavailable):
    """The address is held by another pool of the same segment (VLAN)."""


#: the largest pool that looks for gaps left by other pools of its segment (``take_gap``)
GAP_SCAN_MAX = 65536


class PoolOps:
    """The store-level steps, shared by every public ``Ipam`` method."""

    def __init__(
        self,
        store: Store,
        attempts: int = 100,
        rng: random.Random | None = None,
        chunk_min_pool: int = CHUNK_MIN_POOL,
        chunk_size: int = CHUNK_SIZE,
        max_lanes: int = MAX_LANES,
    ) -> None:
        self.store = store
        self.txns = Txns(store, attempts, rng)
        self.cursor = CursorSource(self.txns)
        self.chunks = ChunkSource(self.txns, min_pool=chunk_min_pool, size=chunk_size, max_lanes=max_lanes)
        self.held = Held(self.txns, self._push_free)
        self.quarantine = Quarantine(self.txns, self._push_free)

    # -- allocation ----------------------------------------------------------
    def source(self, pr: PoolRange, owner: Owner) -> FreshSource:
        """Large pools with a node-named owner: the node's chunk; others: the pool cursor."""
        return self.chunks if self.chunks.serves(pr, owner) else self.cursor

    def take_next(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        """A never-used address, else the oldest released one; None when neither is left.

        Reservations are not touched here: ``take_over`` comes after every pool had its turn.
        """
        src = self.source(pr, owner)
        for take in (src.take, self.take_free, src.leftover):
            lease = take(pr, owner, sticky_absent)
            if lease is not None:
                return lease
        return None

    def take_over(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        """When fresh and released addresses are gone: a quarantined address whose time is
        up (``_quarantine``), else the oldest reservation (``_held``); None when neither."""
        if self.quarantine.sweep(pr.spec.name, pr.net):
            lease = self.take_free(pr, owner, sticky_absent)
            if lease is not None:
                return lease
        return self.held.take_over(pr, owner, sticky_absent)

    def take_gap(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        """A pool sharing its segment, out of fresh and released addresses: an address of its
        range that no pool of the segment holds (another pool released it into its own FIFO
        after this pool's cursor had stepped over it). Reads the segment's keys, so only for
        pools marked shared (``Txns.step_over``) of at most ``GAP_SCAN_MAX`` addresses."""
        name = pr.spec.name
        if pr.total > GAP_SCAN_MAX or self.store.get(r.pool_key(name, "shared")) is None:
            return None
        held = {r.seg_parts(e.key)[1] for e in self.store.range(r.seg_prefix(pr.spec.vlan))}
        off = pr.next_usable(pr.first)
        while off is not None:
            ip = pr.address(off)
            if ip not in held:
                try:
                    return self.claim(pr, ip, owner, "free address")
                except AddressUnavailable:
                    pass  # taken meanwhile: the next gap
            off = pr.next_usable(off + 1)
        return None

    def claim(self, pr: PoolRange, ip: IPAddress, owner: Owner, why: str) -> Lease:
        """Take one specific address (requested, or the pod's sticky one) or explain who has it.

        A requested address reserved for another pod is taken over (a reservation never
        fails an ADD); one held by a live attachment is refused.
        """
        name = pr.spec.name
        ikey = r.ip_key(name, ip)

        def step() -> Step[Lease]:
            cur = self.store.get(ikey)
            deletes: list[str] = []
            puts: dict[str, str] = {}
            if cur is not None:
                res = r.reservation_of(cur.value)
                if res is not None and res["reserved_for"] == owner.pod:
                    compares = [Compare(ikey, cur.version, cur.value)]
                    if res.get("held"):
                        deletes = [res["held"]]
                elif res is not None and why == "requested address":
                    compares, deletes, puts = self.held.take_over_one(pr, ip, owner, cur)
                else:
                    raise AddressUnavailable(
                        f"{why} {ip} in pool {name!r} is not available: {r.describe_holder(cur.value)}",
                        details="release it first (delete that pod) or request another address",
                    )
            else:
                gkey = r.seg_key(pr.spec.vlan, ip)
                seg = self.store.get(gkey)
                if seg is not None and seg.value != name:
                    raise HeldInSegment(
                        f"{why} {ip} is not available: pool {seg.value!r} of the same segment "
                        f"(VLAN {pr.spec.vlan if pr.spec.vlan is not None else 'untagged'}) has it; "
                        + self._holder_in(seg.value, ip),
                        details="an address is held once per VLAN, whatever pool or network took it; "
                        "release it there first (delete that pod) or request another address",
                    )
                fkey = r.freeidx_key(name, ip)
                fi = self.store.get(fkey)
                compares = [Compare(ikey, 0), Compare(fkey, fi.version if fi else 0)]
                if seg is not None:  # names this pool but no ips/ record (never written so): retake it
                    compares.append(Compare(gkey, seg.version, seg.value))
                if fi is not None:  # it sits in the reuse FIFO: take it out in the same txn
                    deletes = [fkey, r.free_key(name, int(fi.value))]
            return self.txns.commit_claim(pr, ip, owner, compares, puts, deletes, False)

        lease = self.txns.retry(f"claiming {ip} in pool {name!r}", step)
        assert lease is not None  # claim steps never answer EMPTY
        return lease

    def _holder_in(self, pool: str, ip: IPAddress) -> str:
        cur = self.store.get(r.ip_key(pool, ip))
        return r.describe_holder(cur.value) if cur is not None else "its holder is gone (retry)"

    def take_free(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        """The oldest released address (head of the FIFO); None when the FIFO is empty."""
        name = pr.spec.name

        def step() -> Step[Lease]:
            head = self.store.range(r.pool_key(name, "free/"), limit=1)
            if not head:
                return Outcome.EMPTY, None
            entry = head[0]
            ip = ipaddress.ip_address(entry.value)
            ikey = r.ip_key(name, ip)
            seq_deletes = [entry.key, r.freeidx_key(name, ip)]
            if ip.version != pr.spec.family or not pr.usable(pr.offset(ip)):
                # released under an older, wider config: drop it, it is no longer ours to give
                self.store.txn([Compare(entry.key, entry.version)], {}, seq_deletes)
                return Outcome.STEPPED, None
            cmp = [Compare(entry.key, entry.version), Compare(ikey, 0)]
            outcome, lease = self.txns.commit_claim(pr, ip, owner, cmp, {}, seq_deletes, sticky_absent)
            if outcome is Outcome.LOST:
                held = self.store.get(ikey)
                seg = self.store.get(r.seg_key(pr.spec.vlan, ip)) if held is None else None
                if seg is not None and seg.value != name:
                    # another pool of the segment holds it: when it lets go, the address goes
                    # to that pool's FIFO (or back to this one through ``take_gap``)
                    shared = {r.pool_key(name, "shared"): "1"}
                    self.store.txn([Compare(entry.key, entry.version)], shared, [entry.key, r.freeidx_key(name, ip)])
                    return Outcome.STEPPED, None
                if held is not None:
                    # held again without passing through this entry (a node's chunk handed it
                    # out after a request-and-release): the entry is stale, drop it while still
                    # held; whoever holds it pushes a fresh entry on release
                    self.store.txn([Compare(entry.key, entry.version), Compare(ikey, held.version)], {}, [entry.key])
                    return Outcome.STEPPED, None
            return outcome, lease

        return self.txns.retry(f"allocating a released address from pool {name!r}", step)

    # -- release -------------------------------------------------------------
    def _push_free(self, name: str, ip: IPAddress, net: int) -> tuple[list[Compare], dict[str, str]]:
        """Compares and puts that return ``ip`` to the FIFO, unless the cursor has not reached it."""
        skey = r.pool_key(name, "state")
        st = self.store.get(skey)
        state = r.state_of(st.value if st else None)
        cmp = [Compare(skey, st.version if st else 0)]
        if int(ip) - net >= state["cursor"] and name not in self.chunks.laned:
            lkey = r.laned_key(name)
            if self.store.get(lkey) is None:
                # never-used territory: the cursor will hand it out in its turn (and no lane
                # of a chunked pool has passed it: the txn checks ``laned`` is still absent)
                return cmp + [Compare(lkey, 0)], {}
            self.chunks.laned.add(name)
        seq = state["seq"]
        return cmp, {
            r.free_key(name, seq): str(ip),
            r.freeidx_key(name, ip): str(seq),
            skey: r.dumps({**state, "seq": seq + 1}),
        }

    def release_record(self, record: str) -> Lease | None:
        """Release the lease whose JSON record is ``record`` (None if it is no longer held).

        A sticky lease whose pod still has this address recorded becomes a reservation for
        that pod (``_held``); any other goes back to the FIFO.
        """
        lease = r.lease_from_record(record)
        name, ip = lease.pool, lease.address.ip
        net = int(lease.address.network.network_address)
        ikey = r.ip_key(name, ip)
        okey = r.owner_key(lease.owner.container_id, lease.owner.ifname, name)
        hold = float(json.loads(record).get("hold", DEFAULT_STICKY_HOLD))
        reserved = False
        seg = SegDrop(self.txns, name, lease.vlan, ip)

        def step() -> Step[Lease]:
            nonlocal reserved
            ie, oe = self.store.get(ikey), self.store.get(okey)
            o_cmp = [Compare(okey, oe.version, record)] if oe and oe.value == record else []
            if ie is None or ie.value != record:
                if o_cmp:  # a dangling index entry: drop it
                    self.store.txn(o_cmp, {}, [okey])
                return Outcome.DONE, None
            cmp = [Compare(ikey, ie.version, record)] + (o_cmp or [Compare(okey, 0)])
            pod = lease.owner.pod
            sk = self.store.get(r.sticky_key(name, pod)) if (lease.sticky and pod) else None
            reserved = sk is not None and sk.value == str(ip)
            if sk is not None and reserved:
                h_cmp, h_puts = self.held.reserve(name, ip, pod or "", hold, lease.vlan)
                cmp += [Compare(sk.key, sk.version, sk.value)] + h_cmp
                ok = self.store.txn(cmp, h_puts, [okey])
            else:
                f_cmp, f_puts = self._push_free(name, ip, net)
                ok = self.store.txn(cmp + f_cmp + seg.compares(), f_puts, [ikey, okey] + seg.deletes())
                if not ok and seg.lost():
                    return Outcome.STEPPED, None
            return (Outcome.DONE, lease) if ok else (Outcome.LOST, None)

        out = self.txns.retry(f"releasing {ip} in pool {name!r}", step)
        if out is not None and reserved:
            self.held.sweep(name, net)
        return out

    def forget_sticky(self, name: str, pod: str, net: Callable[[], int]) -> IPAddress | None:
        """Drop the pod's sticky record; a reserved (unheld) address goes back to reuse."""
        skey = r.sticky_key(name, pod)
        segs: dict[IPAddress, SegDrop] = {}

        def step() -> Step[IPAddress]:
            sk = self.store.get(skey)
            if sk is None:
                return Outcome.DONE, None
            ip = ipaddress.ip_address(sk.value)
            ikey = r.ip_key(name, ip)
            ie = self.store.get(ikey)
            cmp = [Compare(skey, sk.version, sk.value)]
            res = r.reservation_of(ie.value) if ie is not None else None
            if ie is not None and res is not None and res["reserved_for"] == pod:
                f_cmp, f_puts = self._push_free(name, ip, net())
                seg = segs.get(ip) or segs.setdefault(
                    ip, SegDrop(self.txns, name, self.txns.vlan_of(name, ie.value), ip)
                )
                deletes = [skey, ikey] + ([res["held"]] if res.get("held") else []) + seg.deletes()
                cmp += [Compare(ikey, ie.version, ie.value)] + f_cmp + seg.compares()
                ok = self.store.txn(cmp, f_puts, deletes)
                if not ok and seg.lost():
                    return Outcome.STEPPED, None
            else:  # held right now (it returns to the FIFO on release) or already gone
                ok = self.store.txn(cmp, {}, [skey])
            return (Outcome.DONE, ip) if ok else (Outcome.LOST, None)

        # mypy solves T of a union alias to the addresses' common base: say which it is
        return cast(
            "IPAddress | None", self.txns.retry(f"forgetting the sticky address of {pod} in pool {name!r}", step)
        )
