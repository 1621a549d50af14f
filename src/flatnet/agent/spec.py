"""Pure translation between CNI inputs, IPAM leases, datapath specs and CNI results.

Kept apart from the service so the mapping rules (which routes a pod gets, where the
requested addresses come from, how the result indexes interfaces) read in one place and
are unit-testable without locks, stores or a kernel.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Sequence

from flatnet.datapath.api import AttachSpec, Attachment, Route
from flatnet.errors import AddressUnavailable, ConfigError
from flatnet.ipam.api import IPAddress, Lease, PoolSpec

if TYPE_CHECKING:
    from flatnet.cni.config import NetConf
    from flatnet.cni.env import CmdArgs
    from flatnet.cni.types import Result

_DEFAULT = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}


def netconf(cmd: CmdArgs) -> NetConf:
    """The request's parsed network config (the dispatcher parses it before any verb)."""
    if cmd.conf is None:
        raise ConfigError("no network configuration was parsed for this request", "pass the config on stdin")
    return cmd.conf


def requested_ips(cmd: CmdArgs) -> list[IPAddress]:
    """Addresses the runtime asked for: CNI_ARGS ``IP=``, runtimeConfig ``ips``, args.cni.ips.

    The CNI layer has validated each one; here they become plain addresses (a prefix
    given by the runtime is ignored: the pool decides the prefix) and at most one per
    family is accepted, because a pod gets one address per family.
    """
    out: list[IPAddress] = []
    for item in cmd.requested_ips():
        ip = item.ip if isinstance(item, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)) else item
        if ip not in out:
            out.append(ip)
    families = [ip.version for ip in out]
    if len(families) != len(set(families)):
        raise AddressUnavailable(
            f"more than one address requested per family: {', '.join(map(str, out))}",
            "request at most one IPv4 and one IPv6 address",
        )
    return out


def routes_for(leases: Sequence[Lease], pools: Sequence[PoolSpec]) -> tuple[Route, ...]:
    """Default route via each family's gateway, then the pools' extra routes (deduplicated)."""
    by_name = {p.name: p for p in pools}
    routes: list[Route] = []
    for lease in leases:
        if lease.gateway is not None:
            route = Route(_DEFAULT[lease.address.version], lease.gateway)
            if not any(r.dst == route.dst for r in routes):
                routes.append(route)
        pool = by_name.get(lease.pool)
        for dst, gw in pool.routes if pool else ():
            route = Route(dst, gw)
            if route not in routes:
                routes.append(route)
    return tuple(routes)


FIRST_HOP = "firstHop"  # datapath/firsthop.py reads its Policy from this option


def first_hop_policy(conf: NetConf, leases: Sequence[Lease], pools: Sequence[PoolSpec]) -> dict[str, bool]:
    """The pod's first-hop filter settings: the network's switch, its pools' permissions.

    A pod may act as a router (or DHCP server) when a pool it holds an address of allows it.
    The pools come from the ADD's pool list or, on CHECK/DEL, from the network config.
    """
    by_name = {p.name: p for p in [*(getattr(conf, "pools", None) or []), *pools]}
    held = [by_name[l.pool] for l in leases if l.pool in by_name]
    return {
        "enforce": bool(getattr(conf, "first_hop_security", True)),
        "router": any(p.allow_router for p in held),
        "dhcpServer": any(p.allow_dhcp_server for p in held),
    }


def build_spec(
    cmd: CmdArgs, leases: Sequence[Lease], pools: Sequence[PoolSpec], default_host_netns: str | None, node: str | None
) -> AttachSpec:
    """The datapath's view of one attachment (pools may be empty on DEL/CHECK)."""
    conf = netconf(cmd)
    options = dict(conf.options or {})
    mac = conf.runtime_config.mac or conf.args_mac or (cmd.args or {}).get("MAC") or conf.mac
    if node:
        options.setdefault("node", node)
    options[FIRST_HOP] = first_hop_policy(conf, leases, pools)
    vlan = conf.vlan
    if vlan is None:
        vlan = next((l.vlan for l in leases if l.vlan is not None), None)
    return AttachSpec(
        container_id=cmd.container_id,
        ifname=cmd.ifname,
        netns=cmd.netns or "",
        mode=conf.mode,
        master=conf.master,
        vlan=vlan,
        bridge=conf.bridge,
        mtu=conf.mtu,
        mac=mac,
        addresses=tuple(l.address for l in leases),
        routes=routes_for(leases, pools),
        host_netns=conf.host_netns or default_host_netns,
        options=options,
    )


def build_result(spec: AttachSpec, att: Attachment, leases: Sequence[Lease]) -> Result:
    """The CNI result: host-side peer first (if any), the pod interface, its ips and routes."""
    from flatnet.cni import Interface, IPConfig, Result
    from flatnet.cni import Route as CniRoute

    interfaces = []
    if att.host_ifname:
        interfaces.append(Interface(name=att.host_ifname, mac=att.host_mac or "", sandbox=""))
    pod_index = len(interfaces)
    interfaces.append(Interface(name=att.ifname, mac=att.mac, sandbox=att.sandbox, mtu=att.mtu))
    ips = [IPConfig(address=l.address, gateway=l.gateway, interface=pod_index) for l in leases]
    routes = [CniRoute(dst=r.dst, gw=r.gw) for r in spec.routes]
    return Result(interfaces=interfaces, ips=ips, routes=routes)
