"""Which etcd client: per-call cost of each candidate, side by side, against one etcd.

The etcd store makes one to three calls per allocation, so a client's own cost per call
matters on a busy node. Each candidate reads the same key (one ``range`` of one key,
value decoded to text) ``calls`` times, sequentially, over one kept-alive connection,
after a warm-up; we report the wall time per call and the client's *own CPU* per call
(``time.process_time``: this process, all its threads — what the node pays; etcd's work
is the same for every candidate). Candidates:

- ``flatnet _http``: the store's own small HTTP/1.1 client (``ipam/store/_http.py``)
- ``http.client``: the standard library, kept-alive ``HTTPConnection``
- ``httpx``: ``httpx.Client`` (HTTP/1.1, kept alive)
- ``etcd3gw``: the maintained JSON-gateway client (requests underneath)
- ``aetcd``: the maintained asyncio gRPC client (grpcio underneath)

``python -m flatnet_lab.bench.etcdclients [--calls N]`` prints the table against a private etcd;
``flatnet bench`` puts it in docs/BENCHMARKS.md ("etcd client" section).
"""

from __future__ import annotations

import base64
import json
import sys
import time
from typing import Any, Callable
from urllib.parse import urlsplit

SECTION = "etcd client"
KEY = "/fnb-client/probe"
VALUE = "x" * 200  # about a lease record's size


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


_BODY = json.dumps({"key": _b64(KEY)}).encode()


def _decode(data: bytes) -> str:
    kvs = json.loads(data).get("kvs") or []
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else ""


def _ours(endpoint: str) -> tuple[Callable[[], str], Callable[[], None]]:
    from flatnet.ipam.store._http import HttpEndpoint

    ep = HttpEndpoint(endpoint, 5.0)
    return (lambda: _decode(ep.post("/v3/kv/range", _BODY)[1])), ep.close


def _http_client(endpoint: str) -> tuple[Callable[[], str], Callable[[], None]]:
    import http.client

    u = urlsplit(endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5.0)
    headers = {"Content-Type": "application/json"}

    def get() -> str:
        conn.request("POST", "/v3/kv/range", _BODY, headers)
        return _decode(conn.getresponse().read())

    return get, conn.close


def _httpx(endpoint: str) -> tuple[Callable[[], str], Callable[[], None]]:
    import httpx

    client = httpx.Client(base_url=endpoint, timeout=5.0)
    return (lambda: _decode(client.post("/v3/kv/range", content=_BODY).content)), client.close


def _etcd3gw(endpoint: str) -> tuple[Callable[[], str], Callable[[], None]]:
    import etcd3gw  # type: ignore[import-not-found]

    u = urlsplit(endpoint)
    client = etcd3gw.client(host=u.hostname, port=u.port, timeout=5.0)
    return (lambda: client.get(KEY)[0].decode()), lambda: client.session.close()


def _aetcd(endpoint: str) -> tuple[Callable[[], str], Callable[[], None]]:
    import asyncio

    import aetcd  # type: ignore[import-not-found]

    u = urlsplit(endpoint)
    loop = asyncio.new_event_loop()
    client = aetcd.Client(host=u.hostname, port=u.port, timeout=5.0)
    loop.run_until_complete(client.connect())

    async def one() -> str:
        return (await client.get(KEY.encode())).value.decode()

    def close() -> None:
        loop.run_until_complete(client.close())
        loop.close()

    return (lambda: loop.run_until_complete(one())), close


CANDIDATES: dict[str, Callable[[str], tuple[Callable[[], str], Callable[[], None]]]] = {
    "flatnet _http (kept)": _ours,
    "http.client": _http_client,
    "httpx": _httpx,
    "etcd3gw": _etcd3gw,
    "aetcd (gRPC)": _aetcd,
}


def put_probe(endpoint: str) -> None:
    from flatnet.ipam.store._http import HttpEndpoint

    ep = HttpEndpoint(endpoint, 5.0)
    try:
        body = json.dumps({"key": _b64(KEY), "value": _b64(VALUE)}).encode()
        status, text = ep.post("/v3/kv/put", body)
        if status != 200:
            raise RuntimeError(f"put failed: HTTP {status} {text[:100]!r}")
    finally:
        ep.close()


def measure(endpoint: str, calls: int = 2000) -> dict[str, dict[str, Any]]:
    """{candidate: {"wall_us", "cpu_us"} or {"error"}} — one pass of every candidate."""
    put_probe(endpoint)
    out: dict[str, dict[str, Any]] = {}
    for name, make in CANDIDATES.items():
        try:
            get, close = make(endpoint)
        except ImportError as exc:
            out[name] = {"error": f"not installed ({exc.name}): pip install -e ./tooling"}
            continue
        try:
            for _ in range(max(20, calls // 20)):  # warm-up: connection, imports, caches
                if get() != VALUE:
                    raise RuntimeError("read back a different value")
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(calls):
                get()
            w1, c1 = time.perf_counter(), time.process_time()
            out[name] = {"wall_us": (w1 - w0) / calls * 1e6, "cpu_us": (c1 - c0) / calls * 1e6}
        except Exception as exc:  # noqa: BLE001 - one broken candidate must not end the bench
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        finally:
            try:
                close()
            except Exception:  # noqa: BLE001
                pass
    return out


def record(results: Any, endpoint: str, calls: int) -> None:
    """Add one repeat of every candidate to ``results`` (section "etcd client")."""
    for name, got in measure(endpoint, calls).items():
        if "error" in got:
            results.unavailable(SECTION, name, "client CPU per call", got["error"])
            continue
        results.add(SECTION, name, "client CPU per call", "µs", got["cpu_us"])
        results.add(SECTION, name, "wall per call", "µs", got["wall_us"])


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    from flatnet_lab.bench import etcdproc
    from flatnet_lab.bench.nsenv import Scratch

    p = argparse.ArgumentParser(
        prog="python -m flatnet_lab.bench.etcdclients",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--endpoint", help="an etcd to use (default: start a private one)")
    args = p.parse_args(argv)
    scratch, tmp = Scratch(), tempfile.mkdtemp(prefix="fnb-client-")
    try:
        endpoint = args.endpoint or etcdproc.start(tmp, scratch)
        runs = [measure(endpoint, args.calls) for _ in range(args.repeats)]
    finally:
        scratch.close()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"etcd client per call ({args.calls} sequential reads of one key, median of "
        f"{args.repeats} runs; etcd {etcdproc.version()})"
    )
    print(f"{'client':<22} {'client CPU µs':>14} {'wall µs':>10}")
    for name in CANDIDATES:
        ok = [r[name] for r in runs if "error" not in r[name]]
        if not ok:
            print(f"{name:<22} {runs[0][name]['error']}")
            continue
        cpu = sorted(o["cpu_us"] for o in ok)[len(ok) // 2]
        wall = sorted(o["wall_us"] for o in ok)[len(ok) // 2]
        print(f"{name:<22} {cpu:>14.1f} {wall:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
