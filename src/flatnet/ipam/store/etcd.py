"""Cluster store: etcd v3 through its JSON gateway (``POST /v3/kv/range``, ``/v3/kv/txn``).

Plain HTTP/1.1 instead of python-etcd3: that client is unmaintained and pins protobuf 3.
The gateway speaks the same protobuf messages as JSON, with bytes as base64 and int64 as
strings, and omits fields at their default (``succeeded: false``, empty ``kvs``).

The transport is a small keep-alive HTTP/1.1 client (``_http``): on a busy node the
client's CPU per call was a large part of an allocation's cost (httpx ~0.6 ms a call).

Failures must reach the CNI runtime fast as "try again later" (code 11), never hang an
ADD: short timeouts, every endpoint tried once, then ``StoreUnavailable``. A broken
connection is dropped and the next call opens a new one, so nothing has to be restarted
once etcd is back.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Iterable, Sequence

from flatnet.errors import ConfigError, FlatnetError, StoreUnavailable
from flatnet.ipam.api import Compare, Entry
from flatnet.ipam.store._common import check_txn, prefix_upper
from flatnet.ipam.store._http import HttpEndpoint

DEFAULT_ENDPOINTS = ("http://127.0.0.1:2379",)
DEFAULT_PREFIX = "/flatnet/"
_NUL = base64.b64encode(b"\0").decode()


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
        self._http = [HttpEndpoint(e, timeout) for e in self.endpoints]
        self._preferred = 0

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the first endpoint that answers; StoreUnavailable when none does."""
        data = json.dumps(body, separators=(",", ":")).encode()
        problems: list[str] = []
        n = len(self._http)
        for i in range(n):
            idx = (self._preferred + i) % n
            ep = self._http[idx]
            url = ep.url + path
            try:
                status, text = ep.post(path, data)
            except (OSError, ValueError) as exc:  # timeouts and protocol errors are OSErrors
                problems.append(f"{url}: {type(exc).__name__}: {exc}")
                continue
            if status >= 500:
                problems.append(f"{url}: HTTP {status}: {text[:200].decode(errors='replace')}")
                continue
            if status >= 400:
                raise FlatnetError(
                    f"etcd refused the request {path}: HTTP {status}: "
                    f"{text[:200].decode(errors='replace')}",
                    details=url,
                )
            self._preferred = idx
            try:
                return json.loads(text)
            except ValueError as exc:
                problems.append(f"{url}: answer is not JSON: {exc}")
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
            "key": _b64(full) if full else _NUL,
            # "\0" as range_end means "every key >= key" in etcd
            "range_end": _b64(upper) if upper is not None else _NUL,
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
        for ep in self._http:
            ep.close()
