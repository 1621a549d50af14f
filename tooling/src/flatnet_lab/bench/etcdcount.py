"""What etcd itself did during a measurement, and what it can do at most.

- ``requests``: etcd's own counters of the requests it served, by method (``Range``, ``Txn``,
  ``LeaseGrant`` ...), read from its ``/metrics`` (``grpc_server_handled_total``; the JSON
  gateway the store talks to goes through the same gRPC server). Read before and after a
  measurement, the difference divided by the allocations made is "etcd requests per
  allocation", counted by the server, whatever the client code does.
- ``put_ceiling``: the put rate etcd sustains on this machine in this run, through the store's
  own client: ``clients`` processes each committing one-put txns (a fresh key each, no
  compares) as fast as they can. The IPAM rows are judged against it (issue 21: etcd
  alloc/s at 32 clients >= 40% of it), so the ceiling and the rows share machine and moment.
"""

from __future__ import annotations

import multiprocessing as mp
import re
import time
import urllib.request
import uuid
from typing import Any

_HANDLED = re.compile(r"^grpc_server_handled_total\{([^}]*)\}\s+([0-9.e+]+)$", re.M)


def requests(endpoint: str) -> dict[str, float]:
    """Requests etcd served so far, by gRPC method (Range, Txn, Put, LeaseGrant, ...)."""
    with urllib.request.urlopen(endpoint.rstrip("/") + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for labels, value in _HANDLED.findall(text):
        method = re.search(r'grpc_method="([^"]+)"', labels)
        service = re.search(r'grpc_service="([^"]+)"', labels)
        if method and service and service.group(1) in ("etcdserverpb.KV", "etcdserverpb.Lease"):
            out[method.group(1)] = out.get(method.group(1), 0.0) + float(value)
    return out


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        k: after.get(k, 0.0) - before.get(k, 0.0)
        for k in set(before) | set(after)
        if after.get(k, 0.0) > before.get(k, 0.0)
    }


def _putter(cfg: dict[str, Any], n: int, wid: int, barrier: Any, out: Any) -> None:
    from flatnet.ipam import open_store

    store = open_store(cfg)
    try:
        prefix = f"ceiling/{uuid.uuid4().hex[:8]}/{wid}/"
        store.txn([], {f"{prefix}warm": "x"})  # connected before the clock starts, as the allocators are
        barrier.wait(60)
        t0 = time.monotonic()
        for i in range(n):
            store.txn([], {f"{prefix}{i}": "x" * 200})  # about a lease record's size
        out.put((t0, time.monotonic(), ""))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out.put((0.0, 0.0, f"{type(exc).__name__}: {exc}"))
    finally:
        store.close()


def run_together(procs: list[Any], barrier: Any, out: Any) -> list[Any]:
    """Start ``procs``, release them at once through ``barrier`` (they wait on it too), and
    collect one result each from ``out``; every process is joined (killed if it hangs)."""
    for p in procs:
        p.start()
    try:
        barrier.wait(120)
        return [out.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)


def put_ceiling(cfg: dict[str, Any], clients: int = 32, total: int = 4_000) -> float:
    """Puts/s that ``clients`` processes get through the store's client (one key per txn)."""
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(clients + 1), ctx.Queue()
    share = max(1, total // clients)
    procs = [ctx.Process(target=_putter, args=(cfg, share, w, barrier, out), daemon=True) for w in range(clients)]
    got = run_together(procs, barrier, out)
    errs = [g[2] for g in got if g[2]]
    if errs:
        raise RuntimeError(f"put ceiling: {errs[0]}")
    wall = max(g[1] for g in got) - min(g[0] for g in got)
    return share * clients / wall
