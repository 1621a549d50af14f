"""The lab's shape, as data: which namespaces, links, addresses and routes make the cluster.

The lab is a multi-node cluster on one machine built from network namespaces. This module
only *describes* it (frozen dataclasses); ``flatnet_lab.lab.manager`` builds it through
``flatnet_lab.testbed.net``. Keeping the description separate lets tests, the demo and the
reachability checks ask "what is node2's address?" without touching the kernel.

The switch has one of two shapes (``Topology.shape``), picked by ``lab up`` from what the
kernel can do:
- ``vlan-aware`` (kernels with 8021q and bridge vlan_filtering, such as Debian's stock kernel;
  the real shape of the seed's network): one VLAN-filtering bridge ``br0`` in ``fnlab-sw``.
  Each node has trunk ports (``t-vlan100``, ``t-vlan100b``) carrying VLANs 100 and 200
  tagged, and its ``vlan100``/``vlan100b`` are real 802.1Q sub-interfaces (VLAN 100) of
  them; VMs, the router and the VLAN-200 host sit on access ports (untagged, one VLAN).
- ``per-vlan`` (this project's machines: no bridge ``vlan_filtering``, no 802.1Q links): each
  VLAN segment is its own plain bridge, ``br100`` and ``br200``, every port an access port,
  and a node's ``vlan100`` stands for the 802.1Q sub-interface a real node would have.
VLAN 100 is the flat plane shared by nodes, VMs and the router; VLAN 200 is a different L2
that reuses the same IP subnet on purpose: a host there must NOT reach pods, which shows the
isolation comes from L2, not from addressing.

Addresses come only from 198.18.0.0/15 and 2001:db8::/32 (benchmark/documentation ranges).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flatnet.errors import ConfigError

PREFIX = "fnlab-"
SWITCH_NS = f"{PREFIX}sw"
POD_NS_PREFIX = f"{PREFIX}pod-"
MAX_NODES = 20  # node K holds 198.18.100.(10+K); the flat pool starts at .32
SHAPES = ("vlan-aware", "per-vlan")  # the switch's shapes (module docstring)
VLANS = (100, 200)

FLAT_V4_SUBNET = "198.18.100.0/24"
FLAT_V6_SUBNET = "2001:db8:100::/64"


@dataclass(frozen=True)
class Segment:
    """One L2 segment (VLAN) of the switch: a plain bridge in the switch namespace."""

    vlan: int
    bridge: str


@dataclass(frozen=True)
class Iface:
    """One interface of a lab host: a veth end whose other end is a switch port or a peer.

    Exactly one of ``segment`` (access port on that VLAN; ``switch_port`` names the switch
    side) or ``peer`` ((namespace, ifname) of a point-to-point partner) is set.
    """

    name: str
    addresses: tuple[str, ...] = ()
    segment: int | None = None
    switch_port: str | None = None
    peer: tuple[str, str] | None = None
    trunk: str | None = None  # vlan-aware shape: ``name`` is the 802.1Q sub-interface of this trunk


@dataclass(frozen=True)
class RouteSpec:
    """A route in a host: ``dst`` ("default" or a CIDR) via gateway ``gw``."""

    dst: str
    gw: str


@dataclass(frozen=True)
class Host:
    """A network namespace of the lab (node, VM, router, outside host, isolated host)."""

    ns: str
    role: str
    ifaces: tuple[Iface, ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    forwarding: bool = False


@dataclass(frozen=True)
class Node:
    """A cluster node: its namespace, underlay addresses and the ports pods attach to."""

    name: str
    index: int
    ns: str
    ipv4: str  # underlay (and VTEP) address, no prefix
    ipv6: str
    flat_master: str = "vlan100"  # macvlan/ipvlan parent
    bridge_master: str = "vlan100b"  # enslaved to the node's pod bridge in bridge mode


@dataclass(frozen=True)
class FlatPool:
    """The flat plane's address pools (same subnet as VMs and nodes, gateway = router)."""

    v4_subnet: str = FLAT_V4_SUBNET
    v4_start: str = "198.18.100.32"
    v4_end: str = "198.18.100.191"
    v4_gateway: str = "198.18.100.1"
    #: the 8-address pool "small-v4" (network flat-small), right after the flat range
    small_start: str = "198.18.100.192"
    small_end: str = "198.18.100.199"
    v6_subnet: str = FLAT_V6_SUBNET
    v6_start: str = "2001:db8:100::1000"
    v6_end: str = "2001:db8:100::1fff"
    v6_gateway: str = "2001:db8:100::1"
    #: "wide-v4" / "wide-v6" (network flat-wide): room for hundreds of pods on one node, which
    #: the plane's /24 has not (the bench's crowded node); subnets of their own on the same
    #: VLAN, not sticky, so nothing stays held after the pods are gone
    wide_v4_subnet: str = "198.18.104.0/22"
    wide_v4_start: str = "198.18.104.10"
    wide_v4_end: str = "198.18.107.250"
    wide_v4_gateway: str = "198.18.104.1"
    wide_v6_subnet: str = "2001:db8:104::/64"
    wide_v6_start: str = "2001:db8:104::1000"
    wide_v6_end: str = "2001:db8:104::1fff"
    wide_v6_gateway: str = "2001:db8:104::1"


@dataclass(frozen=True)
class Overlay:
    """The VXLAN overlay: one /24 block per node out of the cluster subnet."""

    cluster_subnet: str = "198.19.0.0/17"
    node_block_prefix: int = 24
    vni: int = 42
    port: int = 4789


@dataclass(frozen=True)
class Service:
    """A kube-proxy style virtual address, DNATed on every node to a pod on another node."""

    vip: str = "198.19.128.10"
    port: int = 80
    cidr: str = "198.19.128.0/24"  # the Service range flat pods route via their node


@dataclass(frozen=True)
class Topology:
    """The whole lab. ``hosts`` lists every namespace except the switch, in build order."""

    switch_ns: str
    segments: tuple[Segment, ...]
    hosts: tuple[Host, ...]
    nodes: tuple[Node, ...]
    flat: FlatPool = field(default_factory=FlatPool)
    overlay: Overlay = field(default_factory=Overlay)
    service: Service = field(default_factory=Service)
    shape: str = "per-vlan"

    def describe(self) -> str:
        """One line saying which switch this is (``lab up`` prints it)."""
        if self.shape == "vlan-aware":
            return (
                "switch: one VLAN-filtering bridge (br0); nodes on 802.1Q trunks "
                "(VLANs 100, 200 tagged), VMs/router/VLAN-200 host on access ports"
            )
        return (
            "switch: one plain bridge per VLAN (br100, br200), every port an access port "
            "(this kernel lacks 8021q or bridge vlan_filtering)"
        )

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace the lab builds (pods excluded), switch first."""
        return (self.switch_ns, *(h.ns for h in self.hosts))

    def host(self, ns: str) -> Host:
        for h in self.hosts:
            if h.ns == ns:
                return h
        raise KeyError(ns)

    def node(self, name: str) -> Node:
        """A node by name ("node2") or namespace ("fnlab-node2")."""
        for n in self.nodes:
            if name in (n.name, n.ns):
                return n
        known = ", ".join(n.name for n in self.nodes)
        raise ConfigError(f"no lab node {name!r}", f"the lab has: {known}")


def _flat_host(ns: str, role: str, port: str, v4: str, v6: str, segment: int = 100) -> Host:
    """A VM-like host with one access port and default routes via the router."""
    iface = Iface("eth0", (f"{v4}/24", f"{v6}/64"), segment=segment, switch_port=port)
    routes: tuple[RouteSpec, ...] = ()
    if segment == 100:
        routes = (RouteSpec("default", "198.18.100.1"), RouteSpec("default", "2001:db8:100::1"))
    return Host(ns, role, (iface,), routes)


def default_topology(nodes: int = 3, shape: str = "per-vlan") -> Topology:
    """The default lab: switch, ``nodes`` nodes, two VMs, a VLAN-200 host, router, outside."""
    if not 1 <= nodes <= MAX_NODES:
        raise ConfigError(f"nodes={nodes} is out of range", f"the lab supports 1..{MAX_NODES} nodes")
    if shape not in SHAPES:
        raise ConfigError(f"switch shape {shape!r} is unknown", f"use one of {', '.join(SHAPES)}")
    aware = shape == "vlan-aware"
    segments = tuple(Segment(v, "br0" if aware else f"br{v}") for v in VLANS)
    node_list: list[Node] = []
    hosts: list[Host] = []
    for k in range(1, nodes + 1):
        node = Node(f"node{k}", k, f"{PREFIX}node{k}", f"198.18.100.{10 + k}", f"2001:db8:100::{10 + k}")
        node_list.append(node)
        hosts.append(
            Host(
                node.ns,
                "node",
                (
                    Iface(
                        node.flat_master,
                        (f"{node.ipv4}/24", f"{node.ipv6}/64"),
                        segment=100,
                        switch_port=f"n{k}-v100",
                        trunk=f"t-{node.flat_master}" if aware else None,
                    ),
                    # no address: bridge mode enslaves it to the node's pod bridge
                    Iface(
                        node.bridge_master,
                        (),
                        segment=100,
                        switch_port=f"n{k}-v100b",
                        trunk=f"t-{node.bridge_master}" if aware else None,
                    ),
                ),
                (RouteSpec("default", "198.18.100.1"), RouteSpec("default", "2001:db8:100::1")),
                forwarding=True,  # bridge and overlay pods are routed through the node
            )
        )
    hosts.append(_flat_host(f"{PREFIX}vm1", "vm", "vm1", "198.18.100.201", "2001:db8:100::201"))
    hosts.append(_flat_host(f"{PREFIX}vm2", "vm", "vm2", "198.18.100.202", "2001:db8:100::202"))
    hosts.append(_flat_host(f"{PREFIX}vlan200", "isolated", "h200", "198.18.100.210", "2001:db8:100::210", segment=200))
    rtr, out = f"{PREFIX}rtr", f"{PREFIX}out"
    hosts.append(
        Host(
            rtr,
            "router",
            (
                Iface("vlan100", ("198.18.100.1/24", "2001:db8:100::1/64"), segment=100, switch_port="rtr"),
                Iface("outside", ("198.19.200.1/24", "2001:db8:200::1/64"), peer=(out, "eth0")),
            ),
            forwarding=True,
        )
    )
    hosts.append(
        Host(
            out,
            "outside",
            (Iface("eth0", ("198.19.200.10/24", "2001:db8:200::10/64"), peer=(rtr, "outside")),),
            (RouteSpec("default", "198.19.200.1"), RouteSpec("default", "2001:db8:200::1")),
        )
    )
    return Topology(SWITCH_NS, segments, tuple(hosts), tuple(node_list), shape=shape)
