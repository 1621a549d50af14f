"""``flatnet lab redis --runtime cri``: the seed's Redis as containers through containerd's CRI.

Three nodes (each a private containerd in its own network namespace with the flatnet agent,
macvlan on one VLAN, one shared IPAM store with a sticky pool) and a VM on that VLAN outside
the cluster. The objects come from ``examples/redis`` (``redis_objects``); a reduced
scheduler binds each claim to the ``local`` PV of a node and places the pod there
(``testbed.scheduler``); the pods run from the Redis image built from Debian's packages
(``scripts/image/redis.sh``) with each Redis's data on its node-local PV directory
(``testbed.podrunner``). Then, measured from the VM: a Sentinel-aware client writes
continuously; the master's container and sandbox are killed; Sentinel promotes a replica and
the client follows; ``redis-0`` is recreated on its node, gets its sticky address, finds its
data on its volume and rejoins as a replica. Last, the seed's failure: a PV typed by hand
with the node's name in another case leaves a pod Pending, and ``flatnet doctor cluster``
run on the scenario's objects names the PV and the fix. Everything is removed at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, TypeVar

from flatnet.datapath.netns import run_in, spawn_in
from flatnet.doctor.cluster import analyze
from flatnet.errors import FlatnetError
from flatnet_lab.lab import redis_client as rc
from flatnet_lab.lab.redis_objects import NAMESPACE, RedisSet, claim, cluster_objects, hand_written_pv, load_example
from flatnet_lab.lab.redis_objects import pvs, redis_pod
from flatnet_lab.lab.redis_pods import wait_until
from flatnet_lab.lab.redis_writer import WriterLog, write_continuously
from flatnet_lab.testbed.cri.cluster import CriCluster
from flatnet_lab.testbed.podrunner import PodRunner, RunningPod
from flatnet_lab.testbed.scheduler import Objects, pending_message, schedule

T = TypeVar("T")
NODE_NAMES = ("keludev05", "keludev06", "keludev07")
REDIS_PORT, SENTINEL_PORT = 6379, 26379
ROOT = Path(__file__).resolve().parents[4]
REDIS_CONF = """port 6379
bind * -::*
protected-mode no
dir /data
logfile ""
save ""
appendonly yes
appendfsync always
"""
SENTINEL_CONF = """port 26379
bind * -::*
protected-mode no
dir /etc/sentinel
logfile ""
sentinel monitor {name} {master} 6379 {quorum}
sentinel down-after-milliseconds {name} 1000
sentinel failover-timeout {name} 6000
sentinel parallel-syncs {name} 2
"""


@dataclass
class Seed:
    """The seed's failure: a hand-typed PV, a Pending pod, the doctor's finding, the fix."""

    pod: str = ""
    pv: str = ""
    typed: str = ""
    node: str = ""
    pending: str = ""
    sandboxes: int = -1  # sandboxes named like the pod on any node (0: it was never started)
    findings: list[dict[str, Any]] = field(default_factory=list)
    doctor_exit: int = -1
    doctor_text: str = ""
    fixed_node: str = ""
    errors_after_fix: int = -1


@dataclass
class CriOutcome:
    nodes: list[str] = field(default_factory=list)
    placement: dict[str, str] = field(default_factory=dict)  # pod -> node
    ips: dict[str, str] = field(default_factory=dict)  # pod -> address at deploy time
    sentinels: list[str] = field(default_factory=list)
    master_before: str = ""
    master_after: str = ""
    redis0_ip_after: str = ""
    redis0_node_after: str = ""
    failover_s: float = -1.0  # the kill -> the VM's first write acknowledged by the new master
    write_gap_s: float = -1.0  # the VM's last ack from the old master -> first from the new
    recreate_s: float = -1.0  # new pod object -> redis-0 answers the VM at its address
    rejoin_s: float = -1.0  # new pod object -> redis-0 a synced replica of the new master
    acked_at_kill: int = 0
    on_volume: int = -1  # of acked_at_kill, keys redis-0 had on its volume when it came back
    acked: int = 0
    replicated: int = 0  # of acked, acknowledged after WAIT saw a replica have it
    present: dict[str, int] = field(default_factory=dict)  # pod -> keys 0..acked-1 it holds
    client_errors: int = 0
    vm_seen_as: str = ""  # the VM's address as the new master sees its connection (no NAT: the VM's own)
    replicas_seen: list[str] = field(default_factory=list)  # replicas the final master lists (ip:port)
    seed: Seed = field(default_factory=Seed)
    timeline: list[str] = field(default_factory=list)
    error: str = ""


def build_image() -> Path:
    """The Redis image archive (built or found cached by scripts/image/redis.sh)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "image" / "redis.sh")],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
        env={**os.environ, "PY": sys.executable},  # a proxy for the Debian mirror passes through
    )
    if proc.returncode != 0:
        raise FlatnetError("building the Redis image failed", (proc.stdout + proc.stderr)[-2000:])
    return ROOT / "build" / "image" / "redis-bookworm.oci.tar"


def client_addr(addr: rc.Addr) -> str:
    """The address ``addr`` sees this connection come from (``CLIENT INFO``'s ``addr=``)."""
    with rc.Conn(addr) as c:
        info = str(c.call("CLIENT", "INFO"))
    fields = dict(f.split("=", 1) for f in info.split() if "=" in f)
    return fields.get("addr", "").rsplit(":", 1)[0]


def replica_addrs(info: dict[str, str]) -> list[str]:
    """``ip:port`` of every ``slaveN`` line of ``INFO replication``."""
    out = []
    for k, v in sorted(info.items()):
        if k.startswith("slave") and k[5:].isdigit():
            f = dict(x.split("=", 1) for x in v.split(",") if "=" in x)
            out.append(f"{f.get('ip')}:{f.get('port')}")
    return out


def seed_typo(node: str) -> str:
    """How the seed typed the node's name: ``keludev05`` -> ``KeluDev05``."""
    if node.startswith("keludev"):
        return "KeluDev" + node[len("keludev") :]
    return node.upper()


class CriScenario:
    def __init__(self, rs: RedisSet, cl: CriCluster, keys: int, say: Callable[[str], None]) -> None:
        self.rs, self.cl, self.keys, self.say = rs, cl, keys, say
        self.objs: Objects = cluster_objects(rs, cl.names)
        self.runner = PodRunner(cl, self.objs)
        self.out = CriOutcome(nodes=list(cl.names))
        self.pods: dict[str, RunningPod] = {}
        self.t0 = time.monotonic()

    # --- helpers ---------------------------------------------------------------------------
    def vm(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` as an application on the VM (its sockets live in the VM's netns)."""
        return run_in(self.cl.vm, fn, *args)

    def note(self, msg: str) -> None:
        line = f"{time.monotonic() - self.t0:6.1f}s  {msg}"
        self.out.timeline.append(line)
        self.say(line)

    def addr(self, pod: str, port: int = REDIS_PORT) -> rc.Addr:
        return rc.Addr(self.pods[pod].ip, port)

    def place_and_start(self, pod: str, files: dict[str, dict[str, str]]) -> RunningPod:
        node = schedule(self.objs, pod, NAMESPACE)
        if node is None:
            msg = pending_message(self.objs.get("Pod", pod, NAMESPACE))
            raise FlatnetError(f"pod {pod} cannot be placed: {msg}", "flatnet doctor cluster names the cause")
        p = self.runner.start(pod, NAMESPACE, files)
        self.pods[pod] = p
        self.out.placement[pod] = node
        return p

    def synced_to(self, pod: str, master_ip: str) -> bool:
        try:
            info = self.vm(rc.replication, self.addr(pod))
        except (OSError, rc.ReplyError):
            return False
        return (
            info.get("role") == "slave"
            and info.get("master_host") == master_ip
            and info.get("master_link_status") == "up"
        )

    # --- the steps -------------------------------------------------------------------------
    def deploy(self) -> None:
        rs = self.rs
        for node in self.cl.names:  # the README's step 3: the PV's directory on every node
            (self.cl.root(node) / rs.path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        p0 = self.place_and_start("redis-0", {"redis-data": {"redis.conf": REDIS_CONF}})
        wait_until("redis-0 to answer the VM", lambda: self.vm(rc.ping, self.addr("redis-0")), 30)
        for k in range(1, rs.redis):
            conf = REDIS_CONF + f"replicaof {p0.ip} {REDIS_PORT}\n"
            self.place_and_start(f"redis-{k}", {"redis-data": {"redis.conf": conf}})
        for k in range(1, rs.redis):
            wait_until(f"redis-{k} to sync with {p0.ip}", partial(self.synced_to, f"redis-{k}", p0.ip), 60)
        conf = SENTINEL_CONF.format(name=rs.master_set, master=p0.ip, quorum=rs.quorum)
        for k in range(rs.sentinels):
            self.place_and_start(f"sentinel-{k}", {"config": {"sentinel.conf": conf}})
        self.out.ips = {p: r.ip for p, r in self.pods.items()}
        self.out.sentinels = [str(self.addr(f"sentinel-{k}", SENTINEL_PORT)) for k in range(rs.sentinels)]
        want = {"replicas": rs.redis - 1, "sentinels": rs.sentinels - 1}

        def agreed() -> bool:
            try:
                views = [
                    self.vm(rc.sentinel_view, self.addr(f"sentinel-{k}", SENTINEL_PORT)) for k in range(rs.sentinels)
                ]
            except (OSError, rc.ReplyError):
                return False
            return all(v == want for v in views)

        wait_until("every sentinel to see the replicas and the other sentinels", agreed, 60, 0.5)
        self.note("deployed: " + ", ".join(f"{p}@{self.out.placement[p]}={ip}" for p, ip in self.out.ips.items()))

    def failover(self, log: WriterLog) -> str:
        """Kill the master's container and sandbox; until the VM writes to a new master."""
        wait_until(f"the VM to write {self.keys} keys", lambda: log.acked() >= self.keys, 120, 0.1)
        old = str(self.addr("redis-0"))
        self.out.master_before = old
        self.out.acked_at_kill = log.acked()
        t_kill = time.monotonic()
        self.runner.crash(self.pods.pop("redis-0"))
        self.objs.delete("Pod", "redis-0", NAMESPACE)  # the StatefulSet controller sees it gone
        self.note(f"killed redis-0 (container + sandbox, {self.out.acked_at_kill} keys acked so far)")
        first = wait_until(
            "the VM to write to a new master",
            lambda: next((a for a in log.since(t_kill) if a.master != old), None),
            60,
            0.05,
        )
        before = [a for a in log.acks if a.at < t_kill]
        self.out.failover_s = first.at - t_kill
        self.out.write_gap_s = first.at - (before[-1].at if before else t_kill)
        self.out.master_after = first.master
        self.out.client_errors = sum(1 for t, _ in log.errors if t >= t_kill and t <= first.at)
        self.note(
            f"the VM writes to the new master {first.master} {self.out.failover_s:.2f}s after the kill "
            f"({self.out.client_errors} client errors meanwhile)"
        )
        host, port = first.master.rsplit(":", 1)
        self.out.vm_seen_as = self.vm(client_addr, rc.Addr(host, int(port)))
        n = log.acked()
        wait_until(f"{self.keys} more writes", lambda: log.acked() >= n + self.keys, 120, 0.1)
        return first.master

    def recreate(self, master: str, log: WriterLog) -> None:
        """The StatefulSet recreates redis-0: same name, same claim, so same PV and node."""
        master_ip = master.rsplit(":", 1)[0]
        self.objs.apply(redis_pod("redis-0"))  # a new object (new uid)
        t = time.monotonic()
        p = self.place_and_start("redis-0", {"redis-data": {"redis.conf": REDIS_CONF}})
        self.out.redis0_ip_after, self.out.redis0_node_after = p.ip, p.node
        me = self.addr("redis-0")
        wait_until("the recreated redis-0 to answer the VM", lambda: self.vm(rc.ping, me), 60, 0.05)
        self.out.recreate_s = time.monotonic() - t
        try:  # right away, before Sentinel resyncs it: what it found on its volume
            self.out.on_volume = self.vm(rc.count_keys, me, 0, self.out.acked_at_kill)
        except (OSError, rc.ReplyError):
            self.out.on_volume = -1
        self.note(
            f"redis-0 recreated on {p.node} at {p.ip} in {self.out.recreate_s:.2f}s; "
            f"{self.out.on_volume} of {self.out.acked_at_kill} keys on its volume"
        )
        wait_until(f"redis-0 to become a replica of {master}", lambda: self.synced_to("redis-0", master_ip), 90, 0.2)
        self.out.rejoin_s = time.monotonic() - t
        self.note(f"redis-0 is a synced replica of {master} {self.out.rejoin_s:.2f}s after it was recreated")
        n = log.acked()
        wait_until(f"{self.keys} more writes", lambda: log.acked() >= n + self.keys, 120, 0.1)

    def settle_and_count(self, log: WriterLog) -> None:
        acked = self.out.acked = log.acked()
        self.out.replicated = sum(1 for a in log.acks if a.replicated)
        pods = sorted(p for p in self.pods if p.startswith("redis-"))

        def counts() -> dict[str, int] | None:
            try:
                got = {p: self.vm(rc.count_keys, self.addr(p), 0, acked) for p in pods}
            except (OSError, rc.ReplyError):
                return None
            self.out.present = got
            return got if all(v == acked for v in got.values()) else None

        try:
            wait_until("every Redis to hold every acknowledged key", counts, 30, 0.5)
        except FlatnetError:
            pass  # reported as counts below the acknowledged number
        host, port = self.out.master_after.rsplit(":", 1)
        self.out.replicas_seen = replica_addrs(self.vm(rc.replication, rc.Addr(host, int(port))))
        self.note(f"{acked} keys acknowledged to the VM; present: {self.out.present}")

    def seed_failure(self) -> None:
        """A 4th replica whose PV was written by hand with the node's name in another case."""
        s, rs, node = self.out.seed, self.rs, self.cl.names[0]
        s.pod, s.pv, s.typed = "redis-3", "local-pv-redis-3", seed_typo(node)
        path = rs.path + "-3"
        (self.cl.root(node) / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        self.objs.apply(hand_written_pv(rs, s.pv, s.typed, path), claim(rs, s.pod), redis_pod(s.pod))
        s.node = schedule(self.objs, s.pod, NAMESPACE) or ""
        s.pending = pending_message(self.objs.get("Pod", s.pod, NAMESPACE))
        s.sandboxes = sum(
            1 for n in self.cl.nodes.values() if n.cri for _id, _ns, name, _r in n.cri.list_pods() if name == s.pod
        )
        dump = self.cl.work / "cluster-dump.json"
        dump.write_text(json.dumps(self.objs.dump(), indent=1))
        cmd = [sys.executable, "-m", "flatnet.cli.main", "doctor", "cluster", "--from", str(dump)]
        proc = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60, check=False)
        s.doctor_exit = proc.returncode
        try:
            s.findings = json.loads(proc.stdout)["findings"]
        except (ValueError, KeyError):
            s.findings = [
                {"severity": "error", "code": "doctor-output", "what": proc.stdout[-500:] + proc.stderr[-500:]}
            ]
        text = subprocess.run(
            cmd, capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "COLUMNS": "110"}
        )
        s.doctor_text = text.stdout
        self.note(f"{s.pod}: Pending ({s.pending}); doctor exit {s.doctor_exit}")
        # the doctor's fix: recreate the PV from the node's real name (pvgen), then it is placed
        self.objs.delete("PersistentVolume", s.pv)
        self.objs.apply(*pvs(rs, self.cl.names, only=[node], name=s.pv, path=path))
        s.fixed_node = schedule(self.objs, s.pod, NAMESPACE) or ""
        s.errors_after_fix = sum(1 for f in analyze(self.objs.dump()) if f.severity == "error")
        self.note(f"PV recreated with pvgen: {s.pod} placed on {s.fixed_node or 'nothing'}")


def run_cri(keys: int = 300, say: Callable[[str], None] = lambda m: None, image: Path | None = None) -> CriOutcome:
    """The whole scenario; never raises a FlatnetError (it is recorded in ``error``)."""
    rs = load_example()
    say("building (or finding cached) the Redis image: scripts/image/redis.sh")
    archive = image or build_image()
    say(f"3 nodes {', '.join(NODE_NAMES)}: containerd + flatnet agent each, one VLAN, a VM")
    with CriCluster(NODE_NAMES, images=[archive]) as cl:
        sc = CriScenario(rs, cl, keys, say)
        stop = threading.Event()
        log = WriterLog()
        writer = None
        try:
            sc.deploy()
            sentinels = [rc.Addr(s.rsplit(":", 1)[0], SENTINEL_PORT) for s in sc.out.sentinels]
            writer = spawn_in(cl.vm, write_continuously, None, sentinels, log, stop, 1_000_000, time.monotonic() + 600)
            sc.note("the VM's client asks Sentinel for the master and writes continuously")
            master = sc.failover(log)
            sc.recreate(master, log)
            stop.set()
            writer.result(timeout=30)
            sc.settle_and_count(log)
            sc.seed_failure()
        except (FlatnetError, OSError, rc.ReplyError) as exc:
            msg = f"{exc.msg} {exc.details}" if isinstance(exc, FlatnetError) else str(exc)
            sc.out.error = msg.strip()
            for name, p in sc.pods.items():
                sc.out.error += f"\n--- {name} log:\n{sc.runner.log(p, 800)}"
        finally:
            stop.set()
            if writer is not None:
                try:
                    writer.result(timeout=30)
                except Exception:  # noqa: BLE001 - the outcome already says what failed
                    pass
        return sc.out
