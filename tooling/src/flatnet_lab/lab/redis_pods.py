"""Redis and Sentinel as lab pods: node-local volumes, configs, processes, cleanup.

This is what a StatefulSet with a local PersistentVolume gives you (seed, part 1): pod
``redis-N`` always runs on the node that holds its directory
``/run/flatnet/lab/volumes/<node>/redis-N/`` and keeps its identity
(K8S_POD_NAMESPACE/K8S_POD_NAME), so the flat network's sticky pools give it back the same
address. Every process is started inside its pod's netns and remembered here, so cleanup
kills exactly what this deployment started (by pid), then deletes the pods (CNI DEL) and
the volumes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from flatnet.datapath.netns import run_in
from flatnet.errors import FlatnetError
from flatnet_lab.lab import pods, procs
from flatnet_lab.lab import redis_client as rc
from flatnet_lab.lab.topology import Topology

REDIS_BIN = "/usr/bin/redis-server"
REDIS_PORT = 6379
SENTINEL_PORT = 26379
POD_NAMESPACE = "redis"
T = TypeVar("T")

REDIS_CONF = """\
port {port}
bind * -::*
protected-mode no
daemonize no
dir {dir}
logfile {dir}/redis.log
save ""
appendonly yes
appendfsync always
"""
SENTINEL_CONF = """\
port {port}
bind * -::*
protected-mode no
daemonize no
dir {dir}
logfile {dir}/sentinel.log
sentinel monitor {name} {master} {mport} 2
sentinel down-after-milliseconds {name} 1000
sentinel failover-timeout {name} 6000
sentinel parallel-syncs {name} 2
"""


def volumes_root() -> str:
    return procs.path("volumes")


def volume(node: str, pod: str) -> str:
    """The node-local data directory of ``pod`` (bound to ``node``, like a local PV)."""
    return os.path.join(volumes_root(), node, pod)


def wait_until(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.3) -> T:
    """Poll ``check`` until it returns a truthy value (bounded); FlatnetError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise FlatnetError(
                f"timed out after {timeout:.0f}s waiting for {what}", f"see the logs under {volumes_root()}"
            )
        time.sleep(interval)


@dataclass
class Deployment:
    """The Redis pods of one network and the processes running in them."""

    topo: Topology
    network: str
    replicas: int = 3
    sentinels: int = 3
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)
    added: int = 0  # pods the network accepted (0 after a failure: the network is unusable)

    def node_of(self, k: int) -> str:
        """Spread pods over the nodes: redis-k and sentinel-k on node (k mod N)+1."""
        return self.topo.nodes[k % len(self.topo.nodes)].name

    def in_pod(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` inside pod ``name``'s netns: the in-cluster view (kubectl exec)."""
        return run_in(pods.get_pod(name).netns, fn, *args)

    def add_pod(self, name: str, node: str, port_mappings: list[dict[str, Any]] | None = None) -> pods.Pod:
        pods.del_pod(name)  # a leftover of an interrupted run
        self.made.append(name)
        kw: dict[str, Any] = {"port_mappings": port_mappings} if port_mappings else {}
        pod = pods.add_pod(node, name, self.network, namespace=POD_NAMESPACE, **kw)
        self.added += 1
        return pod

    def _spawn(self, name: str, conf_text: str, conf_file: str, extra: list[str]) -> None:
        pod = pods.get_pod(name)
        vol = volume(pod.node, name)
        os.makedirs(vol, exist_ok=True)
        conf = os.path.join(vol, conf_file)
        if not os.path.exists(conf):  # kept across restarts: Redis/Sentinel rewrite it
            with open(conf, "w", encoding="utf-8") as fh:
                fh.write(conf_text)
        self.procs[name] = pods.spawn_in_pod(
            name,
            [REDIS_BIN, conf, *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start_redis(self, name: str, master: str | None) -> pods.Pod:
        """Start redis-server in pod ``name`` (a replica of ``master`` if given); wait ready."""
        pod = pods.get_pod(name)
        text = REDIS_CONF.format(port=REDIS_PORT, dir=volume(pod.node, name))
        if master:
            text += f"replicaof {master} {REDIS_PORT}\n"
        self._spawn(name, text, "redis.conf", [])
        me = rc.Addr(pod.ip, REDIS_PORT)
        wait_until(f"redis in pod {name} to answer", lambda: self.in_pod(name, rc.ping, me), 15)
        return pod

    def wait_synced(self, name: str, master: str, timeout: float = 30) -> None:
        """Until replica ``name`` has finished its sync with ``master`` (link up)."""
        me = rc.Addr(pods.get_pod(name).ip, REDIS_PORT)

        def synced() -> bool:
            try:
                info = self.in_pod(name, rc.replication, me)
            except (OSError, rc.ReplyError):
                return False
            return (
                info.get("role") == "slave"
                and info.get("master_host") == master
                and info.get("master_link_status") == "up"
            )

        wait_until(f"{name} to sync with the master {master}", synced, timeout, 0.3)

    def start_sentinel(self, name: str, master: str) -> pods.Pod:
        pod = pods.get_pod(name)
        text = SENTINEL_CONF.format(
            port=SENTINEL_PORT, dir=volume(pod.node, name), name=rc.MASTER_NAME, master=master, mport=REDIS_PORT
        )
        self._spawn(name, text, "sentinel.conf", ["--sentinel"])
        me = rc.Addr(pod.ip, SENTINEL_PORT)
        wait_until(f"sentinel in pod {name} to answer", lambda: self.in_pod(name, rc.ping, me), 15)
        return pod

    def deploy(self, sentinel_port_mappings: bool) -> None:
        """Pods on every node, master redis-0, replicas, sentinels; wait until they agree."""
        hp = [{"hostPort": SENTINEL_PORT, "containerPort": SENTINEL_PORT, "protocol": "tcp"}]
        for k in range(self.replicas):
            self.add_pod(f"redis-{k}", self.node_of(k))
        for k in range(self.sentinels):
            self.add_pod(f"sentinel-{k}", self.node_of(k), hp if sentinel_port_mappings else None)
        master = pods.get_pod("redis-0").ip
        self.start_redis("redis-0", None)
        for k in range(1, self.replicas):
            self.start_redis(f"redis-{k}", master)
            self.wait_synced(f"redis-{k}", master)
        for k in range(self.sentinels):
            self.start_sentinel(f"sentinel-{k}", master)
        want = {"replicas": self.replicas - 1, "sentinels": self.sentinels - 1}

        def agreed() -> bool:
            for k in range(self.sentinels):
                name = f"sentinel-{k}"
                addr = rc.Addr(pods.get_pod(name).ip, SENTINEL_PORT)
                try:
                    if self.in_pod(name, rc.sentinel_view, addr) != want:
                        return False
                except (OSError, rc.ReplyError):
                    return False
            return True

        wait_until("every sentinel to see the replicas and the other sentinels", agreed, 40, 0.5)

    def kill(self, name: str) -> None:
        """SIGKILL the pod's process (a crash, no clean shutdown) and reap it."""
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def delete_pod(self, name: str) -> None:
        """What a runtime does when a pod dies: CNI DEL, netns removed."""
        self.kill(name)
        pods.del_pod(name)

    def cleanup(self) -> list[str]:
        """Stop every process, delete every pod and volume this deployment made; errors out."""
        errors: list[str] = []
        for name in list(self.procs):
            try:
                self.kill(name)
            except (OSError, subprocess.TimeoutExpired) as exc:
                errors.append(f"{name}: {exc}")
        for name in reversed(self.made):
            try:
                pods.del_pod(name)
            except FlatnetError as exc:
                errors.append(f"{name}: {exc.msg}")
        self.made.clear()
        for k in range(max(self.replicas, self.sentinels)):
            for prefix in ("redis", "sentinel"):
                shutil.rmtree(volume(self.node_of(k), f"{prefix}-{k}"), ignore_errors=True)
        node_dirs = [os.path.join(volumes_root(), n.name) for n in self.topo.nodes]
        for d in [*node_dirs, volumes_root()]:
            try:
                os.rmdir(d)  # only when empty: another user's volumes stay
            except OSError:
                pass
        return errors
