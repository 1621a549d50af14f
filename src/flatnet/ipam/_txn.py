"""The one retry loop and the one claim commit every allocation step goes through.

Every store-level step reads a few keys, then commits one ``txn`` whose compares guard
what it read (optimistic concurrency, etcd style). A step says how it went with an
``Outcome``; ``Txns.retry`` turns outcomes into "answer", "back off and try again" or
"nothing here", with a bounded number of lost races. ``Txns.commit_claim`` is the txn that
turns an address into a lease: lease record at ``ips/<ip>`` (guarded by the caller's
compares), the same record under ``owners/...`` (create-only), and the pod's sticky record.

The segment key (``seg/<vlan>/<ip>``, ``records.seg_key``) makes an address one holder's in
its whole L2 segment: a claim that creates ``ips/<ip>`` also creates the segment key
(create-only, in the same txn), so two pools sharing a subnet cannot both take an address;
every txn that deletes ``ips/<ip>`` deletes the segment key with it (``SegDrop``), guarded
by "it still names this pool" so a store that held duplicates before the key existed never
frees the other holder's address.
"""

from __future__ import annotations

import enum
import json
import random
import time
from typing import Callable, TypeVar

from flatnet.errors import StoreUnavailable
from flatnet.ipam import records as r
from flatnet.ipam.api import ANY_VERSION, Compare, IPAddress, Lease, Owner, Store
from flatnet.ipam.pool import PoolRange

T = TypeVar("T")


class Outcome(enum.Enum):
    """How one optimistic step went."""

    DONE = "done"  #: committed (or found nothing to do): the step's value is the answer
    LOST = "lost"  #: a compare failed because another allocator moved: back off, retry
    STEPPED = "stepped"  #: progress without an answer (stepped over a taken address, dropped a
    #:                      stale entry): retry at once, it does not count as a lost race
    EMPTY = "empty"  #: this source has nothing (left) to give


Step = tuple[Outcome, T | None]


class OwnerHolds(Exception):
    """The attachment already holds a lease in this pool (found when a claim txn failed).

    ``Ipam.allocate`` skips the up-front lookup of the attachment's leases when it can, so
    a repeated ADD learns of its lease here, and answers it after a lookup after all.
    """


class Txns:
    """A store plus the retry policy shared by every step."""

    def __init__(self, store: Store, attempts: int = 100, rng: random.Random | None = None) -> None:
        self.store = store
        self.attempts = attempts
        self.rng = rng or random.Random()

    def backoff(self, attempt: int) -> None:
        time.sleep(self.rng.uniform(0, min(0.05, 0.0005 * 2 ** min(attempt, 10))))

    def contended(self, what: str) -> StoreUnavailable:
        return StoreUnavailable(
            f"{what}: lost {self.attempts} races in a row against other allocators; retry later",
        )

    def retry(self, what: str, step: Callable[[], Step[T]]) -> T | None:
        """Run ``step`` until DONE (its value) or EMPTY (None); LOST counts, STEPPED does not."""
        attempt = 0
        while attempt < self.attempts:
            outcome, value = step()
            if outcome is Outcome.DONE:
                return value
            if outcome is Outcome.EMPTY:
                return None
            if outcome is Outcome.LOST:
                self.backoff(attempt)
                attempt += 1
        raise self.contended(what)

    def taken(self, pr: PoolRange, ip: IPAddress) -> str | None:
        """After a lost claim: the pool that holds ``ip`` in its segment (this one or
        another), or None when nobody does."""
        seg = self.store.get(r.seg_key(pr.spec.vlan, ip))
        if seg is not None:
            return seg.value
        return pr.spec.name if self.store.get(r.ip_key(pr.spec.name, ip)) is not None else None

    def step_over(self, pr: PoolRange, holder: str, compares: list[Compare], puts: dict[str, str]) -> bool:
        """Commit a cursor step over a held address; one held by another pool of the segment
        also marks this pool as sharing (``pools/<pool>/shared``): when its fresh and released
        addresses are gone, it looks for the segment's gaps (``PoolOps.take_gap``)."""
        if holder != pr.spec.name:
            puts = {**puts, r.pool_key(pr.spec.name, "shared"): "1"}
        return self.store.txn(compares, puts)

    def vlan_of(self, name: str, record: str) -> int | None:
        """The VLAN of the segment an ``ips/`` record's address is in: the record says so;
        a reservation or quarantine written before records did falls back on the pool."""
        d = json.loads(record)
        if "vlan" in d:
            return None if d["vlan"] is None else int(d["vlan"])
        e = self.store.get(r.pool_key(name, "def"))
        return r.spec_from_json(e.value).vlan if e is not None else None

    def _sticky_extra(self, pr: PoolRange, owner: Owner, ip: IPAddress) -> tuple[list[Compare], dict[str, str], bool]:
        """Record ``ip`` as the pod's sticky address when the pool is sticky and none is recorded."""
        if not (pr.spec.sticky and owner.pod):
            return [], {}, False
        key = r.sticky_key(pr.spec.name, owner.pod)
        cur = self.store.get(key)
        if cur is None:
            return [Compare(key, 0)], {key: str(ip)}, True
        return [Compare(key, cur.version, cur.value)], {}, cur.value == str(ip)

    def claim_ops(
        self,
        pr: PoolRange,
        ip: IPAddress,
        owner: Owner,
        compares: list[Compare],
        puts: dict[str, str],
        sticky_absent: bool,
    ) -> tuple[list[Compare], dict[str, str], Lease, str]:
        """A claim txn's compares and puts: the caller's, plus the lease records (``ips/``,
        ``owners/``), the segment key for a new holder and the sticky record; with the lease
        and the ``owners/`` key (the one whose presence after a failed txn means ``OwnerHolds``)."""
        name = pr.spec.name
        if sticky_absent:
            skey = r.sticky_key(name, owner.pod or "")
            s_cmp, s_put, sticky = [Compare(skey, 0)], {skey: str(ip)}, True
        else:
            s_cmp, s_put, sticky = self._sticky_extra(pr, owner, ip)
        rec, lease = r.new_lease(pr.spec, ip, owner, sticky)
        okey = r.owner_key(owner.container_id, owner.ifname, name)
        ikey = r.ip_key(name, ip)
        puts = {**puts, **s_put, ikey: rec, okey: rec}
        if any(c.key == ikey and c.version == 0 for c in compares):  # a new holder: the segment's too
            gkey = r.seg_key(pr.spec.vlan, ip)
            if not any(c.key == gkey for c in compares):
                s_cmp = s_cmp + [Compare(gkey, 0)]
            puts[gkey] = name
        return compares + s_cmp + [Compare(okey, 0)], puts, lease, okey

    def commit_claim(
        self,
        pr: PoolRange,
        ip: IPAddress,
        owner: Owner,
        compares: list[Compare],
        puts: dict[str, str],
        deletes: list[str],
        sticky_absent: bool,
    ) -> Step[Lease]:
        """Add the lease records (and sticky record) to a claim txn and commit it
        (``claim_ops``).

        DONE with the lease, or LOST; raises ``OwnerHolds`` when the attachment turned out
        to hold a lease in this pool already.
        """
        compares, puts, lease, okey = self.claim_ops(pr, ip, owner, compares, puts, sticky_absent)
        if self.store.txn(compares, puts, deletes):
            return Outcome.DONE, lease
        if self.store.get(okey) is not None:
            raise OwnerHolds(okey)
        return Outcome.LOST, None


class SegDrop:
    """The segment key's part in a txn that deletes ``ips/<ip>`` of pool ``name``.

    Optimistic: the txn compares "the key names this pool" (no read first). When such a txn
    fails, ``lost`` reads the key once: if it is not this pool's (a store that held the
    address twice before segment keys existed, or not migrated yet), later tries leave it alone.
    """

    def __init__(self, txns: Txns, name: str, vlan: int | None, ip: IPAddress) -> None:
        self.store = txns.store
        self.name = name
        self.key = r.seg_key(vlan, ip)
        self.ours = True

    def compares(self) -> list[Compare]:
        return [Compare(self.key, ANY_VERSION, self.name)] if self.ours else []

    def deletes(self) -> list[str]:
        return [self.key] if self.ours else []

    def lost(self) -> bool:
        """After a failed txn: True when the segment key was the cause (retry at once)."""
        if not self.ours:
            return False
        cur = self.store.get(self.key)
        if cur is None or cur.value != self.name:
            self.ours = False
            return True
        return False
