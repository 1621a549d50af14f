"""The simulated nodes of the scale run (``scale.py``): real agents' store sessions, few processes.

Each simulated node is the agent's own background code against the real etcd: a
``NodeHeartbeat`` (lease, keepalives, the dead-node sweep and reclaim) and a ``Reconciler``
(the leak pass over the node's leases), each with its own ``EtcdStore`` and ``Ipam`` as an
agent has. What is simulated is only the host around them: no datapath (``SimService``
serves no network plumbing) and no threads per node — a worker process runs the duties of
its share of the nodes from one schedule on a few threads, which is what lets 1,000 nodes
run on two cores. A late schedule is measured (``lag``) and reported, so a run whose
harness could not keep up says so.

The pod churn (``churn``) is a separate process: per node an ``Ipam`` over one shared
store allocates and releases pods of that node (chunk claims included), timing each
allocation. It stands for the agents' CNI path, which in a real agent is a thread apart
from its heartbeat.
"""

from __future__ import annotations

import heapq
import ipaddress
import random
import resource
import threading
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from typing import Any

from flatnet.agent.heartbeat import NodeHeartbeat
from flatnet.agent.overlay import PeerSync
from flatnet.agent.reconcile import Reconciler
from flatnet.ipam import Ipam, blocks
from flatnet.ipam.api import Owner, PoolSpec
from flatnet.ipam.store import open_store

POOL = PoolSpec(name="scale", subnet=ipaddress.ip_network("198.18.0.0/15"), conflict_probe=False)
NETWORK = "scale-net"


def node_name(i: int) -> str:
    return f"sn{i:04d}"


@dataclass(frozen=True)
class SimConf:
    """The one network every simulated node serves (what ``Reconciler`` reads of a config)."""

    name: str = NETWORK
    mode: str = "macvlan"


@dataclass(frozen=True)
class OverlayConf:
    """A vxlan network as ``blocks`` reads it: a /24 per node out of a /14."""

    name: str = "scale-ovl"
    cluster_subnet: Any = ipaddress.ip_network("198.18.0.0/15")
    node_block_prefix: int = 26


class SimOverlayHooks:
    """The vxlan ``join`` minus the kernel: claim the block, publish the VTEP, list the peers.

    ``agent/overlay.join`` does exactly these store calls around the datapath's
    ``ensure_node``/``sync_peers``, which have nothing to do with etcd.
    """

    ready_by_prepare = True

    def pools(self, store: Any, conf: Any, node: str) -> list[PoolSpec]:
        return []

    def prepare(self, store: Any, conf: Any, node: str, host_netns: str | None) -> dict[str, Any]:
        assert conf.overlay is not None
        block = blocks.ensure_block(store, conf.name, node, conf.overlay.cluster_subnet, conf.overlay.node_block_prefix)
        n = int(node[2:])
        mac = f"02:fe:00:00:{n // 256:02x}:{n % 256:02x}"
        vtep = str(ipaddress.ip_address("198.19.128.0") + n)
        blocks.register_node(store, conf.name, node, vtep, mac, block)
        return {"peers": [p.as_peer() for p in blocks.nodes(store, conf.name) if p.node != node]}


class SimService:
    """The part of the agent's ``Service`` the heartbeat and reconciler use; no datapath."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._pair: tuple[Any, Ipam] | None = None

    def open_store_config(self, cfg: dict[str, Any]) -> tuple[Any, Ipam]:
        if self._pair is None:
            store = open_store(cfg)
            self._pair = (store, Ipam(store))
        return self._pair

    def served_networks(self) -> list[SimConf]:
        return [SimConf()]

    def ipam(self, conf: Any) -> Ipam:
        raise_if = self._pair
        assert raise_if is not None
        return raise_if[1]

    def reclaim_if_unchanged(self, *args: Any) -> bool:
        return False  # leases here record no netns: the reconciler never suspects them


@dataclass(frozen=True)
class Plan:
    """What a worker does and when (monotonic times are shared by the processes of a machine)."""

    cfg: dict[str, Any]
    ttl: int
    grace: float
    reconcile: float
    stop_at: float
    victim: str
    kill_at: float
    threads: int = 6
    overlay: bool = False
    pods_ready: bool = False  # set (through the parent's shared times) once the pods are placed


class _Duty:
    """One periodic duty of one node: its object, its period, what ticking it means."""

    def __init__(self, node: str, kind: str, obj: Any, period: float) -> None:
        self.node, self.kind, self.obj, self.period = node, kind, obj, period


def nodes_worker(names: list[str], plan: Plan, out: Queue) -> None:
    """Run the heartbeat and reconciler of ``names`` until ``plan.stop_at``; report to ``out``."""
    duties: list[_Duty] = []
    beats: dict[str, NodeHeartbeat] = {}
    for name in names:
        svc = SimService(name)
        hb = NodeHeartbeat(svc, plan.cfg, ttl=plan.ttl, grace=plan.grace)
        beats[name] = hb
        duties.append(_Duty(name, "beat", hb, hb.interval))
        if plan.reconcile > 0:
            duties.append(_Duty(name, "reconcile", Reconciler(svc, plan.reconcile), plan.reconcile))
        if plan.overlay:
            ps = PeerSync()
            ps.remember(SimOverlayHooks(), hb.store, OverlayConf(), name, None)  # type: ignore[arg-type]
            duties.append(_Duty(name, "peersync", ps, ps.interval))
    # the first tick of a beat announces the node (each agent's start), so a node that is up
    # beats on time while the others still announce; the parent hears once all are up
    now = time.monotonic()
    heap = [(now + random.uniform(0, d.period), i) for i, d in enumerate(duties) if d.kind != "reconcile"]
    heapq.heapify(heap)
    cond = threading.Condition()

    def start_reconcilers() -> None:
        """Once the pods are placed: seed each reconciler mid-cycle, then schedule it."""
        while not plan.pods_ready:
            time.sleep(0.1)
        recs = [(i, d) for i, d in enumerate(duties) if d.kind == "reconcile"]
        seed_reconcilers([d.obj for _i, d in recs], plan.cfg)
        with cond:
            t = time.monotonic()
            for i, d in recs:
                heapq.heappush(heap, (t + random.uniform(0, d.period), i))
            cond.notify_all()
        out.put(("seeded", len(recs)))

    threading.Thread(target=start_reconcilers, daemon=True).start()
    lags: list[float] = []
    counts = {"beat": 0, "reconcile": 0, "peersync": 0, "errors": 0}
    reclaimed: list[tuple[str, str, float]] = []
    waiting = set(beats)  # nodes not announced yet

    def work() -> None:
        while True:
            with cond:
                while True:
                    if time.monotonic() >= plan.stop_at:
                        return
                    if heap and heap[0][0] <= time.monotonic():
                        due, i = heapq.heappop(heap)
                        break
                    cond.wait(min(0.2, max(0.0, heap[0][0] - time.monotonic())) if heap else 0.2)
            d = duties[i]
            start = time.monotonic()
            if d.node == plan.victim and start >= plan.kill_at:
                continue  # the victim died: no beat, no sweep, nothing (its lease runs out)
            lags.append(start - due)
            before = len(beats[d.node].reclaimed_by_me)
            try:
                d.obj.tick()
                counts[d.kind] += 1
            except Exception:  # noqa: BLE001 - tick() logs its own store errors
                counts["errors"] += 1
            if waiting and d.kind == "beat" and d.obj.lease_id:
                with cond:
                    waiting.discard(d.node)
                    if not waiting:
                        out.put(("ready", len(names)))
            after = beats[d.node].reclaimed_by_me
            for dead in after[before:]:
                reclaimed.append((d.node, dead, time.monotonic()))
                out.put(("reclaimed", (d.node, dead, time.monotonic())))
            with cond:
                heapq.heappush(heap, (due + d.period, i))
                cond.notify()

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    threads = [threading.Thread(target=work, daemon=True) for _ in range(plan.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    for hb in beats.values():
        hb.store.close()
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    out.put(("done", {"lags": lags, "counts": counts, "reclaimed": reclaimed, "cpu": cpu}))


def seed_reconcilers(recs: list[Reconciler], cfg: dict[str, Any]) -> None:
    """Put each reconciler where a long-running agent's is: somewhere in its full-pass cycle.

    An agent's first pass reads every lease of the store (its start-up cost); 1,000 nodes
    doing that at once would be a cluster-wide restart, not the steady state this run
    measures. So this process reads the leases once and gives each reconciler what its own
    first pass would have found, with its next full pass at a random point of its cycle.
    Every pass after that is the reconciler's own. A reconciler without full/light passes
    (before docs/SCALE.md's fix: every pass full) needs no seed.
    """
    if not recs or not hasattr(recs[0], "_known"):
        return
    from flatnet.agent.reconcile import RECORDS_PER_SECOND

    store = open_store(cfg)
    try:
        leases = Ipam(store).leases()
    finally:
        store.close()
    mine: dict[str, dict[tuple[str, str, str], list[Any]]] = {}
    for lease in leases:
        o = lease.owner
        if o.network == NETWORK and o.node:
            mine.setdefault(o.node, {}).setdefault((NETWORK, o.container_id, o.ifname), []).append(lease)
    for rec in recs:
        rec._known = mine.get(rec.service.node, {})
        rec.full_every = max(rec.interval, len(leases) / RECORDS_PER_SECOND)
        rec._next_full = time.monotonic() + random.uniform(0, rec.full_every)


def _run_all(calls: list[Any], threads: int) -> None:
    """Call each of ``calls`` once on ``threads`` threads (errors are the heartbeat's to log)."""
    it = iter(calls)
    lock = threading.Lock()

    def drain() -> None:
        while True:
            with lock:
                call = next(it, None)
            if call is None:
                return
            try:
                call()
            except Exception:  # noqa: BLE001 - a failed first beat is retried by tick()
                pass

    ts = [threading.Thread(target=drain, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


@dataclass(frozen=True)
class ChurnPlan:
    """Pods per node at the start, then ``rate`` allocations/s (and as many releases) in the window."""

    cfg: dict[str, Any]
    pods_per_node: int
    rate: float
    start_at: float
    stop_at: float
    threads: int = 4


def churn_worker(names: list[str], plan: ChurnPlan, out: Queue) -> None:
    """Place the initial pods, then churn in [start_at, stop_at); report allocation latencies."""
    store = open_store(plan.cfg)
    ipams = {n: Ipam(store) for n in names}
    pods: dict[str, list[Owner]] = {n: [] for n in names}
    seq = iter(range(10**9))
    lock = threading.Lock()

    def add(node: str) -> float:
        owner = Owner(f"c{next(seq):08x}", "eth0", NETWORK, "scale", f"p{next(seq)}", node=node)
        t0 = time.perf_counter()
        ipams[node].allocate([POOL], owner)
        dt = time.perf_counter() - t0
        with lock:
            pods[node].append(owner)
        return dt

    def remove(node: str) -> None:
        with lock:
            if not pods[node]:
                return
            owner = pods[node].pop(0)
        ipams[node].release(owner.container_id, owner.ifname)

    setup: list[float] = []
    _run_all([lambda n=n: setup.append(add(n)) for n in names for _ in range(plan.pods_per_node)], plan.threads)
    out.put(("pods", sum(len(v) for v in pods.values())))
    while time.monotonic() < plan.start_at:
        time.sleep(0.05)
    lat: list[float] = []
    errors = 0
    period = 1.0 / plan.rate
    due = time.monotonic()
    rng = random.Random(7)
    while due < plan.stop_at:
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        node = rng.choice(names)
        try:
            lat.append(add(node))
            remove(rng.choice(names))
        except Exception:  # noqa: BLE001 - counted: a failed allocation is a result
            errors += 1
        due += period
    store.close()
    out.put(("churn", {"lat": lat, "errors": errors, "setup": setup}))
