"""ADD's allocation with a conflict probe: no address goes to a pod while something on the
VLAN answers for it.

After the allocator picked the addresses, each one new to this attachment (in a pool with
``conflictProbe`` on, in a flat mode) is probed on the pod's VLAN from the node's link
(``flatnet.datapath.conflict``; all of them at once, each bounded by ``wait``). One that is
answered is quarantined in its pool (``Ipam.quarantine``: visible in ``flatnet ipam ls`` and
``flatnet doctor``, retried after ``DEFAULT_QUARANTINE``) and the allocator is asked again:
the pod gets the next address. A requested address (runtimeConfig ips) that is answered is
an error: the caller asked for exactly that one. When the node's link on that VLAN does not
exist yet (the first pod on it) or a probe cannot be sent, nothing is decided: the address
is handed out as without the probe, and the agent log says so.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from flatnet.datapath.api import AttachSpec
from flatnet.errors import AddressUnavailable, PoolExhausted
from flatnet.ipam.api import IPAddress, Lease, PoolSpec

log = logging.getLogger("flatnet.agent")

#: how long a probe waits for an answer (seconds): 2 probes, 4 ms apart, 10 ms in all. LAN
#: hosts answer ARP/NS in well under a millisecond; what a busy node adds on its side does
#: not count (frames that arrived while the prober was not scheduled are read at the end).
#: Measured cost on ADD p50: docs/BENCHMARKS.md, "conflict probe cost".
PROBE_WAIT = 0.01
PROBE_COUNT = 2
PROBE_INTERVAL = 0.004
#: addresses in a row found in use before the ADD gives up (each one is quarantined)
MAX_CONFLICTS = 8

Prober = Callable[[AttachSpec, IPAddress], "str | None"]


def wire_probe(spec: AttachSpec, ip: IPAddress) -> str | None:
    """The real probe: ARP / DAD-style NS from the node's link on the pod's VLAN."""
    from flatnet.datapath import conflict

    link = conflict.probe_link(spec)
    if link is None:
        log.info(
            "conflict probe: no link for VLAN %s in the node's netns yet; %s not probed",
            spec.vlan if spec.vlan is not None else "-",
            ip,
        )
        return None
    return conflict.probe(spec.host_netns, link, ip, PROBE_COUNT, PROBE_INTERVAL, PROBE_WAIT)


def _probe_all(prober: Prober, spec: AttachSpec, leases: list[Lease]) -> list[tuple[Lease, str]]:
    """Probe every lease at once (dual stack: v4 and v6 side by side); the answered ones."""
    answers: dict[int, str | None] = {}

    def one(n: int, lease: Lease) -> None:
        try:
            answers[n] = prober(spec, lease.address.ip)
        except OSError as exc:
            log.warning("conflict probe of %s not sent: %s", lease.address.ip, exc)
            answers[n] = None

    threads = [threading.Thread(target=one, args=(n, l), daemon=True) for n, l in enumerate(leases)]
    if len(threads) == 1:
        one(0, leases[0])
    else:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return [(l, mac) for n, l in enumerate(leases) if (mac := answers.get(n))]


def allocate_probed(
    ipam: Any,
    pools: list[PoolSpec],
    owner: Any,
    requested: list[Any],
    held_before: set[tuple[str, Any]],
    spec_of: Callable[[list[Lease]], AttachSpec],
    prober: Prober | None,
) -> list[Lease]:
    """``ipam.allocate``, then probe what is new; quarantine answered addresses and retry."""
    leases: list[Lease] = ipam.allocate(pools, owner, requested)
    if prober is None:
        return leases
    probed = {p.name for p in pools if p.conflict_probe}
    clear: set[tuple[str, Any]] = set()  # probed already, nobody answered
    quarantined: set[tuple[str, Any]] = set()
    while True:
        new = [
            l
            for l in leases
            if l.pool in probed and (l.pool, l.address) not in held_before and (l.pool, l.address) not in clear
        ]
        if not new:
            return leases
        hits = _probe_all(prober, spec_of(leases), new)
        if not hits:
            return leases
        for lease, mac in hits:
            why = f"{lease.address.ip} answered on the VLAN by {mac}"
            ipam.quarantine(lease, why, mac)
            log.warning("conflict: %s; quarantined, %s gets the next address", why, owner.pod or owner.container_id)
        answered = {(l.pool, l.address) for l, _mac in hits}
        if requested or len(quarantined) + len(hits) >= MAX_CONFLICTS:
            _release(
                ipam,
                [l for l in leases if (l.pool, l.address) not in held_before and (l.pool, l.address) not in answered],
            )
            if requested:
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
        quarantined |= answered
        clear |= {(l.pool, l.address) for l in new if (l.pool, l.address) not in answered}
        leases = ipam.allocate(pools, owner, requested)


def _release(ipam: Any, leases: list[Lease]) -> None:
    for lease in leases:
        try:
            ipam.release_address(lease.pool, lease.address.ip)
        except Exception:  # noqa: BLE001 - best effort, GC reclaims it otherwise
            pass
