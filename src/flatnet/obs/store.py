"""A ``Store`` that times and counts every call of the store it wraps.

Wrapping at the protocol boundary (get / range / txn) measures every store type the same
way without touching their code: latency by store type and operation, errors by class,
and transactions that lost a race (``txn`` returned False: the IPAM re-reads and retries).
A store that counts its own internal retries (reconnects, endpoint failover) in an int
attribute ``retries`` has it exported as ``flatnet_store_internal_retries_total``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence

from prometheus_client.core import CounterMetricFamily

from flatnet.ipam.api import Compare, Entry, Store, txn_else_read
from flatnet.obs.logs import remember_config_secrets
from flatnet.obs.metrics import AgentMetrics


class InstrumentedStore:
    """Delegates to ``inner``; records into ``metrics`` under store type ``kind``."""

    def __init__(self, inner: Store, kind: str, metrics: AgentMetrics) -> None:
        self.inner = inner
        self.kind = kind
        self._duration = {op: metrics.store_duration.labels(kind, op) for op in ("get", "range", "txn")}
        self._errors = metrics.store_errors
        self._conflicts = metrics.store_conflicts.labels(kind)

    def _call(self, op: str, fn: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args)
        except Exception as exc:
            self._errors.labels(self.kind, op, type(exc).__name__).inc()
            raise
        finally:
            self._duration[op].observe(time.perf_counter() - started)

    def get(self, key: str) -> Entry | None:
        entry: Entry | None = self._call("get", self.inner.get, key)
        return entry

    def range(self, prefix: str, limit: int | None = None) -> list[Entry]:
        entries: list[Entry] = self._call("range", self.inner.range, prefix, limit)
        return entries

    def txn(self, compares: Sequence[Compare], puts: dict[str, str] | None = None, deletes: Iterable[str] = ()) -> bool:
        ok = self._call("txn", self.inner.txn, compares, puts, deletes)
        if not ok:
            self._conflicts.inc()
        return bool(ok)

    def txn_else_read(
        self, compares: Sequence[Compare], puts: dict[str, str], reads: Sequence[str]
    ) -> tuple[bool, dict[str, Entry | None]]:
        """``flatnet.ipam.api.txn_else_read`` on the wrapped store, timed and counted as a txn."""
        ok, seen = self._call("txn", txn_else_read, self.inner, compares, puts, reads)
        if not ok:
            self._conflicts.inc()
        return bool(ok), seen

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # anything beyond the protocol (e.g. a store's own helpers) goes to the real store
        return getattr(self.inner, name)


def instrumented_factory(
    metrics: AgentMetrics | None, opener: Callable[[dict[str, Any]], Store] | None = None
) -> Callable[[dict[str, Any]], Store]:
    """A ``Service`` store factory: open the store as usual, then wrap it (``metrics`` None: don't).

    Secrets in the store config (password, token, ...) are remembered first, so that no
    log line or error message can carry them (``flatnet.obs.logs.redact``).
    """

    def factory(cfg: dict[str, Any]) -> Store:
        remember_config_secrets(cfg)
        if opener is None:
            from flatnet.ipam.store import open_store

            store = open_store(cfg)
        else:
            store = opener(cfg)
        if metrics is None:
            return store
        return InstrumentedStore(store, str(cfg.get("type", "sqlite")), metrics)

    return factory


class StoreRetriesCollector:
    """``flatnet_store_internal_retries_total`` from stores that count their own retries."""

    def __init__(self, stores: Callable[[], list[Any]]) -> None:
        self._stores = stores

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        fam = CounterMetricFamily(
            "flatnet_store_internal_retries",
            "Retries inside a store call (reconnects, endpoint failover), for stores that count them.",
            labels=["store"],
        )
        totals: dict[str, int] = {}
        for store in self._stores():
            inner = getattr(store, "inner", store)
            n = getattr(inner, "retries", None)
            if isinstance(n, int) and not isinstance(n, bool):
                kind = getattr(store, "kind", type(inner).__name__)
                totals[kind] = totals.get(kind, 0) + n
        for kind, n in sorted(totals.items()):
            fam.add_metric([kind], n)
        yield fam
