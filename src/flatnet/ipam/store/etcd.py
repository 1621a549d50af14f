"""Cluster store: etcd v3 through its JSON gateway (``POST /v3/kv/range``, ``/v3/kv/txn``).

Plain HTTP/1.1 instead of python-etcd3: that client is unmaintained and pins protobuf 3.
The gateway speaks the same protobuf messages as JSON, with bytes as base64 and int64 as
strings, and omits fields at their default (``succeeded: false``, empty ``kvs``).

The transport is a small keep-alive HTTP/1.1 client (``_http``): on a busy node the
client's CPU per call was a large part of an allocation's cost (httpx ~0.6 ms a call).
TLS (CA bundle, client certificate) and etcd users come from files (``_etcdconf``); with
a user, the store authenticates per member and sends the token with every call.

Failures must reach the CNI runtime fast as "try again later" (code 11), never hang an
ADD: short timeouts, every endpoint tried once, then ``StoreUnavailable``. A refusal (an
untrusted certificate, a missing client certificate, a wrong password) is
``StoreAccessDenied`` (code 7) naming the setting. A broken connection is dropped and
the next call opens a new one, so nothing has to be restarted once etcd is back.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from typing import Any, Iterable, Sequence

from flatnet import defaults
from flatnet.errors import ConfigError, FlatnetError, StoreAccessDenied, StoreUnavailable
from flatnet.ipam.api import ANY_VERSION, Compare, Entry
from flatnet.ipam.store._common import check_txn, prefix_upper
from flatnet.ipam.store._etcdconf import EtcdSecurity, check_endpoints
from flatnet.ipam.store._etcderr import Refused, explain_oserror, explain_refusal
from flatnet.ipam.store._http import HttpEndpoint

DEFAULT_ENDPOINTS = (defaults.ETCD_ENDPOINT,)
DEFAULT_PREFIX = defaults.ETCD_PREFIX
_NUL = base64.b64encode(b"\0").decode()
#: a member that failed is tried after the others for this long (it is still tried last)
DOWN_FOR = defaults.ETCD_DOWN_FOR
#: TCP connect + TLS handshake bound, so a dead member costs at most this much per call
CONNECT_TIMEOUT = defaults.ETCD_CONNECT_TIMEOUT


#: one encoder for every request body (``json.dumps`` with options builds a new one per call)
_BODY = json.JSONEncoder(separators=(",", ":"))


def _b64(text: str) -> str:
    # binascii directly: base64.b64encode's checks cost as much as the encoding, ~10 times a txn
    return binascii.b2a_base64(text.encode(), newline=False).decode("ascii")


def _unb64(data: str | None) -> str:
    return base64.b64decode(data or "").decode()


class EtcdStore:
    """Store over etcd v3; every key lives under ``prefix`` so clusters can share an etcd.

    ``security``: CA bundle, client certificate and key, user and password files
    (``_etcdconf.EtcdSecurity``). Several ``endpoints`` are members of one cluster: the
    one that answered last is asked first, a failed one is put last for ``DOWN_FOR``
    seconds, and one call tries each member at most once.
    """

    def __init__(
        self,
        endpoints: Sequence[str] = DEFAULT_ENDPOINTS,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 2.0,
        security: EtcdSecurity | None = None,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not endpoints:
            raise ConfigError("etcd store: 'endpoints' is empty; give e.g. [\"http://127.0.0.1:2379\"]")
        self.endpoints = check_endpoints(list(endpoints), "etcd store: endpoints")
        self.prefix = prefix
        self.timeout = timeout
        self.security = security or EtcdSecurity()
        ctx = self.security.ssl_context() if self.endpoints[0].startswith("https://") else None
        self._http = [HttpEndpoint(e, timeout, ctx, CONNECT_TIMEOUT) for e in self.endpoints]
        self._preferred = 0
        self._down_until = [0.0] * len(self._http)
        self._tokens: dict[int, str] = {}
        self._auth_lock = threading.Lock()
        #: requests sent again inside one store call: to the next member after a failure
        #: (failover), or once more after re-authenticating. Exported by the agent as
        #: flatnet_store_internal_retries_total (obs/store.py).
        self.retries = 0
        self._retries_lock = threading.Lock()

    # -- transport: failover, TLS and auth -------------------------------------
    def _order(self) -> list[int]:
        n, now = len(self._http), time.monotonic()
        order = [(self._preferred + i) % n for i in range(n)]
        return [i for i in order if self._down_until[i] <= now] + [i for i in order if self._down_until[i] > now]

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the first member that answers; StoreUnavailable when none does.

        A member that refuses us (TLS trust, certificate, user, password, permission) is
        not "down": if no member answers, the refusal is what the caller hears, as
        ``StoreAccessDenied`` naming the setting to fix.
        """
        data = _BODY.encode(body).encode()
        problems: list[str] = []
        refusal: Refused | None = None
        for attempt, idx in enumerate(self._order()):
            ep = self._http[idx]
            if attempt:
                self._count_retry()
            try:
                out = self._call(idx, path, data)
            except Refused as exc:
                refusal = refusal or exc
                problems.append(f"{ep.url}: {exc}")
                continue
            except (OSError, ValueError) as exc:  # timeouts and protocol errors are OSErrors
                msg, security = explain_oserror(exc, ep.url, self.security)
                if security:
                    refusal = refusal or Refused(msg)
                else:
                    self._down_until[idx] = time.monotonic() + DOWN_FOR
                problems.append(f"{ep.url}: {msg}")
                continue
            self._preferred, self._down_until[idx] = idx, 0.0
            return out
        if refusal is not None:
            raise StoreAccessDenied(str(refusal), details="; ".join(problems))
        raise StoreUnavailable(
            f"etcd unreachable at {', '.join(self.endpoints)} (timeout {self.timeout:g}s): "
            f"{problems[0] if problems else 'no endpoint'}; check that etcd is running and "
            "the 'endpoints' setting, then retry",
            details="; ".join(problems),
        )

    def _count_retry(self) -> None:
        with self._retries_lock:
            self.retries += 1

    def _call(self, idx: int, path: str, data: bytes, retry_auth: bool = True) -> dict[str, Any]:
        """One request to member ``idx`` (authenticating first when the store has a user)."""
        ep = self._http[idx]
        headers = ""
        if self.security.auth:
            token = self._tokens.get(idx) or self._authenticate(idx)
            if token:
                headers = f"Authorization: {token}\r\n"
        status, text = ep.post(path, data, headers)
        if status >= 500:
            raise ConnectionError(f"HTTP {status}: {text[:200].decode(errors='replace')}")
        if status >= 400:
            problem = explain_refusal(status, text, ep.url, self.security, self.prefix)
            if problem is None:  # the token expired (or etcd restarted): authenticate again
                self._tokens.pop(idx, None)
                if retry_auth and self.security.auth:
                    self._count_retry()
                    return self._call(idx, path, data, retry_auth=False)
                problem = Refused(f"etcd at {ep.url} does not accept our auth token")
            raise problem
        try:
            answer: dict[str, Any] = json.loads(text)
            return answer
        except ValueError as exc:
            raise ConnectionError(f"answer is not JSON: {exc}") from None

    def _authenticate(self, idx: int) -> str:
        """A token from member ``idx`` for the configured user ('' when auth is off there)."""
        with self._auth_lock:
            if idx in self._tokens:
                return self._tokens[idx]
            user, password = self.security.credentials()
            body = json.dumps({"name": user, "password": password}).encode()
            ep = self._http[idx]
            status, text = ep.post("/v3/auth/authenticate", body)
            del password, body
            if status >= 500:
                raise ConnectionError(f"HTTP {status} on authenticate")
            if status >= 400:
                if b"authentication is not enabled" in text:
                    self._tokens[idx] = ""
                    return ""
                problem = explain_refusal(status, text, ep.url, self.security, self.prefix, user=user)
                raise (
                    problem
                    if isinstance(problem, Refused)
                    else Refused(
                        f"etcd at {ep.url} refused to authenticate the user in usernameFile "
                        f"{self.security.username_file!r}: HTTP {status}"
                    )
                )
            token = str(json.loads(text).get("token") or "")
            self._tokens[idx] = token
            return token

    def _full(self, key: str) -> str:
        return self.prefix + key

    def _entry(self, kv: dict[str, Any]) -> Entry:
        return Entry(
            _unb64(kv.get("key"))[len(self.prefix) :],
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
        lease: int | None = None,
    ) -> bool:
        """The Store txn; ``lease`` (etcd only) attaches every put to that lease."""
        out = self._txn(compares, puts, deletes, lease, ())
        return bool(out.get("succeeded", False))

    def txn_else_read(
        self, compares: Sequence[Compare], puts: dict[str, str], reads: Sequence[str]
    ) -> tuple[bool, dict[str, Entry | None]]:
        """``txn``; when a compare fails, the current entries of ``reads`` from the same
        request (the txn's failure branch), so a lost race costs no reads after it."""
        out = self._txn(compares, puts, (), None, reads)
        if out.get("succeeded", False):
            return True, {}
        seen: dict[str, Entry | None] = {}
        for key, resp in zip(reads, out.get("responses") or [], strict=False):
            kvs = (resp.get("response_range") or {}).get("kvs") or []
            seen[key] = self._entry(kvs[0]) if kvs else None
        if len(seen) != len(reads):
            raise StoreUnavailable(f"etcd answered a txn's {len(reads)} reads with {len(seen)} results")
        return False, seen

    def _txn(
        self,
        compares: Sequence[Compare],
        puts: dict[str, str] | None,
        deletes: Iterable[str],
        lease: int | None,
        reads: Sequence[str],
    ) -> dict[str, Any]:
        compares, puts, dels = check_txn(compares, puts, deletes)
        cmp: list[dict[str, Any]] = []
        for c in compares:
            key = _b64(self._full(c.key))
            if c.version != ANY_VERSION:
                cmp.append({"key": key, "result": "EQUAL", "target": "VERSION", "version": str(c.version)})
            if c.value is not None:
                cmp.append({"key": key, "result": "EQUAL", "target": "VALUE", "value": _b64(c.value)})
        extra = {"lease": str(lease)} if lease else {}
        ops: list[dict[str, Any]] = [
            {"request_put": {"key": _b64(self._full(k)), "value": _b64(v), **extra}} for k, v in puts.items()
        ]
        ops += [{"request_delete_range": {"key": _b64(self._full(k))}} for k in dels]
        failure = [{"request_range": {"key": _b64(self._full(k))}} for k in reads]
        return self._post("/v3/kv/txn", {"compare": cmp, "success": ops, "failure": failure})

    # -- etcd leases (node heartbeats, agent/heartbeat.py) ---------------------
    def grant_lease(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; keys put with it vanish when it expires."""
        out = self._post("/v3/lease/grant", {"TTL": str(int(ttl))})
        return int(out["ID"])

    def keepalive(self, lease: int) -> int:
        """Refresh ``lease``; its remaining TTL, 0 when it has already expired."""
        out = self._post("/v3/lease/keepalive", {"ID": str(lease)})
        return int((out.get("result") or {}).get("TTL") or 0)

    def revoke_lease(self, lease: int) -> None:
        """End ``lease`` now (its keys go); an unknown lease is not an error."""
        try:
            self._post("/v3/lease/revoke", {"ID": str(lease)})
        except FlatnetError as exc:
            if "lease not found" not in exc.msg:
                raise

    def close(self) -> None:
        for ep in self._http:
            ep.close()
