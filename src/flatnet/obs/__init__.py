"""Observability of the agent: Prometheus metrics, structured logs, health endpoints.

Kept out of the CNI logic on purpose: the agent's socket server hands every finished
request to ``RequestObserver`` (metrics + one log line), stores are wrapped at the
``Store`` protocol boundary (``InstrumentedStore``), pool figures are read from the store
when Prometheus scrapes (``PoolCollector``), and ``MetricsServer`` serves ``/metrics``,
``/healthz`` and ``/readyz``. docs/OBSERVABILITY.md lists every metric.

Public API::

    from flatnet.obs import AgentMetrics, RequestObserver, MetricsServer, setup_logging
"""

from typing import Any

_EXPORTS = {
    "AgentMetrics": "flatnet.obs.metrics",
    "InstrumentedStore": "flatnet.obs.store",
    "MetricsServer": "flatnet.obs.http",
    "RequestObserver": "flatnet.obs.requests",
    "instrumented_factory": "flatnet.obs.store",
    "parse_address": "flatnet.obs.http",
    "redact": "flatnet.obs.logs",
    "remember_secret": "flatnet.obs.logs",
    "setup_logging": "flatnet.obs.logs",
}
__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - sorted() gives a list of the names


def __getattr__(name: str) -> Any:
    """Import lazily: the socket server needs the log observer without prometheus_client's import."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
