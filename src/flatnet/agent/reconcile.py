"""The agent's own leak reconciliation: attachments whose container is gone without a DEL.

The CNI contract says the runtime sends DEL (and, since 1.1, GC with the attachments it still
has). When it never does — a kubelet that lost its state, a runtime crash, a pod netns
removed by hand — the lease and the node-side plumbing would stay forever
(containernetworking/plugins#252, kubernetes#65943). The agent therefore checks, every
``interval`` seconds, the leases of *this node* in every network it has served: a lease
whose recorded container netns no longer exists is reclaimed exactly as GC would (plumbing
removed, then the lease released).

Conservative by construction, because releasing a live pod's address would hand it to a
second pod:
- only leases that recorded their netns path, on this node, in a network this agent served;
- "gone" only from evidence that holds whatever PID and mount namespace the agent runs in
  (``flatnet.agent.nsproof``): ADD records what the netns path showed; the reconciler decides
  only when its own view is provably that same one (same PID namespace behind /proc, same
  directory behind /run/netns) — an agent in its own PID namespace, or one that does not see
  the runtime's /run/netns, decides nothing;
- seen gone on two consecutive passes (``interval`` apart), with the very same lease record;
- the container's lock taken without waiting: an ADD/DEL in flight wins, and the lease is
  re-read under the lock before anything is removed.

What reading the leases costs grows with the cluster: the store has no index of leases
by node, so a *full* pass reads every lease of the store (once per store, however many
networks share it). So that a node's cost stays O(1) however many nodes there are, full
passes come only every ``records / RECORDS_PER_SECOND`` seconds (``interval`` at least):
at 30,000 pods, about four hours. The passes between them are *light*: they check the
netns of the attachments the last full pass found on this node, locally, and read from
the store only the leases of those whose netns is gone (one small read each). So a pod
that ran for a while and vanished is still reclaimed within two ``interval`` s; one that
was created and leaked between two full passes waits for the next full pass.

The same pass keeps each live flat-mode pod's first-hop filter (datapath/firsthop.py) as its
leases say it should be: a pod plumbed before the filter existed, or whose filter table was
flushed, gets it back (``PassReport.filters_repaired``). And it retires the node's shims
whose last pod went since the last pass (a DEL through the agent leaves that to it:
``datapath.shim.KEEP_IDLE``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from flatnet.agent import nsproof
from flatnet.agent.periodic import Periodic
from flatnet.errors import FlatnetError

log = logging.getLogger("flatnet.agent")

#: lease records a node's reconciler may read per second, on average (full passes)
RECORDS_PER_SECOND = 2.0


def netns_gone(path: str | None, recorded: str | None) -> bool:
    """True only when the netns at ``path`` is provably gone (``flatnet.agent.nsproof``)."""
    return nsproof.gone(path, recorded)


@dataclass
class PassReport:
    checked: int = 0
    suspects: int = 0
    reclaimed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    filters_repaired: list[str] = field(default_factory=list)
    shims_retired: list[str] = field(default_factory=list)


class Reconciler(Periodic):
    """Periodic pass over this node's leases; ``run_once`` is the unit the tests drive."""

    thread_name = "leak-reconciler"

    def __init__(self, service: Any, interval: float = 60.0) -> None:
        super().__init__(interval)
        self.records_read = 0  # lease records the last pass read from the store(s)
        self.service = service
        self._next_full = -1e18  # monotonic time of the next full pass
        self.full_every = interval  # the pause between full passes, from the last one's reads
        #: this node's attachments as the last full pass found them: (network, cid, ifname) -> leases
        self._known: dict[tuple[str, str, str], list[Any]] = {}
        self._suspects: dict[tuple[str, str, str], str] = {}  # (network, cid, ifname) -> record id
        self.passes = 0
        self.reclaimed_total = 0

    def tick(self) -> None:
        try:
            report = self.run_once()
        except Exception as exc:  # noqa: BLE001 - store down: next pass retries
            log.warning("reconcile: pass failed: %s", exc)
            return
        if report.filters_repaired:
            log.warning(
                "reconcile: reinstalled the first-hop filter of %d pod(s): %s",
                len(report.filters_repaired),
                ", ".join(report.filters_repaired[:10]),
            )
        if report.shims_retired:
            log.info("reconcile: retired shim(s) whose last pod is gone: %s", ", ".join(report.shims_retired))
        if report.reclaimed or report.errors:
            log.warning(
                "reconcile: reclaimed %d attachment(s) whose container is gone: %s%s",
                len(report.reclaimed),
                ", ".join(report.reclaimed[:10]),
                f"; errors: {'; '.join(report.errors[:5])}" if report.errors else "",
            )

    def full_due(self) -> bool:
        """A full pass now? Always when not periodic (``interval`` <= 0: tests, one-off runs)."""
        return self.interval <= 0 or time.monotonic() >= self._next_full

    def run_once(self) -> PassReport:
        """One pass over every network this agent has served (full or light: module doc)."""
        report = PassReport()
        seen: set[tuple[str, str, str]] = set()
        full = self.full_due()
        confs = {c.name: c for c in self.service.served_networks()}
        if full:
            self._known = self._read_all(list(confs.values()))
            self.full_every = max(self.interval, self.records_read / RECORDS_PER_SECOND)
            self._next_full = time.monotonic() + self.full_every
        else:
            self.records_read = 0
        for key, known in list(self._known.items()):
            conf = confs.get(key[0])
            if conf is None:
                continue
            report.checked += 1
            owner = known[0].owner
            _net, cid, ifname = key
            if not netns_gone(owner.netns, owner.netns_id):
                self._repair_filter(conf, cid, ifname, known, report)
                continue
            leases = known if full else self._reread(conf, cid, ifname)
            if not leases:
                self._known.pop(key, None)  # released meanwhile (DEL, GC)
                continue
            ident = _ident(leases)
            seen.add(key)
            if self._suspects.get(key) != ident:  # first sighting: wait one more pass
                self._suspects[key] = ident
                report.suspects += 1
                continue
            try:
                if self.service.reclaim_if_unchanged(conf, cid, ifname, ident, _ident):
                    report.reclaimed.append(f"{cid[:12]}/{ifname} ({', '.join(str(l.address.ip) for l in leases)})")
                    self._known.pop(key, None)
            except FlatnetError as exc:
                report.errors.append(f"{cid[:12]}/{ifname}: {exc.msg}")
        self._suspects = {k: v for k, v in self._suspects.items() if k in seen}
        # shims whose last pod a DEL took (Service.keep_idle_shims): gone now if still unused
        from flatnet.datapath import shim

        report.shims_retired = shim.retire_idle()
        self.passes += 1
        self.reclaimed_total += len(report.reclaimed)
        return report

    def _read_all(self, confs: list[Any]) -> dict[tuple[str, str, str], list[Any]]:
        """This node's attachments in ``confs``, from one read of each store's leases."""
        read: dict[int, list[Any]] = {}  # id(ipam) -> its store's leases
        self.records_read = 0
        found: dict[tuple[str, str, str], list[Any]] = {}
        for conf in confs:
            ipam = self.service.ipam(conf)
            if id(ipam) not in read:
                read[id(ipam)] = ipam.leases()
                self.records_read += len(read[id(ipam)])
            for lease in read[id(ipam)]:
                o = lease.owner
                if o.network == conf.name and o.node == self.service.node:
                    found.setdefault((conf.name, o.container_id, o.ifname), []).append(lease)
        return found

    def _reread(self, conf: Any, cid: str, ifname: str) -> list[Any]:
        """The attachment's leases now (a light pass acts only on what the store says now)."""
        return [
            l
            for l in self.service.ipam(conf).lookup(cid, ifname)
            if l.owner.network == conf.name and l.owner.node == self.service.node
        ]

    def _repair_filter(self, conf: Any, cid: str, ifname: str, leases: list[Any], report: PassReport) -> None:
        repair = getattr(self.service, "repair_first_hop", None)
        if repair is None:
            return
        try:
            if repair(conf, cid, ifname, leases):
                report.filters_repaired.append(f"{cid[:12]}/{ifname}")
        except FlatnetError as exc:
            report.errors.append(f"{cid[:12]}/{ifname}: first-hop filter: {exc.msg}")


def _ident(leases: list[Any]) -> str:
    """What makes these leases *these* leases: their record ids (new on every allocation)."""
    return ",".join(sorted(str(l.extra.get("id")) for l in leases))
