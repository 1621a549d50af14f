"""bridge mode: a Linux bridge in the node's netns holds the node's NIC and one veth per pod.

The bridge (``spec.bridge``; default ``fnbr0``) is node infrastructure: created on demand and
kept. With a VLAN, where the kernel has bridge vlan_filtering, ``fnbr0`` is VLAN-aware: the
parent is a trunk port and each pod's veth an access port in the pod's VLAN
(datapath/vlanbridge.py); where it has not, each VLAN gets its own plain bridge ``fnbr<vlan>``
holding the 802.1Q sub-interface, because one plain bridge must never join two VLANs.
When the parent link joins a bridge, the parent's global addresses and the routes through it
move to the bridge, and the bridge keeps the parent's MAC, so the node keeps its address and its neighbours' ARP caches stay valid.
Per pod, ADD makes a veth whose host side is named ``fn`` + sha1(container_id/ifname)[:11]
so DEL finds it without stored state. Node-to-pod traffic works natively over the bridge.
"""

from __future__ import annotations


from flatnet.datapath.rtnl import Handle
from flatnet import defaults, errors
from flatnet.datapath import addrs, antispoof, firsthop, links, netns, pod, routes, services, vlanbridge
from flatnet.datapath.api import AttachSpec, Attachment
from flatnet.datapath.common import (
    infra_lock,
    host_veth_name,
    require_container_netns,
    require_host_netns,
    tmp_name,
    translate,
    undo_on_error,
    validate_spec,
    vlan_ifname,
)
from flatnet.datapath.links import LinkInfo

DEFAULT_BRIDGE = defaults.BRIDGE


def bridge_name(spec: AttachSpec, vlan_aware: bool = False) -> str:
    """The bridge for this spec: explicit, else ``fnbr0`` (VLAN-aware), else one per VLAN."""
    if spec.bridge:
        return spec.bridge
    return DEFAULT_BRIDGE if spec.vlan is None or vlan_aware else f"fnbr{spec.vlan}"


def _vlan_aware(ip: Handle, spec: AttachSpec) -> bool:
    """Does this spec's VLAN go through the VLAN-aware ``fnbr0``? (made so if the kernel can)"""
    if spec.vlan is None or spec.bridge:
        return False
    return vlanbridge.ensure_aware(ip, DEFAULT_BRIDGE)


def migrate_port(ip: Handle, port: LinkInfo, bridge: LinkInfo) -> None:
    """Enslave ``port`` to ``bridge``, moving its global addresses and non-kernel routes along."""
    moved_addrs = addrs.list_(ip, port.index)
    moved_routes = [r for r in routes.list_(ip, port.index) if r.proto != routes.RTPROT_KERNEL]
    ip.set_link(bridge.index, mac=port.mac)  # sticky: bridge keeps the node's MAC
    ip.set_link(port.index, master=bridge.index)
    links.set_up(ip, port.index)
    for iface in moved_addrs:
        addrs.add(ip, bridge.index, iface)
    for entry in moved_routes:
        routes.remove(ip, entry)
    for iface in moved_addrs:
        addrs.remove(ip, port.index, iface)
    for entry in moved_routes:
        routes.readd_on(ip, entry, bridge.index)


class BridgeDatapath:
    """Pods on a node-local Linux bridge that is itself a port of the physical segment."""

    def _validate(self, spec: AttachSpec) -> None:
        validate_spec(spec)
        if spec.vlan is not None and not spec.master:
            raise errors.ConfigError(
                "bridge mode with 'vlan' needs 'master': the VLAN sub-interface of master becomes the bridge's uplink"
            )

    def _ensure_bridge(self, spec: AttachSpec) -> LinkInfo:
        """Bridge up, with the (VLAN) parent enslaved; checks the parent before creating anything."""
        ns = spec.host_netns
        with infra_lock(ns), translate("preparing the bridge", ns), netns.ipr(ns) as ip:
            port: LinkInfo | None = None
            aware = False
            if spec.master:
                port = links.require(ip, spec.master, ns)
                aware = _vlan_aware(ip, spec)
                if spec.vlan is not None and not aware:
                    port, _ = links.ensure_vlan(ip, port, vlan_ifname(spec.master, spec.vlan), spec.vlan)
            name = bridge_name(spec, aware)
            bridge = links.find(ip, name)
            if port is not None and port.master is not None and (bridge is None or port.master != bridge.index):
                raise errors.DatapathError(
                    f"master {port.name!r} is already enslaved to another device (index "
                    f"{port.master}); release it or set 'bridge' to that device"
                )
            bridge, _ = vlanbridge.ensure(ip, name)
            if port is not None and port.master != bridge.index:
                migrate_port(ip, port, bridge)
            if aware and port is not None and spec.vlan is not None:
                vlanbridge.trunk(ip, port, spec.vlan)
            return links.info(ip, bridge.index)

    def add(self, spec: AttachSpec) -> Attachment:
        self._validate(spec)
        require_host_netns(spec)
        ns_path = require_container_netns(spec)
        pod.check_absent(spec, ns_path)
        bridge = self._ensure_bridge(spec)
        spec = services.with_service_routes(spec, bridge.index)
        host = host_veth_name(spec.container_id, spec.ifname)
        tmp = tmp_name(spec.container_id, spec.ifname)
        mtu = spec.mtu or bridge.mtu
        with undo_on_error() as undo:
            with translate(f"creating veth {host!r}", spec.host_netns), netns.ipr(spec.host_netns) as ip:
                links.delete(ip, host)  # stale: its container side is not in this netns (checked)
                links.create_veth_into(ip, host, tmp, mtu, ns_path)  # peer born in the pod netns
                undo.push(f"delete veth {host}", lambda: self._delete_host(spec.host_netns, host))
                host_info = links.require(ip, host, spec.host_netns, role="veth")
                ip.set_link(host_info.index, master=bridge.index)
                if spec.vlan is not None and bridge.name == DEFAULT_BRIDGE and vlanbridge.filtering(ip, bridge):
                    vlanbridge.access(ip, host_info, spec.vlan)  # untagged in the pod's VLAN only
                links.set_up(ip, host_info.index)

            def port_forwarding() -> None:  # else the bridge drops the pod's announcements
                with translate(f"waiting for bridge port {host!r}", spec.host_netns), netns.ipr(spec.host_netns) as ip:
                    links.await_forwarding(ip, host_info.index)

            mac, mtu = pod.adopt(spec, ns_path, tmp, spec.mac, undo, before_announce=port_forwarding, first_hop=True)
            # the pod may send only as itself from its port (datapath/antispoof.py)
            with translate(f"installing anti-spoofing rules on {host!r}", spec.host_netns):
                policy = firsthop.Policy.from_options(spec.options)
                ips = [a.ip for a in spec.addresses]
                antispoof.install(spec.host_netns, host, mac, ips, policy.router, policy.dhcp_server)
            undo.push(f"remove anti-spoofing rules of {host}", lambda: antispoof.remove(spec.host_netns, host))
            # a node without an address in the pod subnet: Services via an onlink gateway
            services.answer_on_link(spec, bridge.index, bridge.name, undo, host_routes=True)
        return Attachment(
            ifname=spec.ifname,
            mac=mac,
            sandbox=spec.netns,
            mtu=mtu,
            host_ifname=host,
            host_mac=host_info.mac,
        )

    @staticmethod
    def _delete_host(host_ns: str | None, name: str) -> None:
        if netns.exists(host_ns):
            with netns.ipr(host_ns) as ip:
                links.delete(ip, name)

    def delete(self, spec: AttachSpec) -> None:
        found = pod.remove(spec, first_hop=True)
        services.remove_host_routes(spec.host_netns, pod.address_set(spec, found))
        host = host_veth_name(spec.container_id, spec.ifname)
        with translate("removing the host veth", spec.host_netns):
            self._delete_host(spec.host_netns, host)
        antispoof.remove(spec.host_netns, host)

    def check(self, spec: AttachSpec) -> None:
        self._validate(spec)
        require_host_netns(spec)
        ns_path = require_container_netns(spec)
        host = host_veth_name(spec.container_id, spec.ifname)
        with translate("inspecting the bridge", spec.host_netns), netns.ipr(spec.host_netns) as ip:
            aware = (
                spec.vlan is not None
                and not spec.bridge
                and ((b := links.find(ip, DEFAULT_BRIDGE)) is not None and vlanbridge.filtering(ip, b))
            )
            name = bridge_name(spec, aware)
            bridge = links.find(ip, name)
        if bridge is None:
            raise pod.mismatch(f"bridge {name!r} is missing from the host netns")
        pod.check(spec, ns_path, spec.mtu or bridge.mtu, "veth", first_hop=True)
        with translate("inspecting the host veth", spec.host_netns), netns.ipr(spec.host_netns) as ip:
            veth = links.find(ip, host)
        if veth is None:
            raise pod.mismatch(f"host veth {host!r} is missing from the host netns")
        if veth.master != bridge.index:
            raise pod.mismatch(f"host veth {host!r} is not attached to bridge {name!r}")
        if not veth.up:
            raise pod.mismatch(f"host veth {host!r} is down")

    def status(self, spec: AttachSpec) -> None:
        require_host_netns(spec)
        if spec.master:
            with translate("looking up master", spec.host_netns), netns.ipr(spec.host_netns) as ip:
                links.require(ip, spec.master, spec.host_netns)
