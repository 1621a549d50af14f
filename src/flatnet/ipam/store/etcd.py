"""Cluster store: etcd v3 through its JSON gateway (``POST /v3/kv/range``, ``/v3/kv/txn``).

httpx instead of python-etcd3: that client is unmaintained and pins protobuf 3. The
gateway speaks the same protobuf messages as JSON, with bytes as base64 and int64 as
strings, and omits fields at their default (``succeeded: false``, empty ``kvs``).

Failures must reach the CNI runtime fast as "try again later" (code 11), never hang an
ADD: short timeouts, every endpoint tried once, then ``StoreUnavailable``. httpx opens
a new connection on the next call by itself, so nothing has to be restarted once etcd
is back.
"""

from __future__ import annotations

import base64
import os
import threading
from typing import Any, Iterable, Sequence

import httpx

from flatnet.errors import ConfigError, FlatnetError, StoreUnavailable
from flatnet.ipam.api import Compare, Entry
from flatnet.ipam.store._common import check_txn, prefix_upper

DEFAULT_ENDPOINTS = ("http://127.0.0.1:2379",)
DEFAULT_PREFIX = "/flatnet/"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(data: str | None) -> str:
    return base64.b64decode(data or "").decode()


class EtcdStore:
    """Store over etcd v3; every key lives under ``prefix`` so clusters can share an etcd."""

    def __init__(
        self,
        endpoints: Sequence[str] = DEFAULT_ENDPOINTS,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 2.0,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not endpoints:
            raise ConfigError("etcd store: 'endpoints' is empty; give e.g. [\"http://127.0.0.1:2379\"]")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.prefix = prefix
        self.timeout = timeout
        self._client: httpx.Client | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._preferred = 0

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._client = httpx.Client(timeout=httpx.Timeout(self.timeout))
            return self._client

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the first endpoint that answers; StoreUnavailable when none does."""
        client = self._http()
        problems: list[str] = []
        n = len(self.endpoints)
        for i in range(n):
            idx = (self._preferred + i) % n
            url = self.endpoints[idx] + path
            try:
                resp = client.post(url, json=body)
            except httpx.HTTPError as exc:
                problems.append(f"{url}: {type(exc).__name__}: {exc}")
                continue
            if resp.status_code >= 500:
                problems.append(f"{url}: HTTP {resp.status_code}: {resp.text[:200]}")
                continue
            if resp.status_code >= 400:
                raise FlatnetError(
                    f"etcd refused the request {path}: HTTP {resp.status_code}: {resp.text[:200]}",
                    details=url,
                )
            self._preferred = idx
            return resp.json()
        raise StoreUnavailable(
            f"etcd unreachable at {', '.join(self.endpoints)} (timeout {self.timeout:g}s); "
            "check that etcd is running and the 'endpoints' setting, then retry",
            details="; ".join(problems),
        )

    def _full(self, key: str) -> str:
        return self.prefix + key

    def _entry(self, kv: dict[str, Any]) -> Entry:
        return Entry(
            _unb64(kv.get("key"))[len(self.prefix):],
            _unb64(kv.get("value")),
            int(kv.get("version", 0)),
        )

    # -- Store protocol ------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        out = self._post("/v3/kv/range", {"key": _b64(self._full(key))})
        kvs = out.get("kvs") or []
        return self._entry(kvs[0]) if kvs else None

    def range(self, prefix: str, limit: int | None = None) -> list[Entry]:
        if limit is not None and limit <= 0:
            raise ValueError(f"range: limit must be positive or None, got {limit}")
        full = self._full(prefix)
        upper = prefix_upper(full)
        body: dict[str, Any] = {
            "key": _b64(full) if full else base64.b64encode(b"\0").decode(),
            # "\0" as range_end means "every key >= key" in etcd
            "range_end": _b64(upper) if upper is not None else base64.b64encode(b"\0").decode(),
            "sort_order": "ASCEND",
            "sort_target": "KEY",
        }
        if limit is not None:
            body["limit"] = str(limit)
        out = self._post("/v3/kv/range", body)
        return [self._entry(kv) for kv in out.get("kvs") or []]

    def txn(
        self,
        compares: Sequence[Compare],
        puts: dict[str, str] | None = None,
        deletes: Iterable[str] = (),
    ) -> bool:
        compares, puts, dels = check_txn(compares, puts, deletes)
        cmp: list[dict[str, Any]] = []
        for c in compares:
            key = _b64(self._full(c.key))
            cmp.append({"key": key, "result": "EQUAL", "target": "VERSION", "version": str(c.version)})
            if c.value is not None:
                cmp.append({"key": key, "result": "EQUAL", "target": "VALUE", "value": _b64(c.value)})
        ops: list[dict[str, Any]] = [
            {"request_put": {"key": _b64(self._full(k)), "value": _b64(v)}} for k, v in puts.items()
        ]
        ops += [{"request_delete_range": {"key": _b64(self._full(k))}} for k in dels]
        out = self._post("/v3/kv/txn", {"compare": cmp, "success": ops, "failure": []})
        return bool(out.get("succeeded", False))

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
