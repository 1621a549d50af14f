"""Addresses quarantined after a conflict on the VLAN: out of use for a while, then retried.

The agent probes an address on the pod's VLAN before plumbing it (``datapath/conflict.py``).
When something answers — a VM or server configured by hand inside the pool's range — the
lease just allocated becomes a quarantine record (``ips/<ip>`` = ``{"quarantined": why,
"mac", "until"}``, queued under ``pools/<pool>/quar/<us>/<ip>`` by retry time) in one txn that
also drops the attachment's index entry and, for a sticky pod, its sticky record; the pod then
gets the next address.

A quarantined address is no one's to take. Once its time is up it is eligible again: when the
pool has no fresh or released address left, ``sweep`` returns expired ones to the released
list, and the agent probes each again when it is handed out. Nothing sweeps on the hot path:
while the pool has other addresses, a quarantined one costs nothing to leave alone.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flatnet.errors import FlatnetError
from flatnet.ipam import records as r
from flatnet.ipam._held import PushFree
from flatnet.ipam._txn import Outcome, SegDrop, Step, Txns
from flatnet.ipam.api import Compare

log = logging.getLogger("flatnet.ipam")


class Quarantine:
    def __init__(self, txns: Txns, push_free: PushFree) -> None:
        self.txns = txns
        self.push_free = push_free

    def put(self, record: str, why: str, mac: str | None, hold: float) -> bool:
        """Turn the lease ``record`` into a quarantine for ``hold`` seconds; False if it is
        no longer that lease (released or replaced meanwhile)."""
        store = self.txns.store
        lease = r.lease_from_record(record)
        name, ip = lease.pool, lease.address.ip
        ikey = r.ip_key(name, ip)
        okey = r.owner_key(lease.owner.container_id, lease.owner.ifname, name)

        def step() -> Step[bool]:
            ie, oe = store.get(ikey), store.get(okey)
            if ie is None or ie.value != record:
                return Outcome.DONE, False
            cmp = [Compare(ikey, ie.version, record)]
            deletes: list[str] = []
            if oe is not None and oe.value == record:
                cmp.append(Compare(okey, oe.version, record))
                deletes.append(okey)
            pod = lease.owner.pod
            if lease.sticky and pod:  # the pod must not be sent back to this address
                sk = store.get(r.sticky_key(name, pod))
                if sk is not None and sk.value == str(ip):
                    cmp.append(Compare(sk.key, sk.version, sk.value))
                    deletes.append(sk.key)
            until = time.time() + hold
            qkey = r.quar_key(name, until, ip)
            # the address stays held in its segment while quarantined (``seg/`` key untouched)
            puts = {ikey: r.quarantine_record(name, ip, why, mac, until, qkey, lease.vlan), qkey: why}
            if store.txn(cmp + [Compare(qkey, 0)], puts, deletes):
                log.warning("ipam: %s in pool %r quarantined for %ds: %s", ip, name, int(hold), why)
                return Outcome.DONE, True
            return Outcome.LOST, None

        return bool(self.txns.retry(f"quarantining {ip} in pool {name!r}", step))

    def sweep(self, name: str, net: int, limit: int = 8) -> int:
        """Return up to ``limit`` quarantined addresses whose time is up to the released list."""
        store, done = self.txns.store, 0
        try:
            for entry in store.range(r.quar_prefix(name), limit=limit):
                until, ip = r.held_parts(entry.key)
                if until > time.time():
                    break
                ie = store.get(r.ip_key(name, ip))
                q = r.quarantine_of(ie.value) if ie else None
                cmp = [Compare(entry.key, entry.version)]
                if ie is None or q is None or q.get("held") != entry.key:
                    store.txn(cmp, {}, [entry.key])  # ended another way: a stale entry
                    continue
                f_cmp, f_puts = self.push_free(name, ip, net)
                cmp += [Compare(ie.key, ie.version, ie.value)] + f_cmp
                seg = SegDrop(self.txns, name, self.txns.vlan_of(name, ie.value), ip)
                ok = store.txn(cmp + seg.compares(), f_puts, [entry.key, ie.key] + seg.deletes())
                if not ok and seg.lost():
                    ok = store.txn(cmp, f_puts, [entry.key, ie.key])
                if ok:
                    done += 1
                    log.info("ipam: quarantine of %s in pool %r is over; it will be probed again", ip, name)
        except FlatnetError as exc:
            log.debug("ipam: sweeping quarantined addresses of %r: %s", name, exc)
        return done

    def entries(self, name: str) -> list[dict[str, Any]]:
        out = []
        for entry in self.txns.store.range(r.quar_prefix(name)):
            _until, ip = r.held_parts(entry.key)
            ie = self.txns.store.get(r.ip_key(name, ip))
            q = r.quarantine_of(ie.value) if ie else None
            if q is not None and q.get("held") == entry.key:
                out.append(
                    {
                        "pool": name,
                        "address": str(ip),
                        "why": q["quarantined"],
                        "mac": q.get("mac"),
                        "since": q.get("time"),
                        "until": q.get("until"),
                    }
                )
        return out
