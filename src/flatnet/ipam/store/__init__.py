"""Address stores behind one protocol (``flatnet.ipam.api.Store``), and their registry.

``STORES`` maps a store type to the module that knows it. Each such module offers
``KEYS`` (its own keys of an ``ipam.store`` section; those in ``EXCLUSIVE_KEYS`` are an
error on a store of another type), ``URL_EXAMPLE``, ``from_config``
(check a section), ``from_url`` (the ``type:rest`` form typed on command lines),
``build`` (the store) and ``health`` (reach it read-only: ok | absent | broken). Everything
else goes through the functions below, so a store is checked the same way wherever its
config comes from, and adding a store is one module plus one line in ``STORES``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from flatnet import defaults
from flatnet.errors import ConfigError
from flatnet.ipam.api import Store
from flatnet.ipam.store import _conf, etcd_setup, memory, sqlite
from flatnet.ipam.store.etcd import EtcdStore
from flatnet.ipam.store.memory import MemoryStore
from flatnet.ipam.store.sqlite import SqliteStore

__all__ = [
    "open_store",
    "store_config",
    "store_from_url",
    "store_health",
    "STORES",
    "STORE_KEYS",
    "DEFAULT_STORE",
    "MemoryStore",
    "SqliteStore",
    "EtcdStore",
]

#: store type -> its module (see the module doc); the first is the default
STORES: dict[str, ModuleType] = {
    "sqlite": sqlite,
    "etcd": etcd_setup,
    "memory": memory,
}
#: keys every store type accepts
COMMON_KEYS = ("type", "prefix", "timeout")
#: every key an ``ipam.store`` section may hold
STORE_KEYS = (COMMON_KEYS[0], *dict.fromkeys(k for m in STORES.values() for k in m.KEYS), *COMMON_KEYS[1:])
DEFAULT_STORE: dict[str, Any] = {"type": "sqlite", "path": defaults.SQLITE_PATH}


def store_config(section: dict[str, Any] | None, where: str = "ipam.store") -> dict[str, Any]:
    """A checked, normalised store config from an ``ipam.store`` section (None: the default).

    Unknown keys are the caller's business (the CNI parser rejects them with a suggestion).
    """
    if section is None:
        return dict(DEFAULT_STORE)
    kind = _conf.text(section, "type", where, example="sqlite", default="sqlite", choices=tuple(STORES)) or "sqlite"
    module = STORES.get(kind)
    if module is None:
        raise ConfigError(f"{where}.type {kind!r} is not supported; use one of: {', '.join(STORES)}")
    for other, mod in STORES.items():
        stray = [k for k in getattr(mod, "EXCLUSIVE_KEYS", ()) if k in section]
        if other != kind and stray:
            raise ConfigError(f"{where}.{stray[0]} applies to an {other} store only, not {kind!r}")
    out: dict[str, Any] = {"type": kind, **module.from_config(section, where)}
    prefix = _conf.text(section, "prefix", where, example=defaults.ETCD_PREFIX, default=defaults.ETCD_PREFIX)
    if prefix is not None:
        out["prefix"] = prefix
    timeout = _conf.seconds(section, "timeout", where, "how long a store call may wait: SQLite's lock, etcd's answer")
    if timeout is not None:
        out["timeout"] = timeout
    return out


def store_from_url(url: str, what: str = "--store") -> dict[str, Any]:
    """``sqlite:/p`` / ``etcd:http://h:p[,..]`` / ``memory`` -> a store config; or the JSON
    of an ``ipam.store`` section (for settings a URL cannot carry: etcd's TLS files).

    The URL form exists because a store is typed on command lines far more often than
    edited in JSON; the dict form is what ``open_store`` takes.
    """
    text = url.strip()
    if text.startswith("{"):
        return _from_json(text, what)
    kind, _sep, rest = text.partition(":")
    module = STORES.get(kind)
    settings = module.from_url(rest) if module is not None else None
    if settings is None:
        examples = [m.URL_EXAMPLE for m in STORES.values()]
        raise ConfigError(f"{what} {url!r} is not a store URL", f"use {', '.join(examples[:-1])} or {examples[-1]}")
    return {"type": kind, **settings}


def _from_json(text: str, what: str) -> dict[str, Any]:
    import json

    try:
        cfg = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"{what}: not valid JSON: {exc}",
            'e.g. {"type": "etcd", "endpoints": ["https://h:2379"], "caFile": "/etc/flatnet/etcd/ca.crt"}',
        ) from None
    if not isinstance(cfg, dict) or cfg.get("type") not in STORES:
        raise ConfigError(
            f'{what}: a JSON store must be an object with "type": {", ".join(list(STORES)[:-1])} or {list(STORES)[-1]}'
        )
    return cfg


def open_store(cfg: dict[str, Any] | None) -> Store:
    """Build a store from its config dict, e.g. ``{"type": "sqlite", "path": "/x.db"}``."""
    checked = store_config(dict(cfg or DEFAULT_STORE))
    return STORES[checked["type"]].build(checked)  # type: ignore[no-any-return]


def store_health(cfg: dict[str, Any], timeout: float = 3.0) -> tuple[str, str]:
    """Reach the store read-only: (ok | absent | broken, what was seen)."""
    module = STORES.get(str(cfg.get("type")))
    if module is None:
        return "broken", f"unknown store type {cfg.get('type')!r}"
    return module.health(cfg, timeout)  # type: ignore[no-any-return]
