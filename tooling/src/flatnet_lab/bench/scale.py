"""What N nodes cost etcd: 10 -> 100 -> 1,000 agents' store sessions against a real 3-member etcd.

``python -m flatnet_lab.bench.scale [--nodes 10,100,1000] [--out DIR]``

For each size a fresh three-member etcd (Debian's etcd-server on loopback ports, data in a
temporary directory removed at the end) serves N simulated nodes (``scalesim``: the
agent's own ``NodeHeartbeat`` and ``Reconciler`` with their own etcd sessions, run from a
schedule by a few worker processes) and a pod-churn process. The run then measures, from
etcd's own ``/metrics`` (``etcdmetrics``):

- an **idle** window: nodes only (heartbeats, sweeps, reconciler passes);
- a **churn** window: the same plus ``rate`` pod allocations and as many releases per second;
- one node killed at the start of the idle window (its duties simply stop, as a powered-off
  node's would): how long until a live node reclaimed it (the fence and the release of its
  leases), against ``ttl + grace``.

Everything is bounded: each size runs for ``warmup + idle + churn`` seconds plus the time to
reclaim the dead node (at most ``ttl + grace + 60`` s after the kill), and the etcd
members are killed by pid and their directory removed whatever happens.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from flatnet_lab.bench import etcdmetrics as em
from flatnet_lab.bench.scalesim import ChurnPlan, Plan, churn_worker, node_name, nodes_worker
from flatnet_lab.etcd import EtcdCluster


@dataclass(frozen=True)
class Settings:
    ttl: int = 10  # the agent's default heartbeat TTL
    grace: float = 60.0  # short enough to measure a reclaim in a bounded run (the default is 300)
    reconcile: float = 60.0  # the agent's default leak-reconciler interval
    pods_per_node: int = 3
    warmup: float = 10.0
    idle: float = 30.0
    churn: float = 30.0
    procs: int = 3  # worker processes for the nodes (plus one for the churn)
    threads: int = 0  # threads per worker process (0: one per 10 of its nodes, 4 to 48)
    overlay: bool = False  # also every node's vxlan peer sync (the store side of it)
    kill: str = "node"  # which node dies: "node" (one in the middle) or "sweeper" (the elected one)


def churn_rate(nodes: int) -> float:
    """Allocations per second in the churn window: a pod per node per 100 s, at least 5/s."""
    return max(5.0, nodes / 100.0)


@dataclass
class SizeResult:
    nodes: int
    idle: dict[str, Any] = field(default_factory=dict)
    churn: dict[str, Any] = field(default_factory=dict)
    db_bytes: float = 0.0
    db_in_use: float = 0.0
    keys: float = 0.0
    leases: int = 0
    pods: int = 0
    alloc_p50_ms: float = 0.0
    alloc_p99_ms: float = 0.0
    allocs: int = 0
    alloc_errors: int = 0
    reclaim_s: float | None = None
    reclaimers: list[str] = field(default_factory=list)  # live nodes that reclaimed the dead one
    victim: str = ""  # the node that died
    reclaim_bound_s: float = 0.0
    sched_lag_p99_ms: float = 0.0
    tick_errors: int = 0
    client_cpu_s: float = 0.0
    setup_s: float = 0.0


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _window(r: em.Rates) -> dict[str, Any]:
    return {"req_s": r.total, "by_method": r.grpc, "mvcc": r.mvcc, "cpu_cores": r.cpu_cores, "sent_Bps": r.sent_bytes}


def run_size(nodes: int, s: Settings, workdir: str, log: Any = print) -> SizeResult:
    """One size: fresh etcd, N nodes, the two windows and the dead node; etcd stopped after
    and its directory (``workdir/n<nodes>``) removed."""
    os.makedirs(os.path.join(workdir, f"n{nodes}"), exist_ok=True)
    cluster = EtcdCluster(os.path.join(workdir, f"n{nodes}"), token=f"scale{nodes}")
    res = SizeResult(nodes)
    procs: list[Any] = []
    try:
        cluster.start()
        cfg = {"type": "etcd", "endpoints": cluster.endpoints, "prefix": "/fnscale/", "timeout": 5.0}
        names = [node_name(i) for i in range(nodes)]
        victim = names[len(names) // 2]
        ctx = mp.get_context("fork")
        out: Any = ctx.Queue()
        t0 = time.monotonic()
        # generous: the start has to announce every node and place every pod first
        far = t0 + 3600
        # the duties wait on etcd, not on the CPU: enough threads that a slow answer does not
        # make every other node's keepalive late (a late harness would fake dead nodes)
        threads = s.threads or min(48, max(4, nodes // s.procs // 10))
        plan = Plan(
            cfg,
            s.ttl,
            s.grace,
            s.reconcile,
            stop_at=far,
            victim=victim,
            kill_at=far,
            threads=threads,
            overlay=s.overlay,
        )
        # the plan's times are fixed once everyone is ready: pass them through a shared array
        # kill_at, churn start, churn stop, stop_at, pods placed, the victim's index in names
        times = ctx.Array("d", [far, far, far, far, 0.0, float(len(names) // 2)])
        for k in range(s.procs):
            p = ctx.Process(target=_nodes_main, args=(names[k :: s.procs], plan, out, times, names), daemon=True)
            p.start()
            procs.append(p)
        churn = ChurnPlan(cfg, s.pods_per_node, churn_rate(nodes), start_at=far, stop_at=far, threads=min(16, threads))
        cp = ctx.Process(target=_churn_main, args=(names, churn, out, times), daemon=True)
        cp.start()
        procs.append(cp)
        ready = pods = seeded = 0
        while ready < nodes or pods == 0 or seeded < s.procs:
            kind, val = out.get(timeout=600)
            if kind == "ready":
                ready += val
            elif kind == "pods":
                pods = val
                times[4] = 1.0
            elif kind == "seeded":
                seeded += 1
        res.pods = pods
        res.setup_s = time.monotonic() - t0
        log(f"  {nodes} nodes announced, {pods} pods placed in {res.setup_s:.1f}s")
        if s.kill == "sweeper":
            victim = _sweeper(cfg)
            times[5] = float(names.index(victim))
        res.victim = victim
        now = time.monotonic()
        idle_at = now + s.warmup
        churn_at = idle_at + s.idle
        churn_end = churn_at + s.churn
        # the lease runs out <= ttl after the kill; the sweeper sees it at its next sweep and
        # fences at the first sweep a grace later
        sweep = max(s.ttl / 3.0, min(s.grace / 4, 15.0))
        reclaim_bound = s.ttl + s.grace + 2 * sweep
        stop_at = max(churn_end, idle_at + reclaim_bound + 60)
        times[:4] = [idle_at, churn_at, churn_end, stop_at]
        _sleep_until(idle_at)
        a = em.snapshot(cluster.endpoints)
        _sleep_until(churn_at)
        b = em.snapshot(cluster.endpoints)
        _sleep_until(churn_end)
        c = em.snapshot(cluster.endpoints)
        res.idle = _window(em.rates(a, b, churn_at - idle_at))
        res.churn = _window(em.rates(b, c, churn_end - churn_at))
        res.db_bytes, res.db_in_use, res.keys, res.leases = c.db_bytes, c.db_in_use, c.keys, c.leases
        lags: list[float] = []
        when: list[float] = []
        done, churned = 0, False
        while done < len(procs) - 1 or not churned:
            kind, val = out.get(timeout=max(1.0, stop_at - time.monotonic()) + 120)
            if kind == "reclaimed" and val[1] == victim:
                when.append(val[2])
                res.reclaimers.append(val[0])
                times[3] = min(times[3], max(time.monotonic(), churn_end))  # nothing left to wait for
            elif kind == "done":
                done += 1
                lags += val["lags"]
                res.tick_errors += val["counts"]["errors"]
                res.client_cpu_s += val["cpu"]
            elif kind == "churn":
                churned = True
                lat = val["lat"]
                res.allocs, res.alloc_errors = len(lat), val["errors"]
                res.alloc_p50_ms, res.alloc_p99_ms = _pct(lat, 0.5) * 1e3, _pct(lat, 0.99) * 1e3
        res.reclaim_s = (min(when) - idle_at) if when else None
        res.reclaim_bound_s = reclaim_bound
        res.sched_lag_p99_ms = _pct(lags, 0.99) * 1e3
        return res
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(5)
        cluster.stop()
        shutil.rmtree(os.path.join(workdir, f"n{nodes}"), ignore_errors=True)


def _sweeper(cfg: dict[str, Any], wait: float = 30.0) -> str:
    """The node that holds the sweeper key now (waits for the first election)."""
    from flatnet.agent.heartbeat import SWEEPER_KEY
    from flatnet.ipam.store import open_store

    store = open_store(cfg)
    try:
        deadline = time.monotonic() + wait
        while True:
            entry = store.get(SWEEPER_KEY)
            if entry is not None:
                return str(json.loads(entry.value)["node"])
            if time.monotonic() > deadline:
                raise RuntimeError("scale: no sweeper was elected")
            time.sleep(0.2)
    finally:
        store.close()


def _sleep_until(t: float) -> None:
    while (d := t - time.monotonic()) > 0:
        time.sleep(min(d, 0.5))


def _wait_times(times: Any) -> tuple[float, float, float, float]:
    while times[3] > time.monotonic() + 3000:
        time.sleep(0.1)
    return times[0], times[1], times[2], times[3]


def _nodes_main(names: list[str], plan: Plan, out: Any, times: Any, everyone: list[str]) -> None:
    """Worker process: announce, then run the schedule the parent fixes once all are up."""
    nodes_worker(names, _LivePlan(plan, times, everyone), out)  # type: ignore[arg-type]


class _LivePlan:
    """A ``Plan`` whose kill/stop times come from the parent once every node is up."""

    def __init__(self, plan: Plan, times: Any, names: list[str]) -> None:
        self._plan, self._times, self._names = plan, times, names

    def __getattr__(self, name: str) -> Any:
        if name == "kill_at":
            return self._times[0]
        if name == "stop_at":
            return self._times[3]
        if name == "pods_ready":
            return self._times[4] > 0
        if name == "victim":
            return self._names[int(self._times[5])]
        return getattr(self._plan, name)


def _churn_main(names: list[str], plan: ChurnPlan, out: Any, times: Any) -> None:
    class _Live:
        def __getattr__(self, name: str) -> Any:
            if name == "start_at":
                return _wait_times(times)[1]
            if name == "stop_at":
                return times[2]
            return getattr(plan, name)

    churn_worker(names, _Live(), out)  # type: ignore[arg-type]


# ---- report -------------------------------------------------------------------
def table(results: list[SizeResult]) -> str:
    """The scale table (markdown)."""
    methods = [m for m in em.METHODS if any(m in w.get("by_method", {}) for r in results for w in (r.idle, r.churn))]
    head = (
        "| nodes | idle req/s (per node) | idle by type | idle sent KiB/s | churn req/s | churn by type | db size "
        "| keys | leases | etcd CPU idle / churn (cores) | alloc p50 / p99 | dead-node reclaim (bound) |"
    )
    lines = [head, "|" + "|".join("---" for _ in range(12)) + "|"]
    for r in results:

        def by(w: dict[str, Any]) -> str:
            bm = w.get("by_method", {})
            return ", ".join(f"{m} {bm[m]:.1f}" for m in methods if bm.get(m))

        rec = f"{r.reclaim_s:.0f} s" if r.reclaim_s is not None else "not reclaimed"
        lines.append(
            f"| {r.nodes} | {r.idle.get('req_s', 0):.1f} ({r.idle.get('req_s', 0) / r.nodes:.2f}) | {by(r.idle)} "
            f"| {r.idle.get('sent_Bps', 0) / 1024:.1f} | {r.churn.get('req_s', 0):.1f} | {by(r.churn)} | {r.db_bytes / 2**20:.1f} MiB "
            f"(in use {r.db_in_use / 2**20:.1f}) | {r.keys:.0f} | {r.leases} "
            f"| {r.idle.get('cpu_cores', 0):.2f} / {r.churn.get('cpu_cores', 0):.2f} "
            f"| {r.alloc_p50_ms:.1f} / {r.alloc_p99_ms:.1f} ms | {rec} ({r.reclaim_bound_s:.0f} s) |"
        )
    return "\n".join(lines)


def honesty(results: list[SizeResult]) -> str:
    """What the harness itself says about the run: was it on time, did anything fail."""
    return "\n".join(
        f"- {r.nodes} nodes: setup {r.setup_s:.1f} s, {r.pods} pods; schedule lag p99 {r.sched_lag_p99_ms:.0f} ms; "
        f"tick errors {r.tick_errors}; {r.allocs} allocations, {r.alloc_errors} failed; "
        f"client CPU {r.client_cpu_s:.1f} s"
        for r in results
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flatnet_lab.bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--nodes", default="10,100,1000", help="sizes, comma-separated (default: %(default)s)")
    p.add_argument("--out", default=None, metavar="DIR", help="write scale.json (and charts) there")
    p.add_argument("--label", default="", help="a name for this run in scale.json (e.g. before/after)")
    p.add_argument("--idle", type=float, default=Settings.idle, help="idle window, s")
    p.add_argument("--churn", type=float, default=Settings.churn, help="churn window, s")
    p.add_argument("--grace", type=float, default=Settings.grace, help="dead-node grace, s")
    p.add_argument("--ttl", type=int, default=Settings.ttl, help="heartbeat TTL, s")
    p.add_argument("--overlay", action="store_true", help="every node also runs the vxlan peer sync")
    p.add_argument("--procs", type=int, default=Settings.procs, help="worker processes for the nodes")
    p.add_argument("--kill", choices=("node", "sweeper"), default="node", help="which node dies (default: %(default)s)")
    args = p.parse_args(argv)
    s = Settings(
        ttl=args.ttl,
        grace=args.grace,
        idle=args.idle,
        churn=args.churn,
        overlay=args.overlay,
        procs=args.procs,
        kill=args.kill,
    )
    sizes = [int(x) for x in args.nodes.split(",") if x.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="fnscale-") as workdir:
        for n in sizes:
            print(f"scale: {n} nodes ...", flush=True)
            r = run_size(n, s, workdir)
            results.append(r)
            print(table([r]).splitlines()[-1], flush=True)
    print(table(results))
    print(honesty(results))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, f"scale{('-' + args.label) if args.label else ''}.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"settings": asdict(s), "results": [asdict(r) for r in results]}, fh, indent=1)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
