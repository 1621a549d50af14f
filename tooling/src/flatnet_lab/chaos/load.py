"""The load: pod lifecycles driven like a container runtime drives a CNI plugin.

Each call execs the real plugin (the native forwarder), which talks to the node's
agent or, when the agent is dead, execs the in-process mode (FLATNET_INPROCESS). Runtime semantics (as
kubelet/containerd do): a failed ADD is followed by DEL until DEL succeeds, then the ADD
may be tried again; DEL is retried until it succeeds. Counters are shared across worker
threads under one lock.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from flatnet_lab import forwarder
from flatnet_lab.chaos.cluster import NETWORK, Cluster, Node
from flatnet.datapath import netns as fnetns

PLUGIN_TIMEOUT = 60.0
DEL_ATTEMPTS = 60  # with back-off up to 1 s: rides out an etcd outage of several seconds
PERMANENT = {1, 2, 4, 6, 7}  # errors a retry cannot fix (bad config/env): stop, report


@dataclass
class Pod:
    cid: str
    node: Node
    ns: str
    ip: str | None = None
    network: str = NETWORK
    #: CNI_ARGS IP= of its ADDs (the shared-subnet scenario asks for addresses others may hold)
    want: str | None = None


@dataclass
class Counters:
    ops: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def op(self, ok: bool, why: str = "") -> None:
        with self.lock:
            self.ops += 1
            if not ok:
                self.failed += 1
                key = why[:70]
                self.errors[key] = self.errors.get(key, 0) + 1

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)


def call(
    cluster: Cluster, node: Node, verb: str, pod: Pod, counters: Counters, extra_conf: dict | None = None
) -> tuple[bool, dict]:
    """One plugin exec; returns (ok, decoded stdout)."""
    conf = {**cluster.conf(node, pod.network), **(extra_conf or {})}
    args = f"K8S_POD_NAMESPACE=chaos;K8S_POD_NAME={pod.cid}"
    if pod.want and verb == "ADD":
        args = f"IgnoreUnknown=1;{args};IP={pod.want}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "CNI_COMMAND": verb,
        "CNI_CONTAINERID": pod.cid,
        "CNI_NETNS": f"/run/netns/{pod.ns}" if pod.ns else "",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": args,
        "FLATNET_INPROCESS": forwarder.inprocess_entry(),
        "FLATNET_LOCK_DIR": cluster.lock_dir(node),
        "FLATNET_NODE": node.name,
        "FLATNET_AGENT_TIMEOUT": "30",
    }
    try:
        proc = subprocess.run(
            [forwarder.path()], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=PLUGIN_TIMEOUT
        )
        out = proc.stdout.decode(errors="replace")
        doc = json.loads(out) if out.strip() else {}
        ok = proc.returncode == 0
    except subprocess.TimeoutExpired:
        ok, doc = False, {"code": -1, "msg": f"plugin did not finish in {PLUGIN_TIMEOUT:g}s"}
    except ValueError:
        ok, doc = False, {"code": -2, "msg": f"plugin printed non-JSON: {out[:200]!r}"}
    if not isinstance(doc, dict):
        ok, doc = False, {"code": -2, "msg": f"plugin printed a non-object: {doc!r}"[:200]}
    if ok and out.strip() == "" and verb == "ADD":
        ok, doc = False, {"code": -3, "msg": "ADD printed nothing"}
    counters.op(ok, "" if ok else f"{verb} {doc.get('code')}: {doc.get('msg', '')}")
    return ok, doc


def delete_until_done(cluster: Cluster, pod: Pod, counters: Counters) -> bool:
    for attempt in range(DEL_ATTEMPTS):
        ok, doc = call(cluster, pod.node, "DEL", pod, counters)
        if ok:
            return True
        if doc.get("code") in PERMANENT:
            counters.problem(f"DEL of {pod.cid} refused for good: {doc.get('msg')}")
            return False
        time.sleep(min(1.0, 0.05 * (attempt + 1)) * random.uniform(0.5, 1.0))
    counters.problem(f"DEL of {pod.cid} on {pod.node.name} kept failing")
    return False


def eth0_left(pod: Pod) -> bool:
    """After a successful DEL the pod netns must hold no eth0 any more."""
    if not pod.ns or not os.path.exists(fnetns.ns_path(pod.ns) or ""):
        return False
    with fnetns.iproute(pod.ns) as ip:
        return bool(ip.link_lookup(ifname="eth0"))


def add_with_retries(cluster: Cluster, pod: Pod, counters: Counters, tries: int = 3) -> str:
    """ADD; on failure DEL (until it succeeds) and try again, at most ``tries`` ADDs.

    Returns "attached", "clean" (gave up, DEL done) or "stuck" (DEL never succeeded).
    """
    for _ in range(tries):
        ok, doc = call(cluster, pod.node, "ADD", pod, counters)
        if ok:
            try:
                pod.ip = doc["ips"][0]["address"].split("/")[0]
                return "attached"
            except (KeyError, IndexError, TypeError, AttributeError):
                counters.problem(f"ADD of {pod.cid} succeeded without an address: {doc}")
        if not delete_until_done(cluster, pod, counters):
            return "stuck"
        time.sleep(random.uniform(0.01, 0.2))
    return "clean"


def _held_or_random(cluster: Cluster, live: dict[str, Pod], live_lock: threading.Lock) -> str:
    """An address to ask for: one a running pod of any network holds (must be refused), or
    any address of the shared range (may be free)."""
    with live_lock:
        held = [p.ip for p in live.values() if p.ip]
    if held and random.random() < 0.5:
        return random.choice(held)
    return f"198.18.200.{random.randint(100, 126)}"


def lifecycle(
    cluster: Cluster, counters: Counters, live: dict[str, Pod], live_lock: threading.Lock, keep: bool
) -> None:
    """One pod: netns, ADD (retried), then DEL and netns removal, unless ``keep``.

    A pod whose DEL never succeeded stays in ``live`` (with its netns): as far as the
    runtime knows it may still be attached, and the invariant checks judge it.
    """
    nodes = [n for n in cluster.nodes if not n.lost]
    pod = Pod(secrets.token_hex(6), random.choice(nodes), "", network=random.choice(list(cluster.networks)))
    if len(cluster.networks) > 1 and random.random() < 0.2:
        pod.want = _held_or_random(cluster, live, live_lock)
    pod.ns = cluster.new_pod_netns(pod.cid)
    state = add_with_retries(cluster, pod, counters)
    if state == "attached" and not keep and not delete_until_done(cluster, pod, counters):
        state = "stuck"
    if state == "stuck" or (state == "attached" and keep):
        with live_lock:
            live[pod.cid] = pod
        return
    if eth0_left(pod):
        counters.problem(f"DEL of {pod.cid} succeeded but eth0 is still in {pod.ns}")
    cluster.drop_netns(pod.ns)
