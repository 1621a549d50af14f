"""The scenarios, the profiles, and ``run``: build a cluster, load it, strike, check, clean.

Scenarios (each on a fresh cluster and store):
  agent-kill       agents SIGKILLed at random points of the load, restarted 0-0.5 s later
  sqlite-txn-kill  a SQLite writer SIGKILLed inside BEGIN IMMEDIATE (sqlite only)
  etcd-restart     etcd SIGKILLed mid-load and started again 1-3 s later (etcd only)
  etcd-member-loss three etcd members; one (the leader first) SIGKILLed mid-load and started
                   again after a quarter of the load; the store knows all three endpoints
  shared-subnet    three network configs on one subnet and VLAN (pools fnkneta, fnknetb and
                   fnknetc, whose range overlaps theirs in part); a fifth of the ADDs ask for
                   an address (CNI_ARGS IP=) a running pod of any network may hold; agents
                   SIGKILLed as in agent-kill. 0 duplicates *across* pools, by the store, the
                   segment index and the addresses live pods really have (issue 26)
  node-lost        a node vanishes with its pods (no DEL); the survivors run the CNI GC
                   verb with their valid attachments, and the lost node's leases are
                   reclaimed by GC on its behalf (valid list empty); then sandboxes on
                   surviving nodes vanish with neither DEL nor GC, and the agents' own
                   reconciliation must reclaim them
Each is checked twice: with the pods that are still running, then after DEL of all of them
(then nothing at all may remain).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

from flatnet_lab.chaos import faults, invariants
from flatnet_lab.chaos.cluster import NETWORK, RANGE_END, RANGE_START, SHARED, SUBNET, Cluster
from flatnet_lab.chaos.load import Counters, Pod, call, delete_until_done, lifecycle
from flatnet_lab.chaos.report import ScenarioResult


@dataclass(frozen=True)
class Profile:
    name: str
    ops: int  # CNI calls of the agent-kill scenario
    concurrency: int
    kills: int  # agent SIGKILLs in agent-kill
    side_ops: int  # CNI calls of each other scenario
    etcd_stops: int
    txn_kills: int
    member_kills: int = 1
    nodes: int = 3
    keep: int = 24  # pods left running at the end of the load (checked live)


PROFILES = {
    "smoke": Profile(
        "smoke", ops=300, concurrency=16, kills=5, side_ops=120, etcd_stops=2, txn_kills=3, member_kills=1
    ),
    "full": Profile(
        "full", ops=10_000, concurrency=16, kills=50, side_ops=2_000, etcd_stops=6, txn_kills=25, member_kills=3
    ),
}
SCENARIOS = {
    "sqlite": ("agent-kill", "sqlite-txn-kill", "node-lost", "shared-subnet"),
    "etcd": ("agent-kill", "etcd-restart", "etcd-member-loss", "node-lost", "shared-subnet"),
}
Log = Callable[[str], None]


def _load(cluster: Cluster, counters: Counters, ops: int, concurrency: int, keep: int) -> dict[str, Pod]:
    """C workers run pod lifecycles until ``ops`` CNI calls were made."""
    live: dict[str, Pod] = {}
    lock = threading.Lock()
    keep_p = min(0.5, keep / max(1.0, ops / 2.5))
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while counters.ops < ops:
                lifecycle(cluster, counters, live, lock, keep=random.random() < keep_p)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return live


def _node_lost(cluster: Cluster, counters: Counters, live: dict[str, Pod], result: ScenarioResult) -> None:
    lost = cluster.nodes[-1]
    gone = [p for p in live.values() if p.node is lost]
    cluster.lose_node(lost, [p.ns for p in gone])
    for p in gone:
        del live[p.cid]
    result.kills += 1
    for node in cluster.nodes:
        for net in cluster.networks:  # GC is per network, as a runtime runs it
            valid = [
                {"containerID": p.cid, "ifname": "eth0"}
                for p in live.values()
                if p.node is node and p.network == net and not node.lost
            ]
            gc = Pod(f"gc-{node.name}", node, "", network=net)
            ok, doc = call(cluster, node, "GC", gc, counters, {"cni.dev/valid-attachments": valid})
            if not ok:
                result.notes.append(f"GC of {net} on {node.name} failed: {doc.get('msg')}")
    result.notes.append(
        f"lost {lost.name} with {len(gone)} pods; GC ran on every node (for "
        f"{lost.name} on its behalf, valid list empty)"
    )
    _vanish_without_del(cluster, live, result)
    # life goes on: new pods must not get the addresses of pods still running
    more = _load(cluster, counters, counters.ops + 40, 8, keep=10**6)
    live.update(more)


def _vanish_without_del(
    cluster: Cluster, live: dict[str, Pod], result: ScenarioResult, count: int = 4, timeout: float = 20.0
) -> None:
    """Sandboxes on surviving nodes disappear with no DEL and no GC: only the agents' own
    reconciliation (``--reconcile-every``, agent/reconcile.py) can reclaim them."""
    from flatnet_lab.chaos.invariants import owner_leases
    from flatnet.ipam.store import open_store

    victims = [p for p in live.values() if not p.node.lost][:count]
    for p in victims:
        cluster.drop_netns(p.ns)
        del live[p.cid]
    started, left = time.monotonic(), {p.cid for p in victims}
    store = open_store(cluster.store_config())
    try:
        while left and time.monotonic() - started < timeout:
            time.sleep(0.5)
            left &= {lease.owner.container_id for lease in owner_leases(store)}
    finally:
        store.close()
    result.notes.append(
        f"{len(victims)} sandboxes vanished without DEL on surviving nodes; the "
        f"agents reclaimed {len(victims) - len(left)} in {time.monotonic() - started:.1f} s"
    )


def run_scenario(name: str, store: str, profile: Profile, log: Log) -> ScenarioResult:
    result = ScenarioResult(name, store)
    started = time.monotonic()
    members = 3 if name == "etcd-member-loss" else 1
    nets = dict(SHARED) if name == "shared-subnet" else {NETWORK: (SUBNET, RANGE_START, RANGE_END)}
    with Cluster(nodes_n=profile.nodes, store_kind=store, etcd_members=members, networks=nets) as cluster:
        for node in cluster.nodes:
            if not cluster.wait_agent(node):
                raise RuntimeError(f"agent of {node.name} did not start (log in {cluster.workdir})")
        counters = Counters()
        done = threading.Event()
        ops = profile.ops if name == "agent-kill" else profile.side_ops
        problems: list[str] = []
        problems_info: list[str] = []  # what the injector did (notes, not problems)
        strike = {
            "agent-kill": (profile.kills, faults.kill_agent(cluster)),
            "shared-subnet": (profile.kills, faults.kill_agent(cluster)),
            "etcd-restart": (profile.etcd_stops, faults.bounce_etcd(cluster) if store == "etcd" else None),
            "etcd-member-loss": (
                profile.member_kills,
                faults.kill_member(cluster, counters, max(ops // 4, 20), problems_info) if store == "etcd" else None,
            ),
            "sqlite-txn-kill": (
                profile.txn_kills,
                faults.kill_sqlite_writer(cluster, problems) if store == "sqlite" else None,
            ),
        }.get(name)
        injector = None
        if strike and strike[1] is not None:
            points = faults.thresholds(strike[0], ops)
            if name == "etcd-member-loss":  # mid-load, leaving load for the outage and after
                points = [ops * (k + 1) // (2 * strike[0] + 1) for k in range(0, 2 * strike[0], 2)]
            injector = faults.Injector(counters, points, strike[1], done)
            injector.start()
        keep = profile.keep * (2 if name == "node-lost" else 1)
        try:
            live = _load(cluster, counters, ops, profile.concurrency, keep)
        finally:
            done.set()
            if injector is not None:
                injector.join(60)
        if injector is not None:
            result.kills += injector.count
            if injector.error is not None:
                result.notes.append(f"injector failed: {injector.error!r}")
        for node in cluster.nodes:  # every fault is over: agents up again before the checks
            if not node.lost and (node.proc is None or node.proc.poll() is not None):
                cluster.start_agent(node)
        if cluster.etcd is not None and not cluster.etcd.healthy():
            cluster.etcd.start()
        if name == "node-lost":
            _node_lost(cluster, counters, live, result)
        log(f"{name}/{store}: {counters.ops} calls, {len(live)} pods running; checking")
        found = invariants.check(cluster, live)
        for pod in list(live.values()):
            if delete_until_done(cluster, pod, counters):
                cluster.drop_netns(pod.ns)
                del live[pod.cid]
        after = invariants.check(cluster, live)
        result.operations, result.failed = counters.ops, counters.failed
        result.duplicates = found.duplicates + after.duplicates
        result.lost = found.lost + after.lost
        result.leaks = found.leaks + after.leaks
        result.notes += [*problems_info, *problems, *counters.problems[:10], *found.details[:15], *after.details[:15]]
        top = sorted(counters.errors.items(), key=lambda kv: -kv[1])[:4]
        result.notes += [f"{n}x {why}" for why, n in top]
    result.seconds = time.monotonic() - started
    return result


def run(
    profile: Profile, stores: list[str], log: Log = lambda _m: None, only: tuple[str, ...] = ()
) -> list[ScenarioResult]:
    results = []
    for store in stores:
        for name in SCENARIOS[store]:
            if only and name not in only:
                continue
            log(f"{name} on {store} ({profile.name} profile)")
            results.append(run_scenario(name, store, profile, log))
    return results
