"""IPAM: allocations/s, p99 latency and etcd requests per allocation for SQLite and etcd,
1..128 concurrent clients, pools of 256 to 1,000,000 addresses, etcd's own put ceiling in the
same run, and a duplicate check of 10,000 pods on 100 nodes.

Clients are *processes* (forked), each with its own store connection, as CNI plugins and
agents on many nodes would be; a barrier starts them together and the wall time runs from
the first allocation to the last. Pools are IPv6 ranges so small and large pools are the same
kind of pool; each measurement uses a fresh pool in its own /104 (an empty pool, and no
address shared with another measurement's pool: one holder per address per segment).

``python -m flatnet_lab.bench.ipambench [sqlite] [etcd] [--pods N] [--matrix]`` runs the
duplicate-check rows alone (a private etcd is started and stopped) and prints the CPU per
allocation of the client processes and of etcd next to the wall time: the figures to profile
the allocator with; ``--matrix`` first prints the put ceiling and every pool x clients row.
"""

from __future__ import annotations

import ipaddress
import multiprocessing as mp
import os
import time
import uuid
import zlib
from typing import Any, Callable

from flatnet_lab.bench import etcdcount
from flatnet_lab.bench.profile import Profile
from flatnet_lab.bench.results import Results
from flatnet_lab.bench.stats import percentile
from flatnet.errors import FlatnetError

SECTION = "ipam"
Tick = Callable[[str], None]


def size_label(size: int) -> str:
    if size >= 1_000_000:
        return f"{size // 1_000_000}M"
    return f"{size // 1_000}k" if size >= 1_000 else str(size)


def _pool(name: str, size: int) -> Any:
    """The pool of a measurement: its own /104 (from its name), so no two measurements of a
    run share addresses: an address is held once per segment, whatever the pool's name."""
    from flatnet.ipam import PoolSpec

    h = zlib.crc32(name.encode())
    subnet = ipaddress.ip_network(f"2001:db8:{h >> 16:x}:{h & 0xFFFF:x}::/104")
    base = subnet.network_address + 1
    return PoolSpec(name, subnet, range_start=base, range_end=base + size - 1)


def client_nodes(wid: int, clients: int, nodes: int, mixed: bool = False) -> list[int]:
    """The simulated nodes client ``wid`` allocates for.

    As in a cluster, where each node's agent is the only allocator for its pods, client
    ``wid`` serves nodes wid, wid + clients, ... (disjoint sets; every node served). More
    clients than nodes: client ``wid`` serves node ``wid % nodes`` (some nodes have two
    allocating processes, as a node running the plugin without an agent has). With
    ``mixed`` (the shape before stop 10) every client allocates for every node: a stress
    shape no flatnet cluster produces, in which each client's node chunks are always stale.
    """
    if mixed:
        return list(range(nodes))
    return [wid % nodes] if clients > nodes else list(range(wid, nodes, clients))


def _worker(
    cfg: dict[str, Any],
    pool_name: str,
    size: int,
    n: int,
    first: int,
    wid: int,
    nodes: list[int],
    barrier: Any,
    out: Any,
    threads: int = 1,
    warm: bool = False,
) -> None:
    """One client process: wait for the barrier, allocate ``n`` addresses, report.

    ``threads`` > 1: the process is its nodes' agent serving ADDs the way kubelet sends them
    when it starts a node's pods, ``threads`` at once, node after node (one ``Ipam`` shared,
    as the agent shares one); 1: one allocation after another. ``warm``: the first of the
    ``n`` is made before the barrier and not timed: the clock then sees a running agent
    (connected, the pool's definition read, the node's first chunk claimed), not a process
    starting."""
    from concurrent.futures import ThreadPoolExecutor

    from flatnet.ipam import Ipam, Owner, open_store

    lat: list[float] = []
    ips: list[str] = []
    errs: list[str] = []
    store = open_store(cfg)
    try:
        ipam, pool = Ipam(store), _pool(pool_name, size)

        def one(k: int) -> None:
            owner = Owner(uuid.uuid4().hex, "eth0", "bench", "bench", f"pod-{k}", node=f"node{nodes[k % len(nodes)]}")
            s = time.perf_counter()
            try:
                lease = ipam.allocate([pool], owner)[0]
            except FlatnetError as exc:
                errs.append(exc.msg)
                return
            lat.append(time.perf_counter() - s)
            ips.append(str(lease.address.ip))

        todo = list(range(first, first + n))
        if warm and todo:
            one(todo.pop(0))
            lat.clear()
        barrier.wait(60)
        t0 = time.monotonic()
        if threads > 1:
            todo.sort(key=lambda k: nodes[k % len(nodes)])  # node after node
            with ThreadPoolExecutor(threads) as ex:
                list(ex.map(one, todo))
        else:
            for k in todo:
                one(k)
                if errs:
                    break
        t1 = time.monotonic()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, never lost
        t0 = t1 = time.monotonic()
        errs.append(f"{type(exc).__name__}: {exc}")
    finally:
        store.close()
    out.put((wid, t0, t1, lat, ips, errs[0] if errs else ""))


def run_clients(
    cfg: dict[str, Any],
    pool_name: str,
    size: int,
    total: int,
    clients: int,
    nodes: int = 100,
    mixed: bool = False,
    threads: int = 1,
    warm: bool = False,
) -> tuple[float, list[float], list[str], list[str]]:
    """``total`` allocations split over ``clients`` processes, each the allocator of its own
    share of ``nodes`` simulated nodes (``client_nodes``), ``threads`` allocations at once,
    ``warm`` or not (``_worker``): (wall s, latencies of the timed ones, every ip, errors)."""
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(clients + 1), ctx.Queue()
    shares = [total // clients + (w < total % clients) for w in range(clients)]
    firsts = [sum(shares[:w]) for w in range(clients)]
    procs = [
        ctx.Process(
            target=_worker,
            daemon=True,
            args=(
                cfg,
                pool_name,
                size,
                shares[w],
                firsts[w],
                w,
                client_nodes(w, clients, nodes, mixed),
                barrier,
                out,
                threads,
                warm,
            ),
        )
        for w in range(clients)
    ]
    got = etcdcount.run_together(procs, barrier, out)
    wall = max(g[2] for g in got) - min(g[1] for g in got)
    lat = [x for g in got for x in g[3]]
    ips = [x for g in got for x in g[4]]
    errs = [g[5] for g in got if g[5]]
    return wall, lat, ips, errs


def measure(
    cfg: dict[str, Any], size: int, clients: int, allocs: int, warm: bool = True
) -> tuple[float, list[float], dict[str, float] | None, list[str]]:
    """One row: min(allocs, 90% of the pool) allocations by ``clients`` processes into a new
    pool of ``size`` addresses: (wall s, latencies, etcd requests per allocation by method or
    None, errors).

    Each client is one node's allocator, one allocation after another (an agent of its own
    node, as the pool's sharers are in a cluster); before issue 21 every row spread its
    clients over 100 simulated nodes, so a 1k pool was parked in 100 nodes' chunks. ``warm``
    (the matrix): each client's first allocation is made before the clock starts; a 1k pool
    has only 900 allocations to share, and 32 processes' start-up (connect, fork's copied
    pages, the pool's definition, the first chunk: ~9 ms of CPU each) was 40% of the
    clients' CPU in the row. The cold start is measured too (``COLD``)."""
    total = min(allocs, int(size * 0.9))
    name = f"fnb-{uuid.uuid4().hex[:8]}"
    endpoint = cfg["endpoints"][0] if cfg.get("type") == "etcd" else None
    before = etcdcount.requests(endpoint) if endpoint else None
    wall, lat, ips, errs = run_clients(cfg, name, size, total, clients, nodes=clients, warm=warm)
    reqs = etcdcount.delta(before, etcdcount.requests(endpoint)) if endpoint and before is not None else None
    per = {k: v / max(1, len(ips)) for k, v in reqs.items()} if reqs is not None else None
    return wall, lat, per, errs


#: (pool size, clients) of the row measured a second time from a cold start (each client's
#: first allocation timed too): issue 21's small shared pool
COLD = (1_000, 32)


class IpamBench:
    def __init__(self, profile: Profile, results: Results, tick: Tick, stores: dict[str, dict[str, Any]]) -> None:
        self.p, self.r, self.tick, self.stores = profile, results, tick, stores
        self.errors: list[str] = []

    def run(self) -> None:
        for rep in range(self.p.repeats):
            for kind, cfg in self.stores.items():
                if kind == "etcd":
                    self.tick(f"ipam: etcd's own put ceiling, 32 clients (repeat {rep + 1})")
                    ceiling = etcdcount.put_ceiling(cfg, 32, max(2_000, self.p.ipam_allocs * 2))
                    self.r.add(SECTION, kind, "put ceiling (32 cl, one key per txn)", "1/s", ceiling, better="higher")
                for size in self.p.ipam_pools:
                    for clients in self.p.ipam_clients:
                        self.tick(f"ipam: {kind}, {clients} clients, {size_label(size)} pool (repeat {rep + 1})")
                        self._one(kind, cfg, size, clients)
                        if kind == "etcd" and (size, clients) == COLD:
                            self.tick(f"ipam: {kind}, {clients} clients, {size_label(size)} pool, cold start")
                            self._one(kind, cfg, size, clients, warm=False)
        for kind, cfg in self.stores.items():
            self.tick(f"ipam: {self.p.dup_pods} pods on {self.p.dup_nodes} nodes in {kind}")
            self._duplicates(kind, cfg)
        if self.errors:
            self.r.notes.append("IPAM client errors: " + "; ".join(sorted(set(self.errors)))[:600])

    def _one(self, kind: str, cfg: dict[str, Any], size: int, clients: int, warm: bool = True) -> None:
        wall, lat, reqs, errs = measure(cfg, size, clients, self.p.ipam_allocs, warm)
        self.errors.extend(errs)
        if not lat:
            raise FlatnetError(f"bench: no allocation succeeded in {kind}", "; ".join(errs)[:300])
        cond = f"{clients} cl, {size_label(size)} pool" + ("" if warm else ", cold start")
        self.r.add(SECTION, kind, f"alloc/s ({cond})", "1/s", len(lat) / wall, better="higher")
        self.r.add(SECTION, kind, f"alloc p99 ({cond})", "ms", percentile(lat, 99) * 1e3)
        if reqs is not None:
            self.r.add(SECTION, kind, f"etcd requests/alloc ({cond})", "count", sum(reqs.values()))

    def _duplicates(self, kind: str, cfg: dict[str, Any]) -> None:
        """10k pods on 100 nodes, twice: 8 processes allocating one after another, then the
        same processes as the nodes' agents serving ``dup_threads`` ADDs at once (kubelet
        starting a node's pods together), which the allocator commits in shared txns."""
        for threads, extra in ((1, "ipam_dup"), (self.p.dup_threads, "ipam_dup_agents")):
            d = self._place(cfg, threads)
            label = f"{self.p.dup_pods} pods / {self.p.dup_nodes} nodes"
            if threads > 1:
                label += f", agents ({threads} ADDs at once per node)"
            self.r.add(SECTION, kind, f"{label}: wall time", "s", d["wall_s"])
            self.r.add(SECTION, kind, f"{label}: duplicates", "count", d["duplicates"])
            self.r.extra.setdefault(extra, {})[kind] = d

    def _place(self, cfg: dict[str, Any], threads: int) -> dict[str, Any]:
        from flatnet.ipam import Ipam, open_store

        clients, total = 8, self.p.dup_pods
        name = f"fnb-dup-{uuid.uuid4().hex[:6]}"
        wall, lat, ips, errs = run_clients(
            cfg, name, 1_000_000, total, clients, nodes=self.p.dup_nodes, threads=threads
        )
        self.errors.extend(errs)
        store = open_store(cfg)
        try:
            leases = Ipam(store).leases(name)
        finally:
            store.close()
        held = [str(lease.address.ip) for lease in leases]
        dups = (len(ips) - len(set(ips))) + (len(held) - len(set(held)))
        return {
            "pods": total,
            "allocated": len(ips),
            "leases_in_store": len(held),
            "nodes_seen": len({lease.owner.node for lease in leases}),
            "duplicates": dups,
            "wall_s": wall,
            "threads": threads,
            "p99_ms": percentile(lat, 99) * 1e3 if lat else None,
        }


def store_configs(tmp: str, etcd_endpoint: str | None) -> dict[str, dict[str, Any]]:
    """The stores to compare: SQLite in the run's tmp dir, and etcd when one is running."""
    out: dict[str, dict[str, Any]] = {"sqlite": {"type": "sqlite", "path": os.path.join(tmp, "ipam-bench.db")}}
    if etcd_endpoint:
        out["etcd"] = {
            "type": "etcd",
            "endpoints": [etcd_endpoint],
            "prefix": f"/fnb-{uuid.uuid4().hex[:8]}/",
            "timeout": 10.0,
        }
    return out


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _matrix(configs: dict[str, dict[str, Any]], args: Any) -> None:
    """Print the matrix rows, one line each (``--matrix``)."""
    sizes = [int(x) for x in args.sizes.split(",")]
    counts = [int(x) for x in args.client_counts.split(",")]
    for kind in args.stores:
        cfg = configs[kind]
        if kind == "etcd":
            print(f"etcd: put ceiling, 32 clients: {etcdcount.put_ceiling(cfg, 32, 4_000):.0f} puts/s", flush=True)
        for size in sizes:
            for clients in counts:
                wall, lat, reqs, errs = measure(cfg, size, clients, args.allocs, warm=not args.cold)
                if not lat:
                    print(f"{kind}: {size_label(size)} pool, {clients} clients: nothing allocated: {errs[:1]}")
                    continue
                per = (
                    f", etcd requests/alloc {sum(reqs.values()):.2f} "
                    + str({k: round(v, 2) for k, v in sorted(reqs.items())})
                    if reqs is not None
                    else ""
                )
                print(
                    f"{kind}: {size_label(size)} pool, {clients} clients: {len(lat) / wall:.0f} alloc/s, "
                    f"p99 {percentile(lat, 99) * 1e3:.1f} ms ({len(lat)} allocs){per}"
                    + (f"; errors: {errs[:1]}" if errs else ""),
                    flush=True,
                )


def main(argv: list[str] | None = None) -> int:
    """Just the "N pods / 100 nodes" rows, for profiling the allocator without the whole bench."""
    import argparse
    import shutil
    import tempfile

    from flatnet_lab.bench import etcdproc
    from flatnet_lab.bench.nsenv import Scratch

    p = argparse.ArgumentParser(
        prog="python -m flatnet_lab.bench.ipambench",
        description="The bench's duplicate-check rows alone: N allocations by 8 client processes "
        "for pods spread over 100 nodes (each client the allocator of its own nodes, as an agent "
        "is), in SQLite and a private etcd (started and stopped here).",
    )
    p.add_argument("stores", nargs="*", default=["sqlite", "etcd"], help="sqlite and/or etcd")
    p.add_argument(
        "--matrix",
        action="store_true",
        help="also alloc/s, p99 and etcd requests per allocation for --sizes x --client-counts, "
        "after etcd's own put ceiling (32 clients)",
    )
    p.add_argument("--sizes", default="256,1000,4000,1000000", help="pool sizes of the matrix")
    p.add_argument("--client-counts", default="1,8,32,128", help="client processes of the matrix")
    p.add_argument("--allocs", type=int, default=1_000, help="allocations per matrix row (at most 90%% of the pool)")
    p.add_argument(
        "--cold",
        action="store_true",
        help="matrix rows from a cold start: each client's first allocation (connect, pool "
        "definition, first chunk) is timed too; by default it is made before the clock starts",
    )
    p.add_argument("--pods", type=int, default=10_000)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="allocations at once per client, node after node, as an agent serves a node's pods "
        "that kubelet starts together (1: one after another)",
    )
    p.add_argument(
        "--mixed",
        action="store_true",
        help="every client allocates for every node (the pre-stop-10 stress shape) instead of "
        "each client being the only allocator of its own nodes, as an agent is",
    )
    args = p.parse_args(argv)
    scratch, tmp = Scratch(), tempfile.mkdtemp(prefix="fnb-ipam-")
    try:
        endpoint = etcdproc.start(tmp, scratch) if "etcd" in args.stores else None
        etcd_pid = scratch.procs[-1].pid if endpoint else 0
        configs = store_configs(tmp, endpoint)
        if args.matrix:
            _matrix(configs, args)
        for kind in args.stores:
            name = f"fnb-dup-{uuid.uuid4().hex[:6]}"
            t0, e0 = os.times(), _proc_cpu(etcd_pid) if kind == "etcd" else 0.0
            wall, lat, ips, errs = run_clients(
                configs[kind], name, 1_000_000, args.pods, args.clients, args.nodes, args.mixed, args.threads
            )
            t1, e1 = os.times(), _proc_cpu(etcd_pid) if kind == "etcd" else 0.0
            n = max(1, len(ips))
            clients_ms = (t1.children_user + t1.children_system - t0.children_user - t0.children_system) * 1e3 / n
            server = f", etcd CPU {(e1 - e0) * 1e3 / n:.2f} ms/alloc" if kind == "etcd" else ""
            print(
                f"{kind}: {args.pods} pods / {args.nodes} nodes: wall {wall:.2f} s, {len(ips)} allocated, "
                f"{len(ips) - len(set(ips))} duplicates, p99 {percentile(lat, 99) * 1e3:.1f} ms, "
                f"clients CPU {clients_ms:.2f} ms/alloc{server}" + (f"; errors: {errs[:2]}" if errs else ""),
                flush=True,
            )
    finally:
        scratch.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
