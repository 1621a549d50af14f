"""Sticky reservations: an address kept for its pod for a while, never at the price of an ADD.

When a pod of a sticky pool is deleted, its address stays reserved for that pod
(``ips/<ip>`` becomes ``{"reserved_for": pod, "until": ...}``) so that a StatefulSet pod
recreated under the same name gets it back. Every pod name ever seen would otherwise hold an
address forever, and Deployment churn (random pod names) would exhaust the pool. So:

- reservations queue up in order of expiry under ``pools/<pool>/held/<us>/<ip>`` (µs since the
  epoch, ``records.held_key``);
- an ADD that finds no fresh and no released address takes over the head of that queue —
  the oldest reservation, expired or not (``take_over``): logged, and counted in
  ``pools/<pool>/stats`` ("takeovers" when still within its hold, "expired" after). The
  former pod's sticky record goes in the same txn, so it gets a new address if it returns;
- a release sweeps the expired head of the queue back into the pool's FIFO of released
  addresses (``sweep``), so reservations do not pile up in the store past their hold.

A reservation therefore never makes an ADD fail while the pool holds an address no live
pod uses.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from typing import Any, Callable

from flatnet.errors import FlatnetError
from flatnet.ipam import records as r
from flatnet.ipam._txn import Outcome, SegDrop, Step, Txns
from flatnet.ipam.api import Compare, Entry, IPAddress, Lease, Owner
from flatnet.ipam.pool import PoolRange

log = logging.getLogger("flatnet.ipam")

#: (pool, ip, network int) -> compares and puts that return ``ip`` to the pool's FIFO
PushFree = Callable[[str, IPAddress, int], tuple[list[Compare], dict[str, str]]]


class Held:
    """The reservation queue of each pool: reserve, take over, sweep."""

    def __init__(self, txns: Txns, push_free: PushFree) -> None:
        self.txns = txns
        self.push_free = push_free

    def reserve(
        self, name: str, ip: IPAddress, pod: str, hold: float, vlan: int | None
    ) -> tuple[list[Compare], dict[str, str]]:
        """Compares and puts that make ``ip`` a reservation for ``pod`` (in a release txn);
        the address stays held in its segment (``seg/`` key untouched)."""
        until = time.time() + hold
        hkey = r.held_key(name, until, ip)
        rec = r.reserved_record(name, ip, pod, until, hkey, vlan=vlan)
        return [Compare(hkey, 0)], {r.ip_key(name, ip): rec, hkey: pod}

    def _sticky_drop(self, name: str, pod: str, ip: IPAddress, cmp: list[Compare]) -> list[str]:
        """The former pod's sticky record, when it still points at ``ip``: guard it, delete it."""
        sk = self.txns.store.get(r.sticky_key(name, pod))
        if sk is None or sk.value != str(ip):
            return []
        cmp.append(Compare(sk.key, sk.version, sk.value))
        return [sk.key]

    def _count(self, name: str, what: str) -> tuple[list[Compare], dict[str, str]]:
        key = r.pool_key(name, "stats")
        cur = self.txns.store.get(key)
        stats = json.loads(cur.value) if cur else {}
        stats[what] = int(stats.get(what, 0)) + 1
        return [Compare(key, cur.version if cur else 0)], {key: r.dumps(stats)}

    def _read(self, name: str, entry: Entry) -> tuple[IPAddress, Entry | None, dict[str, Any] | None]:
        """The address of a queue entry, its ``ips/`` entry and the reservation it holds
        (None when that record is no longer this queue entry's reservation: a stale entry)."""
        _until, ip = r.held_parts(entry.key)
        ie = self.txns.store.get(r.ip_key(name, ip))
        res = r.reservation_of(ie.value) if ie else None
        if res is not None and res.get("held") != entry.key:
            res = None
        return ip, ie, res

    def take_over(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        """The oldest reservation of the pool, now the owner's lease; None when none is left."""
        store, name = self.txns.store, pr.spec.name
        adopted = False

        def step() -> Step[Lease]:
            nonlocal adopted
            head = store.range(r.held_prefix(name), limit=1)
            if not head:
                if not adopted:
                    adopted = True
                    if self._adopt_legacy(pr):
                        return Outcome.STEPPED, None
                return Outcome.EMPTY, None
            entry = head[0]
            ip, ie, res = self._read(name, entry)
            if ie is None or res is None:  # the reservation ended another way: drop the entry
                store.txn([Compare(entry.key, entry.version)], {}, [entry.key])
                return Outcome.STEPPED, None
            cmp = [Compare(entry.key, entry.version), Compare(ie.key, ie.version, ie.value)]
            deletes = [entry.key] + self._sticky_drop(name, res["reserved_for"], ip, cmp)
            if ip.version != pr.spec.family or not pr.usable(pr.offset(ip)):
                # reserved under an older, wider config: no longer ours to give; drop it
                seg = SegDrop(self.txns, name, self.txns.vlan_of(name, ie.value), ip)
                if not store.txn(cmp + seg.compares(), {}, deletes + [ie.key] + seg.deletes()) and seg.lost():
                    store.txn(cmp, {}, deletes + [ie.key])
                return Outcome.STEPPED, None
            expired = float(res.get("until", 0)) <= time.time()
            s_cmp, s_put = self._count(name, "expired" if expired else "takeovers")
            outcome, lease = self.txns.commit_claim(pr, ip, owner, cmp + s_cmp, s_put, deletes, sticky_absent)
            if outcome is Outcome.DONE:
                (log.info if expired else log.warning)(
                    "ipam: pool %r has no fresh or released address left: %s took over %s, reserved for pod %s%s",
                    name,
                    owner.pod or owner.container_id,
                    ip,
                    res["reserved_for"],
                    " (its hold had expired)"
                    if expired
                    else " within its hold (that pod gets a new address if it comes back)",
                )
            return outcome, lease

        return self.txns.retry(f"taking over a reserved address in pool {name!r}", step)

    def _adopt_legacy(self, pr: PoolRange) -> int:
        """Queue reservations written before the queue existed (no "held"): scans the pool's
        sticky records, so only when the queue is empty at a take-over (a pool run dry)."""
        store, name, n = self.txns.store, pr.spec.name, 0
        for sk in store.range(r.pool_key(name, "sticky/")):
            ip = ipaddress.ip_address(sk.value)
            ie = store.get(r.ip_key(name, ip))
            res = r.reservation_of(ie.value) if ie else None
            if ie is None or res is None or res.get("held"):
                continue
            since = float(res.get("time") or 0)
            until = since + pr.spec.sticky_hold
            hkey = r.held_key(name, until, ip)
            rec = r.reserved_record(name, ip, res["reserved_for"], until, hkey, since=since, vlan=pr.spec.vlan)
            n += store.txn(
                [Compare(ie.key, ie.version, ie.value), Compare(hkey, 0)], {ie.key: rec, hkey: res["reserved_for"]}
            )
        return n

    def take_over_one(
        self, pr: PoolRange, ip: IPAddress, owner: Owner, ie: Entry
    ) -> tuple[list[Compare], list[str], dict[str, str]]:
        """Compares, deletes and puts that end the reservation in ``ie`` as part of a claim
        of that very address (a requested address reserved for another pod)."""
        res = r.reservation_of(ie.value) or {}
        cmp = [Compare(ie.key, ie.version, ie.value)]
        deletes = self._sticky_drop(pr.spec.name, res.get("reserved_for", ""), ip, cmp)
        if res.get("held"):
            deletes.append(res["held"])
        expired = float(res.get("until", 0)) <= time.time()
        s_cmp, s_put = self._count(pr.spec.name, "expired" if expired else "takeovers")
        log.warning(
            "ipam: requested address %s in pool %r was reserved for pod %s: taken over by %s",
            ip,
            pr.spec.name,
            res.get("reserved_for"),
            owner.pod or owner.container_id,
        )
        return cmp + s_cmp, deletes, s_put

    def sweep(self, name: str, net: int, limit: int = 2) -> int:
        """Return up to ``limit`` expired reservations to the FIFO; best effort (0 on trouble)."""
        store, done = self.txns.store, 0
        try:
            for entry in store.range(r.held_prefix(name), limit=limit):
                until, _ip = r.held_parts(entry.key)
                if until > time.time():
                    break
                ip, ie, res = self._read(name, entry)
                cmp = [Compare(entry.key, entry.version)]
                if ie is None or res is None:
                    store.txn(cmp, {}, [entry.key])
                    continue
                cmp.append(Compare(ie.key, ie.version, ie.value))
                deletes = [entry.key, ie.key] + self._sticky_drop(name, res["reserved_for"], ip, cmp)
                f_cmp, f_puts = self.push_free(name, ip, net)
                s_cmp, s_put = self._count(name, "expired")
                seg = SegDrop(self.txns, name, self.txns.vlan_of(name, ie.value), ip)
                ok = store.txn(cmp + f_cmp + s_cmp + seg.compares(), {**f_puts, **s_put}, deletes + seg.deletes())
                if not ok and seg.lost():
                    ok = store.txn(cmp + f_cmp + s_cmp, {**f_puts, **s_put}, deletes)
                if ok:
                    done += 1
                    log.info(
                        "ipam: reservation of %s for pod %s in pool %r expired; the address is free again",
                        ip,
                        res["reserved_for"],
                        name,
                    )
        except FlatnetError as exc:  # the release itself succeeded; the next one sweeps again
            log.debug("ipam: sweeping expired reservations of %r: %s", name, exc)
        return done
