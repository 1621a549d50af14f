"""Wire observability into a running agent: observer, collectors, GC counting, health checks.

``instrument`` is the one call ``flatnet agent`` makes; tests call it on an ``AgentServer``
over a fake datapath the same way.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any, Callable

from flatnet.obs.collectors import AgentCollector, PoolCollector
from flatnet.obs.http import Check, MetricsServer
from flatnet.obs.metrics import AgentMetrics
from flatnet.obs.requests import RequestObserver
from flatnet.obs.store import StoreRetriesCollector

_in_gc: contextvars.ContextVar[bool] = contextvars.ContextVar("flatnet_in_gc", default=False)


def count_gc_reclaims(service: Any, metrics: AgentMetrics) -> None:
    """Count the attachments the CNI GC verb reclaims (the reconciler counts its own)."""
    gc, reclaim = service.gc, service._reclaim

    @functools.wraps(gc)
    def counted_gc(*args: Any, **kwargs: Any) -> Any:
        token = _in_gc.set(True)
        try:
            return gc(*args, **kwargs)
        finally:
            _in_gc.reset(token)

    @functools.wraps(reclaim)
    def counted_reclaim(*args: Any, **kwargs: Any) -> Any:
        out = reclaim(*args, **kwargs)
        if _in_gc.get():
            metrics.gc_reclaimed.inc()
        return out

    service.gc, service._reclaim = counted_gc, counted_reclaim


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
    server: Any, service: Any, metrics: AgentMetrics, reconciler: Any = None, default_store: dict | None = None
) -> list[Check]:
    """Hook metrics and logs into ``server``/``service``; return the readiness checks.

    Readiness probes every store the service has open, and the agent's ``--store``
    (``default_store``, opened through the service's cache when not open yet).
    """
    server.observer = RequestObserver(metrics)
    count_gc_reclaims(service, metrics)
    metrics.register(PoolCollector(service))
    metrics.register(AgentCollector(server.metrics.snapshot, reconciler))

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
    server: Any, metrics: AgentMetrics, host: str, port: int, netns: str | None, readiness: list[Check]
) -> MetricsServer:
    """Start the HTTP endpoint for an instrumented agent."""
    return MetricsServer(
        metrics.registry, host, port, netns=netns, liveness=[agent_socket_check(server.path)], readiness=readiness
    ).start()
