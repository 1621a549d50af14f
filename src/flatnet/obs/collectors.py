"""Metrics computed when Prometheus scrapes: pool figures from the store, agent counters.

Pool gauges are read from the store on every scrape, through the same records the IPAM
and ``flatnet ipam ls`` read, so they cannot drift from what ``ipam ls`` shows. The pools
are those of every network this agent has served since it started (shared pools are
reported once per agent; aggregate with ``max by (pool)``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from flatnet.agent.reconcile import Reconciler
    from flatnet.agent.service import Service

log = logging.getLogger("flatnet.agent")


def classify(value: str) -> str:
    """What an ``ips/`` record of a pool is: "lease", "reserved" (a sticky hold) or
    "quarantined" (set aside after a conflict on the VLAN), by the IPAM's own record tests."""
    from flatnet.ipam import records as r

    if r.is_lease(value):
        return "lease"
    if r.is_reservation(value):
        return "reserved"
    return "quarantined" if r.quarantine_of(value) is not None else "other"


def pool_figures(ipam: Any, spec: Any) -> dict[str, int]:
    """The pool's gauges from one range read of its addresses (+ its stats record).

    ``allocated`` counts what a new pod cannot get: leases and quarantined addresses inside
    the pool's current range. Sticky holds are not counted: when a pool runs dry the IPAM
    takes the oldest one over (``sticky_takeovers``). ``in_use`` counts every lease, as
    ``flatnet ipam ls --pool P`` lists them.
    """
    import ipaddress
    from urllib.parse import unquote

    from flatnet.ipam import records as r
    from flatnet.ipam.pool import PoolRange

    pr = PoolRange(spec)
    kinds = {"lease": 0, "reserved": 0, "quarantined": 0, "other": 0}
    allocated = 0
    for entry in ipam.store.range(r.pool_key(spec.name, "ips/")):
        kind = classify(entry.value)
        kinds[kind] += 1
        if kind in ("lease", "quarantined"):
            ip = ipaddress.ip_address(unquote(entry.key.rsplit("/", 1)[1]))
            allocated += ip.version == spec.family and pr.usable(pr.offset(ip))
    stats = ipam.stats(spec)
    return {
        "size": pr.total,
        "allocated": allocated,
        "in_use": kinds["lease"],
        "reserved": kinds["reserved"],
        "quarantined": kinds["quarantined"],
        "takeovers": int(stats.get("takeovers", 0)),
        "expired": int(stats.get("expired", 0)),
    }


_POOL_GAUGES = (
    (
        "size",
        "flatnet_ipam_pool_size_addresses",
        "Usable addresses of the pool (its range less gateway, exclusions, network/broadcast).",
    ),
    (
        "allocated",
        "flatnet_ipam_pool_allocated_addresses",
        "Addresses of the pool a new pod cannot get: leases and quarantined addresses in its "
        "range. allocated/size is the pool's usage.",
    ),
    (
        "in_use",
        "flatnet_ipam_pool_in_use_addresses",
        "Addresses leased to an attachment (what 'flatnet ipam ls --pool P' lists).",
    ),
    (
        "quarantined",
        "flatnet_ipam_pool_quarantined_addresses",
        "Addresses set aside after something else answered on them on the VLAN (the ADD's "
        "conflict probe); retried when the pool needs them after the quarantine.",
    ),
    (
        "reserved",
        "flatnet_ipam_pool_sticky_reserved_addresses",
        "Addresses held for a sticky pod that is away (until its stickyHold ends, or the pool "
        "runs dry and the oldest hold is taken over).",
    ),
)
_POOL_COUNTERS = (
    (
        "takeovers",
        "flatnet_ipam_pool_sticky_takeovers",
        "Sticky holds taken over by another pod before their hold ended, because the pool ran dry.",
    ),
    (
        "expired",
        "flatnet_ipam_pool_sticky_expired",
        "Sticky holds that ended after their stickyHold and went back to the free addresses.",
    ),
)


class PoolCollector:
    """Per-pool gauges of every network the service has served, read at scrape time."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        fams: dict[str, Any] = {
            key: GaugeMetricFamily(name, doc, labels=["pool", "store"]) for key, name, doc in _POOL_GAUGES
        }
        fams.update(
            {key: CounterMetricFamily(name, doc, labels=["pool", "store"]) for key, name, doc in _POOL_COUNTERS}
        )
        seen: set[tuple[int, str]] = set()
        for conf in self.service.served_networks():
            try:
                ipam = self.service.ipam(conf)
                kind = str(self.service.store_config(conf).get("type", "sqlite"))
                for spec in self.service.pools(conf):
                    if (id(ipam.store), spec.name) in seen:
                        continue
                    seen.add((id(ipam.store), spec.name))
                    for key, value in pool_figures(ipam, spec).items():
                        fams[key].add_metric([spec.name, kind], value)
            except Exception as exc:  # noqa: BLE001 - a store down must not break the scrape
                log.warning("metrics: pools of network %s not read: %s", conf.name, exc)
        yield from fams.values()


class AgentCollector:
    """The leak reconciler's passes (the server's own counters are ``AgentMetrics``')."""

    def __init__(self, reconciler: Reconciler | None = None) -> None:
        self.reconciler = reconciler

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        if self.reconciler is not None:
            p = CounterMetricFamily(
                "flatnet_reconcile_passes", "Completed passes of the leak reconciler over this node's leases."
            )
            p.add_metric([], getattr(self.reconciler, "passes", 0))
            yield p
            r = CounterMetricFamily(
                "flatnet_reconcile_reclaimed_attachments",
                "Attachments whose container netns vanished without a DEL, reclaimed by the leak reconciler.",
            )
            r.add_metric([], getattr(self.reconciler, "reclaimed_total", 0))
            yield r
