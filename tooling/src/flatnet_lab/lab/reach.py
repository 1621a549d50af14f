"""The reachability matrix: who can open a TCP connection to whom, and who they appear to be.

Each row is one path of the seed's argument (VM -> pod, pod -> VM, outside host -> pod,
...). Every cell is *measured* with a real connection (``probe.tcp_probe``) and compared
with what the network model promises:

  flat     everything reaches everything on the plane and sources are kept;
           only the VLAN-200 host (another L2, same subnet) must fail.
  overlay  pods reach out, but SNAT-ed to the node's address; nothing outside the
           cluster reaches a pod address (VM, outside host, VLAN 200).

The logic (plans, expectations, classification) is pure and takes the probe as a
parameter, so unit tests feed it fake results; ``measure_lab`` runs it on the real lab.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

from flatnet.errors import ConfigError, FlatnetError
from flatnet_lab.lab.traffic import ProbeResult, tcp_probe
from flatnet_lab.lab.topology import Topology

#: the port probe servers listen on (in pods, VMs, hosts: all namespaces of our own)
PROBE_PORT = 18080

#: which expectation column a lab network follows
KIND = {"flat": "flat", "flat-bridge": "flat", "overlay": "overlay"}

ProbeFn = Callable[..., ProbeResult]


@dataclass(frozen=True)
class Expect:
    """What a path should do: connect or not, and which source the server should see.

    ``src``: "own" (the client's own address, no NAT), "node" (SNAT to the client's
    node), or None (not part of the promise, e.g. a node's shim address).
    """

    ok: bool
    src: str | None = None

    def text(self) -> str:
        if not self.ok:
            return "no"
        return {"own": "yes, own source", "node": "yes, SNAT to node"}.get(self.src or "", "yes")


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    flat: Expect
    overlay: Expect

    def expect(self, kind: str) -> Expect:
        return self.flat if kind == "flat" else self.overlay


ROWS: tuple[Row, ...] = (
    Row("vm-pod", "VM -> pod", Expect(True, "own"), Expect(False)),
    Row("pod-vm", "pod -> VM", Expect(True, "own"), Expect(True, "node")),
    Row("pod-pod", "pod -> pod (other node)", Expect(True, "own"), Expect(True, "own")),
    Row("out-pod", "outside host -> pod", Expect(True, "own"), Expect(False)),
    Row("node-pod", "node -> own pod", Expect(True), Expect(True)),
    Row("pod-svc", "pod -> Service ClusterIP", Expect(True), Expect(True)),
    Row("v200-pod", "VLAN-200 host -> pod", Expect(False), Expect(False)),
)
ROW_BY_KEY = {r.key: r for r in ROWS}


@dataclass(frozen=True)
class Endpoint:
    """A namespace taking part in a probe, its address, and the node address it NATs to."""

    label: str
    ns: str
    ip: str
    node_ip: str | None = None


@dataclass(frozen=True)
class Plan:
    """One cell to measure: a row, a client, a server namespace and the address dialled."""

    row: Row
    src: Endpoint
    dst: Endpoint
    dial_ip: str
    port: int = PROBE_PORT
    listen_port: int | None = None


@dataclass
class Cell:
    """A measured cell: the plan's row, what happened, and whether it matches the model."""

    key: str
    label: str
    src: str
    dst: str
    expected: Expect
    result: ProbeResult
    src_kind: str | None = None  # own | node | other (None when it did not connect)

    @property
    def match(self) -> bool:
        exp = self.expected
        if self.result.ok != exp.ok:
            return False
        return not (exp.ok and exp.src is not None and self.src_kind != exp.src)

    def text(self) -> str:
        """Short human form of what was measured: "yes, src 198.18.100.33 (own)"."""
        r = self.result
        if not r.ok:
            return f"no ({r.error or 'failed'})"
        what = {"own": "own", "node": "SNAT: node", "other": "other"}.get(self.src_kind or "", "")
        return f"yes, src {r.seen_src_ip} ({what})" if what else "yes"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["match"] = self.match
        return out


@dataclass
class Matrix:
    network: str
    kind: str
    cells: list[Cell] = field(default_factory=list)

    @property
    def mismatches(self) -> list[Cell]:
        return [c for c in self.cells if not c.match]

    def cell(self, key: str) -> Cell | None:
        return next((c for c in self.cells if c.key == key), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "kind": self.kind,
            "cells": [c.to_json() for c in self.cells],
            "mismatches": [c.key for c in self.mismatches],
        }


def kind_of(network: str) -> str:
    if network not in KIND:
        raise ConfigError(f"network {network!r} has no reachability model", f"use one of: {', '.join(KIND)}")
    return KIND[network]


def classify(seen_ip: str | None, own_ip: str, node_ip: str | None) -> str | None:
    """Name the source the server saw: the client's own address, its node's, or other."""
    if seen_ip is None:
        return None
    if seen_ip == own_ip:
        return "own"
    if node_ip is not None and seen_ip == node_ip:
        return "node"
    return "other"


def plans(topo: Topology, pod_a: Endpoint, pod_b: Endpoint) -> list[Plan]:
    """The matrix for two pods of one network: ``pod_a`` on one node, ``pod_b`` on another.

    ``pod_b`` is also the Service backend (the VIP is DNATed to it on every node).
    """
    vm = topo.host("fnlab-vm1")
    out = next(h for h in topo.hosts if h.role == "outside")
    v200 = next(h for h in topo.hosts if h.role == "isolated")
    node_a = next(n for n in topo.nodes if n.ipv4 == pod_a.node_ip)

    def ep(host_ns: str, label: str) -> Endpoint:
        addr = topo.host(host_ns).ifaces[0].addresses[0].split("/")[0]
        return Endpoint(label, host_ns, addr)

    vm_ep, out_ep, v200_ep = ep(vm.ns, "vm1"), ep(out.ns, "outside"), ep(v200.ns, "vlan200")
    node_ep = Endpoint(node_a.name, node_a.ns, node_a.ipv4, node_a.ipv4)
    svc = topo.service
    return [
        Plan(ROW_BY_KEY["vm-pod"], vm_ep, pod_a, pod_a.ip),
        Plan(ROW_BY_KEY["pod-vm"], pod_a, vm_ep, vm_ep.ip),
        Plan(ROW_BY_KEY["pod-pod"], pod_a, pod_b, pod_b.ip),
        Plan(ROW_BY_KEY["out-pod"], out_ep, pod_a, pod_a.ip),
        Plan(ROW_BY_KEY["node-pod"], node_ep, pod_a, pod_a.ip),
        Plan(ROW_BY_KEY["pod-svc"], pod_a, pod_b, svc.vip, svc.port, svc.port),
        Plan(ROW_BY_KEY["v200-pod"], v200_ep, pod_a, pod_a.ip),
    ]


def run(network: str, plan_list: list[Plan], probe: ProbeFn = tcp_probe, timeout: float = 1.0) -> Matrix:
    """Measure every plan (one bounded probe each) and compare with the network's model."""
    kind = kind_of(network)
    matrix = Matrix(network, kind)
    for p in plan_list:
        res = probe(p.src.ns, p.dst.ns, p.dial_ip, p.port, timeout=timeout, listen_port=p.listen_port)
        matrix.cells.append(
            Cell(
                p.row.key,
                p.row.label,
                p.src.label,
                f"{p.dst.label} {p.dial_ip}:{p.port}",
                p.row.expect(kind),
                res,
                classify(res.seen_src_ip, p.src.ip, p.src.node_ip) if res.ok else None,
            )
        )
    return matrix


def retry_failed(matrix: Matrix, plan_list: list[Plan], probe: ProbeFn = tcp_probe, timeout: float = 1.0) -> Matrix:
    """Probe once more the cells that should connect but did not.

    A fresh macvlan or VXLAN path may lose its very first SYN to neighbour resolution;
    one bounded retry tells that apart from a path that is really closed.
    """
    by_key = {p.row.key: p for p in plan_list}
    for i, cell in enumerate(matrix.cells):
        if cell.expected.ok and not cell.result.ok and cell.key in by_key:
            redo = run(matrix.network, [by_key[cell.key]], probe, timeout)
            matrix.cells[i] = redo.cells[0]
    return matrix


def pod_endpoint(topo: Topology, pod: Any) -> Endpoint:
    """A lab pod (``flatnet_lab.lab.pods.Pod``) as a probe endpoint, with its node's address."""
    return Endpoint(f"pod {pod.name}", pod.netns, pod.ip, topo.node(pod.node).ipv4)


def require_lab() -> Topology:
    """The running lab's topology, or a clear error when no lab is up (or it is too small)."""
    from flatnet_lab.lab import manager

    if manager.state() is None:
        raise FlatnetError(
            "no lab is up", "start one with 'flatnet lab up' (or run 'flatnet lab demo', which brings it up itself)"
        )
    topo = manager.current_topology()
    if len(topo.nodes) < 2:
        raise ConfigError(
            f"the lab has {len(topo.nodes)} node; the matrix needs 2",
            "rebuild it: flatnet lab down && flatnet lab up --nodes 3",
        )
    return topo


@contextmanager
def probe_pods(topo: Topology, network: str, prefix: str = "chk") -> Iterator[tuple[Any, Any]]:
    """Two pods of ``network``, on the first two nodes; deleted on exit, even on failure."""
    from flatnet_lab.lab import pods

    made: list[str] = []
    try:
        for suffix, node in (("a", topo.nodes[0]), ("b", topo.nodes[1])):
            name = f"{prefix}-{network}-{suffix}"
            pods.del_pod(name)  # a leftover of an interrupted run
            pods.add_pod(node.name, name, network)
            made.append(name)
        yield pods.get_pod(made[0]), pods.get_pod(made[1])
    finally:
        for name in reversed(made):
            pods.del_pod(name)


def measure(topo: Topology, network: str, pod_a: Any, pod_b: Any, probe: ProbeFn = tcp_probe) -> Matrix:
    """The matrix of ``network`` on the live lab: Service VIP pointed at ``pod_b`` meanwhile."""
    from flatnet_lab.testbed import net as labnet
    from flatnet_lab.lab import manager

    a, b = pod_endpoint(topo, pod_a), pod_endpoint(topo, pod_b)
    plan_list = plans(topo, a, b)
    manager.install_service([pod_b.name])
    try:
        return retry_failed(run(network, plan_list, probe), plan_list, probe)
    finally:
        for node in topo.nodes:
            labnet.remove_service(node.ns)


def check_lab(networks: list[str], probe: ProbeFn = tcp_probe) -> list[Matrix]:
    """``flatnet check reach``: for each network, two fresh pods, the matrix, cleanup."""
    topo = require_lab()
    out = []
    for network in networks:
        kind_of(network)
        with probe_pods(topo, network) as (pod_a, pod_b):
            out.append(measure(topo, network, pod_a, pod_b, probe))
    return out
