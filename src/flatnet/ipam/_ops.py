"""Per-pool transactions of the allocator: take, claim, release, forget.

Each operation reads a few keys, then commits one ``txn`` whose compares guard what it
read (optimistic concurrency, etcd style). On a lost race it re-reads and tries again
after a short random sleep, a bounded number of times; nothing ever holds a lock across
a whole ADD. Store calls per operation do not depend on the pool's size: the pool is
never scanned, only its ``state`` cursor, the head of its FIFO and single addresses.
"""

from __future__ import annotations

import ipaddress
import json
import random
import time
from typing import Callable

from flatnet.errors import AddressUnavailable, StoreUnavailable
from flatnet.ipam import records as r
from flatnet.ipam._chunks import CHUNK_MIN_POOL, CHUNK_SIZE, NodeChunks
from flatnet.ipam.api import Compare, Entry, IPAddress, Lease, Owner, Store
from flatnet.ipam.pool import PoolRange


class OwnerHolds(Exception):
    """The attachment already holds a lease in this pool (found when a claim txn failed).

    ``Ipam.allocate`` skips the up-front lookup of the attachment's leases when it can, so
    a repeated ADD learns of its lease here, and answers it after a lookup after all.
    """


class PoolOps:
    """The store-level steps, shared by every public ``Ipam`` method."""

    def __init__(
        self, store: Store, attempts: int = 100, rng: random.Random | None = None,
        chunk_min_pool: int = CHUNK_MIN_POOL, chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.store = store
        self.attempts = attempts
        self.rng = rng or random.Random()
        self.chunks = NodeChunks(self, min_pool=chunk_min_pool, size=chunk_size)

    def _backoff(self, attempt: int) -> None:
        time.sleep(self.rng.uniform(0, min(0.05, 0.0005 * 2 ** min(attempt, 10))))

    def _contended(self, what: str) -> StoreUnavailable:
        return StoreUnavailable(
            f"{what}: lost {self.attempts} races in a row against other allocators; retry later",
        )

    # -- allocation ----------------------------------------------------------
    def _sticky_extra(self, pr: PoolRange, owner: Owner, ip: IPAddress) -> tuple[list[Compare], dict[str, str], bool]:
        """Record ``ip`` as the pod's sticky address when the pool is sticky and none is recorded."""
        if not (pr.spec.sticky and owner.pod):
            return [], {}, False
        key = r.sticky_key(pr.spec.name, owner.pod)
        cur = self.store.get(key)
        if cur is None:
            return [Compare(key, 0)], {key: str(ip)}, True
        return [Compare(key, cur.version, cur.value)], {}, cur.value == str(ip)

    def _commit_claim(
        self, pr: PoolRange, ip: IPAddress, owner: Owner, compares: list[Compare],
        puts: dict[str, str], deletes: list[str], sticky_known_absent: bool,
    ) -> Lease | None:
        """Add the lease records (and sticky record) to a claim txn and commit it."""
        name = pr.spec.name
        if sticky_known_absent:
            skey = r.sticky_key(name, owner.pod or "")
            s_cmp, s_put, sticky = [Compare(skey, 0)], {skey: str(ip)}, True
        else:
            s_cmp, s_put, sticky = self._sticky_extra(pr, owner, ip)
        rec, lease = r.new_lease(pr.spec, ip, owner, sticky)
        okey = r.owner_key(owner.container_id, owner.ifname, name)
        puts = {**puts, **s_put, r.ip_key(name, ip): rec, okey: rec}
        if self.store.txn(compares + s_cmp + [Compare(okey, 0)], puts, deletes):
            return lease
        if self.store.get(okey) is not None:
            raise OwnerHolds(okey)
        return None

    def claim(self, pr: PoolRange, ip: IPAddress, owner: Owner, why: str) -> Lease:
        """Take one specific address (requested, or the pod's sticky one) or explain who has it."""
        name = pr.spec.name
        ikey = r.ip_key(name, ip)
        for attempt in range(self.attempts):
            cur = self.store.get(ikey)
            deletes: list[str] = []
            if cur is not None:
                if not (r.is_reservation(cur.value) and json.loads(cur.value)["reserved_for"] == owner.pod):
                    raise AddressUnavailable(
                        f"{why} {ip} in pool {name!r} is not available: {r.describe_holder(cur.value)}",
                        details="release it first (delete that pod) or request another address",
                    )
                compares = [Compare(ikey, cur.version, cur.value)]
            else:
                fkey = r.freeidx_key(name, ip)
                fi = self.store.get(fkey)
                compares = [Compare(ikey, 0), Compare(fkey, fi.version if fi else 0)]
                if fi is not None:  # it sits in the reuse FIFO: take it out in the same txn
                    deletes = [fkey, r.free_key(name, int(fi.value))]
            lease = self._commit_claim(pr, ip, owner, compares, {}, deletes, False)
            if lease is not None:
                return lease
            self._backoff(attempt)
        raise self._contended(f"claiming {ip} in pool {name!r}")

    def take_next(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        """Next fresh address, else the oldest released one; None when the pool is exhausted.

        Large pools with a node-named owner go through the node's chunk (``_chunks``), so
        that nodes do not all contend on the one ``state`` key; others use the cursor here.
        """
        if owner.node and pr.total >= self.chunks.min_pool:
            return self.chunks.take(pr, owner, sticky_absent)
        name = pr.spec.name
        skey = r.pool_key(name, "state")
        attempt = 0  # counts lost races only; stepping over taken or stale entries is progress
        while attempt < self.attempts:
            st = self.store.get(skey)
            state = r.state_of(st.value if st else None)
            off = pr.next_usable(state["cursor"])
            if off is None:
                return self.take_free(pr, owner, sticky_absent)
            ip = pr.address(off)
            new_state = r.dumps({"cursor": off + 1, "seq": state["seq"]})
            cmp = [Compare(skey, st.version if st else 0), Compare(r.ip_key(name, ip), 0)]
            lease = self._commit_claim(pr, ip, owner, cmp, {skey: new_state}, [], sticky_absent)
            if lease is not None:
                return lease
            if self.store.get(r.ip_key(name, ip)) is not None:
                # an explicit request took this one ahead of the cursor: step over it
                self.store.txn([Compare(skey, st.version if st else 0)], {skey: new_state})
                continue
            self._backoff(attempt)
            attempt += 1
        raise self._contended(f"allocating from pool {name!r}")

    def take_free(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        """The oldest released address (head of the FIFO); None when the FIFO is empty."""
        name = pr.spec.name
        attempt = 0
        while attempt < self.attempts:
            head = self.store.range(r.pool_key(name, "free/"), limit=1)
            if not head:
                return None
            entry = head[0]
            ip = ipaddress.ip_address(entry.value)
            ikey = r.ip_key(name, ip)
            seq_deletes = [entry.key, r.freeidx_key(name, ip)]
            if ip.version != pr.spec.family or not pr.usable(pr.offset(ip)):
                # released under an older, wider config: drop it, it is no longer ours to give
                self.store.txn([Compare(entry.key, entry.version)], {}, seq_deletes)
                continue
            cmp = [Compare(entry.key, entry.version), Compare(ikey, 0)]
            lease = self._commit_claim(pr, ip, owner, cmp, {}, seq_deletes, sticky_absent)
            if lease is not None:
                return lease
            held = self.store.get(ikey)
            if held is not None:
                # held again without passing through this entry (a node's chunk handed it out
                # after a request-and-release): the entry is stale, drop it while still held;
                # whoever holds it pushes a fresh entry on release
                self.store.txn([Compare(entry.key, entry.version), Compare(ikey, held.version)],
                               {}, [entry.key])
                continue
            self._backoff(attempt)
            attempt += 1
        raise self._contended(f"allocating a released address from pool {name!r}")

    # -- release -------------------------------------------------------------
    def _push_free(
        self, name: str, ip: IPAddress, net: int
    ) -> tuple[list[Compare], dict[str, str]]:
        """Compares and puts that return ``ip`` to the FIFO, unless the cursor has not reached it."""
        skey = r.pool_key(name, "state")
        st = self.store.get(skey)
        state = r.state_of(st.value if st else None)
        cmp = [Compare(skey, st.version if st else 0)]
        if int(ip) - net >= state["cursor"]:
            return cmp, {}  # never-used territory: the cursor will hand it out in its turn
        seq = state["seq"]
        return cmp, {
            r.free_key(name, seq): str(ip),
            r.freeidx_key(name, ip): str(seq),
            skey: r.dumps({"cursor": state["cursor"], "seq": seq + 1}),
        }

    def release_record(self, record: str) -> Lease | None:
        """Release the lease whose JSON record is ``record`` (None if it is no longer held)."""
        lease = r.lease_from_record(record)
        name, ip = lease.pool, lease.address.ip
        net = int(lease.address.network.network_address)
        ikey = r.ip_key(name, ip)
        okey = r.owner_key(lease.owner.container_id, lease.owner.ifname, name)
        for attempt in range(self.attempts):
            ie, oe = self.store.get(ikey), self.store.get(okey)
            o_cmp = [Compare(okey, oe.version, record)] if oe and oe.value == record else []
            if ie is None or ie.value != record:
                if o_cmp:  # a dangling index entry: drop it
                    self.store.txn(o_cmp, {}, [okey])
                return None
            cmp = [Compare(ikey, ie.version, record)] + (o_cmp or [Compare(okey, 0)])
            pod = lease.owner.pod
            sk = self.store.get(r.sticky_key(name, pod)) if (lease.sticky and pod) else None
            if sk is not None and sk.value == str(ip):
                cmp.append(Compare(sk.key, sk.version, sk.value))
                ok = self.store.txn(cmp, {ikey: r.reserved_record(name, ip, pod or "")}, [okey])
            else:
                f_cmp, f_puts = self._push_free(name, ip, net)
                ok = self.store.txn(cmp + f_cmp, f_puts, [ikey, okey])
            if ok:
                return lease
            self._backoff(attempt)
        raise self._contended(f"releasing {ip} in pool {name!r}")

    def forget_sticky(self, name: str, pod: str, net: Callable[[], int]) -> IPAddress | None:
        """Drop the pod's sticky record; a reserved (unheld) address goes back to reuse."""
        skey = r.sticky_key(name, pod)
        for attempt in range(self.attempts):
            sk = self.store.get(skey)
            if sk is None:
                return None
            ip = ipaddress.ip_address(sk.value)
            ikey = r.ip_key(name, ip)
            ie = self.store.get(ikey)
            cmp = [Compare(skey, sk.version, sk.value)]
            if ie is not None and r.is_reservation(ie.value) and json.loads(ie.value)["reserved_for"] == pod:
                f_cmp, f_puts = self._push_free(name, ip, net())
                ok = self.store.txn(cmp + [Compare(ikey, ie.version, ie.value)] + f_cmp, f_puts, [skey, ikey])
            else:  # held right now (it returns to the FIFO on release) or already gone
                ok = self.store.txn(cmp, {}, [skey])
            if ok:
                return ip
            self._backoff(attempt)
        raise self._contended(f"forgetting the sticky address of {pod} in pool {name!r}")


def entry_is_lease(entry: Entry) -> bool:
    return not r.is_reservation(entry.value)
