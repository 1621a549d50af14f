"""The etcd store in the store registry: its config, its URL form, building it, its health.

Kept beside ``etcd.py`` (the store itself: the JSON gateway client) and ``_etcdconf.py``
(the checks of endpoints, TLS files and credentials) so the client's internals and the
way a config becomes a client change independently.
"""

from __future__ import annotations

import json
from typing import Any

from flatnet import defaults
from flatnet.errors import ConfigError
from flatnet.fieldref import note
from flatnet.ipam.store._etcdconf import FILE_KEYS, check_endpoints, check_security
from flatnet.ipam.store.etcd import EtcdStore

KEYS = ("endpoints", *FILE_KEYS)
#: TLS files and credentials mean nothing to another store: naming them there is an error
EXCLUSIVE_KEYS = FILE_KEYS
URL_EXAMPLE = f"etcd:{defaults.ETCD_ENDPOINT}"


def from_config(d: dict[str, Any], where: str) -> dict[str, Any]:
    """The checked settings of an ``ipam.store`` section of type etcd (files not read yet)."""
    note(f"{where}.endpoints", "array of URLs (or one comma-separated string)", required=True)
    for key in FILE_KEYS:
        note(f"{where}.{key}", "absolute path")
    if d.get("endpoints") in (None, [], ""):
        raise ConfigError(f'{where}.endpoints is required for an etcd store, e.g. ["http://198.18.0.10:2379"]')
    endpoints = check_endpoints(d.get("endpoints"), f"{where}.endpoints")
    return {"endpoints": endpoints, **check_security(d, endpoints).as_config()}


def from_url(rest: str) -> dict[str, Any] | None:
    """``etcd:<url>[,<url>...]``; None when malformed."""
    endpoints = [e.strip() for e in rest.split(",") if e.strip()]
    if not endpoints or any(not e.startswith(("http://", "https://")) for e in endpoints):
        return None
    return {"endpoints": endpoints}


def build(cfg: dict[str, Any]) -> EtcdStore:
    endpoints = cfg["endpoints"]
    return EtcdStore(
        endpoints,
        prefix=cfg.get("prefix", defaults.ETCD_PREFIX),
        timeout=cfg.get("timeout", defaults.ETCD_TIMEOUT),
        security=check_security(cfg, endpoints),
    )


def endpoint_health(endpoint: str, timeout: float, cfg: dict[str, Any] | None = None) -> str | None:
    """None when ``GET <endpoint>/health`` says healthy; otherwise why not (one line).

    ``cfg``: the store config, whose CA file and client certificate an https endpoint needs.
    """
    import urllib.error  # lazy: urllib.request is heavy and only health checks need it
    import urllib.request

    url = endpoint.rstrip("/") + "/health"
    # no proxies from the environment: etcd is reached directly, like the store's own client
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if url.startswith("https://"):
        ctx = check_security(cfg or {}, [endpoint]).ssl_context()
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    try:
        with urllib.request.build_opener(*handlers).open(url, timeout=timeout) as reply:
            body = reply.read(4096)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.read(80).decode(errors='replace')}"
    except (OSError, ValueError) as exc:  # URLError, timeouts and refusals are OSErrors
        return str(getattr(exc, "reason", None) or exc)
    try:
        healthy = str(json.loads(body).get("health")) in ("true", "True")
    except (ValueError, AttributeError):
        healthy = False
    return None if healthy else f"HTTP 200 {body[:80].decode(errors='replace')}"


def health(cfg: dict[str, Any], timeout: float) -> tuple[str, str]:
    """ok with the first healthy endpoint, else broken with every endpoint's problem."""
    errors = []
    for ep in cfg.get("endpoints") or []:
        try:
            problem = endpoint_health(ep, timeout, cfg)
        except ConfigError as exc:  # an unusable CA file / client certificate
            problem = exc.msg
        if problem is None:
            return "ok", ep
        errors.append(f"{ep}: {problem}")
    return "broken", "; ".join(errors) or "no endpoints configured"
