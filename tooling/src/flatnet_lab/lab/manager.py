"""Build, inspect and tear down the lab: ``up``, ``status``, ``down``, ``install_service``.

``up`` is idempotent: every step is an "ensure" (see ``flatnet_lab.testbed.net``), agents
that answer are kept, so re-running it after a crash completes the lab. ``down`` does not
trust the state file: it scans /run/netns for the ``fnlab-`` prefix and /proc for the lab's
agents and etcd, so it also cleans up after an ``up`` that died half-way.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from flatnet_lab.testbed import net as labnet
from flatnet.errors import ConfigError, FlatnetError
from flatnet_lab.lab import netconf, procs
from flatnet_lab.launch import agent_answers
from flatnet_lab.lab.topology import PREFIX, Topology, default_topology

#: progress(message, done, total): called before each step of up/down
Progress = Callable[[str, int, int], None]
STORES = ("sqlite", "etcd")
#: outside LAB_DIR on purpose: ``down`` removes LAB_DIR but must not drop a held lock
LOCK_PATH = "/run/flatnet/lab.lock"


@dataclass
class NodeStatus:
    name: str
    ns: str
    ns_exists: bool
    agent_pid: int | None
    agent_alive: bool
    agent_answers: bool


@dataclass
class LabStatus:
    """What exists now. ``up`` is True when the state file says the last ``up`` finished."""

    up: bool
    store: str | None = None
    shape: str | None = None  # the switch's shape (flatnet_lab.lab.topology)
    nodes: list[NodeStatus] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    etcd_alive: bool | None = None
    processes: list[int] = field(default_factory=list)


def require_root() -> None:
    if os.geteuid() != 0:
        raise FlatnetError("the lab needs root (it creates network namespaces)", "run it with sudo")


@contextmanager
def exclusive(timeout: float = 300.0) -> Iterator[None]:
    """Hold the lab for the duration (flock): tests and demos share one fixed set of names.

    Every user of the lab that builds and tears it down (test fixtures, ``lab demo``)
    should hold this so two of them never destroy each other's lab half-way.
    """
    os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise FlatnetError(
                        f"the lab is held by another user of {LOCK_PATH}",
                        "wait for it to finish, then retry ('flatnet lab down --force' tears it down anyway)",
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def _notify(progress: Progress | None, msg: str, done: int, total: int) -> None:
    if progress is not None:
        progress(msg, done, total)


def state() -> dict[str, Any] | None:
    return procs.read_json(procs.path("state.json"))


def current_topology() -> Topology:
    """The topology of the lab that is up (default 3 nodes when none is)."""
    st = state()
    return default_topology(int(st["nodes"]), st.get("shape", "per-vlan")) if st else default_topology(3)


def up(nodes: int = 3, store: str = "sqlite", progress: Progress | None = None, agents: bool = True) -> Topology:
    """Build (or complete) the lab; return its topology. ``agents=False``: network only."""
    require_root()
    if store not in STORES:
        raise ConfigError(f"store {store!r} is not supported", "use sqlite or etcd")
    old = state()
    # the switch's shape: the real one (VLAN-aware, trunks) where the kernel can build it;
    # a lab that is up keeps the shape it was built with
    shape = (old or {}).get("shape") or ("vlan-aware" if labnet.vlan_switch_supported() else "per-vlan")
    topo = default_topology(nodes, shape)
    if old and (old.get("nodes") != nodes or old.get("store") != store):
        raise ConfigError(
            f"the lab is already up with {old.get('nodes')} nodes and store {old.get('store')}",
            "run 'flatnet lab down' first to rebuild it differently",
        )
    procs.ensure_dir()
    st: dict[str, Any] = {
        "nodes": nodes,
        "store": store,
        "etcd_port": (old or {}).get("etcd_port"),
        "shape": shape,
        "complete": False,
    }  # True only once every step below is done
    procs.write_json(procs.path("state.json"), st)
    steps = _build_steps(topo)
    extra = (1 if store == "etcd" else 0) + 1 + (len(topo.nodes) if agents else 0)
    total = len(steps) + extra
    for done, (msg, fn) in enumerate(steps):
        _notify(progress, msg, done, total)
        fn()
    done = len(steps)
    if store == "etcd":
        _notify(progress, "starting etcd on 127.0.0.1", done, total)
        st["etcd_port"] = procs.start_etcd(st.get("etcd_port"))
        procs.write_json(procs.path("state.json"), st)
        done += 1
    _notify(progress, "writing network configs", done, total)
    netconf.write_all(topo, netconf.store_config(store, st.get("etcd_port")))
    done += 1
    if agents:
        url = netconf.store_url(store, st.get("etcd_port"))
        for node in topo.nodes:
            _notify(progress, f"starting the agent of {node.name}", done, total)
            procs.start_agent(node.name, node.ns, url, metrics_address(node))
            done += 1
        from flatnet_lab.lab import pods  # the plugin, as a runtime would call it

        for node in topo.nodes:  # every node joins the overlay before the first pod
            _notify(progress, f"{node.name} joins the overlay", done, total)
            pods.network_status(node.name, "overlay")
        for node in topo.nodes:  # and learns the peers that joined after it
            pods.network_status(node.name, "overlay")
    st["complete"] = True
    procs.write_json(procs.path("state.json"), st)
    _notify(progress, "lab is up", total, total)
    return topo


def metrics_address(node: Any) -> str:
    """Where a lab node's agent serves /metrics: the node's own address, the chart's port."""
    from flatnet.obs.http import DEFAULT_PORT

    return f"{node.ipv4}:{DEFAULT_PORT}"


def _build_steps(topo: Topology) -> list[tuple[str, Callable[[], None]]]:
    """The network build as (message, action) pairs, in dependency order."""
    steps: list[tuple[str, Callable[[], None]]] = []
    for ns in topo.namespaces:
        steps.append((f"namespace {ns}", lambda ns=ns: labnet.ensure_netns(ns) and None))
    aware = topo.shape == "vlan-aware"
    for br in dict.fromkeys(s.bridge for s in topo.segments):
        vlans = ", ".join(str(s.vlan) for s in topo.segments if s.bridge == br)
        steps.append(
            (
                f"switch {'VLAN-filtering bridge' if aware else 'segment'} {br} (VLAN {vlans})",
                lambda b=br: labnet.ensure_bridge(topo.switch_ns, b, vlan_filtering=aware),
            )
        )
    bridges = {s.vlan: s.bridge for s in topo.segments}
    all_vlans = tuple(s.vlan for s in topo.segments)
    done_pairs: set[frozenset[tuple[str, str]]] = set()
    for host in topo.hosts:

        def wire(host=host) -> None:  # noqa: ANN001 - bound loop variable
            for iface in host.ifaces:
                if iface.segment is not None:
                    assert iface.switch_port is not None
                    port = iface.trunk or iface.name
                    labnet.ensure_veth(host.ns, port, topo.switch_ns, iface.switch_port)
                    labnet.set_master(topo.switch_ns, iface.switch_port, bridges[iface.segment])
                    if aware and iface.trunk:  # a trunk port, the iface its 802.1Q sub-interface
                        labnet.set_port_vlans(topo.switch_ns, iface.switch_port, tagged=all_vlans)
                        labnet.ensure_vlan_link(host.ns, iface.trunk, iface.name, iface.segment)
                    elif aware:  # an access port
                        labnet.set_port_vlans(topo.switch_ns, iface.switch_port, access=iface.segment)
                elif iface.peer is not None:
                    pair = frozenset({(host.ns, iface.name), iface.peer})
                    if pair not in done_pairs:
                        labnet.ensure_veth(host.ns, iface.name, *iface.peer)
                        done_pairs.add(pair)
                labnet.ensure_addresses(host.ns, iface.name, iface.addresses)

        steps.append((f"links of {host.ns} ({host.role})", wire))
    for host in topo.hosts:

        def routes(host=host) -> None:  # noqa: ANN001
            fwd = "1" if host.forwarding else "0"
            labnet.set_sysctl(host.ns, "net.ipv4.ip_forward", fwd)
            labnet.set_sysctl(host.ns, "net.ipv6.conf.all.forwarding", fwd)
            for r in host.routes:
                labnet.ensure_route(host.ns, r.dst, r.gw)

        steps.append((f"routes of {host.ns}", routes))
    return steps


def status() -> LabStatus:
    """What exists: namespaces, per-node agent liveness, pods, etcd (no changes made)."""
    st = state()
    namespaces = labnet.list_namespaces(PREFIX)
    # a state file without "complete" predates the flag: trust it as before
    out = LabStatus(
        up=st is not None and st.get("complete", True) is not False,
        store=(st or {}).get("store"),
        shape=(st or {}).get("shape"),
        namespaces=namespaces,
        processes=procs.lab_pids(),
    )
    if st:
        for node in default_topology(int(st["nodes"]), st.get("shape", "per-vlan")).nodes:
            sock = procs.agent_socket(node.name)
            pid = procs.read_pid(node.name)
            alive = procs.pid_alive(pid, sock)
            out.nodes.append(
                NodeStatus(node.name, node.ns, node.ns in namespaces, pid, alive, alive and agent_answers(sock))
            )
        if st.get("store") == "etcd":
            out.etcd_alive = procs.pid_alive(procs.read_pid("etcd"), procs.path("etcd"))
    pod_dir = procs.path("pods")
    if os.path.isdir(pod_dir):
        for name in sorted(os.listdir(pod_dir)):
            rec = procs.read_json(os.path.join(pod_dir, name)) if name.endswith(".json") else None
            if rec:
                out.pods.append(rec)
    return out


def down(progress: Progress | None = None) -> dict[str, int]:
    """Remove everything the lab made; works after a crashed ``up``. Returns counts."""
    require_root()
    pids = set(procs.lab_pids())
    pids.update(procs.all_pids())
    namespaces = labnet.list_namespaces(PREFIX)
    total = len(pids) + len(namespaces) + 1
    done = 0
    stopped = 0
    for pid in sorted(pids):
        _notify(progress, f"stopping pid {pid}", done, total)
        if any(procs.pid_alive(pid, m) for m in procs.lab_markers()):
            procs.stop_pid(pid, marker=None)
            stopped += 1
        done += 1
    for ns in namespaces:
        _notify(progress, f"removing namespace {ns}", done, total)
        for pid in labnet.pids_in_netns(ns):  # servers started inside pods/hosts
            procs.stop_pid(pid, marker=None, timeout=2.0)
            stopped += 1
        labnet.remove_netns(ns)
        done += 1
    _notify(progress, f"removing {procs.LAB_DIR}", done, total)
    shutil.rmtree(procs.LAB_DIR, ignore_errors=True)
    _notify(progress, "lab is down", total, total)
    return {"namespaces": len(namespaces), "processes": stopped}


def install_service(backends: list[str], port: int | None = None, backend_port: int | None = None) -> dict[str, str]:
    """DNAT the Service VIP on every node to a backend pod on *another* node.

    ``backends`` are lab pod names (see ``flatnet_lab.lab.pods``); each node gets the first
    backend not running on it (or the first at all when every backend is local).
    Returns node -> backend address.
    """
    from flatnet_lab.lab import pods  # pods imports manager-free modules only

    topo = current_topology()
    svc = topo.service
    if not backends:
        raise ConfigError(
            "install_service needs at least one backend pod name", "add a pod first: flatnet_lab.lab.pods.add_pod(...)"
        )
    recs = [pods.get_pod(b) for b in backends]
    chosen: dict[str, str] = {}
    for node in topo.nodes:
        rec = next((r for r in recs if r.node != node.name), recs[0])
        labnet.install_service(node.ns, svc.vip, port or svc.port, rec.ip, backend_port or port or svc.port)
        chosen[node.name] = rec.ip
    return chosen


def exec_in(
    host: str, argv: list[str], timeout: float = 30.0, input: str | None = None
) -> "subprocess.CompletedProcess[str]":
    """Run ``argv`` in a lab host: "vm1", "node2", "rtr", "out", "vlan200" or "fnlab-...".

    For pods use ``flatnet_lab.lab.pods.exec_in_pod``.
    """
    ns = host if host.startswith(PREFIX) else f"{PREFIX}{host}"
    if ns not in labnet.list_namespaces(PREFIX):
        raise ConfigError(f"no lab host {host!r}", "is the lab up? see 'flatnet lab status'")
    return labnet.run_cmd(ns, argv, timeout=timeout, input=input)
