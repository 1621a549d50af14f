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

The same pass keeps each live flat-mode pod's first-hop filter (datapath/firsthop.py) as its
leases say it should be: a pod plumbed before the filter existed, or whose filter table was
flushed, gets it back (``PassReport.filters_repaired``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flatnet.agent import nsproof
from flatnet.agent.periodic import Periodic
from flatnet.errors import FlatnetError

log = logging.getLogger("flatnet.agent")


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


class Reconciler(Periodic):
    """Periodic pass over this node's leases; ``run_once`` is the unit the tests drive."""

    thread_name = "leak-reconciler"

    def __init__(self, service: Any, interval: float = 60.0) -> None:
        super().__init__(interval)
        self.service = service
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
        if report.reclaimed or report.errors:
            log.warning(
                "reconcile: reclaimed %d attachment(s) whose container is gone: %s%s",
                len(report.reclaimed),
                ", ".join(report.reclaimed[:10]),
                f"; errors: {'; '.join(report.errors[:5])}" if report.errors else "",
            )

    def run_once(self) -> PassReport:
        """One pass over every network this agent has served."""
        report = PassReport()
        seen: set[tuple[str, str, str]] = set()
        for conf in self.service.served_networks():
            ipam = self.service.ipam(conf)
            groups: dict[tuple[str, str], list[Any]] = {}
            for lease in ipam.leases():
                o = lease.owner
                if o.network == conf.name and o.node == self.service.node:
                    groups.setdefault((o.container_id, o.ifname), []).append(lease)
            for (cid, ifname), leases in groups.items():
                report.checked += 1
                owner = leases[0].owner
                if not netns_gone(owner.netns, owner.netns_id):
                    self._repair_filter(conf, cid, ifname, leases, report)
                    continue
                key, ident = (conf.name, cid, ifname), _ident(leases)
                seen.add(key)
                if self._suspects.get(key) != ident:  # first sighting: wait one more pass
                    self._suspects[key] = ident
                    report.suspects += 1
                    continue
                try:
                    if self.service.reclaim_if_unchanged(conf, cid, ifname, ident, _ident):
                        report.reclaimed.append(f"{cid[:12]}/{ifname} ({', '.join(str(l.address.ip) for l in leases)})")
                except FlatnetError as exc:
                    report.errors.append(f"{cid[:12]}/{ifname}: {exc.msg}")
        self._suspects = {k: v for k, v in self._suspects.items() if k in seen}
        self.passes += 1
        self.reclaimed_total += len(report.reclaimed)
        return report

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
