"""Pod routes to Kubernetes Service ranges through the pod's own node.

On a flat network a pod's default route leads to the VLAN's router, which knows nothing
of ClusterIPs: kube-proxy's DNAT lives on the node. For every range in the network's
``serviceCidrs`` the pod gets a route via one of the node's own addresses; the node then
DNATs to the backend and, as kube-proxy does, masquerades the hairpin so the backend's
reply comes back through the node. This is what Spiderpool's coordinator does for macvlan
pods.

Which node address: one inside the pod's subnet when the node has one (an ordinary on-link
gateway); else — the common case of a node whose NIC on the pod VLAN is a bare trunk and
whose own address is on a management network — any global address of the node of that
family, as an ``onlink`` gateway: the pod resolves it on its own link, where the node side
answers (the macvlan shim or the pod bridge; ARP is answered for any local address, and
for IPv6 a proxy-NDP entry), and the node routes the pod's address back through that
same link (the macvlan shim has such host routes anyway): :func:`answer_on_link`.
A family of ``serviceCidrs`` the node has no address of is an error, never a silent gap.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress

from flatnet import errors
from flatnet.datapath import addrs, neigh, netns, routes, sysctl
from flatnet.datapath.api import AttachSpec, IPAddress, Route
from flatnet.datapath.common import Undo


def with_service_routes(spec: AttachSpec, node_link_index: int) -> AttachSpec:
    """``spec`` with a route per service range via a node address (see the module docstring).

    Preference: an address inside the pod's subnet on ``node_link_index`` (the parent or
    bridge), then inside it on any node link, then any global node address of the family
    (``node_link_index`` first) as an onlink gateway.
    """
    cidrs = [ipaddress.ip_network(c) for c in spec.options.get("serviceCidrs") or ()]
    if not cidrs:
        return spec
    with netns.ipr(spec.host_netns) as ip:
        node_addrs = addrs.list_(ip, node_link_index)
        for link in ip.dump_links():
            if link.index != node_link_index and link.name != "lo":
                node_addrs += addrs.list_(ip, link.index)
    extra: list[Route] = []
    for net in cidrs:
        if any(r.dst == net for r in spec.routes):
            continue
        pod_nets = [a.network for a in spec.addresses if a.version == net.version]
        same_family = [a for a in node_addrs if a.version == net.version and not a.ip.is_loopback]
        via = next((a.ip for a in same_family if any(a.ip in n for n in pod_nets)), None)
        if via is not None:
            extra.append(Route(dst=net, gw=via))
        elif same_family:
            extra.append(Route(dst=net, gw=same_family[0].ip, onlink=True))
        else:
            raise errors.ConfigError(
                f"serviceCidrs has {net} but the node has no IPv{net.version} address to route it through",
                f"give the node an IPv{net.version} address, or drop {net} from serviceCidrs",
            )
    if not extra:
        return spec
    return dataclasses.replace(spec, routes=tuple(spec.routes) + tuple(extra))


def offlink_gateways(spec: AttachSpec) -> list[IPAddress]:
    """Service gateways outside the pod's subnets (the node must answer for them on its link)."""
    return [r.gw for r in spec.routes if r.onlink and r.gw is not None]


def answer_on_link(spec: AttachSpec, link_index: int, link_name: str, undo: Undo, host_routes: bool) -> None:
    """The node side for onlink service gateways, on the link the pod's frames reach.

    IPv6 neighbour solicitations are answered only for addresses on the receiving link, so
    each off-link v6 gateway gets a proxy-NDP entry there (with the link's proxy sysctls).
    With ``host_routes`` (bridge mode; the macvlan shim has them already) the pod's own
    addresses are routed back through the link. Nothing is done without onlink gateways.
    """
    gateways = offlink_gateways(spec)
    if not gateways:
        return
    v6 = [gw for gw in gateways if gw.version == 6]
    if v6:
        sysctl.set_many(spec.host_netns, sysctl.shim_iface(link_name), missing_ok=True)
    with netns.ipr(spec.host_netns) as ip:
        for gw in v6:
            neigh.add_proxy(ip, link_index, gw)  # shared by the link's pods: kept
        if host_routes:
            for a in spec.addresses:
                routes.add_host(ip, link_index, a.ip)
                undo.push(f"delete host route {a.ip}", functools.partial(remove_host_routes, spec.host_netns, [a.ip]))


def remove_host_routes(host_ns: str | None, pod_ips: list[IPAddress]) -> None:
    """Remove flatnet's host routes to ``pod_ips`` in the node (idempotent)."""
    if not pod_ips or not netns.exists(host_ns):
        return
    with netns.ipr(host_ns) as ip:
        for addr in pod_ips:
            routes.del_host(ip, addr)
