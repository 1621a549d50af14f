"""The one retry loop and the one claim commit every allocation step goes through.

Every store-level step reads a few keys, then commits one ``txn`` whose compares guard
what it read (optimistic concurrency, etcd style). A step says how it went with an
``Outcome``; ``Txns.retry`` turns outcomes into "answer", "back off and try again" or
"nothing here", with a bounded number of lost races. ``Txns.commit_claim`` is the txn that
turns an address into a lease: lease record at ``ips/<ip>`` (guarded by the caller's
compares), the same record under ``owners/...`` (create-only), and the pod's sticky record.
"""

from __future__ import annotations

import enum
import random
import time
from typing import Callable, TypeVar

from flatnet.errors import StoreUnavailable
from flatnet.ipam import records as r
from flatnet.ipam.api import Compare, IPAddress, Lease, Owner, Store
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

    def _sticky_extra(self, pr: PoolRange, owner: Owner, ip: IPAddress) -> tuple[list[Compare], dict[str, str], bool]:
        """Record ``ip`` as the pod's sticky address when the pool is sticky and none is recorded."""
        if not (pr.spec.sticky and owner.pod):
            return [], {}, False
        key = r.sticky_key(pr.spec.name, owner.pod)
        cur = self.store.get(key)
        if cur is None:
            return [Compare(key, 0)], {key: str(ip)}, True
        return [Compare(key, cur.version, cur.value)], {}, cur.value == str(ip)

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
        """Add the lease records (and sticky record) to a claim txn and commit it.

        DONE with the lease, or LOST; raises ``OwnerHolds`` when the attachment turned out
        to hold a lease in this pool already.
        """
        name = pr.spec.name
        if sticky_absent:
            skey = r.sticky_key(name, owner.pod or "")
            s_cmp, s_put, sticky = [Compare(skey, 0)], {skey: str(ip)}, True
        else:
            s_cmp, s_put, sticky = self._sticky_extra(pr, owner, ip)
        rec, lease = r.new_lease(pr.spec, ip, owner, sticky)
        okey = r.owner_key(owner.container_id, owner.ifname, name)
        puts = {**puts, **s_put, r.ip_key(name, ip): rec, okey: rec}
        if self.store.txn(compares + s_cmp + [Compare(okey, 0)], puts, deletes):
            return Outcome.DONE, lease
        if self.store.get(okey) is not None:
            raise OwnerHolds(okey)
        return Outcome.LOST, None
