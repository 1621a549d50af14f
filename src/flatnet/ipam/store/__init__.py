"""Address stores behind one protocol (``flatnet.ipam.api.Store``) and a factory.

``open_store`` turns the ``ipam.store`` section of a network config into a store, so
callers never import a concrete class and a typo in ``type`` fails with the fix.
"""

from __future__ import annotations

from typing import Any

from flatnet.errors import ConfigError
from flatnet.ipam.api import Store
from flatnet.ipam.store._etcdconf import check_endpoints, check_security
from flatnet.ipam.store.etcd import DEFAULT_ENDPOINTS, DEFAULT_PREFIX, EtcdStore
from flatnet.ipam.store.memory import MemoryStore
from flatnet.ipam.store.sqlite import DEFAULT_PATH, SqliteStore

__all__ = ["open_store", "MemoryStore", "SqliteStore", "EtcdStore"]

_TYPES = ("memory", "sqlite", "etcd")


def _timeout(cfg: dict[str, Any], default: float) -> float:
    value = cfg.get("timeout", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"ipam store: 'timeout' must be a positive number of seconds, got {value!r}")
    return float(value)


def open_store(cfg: dict[str, Any] | None) -> Store:
    """Build a store from its config dict, e.g. ``{"type": "sqlite", "path": "/x.db"}``."""
    cfg = dict(cfg or {"type": "sqlite"})
    kind = cfg.get("type", "sqlite")
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        path = cfg.get("path", DEFAULT_PATH)
        if not isinstance(path, str) or not path:
            raise ConfigError(f"ipam store: 'path' must be a file path string, got {path!r}")
        return SqliteStore(path, timeout=_timeout(cfg, 5.0))
    if kind == "etcd":
        endpoints = check_endpoints(cfg.get("endpoints", list(DEFAULT_ENDPOINTS)),
                                    "ipam store: 'endpoints'")
        prefix = cfg.get("prefix", DEFAULT_PREFIX)
        if not isinstance(prefix, str):
            raise ConfigError(f"ipam store: 'prefix' must be a string, got {prefix!r}")
        return EtcdStore(endpoints, prefix=prefix, timeout=_timeout(cfg, 2.0),
                         security=check_security(cfg, endpoints))
    raise ConfigError(
        f"ipam store: unknown 'type' {kind!r}; use one of {', '.join(_TYPES)}"
    )
