"""Data plane and routes, measured on the lab: every path side by side in one run.

Paths (client -> server, across nodes unless said otherwise):
  wire                      node1 -> node2 underlay address (the baseline)
  flat macvlan / bridge     pod on node1 -> pod on node2, flatnet's flat modes
  flat macvlan (first-hop filter off)  the macvlan pods again with their first-hop filters
                            (datapath/firsthop.py) taken out for the measurement and put back
                            after: what the filter costs, in the same run
  flat macvlan (N other pods' filters on the node)  the filtered macvlan pods again, after
                            N more macvlan pods, each with its own first-hop filter, were
                            ADDed on node1 through its agent, as every lab pod is (profile
                            ``filter_pods``: 500, quick 8; network flat-wide: the parent and
                            filter of flat, a pool wide enough for hundreds of pods), deleted
                            after: whether the filter's cost grows with the pods on the node
  flat ipvlan               the same, when the kernel has CONFIG_IPVLAN (else: unavailable)
  flat bridge (br_netfilter off)  the bridge pods again with net.bridge.bridge-nf-call-*
                            = 0 on both nodes: what passing bridged frames through the IP
                            netfilter hooks (the kernel's default when br_netfilter is in)
                            costs; the lab nodes' values are restored after each measurement
  vxlan overlay             pod -> pod through the VXLAN fallback
  udp tunnel (userspace)    node1 -> node2 through a Python TUN<->UDP forwarder (flannel udp)
  VM -> pod (flat)          vm1 -> a flat pod on node2, by the pod's own address
  VM -> node:port -> pod    vm1 -> node2:hostPort, DNAT to an overlay pod (how VMs reach overlay pods)
The first-hop filter's ADD cost (its two nft transactions, p50) is measured on a veth in a
scratch netns (section "first-hop filter"). Each path gets TCP 1 stream, TCP 8 streams, UDP (iperf3, bounded) and TCP request/response
latency p50/p99. Routes per node are counted as pods are added to each network.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from flatnet_lab.bench import iperf
from flatnet_lab.bench.labsetup import NETWORKS, PM_IPERF, PM_RR, LabSetup
from flatnet_lab.bench.nsenv import Scratch
from flatnet_lab.bench.profile import Profile
from flatnet_lab.bench.results import Results
from flatnet.datapath import firsthop, netns, sysctl
from flatnet.errors import FlatnetError
from flatnet_lab.lab import manager, pods, traffic
from flatnet_lab.lab.topology import Topology
from flatnet_lab.testbed import net as testnet

SECTION, ROUTES = "data plane", "routes"
FHS = SECTION  # the filter's ADD cost rows sit with the paths they are the cost of
MACVLAN, FILTER_OFF = "flat macvlan", "flat macvlan (first-hop filter off)"
CROWDED = "flat macvlan ({} other pods' filters on the node)"  # .format(the real count)
CROWD_NETWORK = "flat-wide"  # macvlan on the same parent as "flat", on a pool of ~1,000
CROWD_TICK = 50  # progress every this many pods made or deleted
FILTER_ADD_SAMPLES = 40
IPVLAN = "flat ipvlan"
BRIDGE_NO_BRNF = "flat bridge (br_netfilter off)"
BR_NF_KEYS = tuple(f"net/bridge/bridge-nf-call-{t}" for t in ("iptables", "ip6tables", "arptables"))
Tick = Callable[[str], None]
METRICS = (
    ("TCP 1 stream", "Gbit/s", "higher"),
    ("TCP 8 streams", "Gbit/s", "higher"),
    ("UDP", "Gbit/s", "higher"),
    ("RR p50", "µs", "lower"),
    ("RR p99", "µs", "lower"),
)


@dataclass(frozen=True)
class Path:
    subject: str
    src_ns: str
    dst_ns: str
    ip: str
    iperf_port: int = 5201
    rr_port: int = 5299
    br_nf_off_in: tuple[str, ...] = ()  # node netns where bridge-nf-call-* is 0 while measured
    filter_off_in: tuple[str, ...] = ()  # pod netns whose first-hop filter is out while measured


class DataPlaneBench:
    def __init__(self, profile: Profile, results: Results, scratch: Scratch, tmp: str, tick: Tick) -> None:
        self.p, self.r, self.s, self.tmp, self.tick = profile, results, scratch, tmp, tick

    def run(self) -> None:
        """Hold the lab, bring it up if needed, measure, and leave it as it was found."""
        with manager.exclusive():
            st = manager.state()
            self.tick("data plane: bringing the lab up" if st is None else "data plane: using the lab")
            nodes = max(2, int(st["nodes"])) if st else 2
            topo = manager.up(nodes=nodes, store=(st or {}).get("store", "sqlite"))
            setup = LabSetup(topo, self.s, self.tmp)
            try:
                self._routes(topo, setup)
                paths = self._paths(topo, setup)
                for rep in range(self._repeats):
                    for path in paths:
                        self.tick(f"data plane: {path.subject} (repeat {rep + 1})")
                        self._measure(path)
                self._crowded(topo, setup, paths)
                self.tick("data plane: first-hop filter ADD cost")
                self.filter_add_cost()
            finally:
                errors = setup.close()
                if st is None:
                    manager.down()
                if errors:
                    self.r.notes.append("data-plane cleanup: " + "; ".join(errors)[:400])
        self.r.extra["lab_nodes"] = nodes

    @property
    def _repeats(self) -> int:
        return max(1, self.p.repeats - (self.p.name == "quick"))

    # -- routes ---------------------------------------------------------------
    def _routes(self, topo: Topology, setup: LabSetup) -> None:
        node = topo.nodes[0]
        for subject, network in NETWORKS.items():
            for per_node in self.p.route_steps:
                self.tick(f"routes: {subject}, {per_node} pods per node")
                for n in topo.nodes:
                    for k in range(1, per_node + 1):
                        setup.pod(network, n.name, k)
                c = traffic.count_routes(node.ns)
                self.r.add(ROUTES, subject, f"{per_node} pods/node", "routes", c["v4"] + c["v6"])
            setup.delete_pods(network)  # each network is counted alone, from the same start
        self.r.extra["routes_node"] = node.name
        self.r.notes.append(
            f"Routes are counted on {node.name} of a {len(topo.nodes)}-node lab; "
            "the 0-pods row is the node's own routes (and any other lab pods)."
        )

    # -- paths -----------------------------------------------------------------
    def _paths(self, topo: Topology, setup: LabSetup) -> list[Path]:
        n1, n2 = topo.nodes[0], topo.nodes[1]
        vm = topo.host("fnlab-vm1").ns
        out = [Path("wire", n1.ns, n2.ns, n2.ipv4)]
        for subject, network in NETWORKS.items():
            self.tick(f"data plane: pods for {subject}")
            a, b = setup.pod(network, n1.name, 1), setup.pod(network, n2.name, 1)
            out.append(Path(subject, a.netns, b.netns, b.ip))
            if network == "flat-bridge" and _br_netfilter_on(n1.ns):
                out.append(Path(BRIDGE_NO_BRNF, a.netns, b.netns, b.ip, br_nf_off_in=(n1.ns, n2.ns)))
            if network == "flat":
                out.append(Path("VM -> pod (flat)", vm, b.netns, b.ip))
                if firsthop.snapshot(a.netns) and firsthop.snapshot(b.netns):
                    out.insert(2, Path(FILTER_OFF, a.netns, b.netns, b.ip, filter_off_in=(a.netns, b.netns)))
                else:
                    for metric, _, _ in METRICS:
                        self.r.unavailable(SECTION, FILTER_OFF, metric, "the lab's macvlan pods have no filter")
        self.tick("data plane: ipvlan pods")
        try:
            (ns_a, _), (ns_b, ip_b) = setup.ipvlan_pod(n1.name), setup.ipvlan_pod(n2.name)
            out.insert(3, Path(IPVLAN, ns_a, ns_b, ip_b))
        except FlatnetError as exc:
            reason = (
                "not available: kernel lacks CONFIG_IPVLAN"
                if "CONFIG_IPVLAN" in exc.msg
                else f"not available: {exc.msg[:160]}"
            )
            for metric, _, _ in METRICS:
                self.r.unavailable(SECTION, IPVLAN, metric, reason)
            for per_node in self.p.route_steps:
                self.r.unavailable(ROUTES, IPVLAN, f"{per_node} pods/node", reason)
        self.tick("data plane: userspace UDP tunnel")
        out.append(Path("udp tunnel (userspace)", n1.ns, n2.ns, setup.udp_tunnel(n1.name, n2.name)))
        pm = setup.port_mapped_overlay_pod(n2.name)
        out.append(Path("VM -> node:port -> pod (overlay)", vm, pm.netns, n2.ipv4, PM_IPERF, PM_RR))
        return out

    def _crowded(self, topo: Topology, setup: LabSetup, paths: list[Path]) -> None:
        """The filtered macvlan pair again with ``filter_pods`` more filtered macvlan pods on
        the client's node, made by real ADDs (``LabSetup.pod``) and deleted after."""
        want = self.p.filter_pods
        base = next((p for p in paths if p.subject == MACVLAN), None)
        if want <= 0 or base is None:
            return
        if not any(p.subject == FILTER_OFF for p in paths):
            for metric, _, _ in METRICS:
                self.r.unavailable(SECTION, CROWDED.format(want), metric, "the lab's macvlan pods have no filter")
            return
        node = topo.nodes[0].name
        made: list[pods.Pod] = []
        failed = ""
        t0 = time.perf_counter()
        for k in range(1, want + 1):
            if (k - 1) % CROWD_TICK == 0:
                self.tick(f"data plane: other macvlan pods on {node}: {k - 1} of {want} made")
            try:
                made.append(setup.pod(CROWD_NETWORK, node, k))
            except FlatnetError as exc:  # measured with what was made; the note says why not more
                failed = f"; ADD of pod {k} failed, no more were tried: {exc.msg[:200]}"
                break
        add_s = time.perf_counter() - t0
        self.tick(f"data plane: checking the first-hop filters of {len(made)} pods")
        filtered = sum(1 for pod in made if firsthop.installed(pod.netns, "eth0")[1] > 0)
        subject = CROWDED.format(filtered)
        if filtered:
            for rep in range(self._repeats):
                self.tick(f"data plane: {subject} (repeat {rep + 1})")
                self._measure(Path(subject, base.src_ns, base.dst_ns, base.ip))
        else:
            for metric, _, _ in METRICS:
                self.r.unavailable(SECTION, subject, metric, "no other pod with a filter could be made" + failed)
        t0 = time.perf_counter()

        def deleted(k: int, total: int) -> None:
            if k % CROWD_TICK == 0:
                self.tick(f"data plane: other macvlan pods on {node}: {k} of {total} deleted")

        try:
            setup.delete_pods(CROWD_NETWORK, deleted)
        except FlatnetError as exc:  # the rest go with LabSetup.close, which reports its own errors
            failed += f"; a DEL failed, the rest were left to the cleanup: {exc.msg[:200]}"
        del_s = time.perf_counter() - t0
        self.r.extra["filter_pods"] = {
            "asked": want,
            "made": len(made),
            "filtered": filtered,
            "node": node,
            "add_s": round(add_s, 2),
            "del_s": round(del_s, 2),
        }
        each = f" ({1000 * add_s / len(made):.0f} ms each)" if made else ""
        self.r.notes.append(
            f"{subject}: {len(made)} of {want} macvlan pods (network {CROWD_NETWORK}: the parent and "
            f"filter of 'flat', a wider pool) made on {node} one after the other by real ADDs through "
            f"its agent in {add_s:.1f} s{each}, {filtered} with their first-hop filter; deleted in "
            f"{del_s:.1f} s. The node also held their macvlan links and host routes meanwhile{failed}"
        )

    def _measure(self, path: Path) -> None:
        saved = {ns: _br_netfilter(ns, "0") for ns in path.br_nf_off_in}
        filters = {ns: firsthop.snapshot(ns) for ns in path.filter_off_in}
        try:
            for ns in filters:
                firsthop.drop_table(ns)
            self._measure_now(path)
        finally:
            for ns, values in saved.items():
                sysctl.set_many(ns, values)
            for ns, text in filters.items():
                firsthop.restore(ns, text)

    def filter_add_cost(self) -> None:
        """p50 of what ADD spends on a pod's first-hop filter: one transaction into the pod's
        fresh netns (the link-local predicted; datapath/pod.py), on a real veth."""
        ns = f"fnbench-fh-{os.getpid()}"
        testnet.create_netns(ns)
        try:
            testnet.ensure_veth(ns, "eth0", ns, "peer0")
            path = netns.ns_path(ns) or ns
            who = firsthop.allowed(
                "02:00:00:00:00:05",
                ["198.18.100.5", "2001:db8:100::5"],
                [firsthop.eui64_link_local("02:00:00:00:00:05")],
            )
            samples = []
            for _ in range(FILTER_ADD_SAMPLES):
                firsthop.drop_table(path)  # as in a new pod's netns: no table yet
                t0 = time.perf_counter()
                firsthop.install(path, "eth0", who, firsthop.Policy())
                samples.append((time.perf_counter() - t0) * 1000)
            samples.sort()
            self.r.add(FHS, "first-hop filter (ADD: install)", "p50", "ms", samples[len(samples) // 2])
        finally:
            testnet.remove_netns(ns)
        self.r.notes.append(
            "first-hop filter: a chain on the pod's own interface in the pod's netns; the node "
            "holds no per-pod filter state, so its per-packet cost cannot grow with the pods on the node"
        )

    def _measure_now(self, path: Path) -> None:
        secs = int(self.p.iperf_seconds)
        add = self.r.add
        for metric, streams, udp in (("TCP 1 stream", 1, False), ("TCP 8 streams", 8, False), ("UDP", 1, True)):
            gbps = iperf.throughput(path.src_ns, path.dst_ns, path.ip, secs, streams, udp, port=path.iperf_port)
            add(SECTION, path.subject, metric, "Gbit/s", gbps, better="higher")
        lat = traffic.rr_latency(
            path.src_ns,
            path.dst_ns,
            path.ip,
            n=self.p.rr_samples,
            port=path.rr_port,
            timeout=max(5.0, self.p.rr_samples / 100),
        )
        add(SECTION, path.subject, "RR p50", "µs", lat.p50_us)
        add(SECTION, path.subject, "RR p99", "µs", lat.p99_us)


def _br_netfilter_on(ns: str) -> bool:
    """True when bridged frames in ``ns`` go through the IP netfilter hooks."""
    return sysctl.get(ns, BR_NF_KEYS[0]) == "1"


def _br_netfilter(ns: str, value: str) -> dict[str, str]:
    """Set every bridge-nf-call-* key in ``ns`` to ``value``; return the previous values."""
    before = {k: v for k in BR_NF_KEYS if (v := sysctl.get(ns, k)) is not None}
    sysctl.set_many(ns, {k: value for k in before})
    return before
