"""The agent's metrics, in one registry per agent (tests build several side by side).

The one counter system of the agent: Prometheus scrapes it, and the socket's
``{"op": "status"}`` answer (``snapshot``) is read from the same collectors.

Names follow Prometheus' rules: ``flatnet_`` prefix, base units (seconds, addresses),
``_total`` on counters. docs/OBSERVABILITY.md explains each one; a unit test checks that
every name registered here is documented there.
"""

from __future__ import annotations

import platform
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics

#: CNI verbs get their own label value; anything else is counted as "other"
VERBS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
#: CNI latencies: a lab ADD takes ~25 ms, a loaded node's ADD can take seconds
CNI_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
#: store calls: sub-millisecond (SQLite, memory) to the store timeout (etcd, seconds)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: label values taken from network configs are capped, so a stream of odd configs cannot
#: grow the series without bound (only root may talk to the agent, but still)
MAX_NETWORKS = 64
MAX_LABEL = 63
#: the status op's key per verb (any other verb: "other")
_STATUS_KEYS = {"ADD": "adds", "DEL": "dels", "CHECK": "checks", "GC": "gcs", "STATUS": "statuses"}


class AgentMetrics:
    """Every metric the agent exports, registered in ``self.registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series: noise for counters that live as long as the agent
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.cni_duration = Histogram(
            "flatnet_cni_request_duration_seconds",
            "Time the agent took to answer a CNI request, by verb, network, mode and result "
            "(the CNI error code; 0 is success). _count is the number of requests.",
            ["verb", "network", "mode", "result"],
            buckets=CNI_BUCKETS,
            registry=r,
        )
        self.store_duration = Histogram(
            "flatnet_store_request_duration_seconds",
            "Time of one call to the address store, by store type and operation (get, range, txn).",
            ["store", "op"],
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "flatnet_store_errors_total",
            "Store calls that raised, by store type, operation and error class.",
            ["store", "op", "error"],
            registry=r,
        )
        self.store_conflicts = Counter(
            "flatnet_store_txn_conflicts_total",
            "Store transactions whose compares failed because another writer came first; "
            "the IPAM re-reads and retries each one.",
            ["store"],
            registry=r,
        )
        self.in_flight = Gauge("flatnet_cni_requests_in_flight", "CNI requests being answered now.", registry=r)
        self.rejected = Counter(
            "flatnet_agent_rejected_connections",
            "Connections refused because the peer's uid may not use the agent.",
            registry=r,
        )
        self.address_conflicts = Counter(
            "flatnet_address_conflicts_total",
            "ARP/ND claims of a live pod's address from a MAC that is not the pod's, seen on the "
            "node's links after ADD (agent/claimwatch.py), by pool.",
            ["pool"],
            registry=r,
        )
        self.gc_reclaimed = Counter(
            "flatnet_gc_reclaimed_attachments_total",
            "Attachments (plumbing + leases) removed by the CNI GC verb because the runtime no longer holds them.",
            registry=r,
        )
        self.start_time = Gauge("flatnet_agent_start_time_seconds", "Unix time the agent started.", registry=r)
        self.started = time.time()
        self.start_time.set(self.started)
        Info("flatnet_build", "Version of the running agent.", registry=r).info(
            {"version": _version(), "python": platform.python_version()}
        )
        self._networks: set[str] = set()
        self._lock = threading.Lock()

    def network_label(self, name: object) -> str:
        """A bounded label value for a network name ("" unknown, "other" past the cap)."""
        if not isinstance(name, str) or not name:
            return ""
        name = name[:MAX_LABEL]
        with self._lock:
            if name in self._networks:
                return name
            if len(self._networks) >= MAX_NETWORKS:
                return "other"
            self._networks.add(name)
            return name

    def observe_cni(self, verb: str, network: str, mode: str, code: int, seconds: float) -> None:
        verb = verb if verb in VERBS else "other"
        self.cni_duration.labels(verb, self.network_label(network), (mode or "")[:MAX_LABEL], str(code)).observe(
            seconds
        )

    def snapshot(self) -> dict[str, Any]:
        """The socket's status counters (``flatnet agent`` status op), from the collectors:
        requests by verb (failed ones too), ``errors`` (result not 0), in flight, rejected."""
        counts = {key: 0 for key in (*_STATUS_KEYS.values(), "errors")}
        for family in self.cni_duration.collect():
            for sample in family.samples:
                if not sample.name.endswith("_count"):
                    continue
                n = int(sample.value)
                key = _STATUS_KEYS.get(sample.labels["verb"], "other")
                counts[key] = counts.get(key, 0) + n
                if sample.labels["result"] != "0":
                    counts["errors"] += n
        return {
            **counts,
            "in_flight": int(_value(self.in_flight)),
            "rejected": int(_value(self.rejected)),
            "uptime_s": round(time.time() - self.started, 3),
        }

    def register(self, collector: Any) -> None:
        self.registry.register(collector)


def _value(metric: Gauge | Counter) -> float:
    """The value of an unlabelled gauge or counter (its first sample: the counter's _total)."""
    return float(list(metric.collect())[0].samples[0].value)


def _version() -> str:
    """The installed distribution's version (``flatnet-cni``, pyproject's name); the source's
    ``flatnet.__version__`` when it runs uninstalled (from a checkout on PYTHONPATH)."""
    from importlib.metadata import PackageNotFoundError, version

    from flatnet import __version__
    from flatnet.defaults import DISTRIBUTION

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return __version__
