"""ADD's allocation with a conflict probe: no address goes live on a pod while something on
the VLAN answers for it — a host flatnet does not manage, or a pod of this very node (in
macvlan/ipvlan mode the probe also leaves from the node's shim, which hears the parent's
children: ``conflict.probe_links``).

After the allocator picked the addresses, each one new to this attachment (in a pool with
``conflictProbe`` on, in a flat mode) is probed on the pod's VLAN from the node's link
(``flatnet.datapath.conflict``; all of them at once, each bounded by ``PROBE_WAIT``). The
probes run on their own threads while ADD plumbs the pod: the answer is awaited only by the
``Gate`` that the datapath calls after the pod's addresses are set on its still-down link and
before the link goes up (``AttachSpec.address_gate``), so nothing is announced and the probe's
wait overlaps the plumbing instead of adding to it. An answered address raises ``Answered``
there; the datapath undoes its work, the address is quarantined in its pool
(``Ipam.quarantine``: visible in ``flatnet ipam ls`` and ``flatnet doctor``, retried after
``DEFAULT_QUARANTINE``) and ADD starts over with the allocator's next address. A requested
address (runtimeConfig ips) that is answered is an error: the caller asked for exactly that
one. When the node's link on that VLAN does not exist yet (the first pod on it) or a probe
cannot be sent, nothing is decided: the address is handed out as without the probe, and the
agent log says so.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from flatnet.datapath.api import AttachSpec
from flatnet.errors import AddressUnavailable, PoolExhausted
from flatnet.ipam.api import IPAddress, IPInterface, Lease, Owner, PoolSpec

if TYPE_CHECKING:
    from flatnet.ipam import Ipam

log = logging.getLogger("flatnet.agent")

#: how long a probe waits for an answer (seconds): 2 probes, 4 ms apart, 10 ms in all. LAN
#: hosts answer ARP/NS in well under a millisecond; what a busy node adds on its side does
#: not count (frames that arrived while the prober was not scheduled are read at the end).
#: The wait runs while ADD plumbs the pod. Measured cost on ADD p50: docs/BENCHMARKS.md,
#: "conflict probe cost".
PROBE_WAIT = 0.01
PROBE_COUNT = 2
PROBE_INTERVAL = 0.004
#: addresses in a row found in use before the ADD gives up (each one is quarantined)
MAX_CONFLICTS = 8

#: the answer of one probe, awaited later: the answering MAC or None (OSError: not sent)
Answer = Callable[[], "str | None"]
#: starts a probe of one address for one attachment; returns at once
Prober = Callable[[AttachSpec, IPAddress], Answer]


def _unprobed() -> None:
    return None


def wire_probe(spec: AttachSpec, ip: IPAddress) -> Answer:
    """The real probe: ARP / DAD-style NS from the node's link on the pod's VLAN."""
    from flatnet.datapath import conflict

    names = conflict.probe_links(spec)
    if not names:
        log.info(
            "conflict probe: no link for VLAN %s in the node's netns yet; %s not probed",
            spec.vlan if spec.vlan is not None else "-",
            ip,
        )
        return _unprobed
    pending = [conflict.start(spec.host_netns, n, ip, PROBE_COUNT, PROBE_INTERVAL, PROBE_WAIT) for n in names]
    if len(pending) == 1:
        return pending[0].result

    def first_answer() -> str | None:
        """The parent's and the shim's probes: the first MAC either heard; OSError only when
        neither could be sent."""
        errors: list[OSError] = []
        found: str | None = None
        for p in pending:
            try:
                found = found or p.result()
            except OSError as exc:
                errors.append(exc)
        if found is None and len(errors) == len(pending):
            raise errors[0]
        return found

    return first_answer


def keep_probe_sockets() -> None:
    """For the agent daemon: probe sockets stay open between ADDs, one set per node link
    (``datapath.conflict.keep_sockets``: closing one after every probe slowed the node)."""
    from flatnet.datapath import conflict

    conflict.keep_sockets()


class Answered(Exception):
    """Raised by ``Gate.wait``: these leases' addresses are in use on the VLAN (lease, MAC)."""

    def __init__(self, hits: list[tuple[Lease, str]]) -> None:
        super().__init__(", ".join(f"{l.address.ip} answered by {mac}" for l, mac in hits))
        self.hits = hits


class Gate:
    """The probes of one ADD attempt. ``wait()`` blocks until all of them are over and raises
    ``Answered`` if any was answered; it is idempotent (the datapath calls it before the
    addresses go live, the agent once more after plumbing for modes that have no such step)."""

    def __init__(self, answers: list[tuple[Lease, Answer]]) -> None:
        self._answers = answers
        self._hits: list[tuple[Lease, str]] | None = None

    def wait(self) -> None:
        if self._hits is None:
            hits = []
            for lease, answer in self._answers:
                try:
                    mac = answer()
                except OSError as exc:
                    log.warning("conflict probe of %s not sent: %s", lease.address.ip, exc)
                    mac = None
                if mac:
                    hits.append((lease, mac))
            self._hits = hits
        if self._hits:
            raise Answered(self._hits)


class ProbedAllocation:
    """``ipam.allocate`` for one ADD, with the probes of what it hands out and the retries."""

    def __init__(
        self,
        ipam: Ipam,
        pools: list[PoolSpec],
        owner: Owner,
        requested: list[IPAddress],
        held_before: set[tuple[str, IPInterface]],
        prober: Prober | None,
    ) -> None:
        self.ipam, self.pools, self.owner, self.requested = ipam, pools, owner, requested
        self.held_before, self.prober = held_before, prober
        self._probed = {p.name for p in pools if p.conflict_probe}
        self._clear: set[tuple[str, IPInterface]] = set()  # probed already, nobody answered
        self._quarantined: set[tuple[str, IPInterface]] = set()

    def allocate(self) -> list[Lease]:
        leases: list[Lease] = self.ipam.allocate(self.pools, self.owner, self.requested)
        return leases

    def start(self, spec: AttachSpec, leases: list[Lease]) -> Gate | None:
        """Put the probes of the leases new to this attachment on the wire (None: nothing to probe)."""
        if self.prober is None:
            return None
        new = [
            l
            for l in leases
            if l.pool in self._probed
            and (key := (l.pool, l.address)) not in self.held_before
            and key not in self._clear
        ]
        if not new:
            return None
        answers: list[tuple[Lease, Answer]] = []
        for lease in new:
            try:
                answers.append((lease, self.prober(spec, lease.address.ip)))
            except OSError as exc:
                log.warning("conflict probe of %s not sent: %s", lease.address.ip, exc)
        self._clear |= {(l.pool, l.address) for l in new}
        return Gate(answers)

    def retry(self, answered: Answered, leases: list[Lease]) -> list[Lease]:
        """Quarantine what was answered and allocate again; raise (having released what this
        ADD allocated) for a requested address or after ``MAX_CONFLICTS`` in a row."""
        hits = answered.hits
        for lease, mac in hits:
            why = f"{lease.address.ip} answered on the VLAN by {mac}"
            self.ipam.quarantine(lease, why, mac)
            log.warning(
                "conflict: %s; quarantined, %s gets the next address", why, self.owner.pod or self.owner.container_id
            )
        keys = {(l.pool, l.address) for l, _mac in hits}
        self._clear -= keys
        if self.requested or len(self._quarantined) + len(hits) >= MAX_CONFLICTS:
            _release(
                self.ipam,
                [l for l in leases if (key := (l.pool, l.address)) not in self.held_before and key not in keys],
            )
            if self.requested:
                lease, mac = hits[0]
                raise AddressUnavailable(
                    f"requested address {lease.address.ip} is in use on the VLAN (answered by {mac})",
                    details="find the host with that MAC address, or request another address",
                )
            raise PoolExhausted(
                f"{MAX_CONFLICTS} addresses in a row were in use on the VLAN (quarantined, see 'flatnet ipam ls')",
                details="hosts outside flatnet use the pool's range: narrow "
                "rangeStart/rangeEnd or add them to 'exclude'",
            )
        self._quarantined |= keys
        return self.allocate()


def _release(ipam: Ipam, leases: list[Lease]) -> None:
    for lease in leases:
        try:
            ipam.release_address(lease.pool, lease.address.ip)
        except Exception:  # noqa: BLE001 - best effort, GC reclaims it otherwise
            pass
