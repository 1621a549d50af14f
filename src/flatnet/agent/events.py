"""What the agent's ``Service`` tells the rest of the agent, as events with listeners.

The ``Service`` is built with a ``ServiceEvents`` (``agent/daemon.py``, the composition
root) and calls it; the listeners are the agent's own parts — the heartbeats and the store
record hear of each store opened, the metrics (``obs/agent.py``) of each attachment the GC
verb reclaims — so nothing wraps or replaces a method of the service from outside.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

log = logging.getLogger("flatnet.agent")

StoreListener = Callable[[dict[str, Any]], None]
Listener = Callable[[], None]


class ServiceEvents:
    """Listeners by event; a listener's failure is logged, never the request's failure."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._store_opened: list[StoreListener] = []
        self._gc_reclaimed: list[Listener] = []

    def on_store_opened(self, listener: StoreListener) -> None:
        """``listener(cfg)`` for every store config the service opens (once per config)."""
        with self._lock:
            self._store_opened.append(listener)

    def on_gc_reclaimed(self, listener: Listener) -> None:
        """``listener()`` for every attachment the CNI GC verb reclaims (the reconciler
        counts its own)."""
        with self._lock:
            self._gc_reclaimed.append(listener)

    def store_opened(self, cfg: dict[str, Any]) -> None:
        with self._lock:
            listeners = list(self._store_opened)
        for listener in listeners:
            listener(dict(cfg))

    def gc_reclaimed(self) -> None:
        with self._lock:
            listeners = list(self._gc_reclaimed)
        for listener in listeners:
            try:
                listener()
            except Exception as exc:  # noqa: BLE001 - counting must not fail the GC
                log.warning("GC listener failed: %s", exc)
