"""The node-side "shim": how a node reaches its own macvlan/ipvlan pods.

A macvlan/ipvlan parent never receives frames from its own children (kubernetes#41736), so
a node cannot talk to the pods it hosts over the parent. A sibling child on the same parent,
``fns-<hash(parent)>``, can: the node routes ``<pod ip>/32`` (and /128) out of it. It needs no
address: ARP requests from pods for the node's IPv4 address are answered on any link
(arp_ignore=0), and IPv6 solicitations for the node's addresses are answered through
proxy-NDP entries on the shim. The shim is shared by every pod on that parent and is kept
when the last pod goes (creating and deleting it per pod would race concurrent ADDs).
ipvlan children all wear the parent's MAC, so a pod's ARP/NDP answer to the shim lands on the
parent instead: for ipvlan the shim gets a permanent neighbour entry per pod address (the
parent's MAC), removed with the pod's host routes.
"""

from __future__ import annotations

import functools

from flatnet.datapath import addrs, links, neigh, netns, routes, sysctl
from flatnet.datapath.api import IPAddress
from flatnet.datapath.common import RTPROT_FLATNET, Undo, infra_lock, shim_name, translate
from flatnet.datapath.links import LinkInfo


def ensure(host_ns: str | None, kind: str, parent: LinkInfo) -> int:
    """The shim link for ``parent`` (created and brought up if missing); its index.

    Node infrastructure: kept after the last pod and not undone when an ADD fails later,
    since another pod may already route through it.
    """
    name = shim_name(parent.name)
    with translate(f"looking up shim {name!r}", host_ns), netns.ipr(host_ns) as ip:
        found = links.find(ip, name)
    if found is not None and found.up and found.kind == kind:
        return found.index  # every ADD after the node's first: one netlink call, no lock
    attrs = links.child_attrs(kind, parent.index, parent.mtu, None)
    with infra_lock(host_ns):
        with translate(f"creating shim {name!r}", host_ns), netns.ipr(host_ns) as ip:
            fresh = links.lookup(ip, name) is None
            if fresh:  # created down: its sysctls must be set before it first comes up
                links.create(ip, kind, name, **attrs)
        if fresh:
            sysctl.set_many(host_ns, sysctl.shim_iface(name), missing_ok=True)
        with translate(f"bringing up shim {name!r}", host_ns), netns.ipr(host_ns) as ip:
            link, _ = links.ensure(ip, kind, name, **attrs)
    return link.index


def add_pod(
    host_ns: str | None, shim: int, parent: LinkInfo, pod_ips: list[IPAddress], undo: Undo, kind: str = "macvlan"
) -> None:
    """Host routes to the pod through the shim, and proxy-NDP for the node's own v6 addresses."""
    with translate("adding host routes to the pod", host_ns), netns.ipr(host_ns) as ip:
        for addr in pod_ips:
            routes.add_host(ip, shim, addr)
            undo.push(f"delete host route {addr}", functools.partial(remove_pod, host_ns, [addr]))
            if kind == "ipvlan":
                neigh.set_static(ip, shim, addr, parent.mac)
        if any(a.version == 6 for a in pod_ips):
            for node_addr in addrs.list_(ip, parent.index):
                if node_addr.version == 6:
                    neigh.add_proxy(ip, shim, node_addr.ip)


def remove_pod(host_ns: str | None, pod_ips: list[IPAddress]) -> None:
    """Remove flatnet's host routes to ``pod_ips`` (idempotent; missing host netns is fine)."""
    if not pod_ips or not netns.exists(host_ns):
        return
    with translate("removing host routes to the pod", host_ns), netns.ipr(host_ns) as ip:
        for addr in pod_ips:
            routes.del_host(ip, addr)
            neigh.drop_static(ip, addr)  # the ipvlan shim's entry (none for macvlan)


def missing_routes(host_ns: str | None, parent: str, pod_ips: list[IPAddress]) -> list[str]:
    """What of the node side is missing for these pod addresses (for CHECK)."""
    name = shim_name(parent)
    with translate("inspecting the shim", host_ns), netns.ipr(host_ns) as ip:
        index = links.lookup(ip, name)
        if index is None:
            return [f"shim link {name!r} on parent {parent!r}"]
        have = {(r.dst.network_address, r.dst.prefixlen) for r in routes.list_(ip, index) if r.proto == RTPROT_FLATNET}
    return [f"host route {a}/{a.max_prefixlen} via {name}" for a in pod_ips if (a, a.max_prefixlen) not in have]
