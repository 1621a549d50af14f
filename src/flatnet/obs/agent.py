"""Observability of an agent: the scrape-time collectors, GC counting, health checks.

``instrument`` is the call the composition root (``agent/daemon.py``) makes once the
server and service are built; tests call it on an ``AgentServer`` over a fake datapath the
same way. It only subscribes and registers: the request observer and the metrics are the
server's own from construction, and GC reclaims arrive as the service's events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from flatnet.obs.collectors import AgentCollector, PoolCollector
from flatnet.obs.http import Check, MetricsServer
from flatnet.obs.metrics import AgentMetrics
from flatnet.obs.store import StoreRetriesCollector

if TYPE_CHECKING:
    from flatnet.agent.reconcile import Reconciler
    from flatnet.agent.server import AgentServer
    from flatnet.agent.service import Service


def agent_socket_check(path: str, timeout: float = 3.0) -> Check:
    """Liveness: a STATUS request answered through the agent's own socket and dispatch."""

    def agent_socket() -> str | None:
        from flatnet.agent.protocol import AgentReplyError, NoAgent, request

        try:
            reply = request(path, {"v": 1, "op": "status"}, timeout=timeout)
        except (NoAgent, AgentReplyError, OSError) as exc:
            return f"agent socket {path} does not answer: {exc}"
        if reply.get("exit") != 0:
            return f"agent socket {path} answered status with exit {reply.get('exit')}"
        return None

    return agent_socket


def store_check(stores: Callable[[], list[Any]]) -> Check:
    """Readiness: every store the agent uses answers a read (so ADD can allocate)."""

    def stores_answer() -> str | None:
        for store in stores():
            try:
                store.get("status/probe")
            except Exception as exc:  # noqa: BLE001 - the reason is the answer
                kind = getattr(store, "kind", type(store).__name__)
                return f"{kind} store does not answer: {exc}"
        return None

    return stores_answer


def instrument(
    server: AgentServer,
    service: Service,
    reconciler: Reconciler | None = None,
    default_store: dict[str, Any] | None = None,
) -> list[Check]:
    """Count the GC verb's reclaims and register the scrape-time collectors into the
    server's metrics; return the readiness checks.

    Readiness probes every store the service has open, and the agent's ``--store``
    (``default_store``, opened through the service's cache when not open yet).
    """
    metrics = server.metrics
    service.events.on_gc_reclaimed(metrics.gc_reclaimed.inc)
    metrics.register(PoolCollector(service))
    metrics.register(AgentCollector(reconciler))

    def stores() -> list[Any]:
        found = list(service.stores())
        if default_store is not None:
            store = service.open_store_config(dict(default_store))[0]
            if all(store is not s for s in found):
                found.append(store)
        return found

    metrics.register(StoreRetriesCollector(stores))
    return [store_check(stores)]


def serve_metrics(
    server: AgentServer, metrics: AgentMetrics, host: str, port: int, netns: str | None, readiness: list[Check]
) -> MetricsServer:
    """Start the HTTP endpoint for an instrumented agent."""
    return MetricsServer(
        metrics.registry, host, port, netns=netns, liveness=[agent_socket_check(server.path)], readiness=readiness
    ).start()
