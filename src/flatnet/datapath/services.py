"""Pod routes to Kubernetes Service ranges through the pod's own node.

On a flat network a pod's default route leads to the VLAN's router, which knows nothing
of ClusterIPs: kube-proxy's DNAT lives on the node. For every range in the network's
``serviceCidrs`` the pod gets a route via the node's own address on the pod's segment
(on-link, so it needs no extra hop); the node then DNATs to the backend and, as kube-proxy
does, masquerades the hairpin so the backend's reply comes back through the node.
This is what Spiderpool's coordinator does for macvlan pods.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from flatnet.datapath import addrs, netns
from flatnet.datapath.api import AttachSpec, Route


def with_service_routes(spec: AttachSpec, node_link_index: int) -> AttachSpec:
    """``spec`` with a route per service range via the node's address on ``node_link_index``.

    The node address used is one inside the pod's own subnet of that family (so the route
    is on-link), preferably on ``node_link_index`` (the parent or bridge), else on any node
    link on the same segment (e.g. a bridge without an address next to the node's own port);
    a family without such an address gets no service route.
    """
    cidrs = [ipaddress.ip_network(c) for c in spec.options.get("serviceCidrs") or ()]
    if not cidrs:
        return spec
    with netns.ipr(spec.host_netns) as ip:
        node_addrs = addrs.list_(ip, node_link_index)
        for link in ip.get_links():
            if link["index"] != node_link_index:
                node_addrs += addrs.list_(ip, link["index"])
    extra: list[Route] = []
    for net in cidrs:
        pod_nets = [a.network for a in spec.addresses if a.version == net.version]
        via = next((a.ip for a in node_addrs if a.version == net.version
                    and any(a.ip in n for n in pod_nets)), None)
        if via is not None and not any(r.dst == net for r in spec.routes):
            extra.append(Route(dst=net, gw=via))
    if not extra:
        return spec
    return dataclasses.replace(spec, routes=tuple(spec.routes) + tuple(extra))
