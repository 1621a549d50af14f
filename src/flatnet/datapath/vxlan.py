"""vxlan mode: flannel's overlay model, kept as the fallback and as the measured contrast.

Per node (in ``spec.host_netns``): a VXLAN device ``fnvx<vni>`` (learning off, MTU =
underlay - 50) holding the node block's network address as a /32, a bridge ``fnovl0``
holding the block's gateway (first host), IPv4 forwarding on, and an nftables masquerade
for cluster -> outside traffic. Per pod: a veth (host side ``fv`` + sha1 prefix) on the
bridge. Per *peer node* (never per pod): one route ``<block> via <block net addr> dev fnvx
onlink``, a permanent neighbour entry for that address -> the peer's VXLAN MAC, and an FDB
entry MAC -> the peer's VTEP. The VXLAN MAC is derived from (vtep, vni), so a recreated
device keeps its MAC and the peers' entries stay valid.

Options (``spec.options`` / ``ensure_node`` / ``sync_peers``): ``vni`` (required), ``port``
(4789), ``vtep`` (node underlay IP, required), ``block`` (node block CIDR, required),
``clusterSubnet`` (enables SNAT), ``network`` (name used to tag nft rules, "flatnet"),
``node``, ``peers`` ([{node, vtep, mac, block}]), ``portMappings``, ``underlayMtu``, ``bridge``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any
import ipaddress
from dataclasses import dataclass


from flatnet.datapath.rtnl import Handle, Neigh, NetlinkError
from flatnet import defaults, errors
from flatnet.datapath import addrs, links, netns, nft, pod, routes, rtnl, sysctl
from flatnet.datapath.api import AttachSpec, Attachment, IPNetwork, Route
from flatnet.datapath.common import (
    RTPROT_FLATNET,
    feature_missing,
    infra_lock,
    is_errno,
    ns_label,
    require_container_netns,
    require_host_netns,
    tmp_name,
    translate,
    undo_on_error,
    validate_spec,
)

DEFAULT_BRIDGE = defaults.OVERLAY_BRIDGE
NUD_PERMANENT, RTNH_F_ONLINK, AF_INET, AF_INET6 = 0x80, 4, 2, 10


@dataclass(frozen=True)
class Opts:
    """The validated mode options; each error names the option and the fix."""

    vni: int
    port: int
    vtep: ipaddress.IPv4Address | ipaddress.IPv6Address
    block: IPNetwork
    cluster: IPNetwork | None
    network: str
    node: str | None
    bridge: str
    underlay_mtu: int | None

    @property
    def vx_name(self) -> str:
        return f"fnvx{self.vni}"

    @property
    def gateway(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        return ipaddress.ip_interface(f"{self.block.network_address + 1}/{self.block.prefixlen}")

    @property
    def overhead(self) -> int:
        return 50 if self.vtep.version == 4 else 70  # outer IP + UDP + VXLAN + inner Ethernet

    @property
    def mac(self) -> str:
        """Locally administered unicast MAC, stable for (vtep, vni)."""
        h = hashlib.sha1(f"{self.vtep}/{self.vni}".encode()).hexdigest()[:10]
        return "0e:" + ":".join(h[i : i + 2] for i in range(0, 10, 2))


def parse_options(options: dict[str, Any]) -> Opts:
    def need(key: str) -> Any:
        if options.get(key) in (None, ""):
            raise errors.ConfigError(f"vxlan mode needs option {key!r} (see flatnet.datapath.vxlan docs)")
        return options[key]

    def port_like(key: str, value: object, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise errors.ConfigError(f"vxlan option {key!r} must be an integer {lo}-{hi}, got {value!r}")
        return value

    try:
        vtep = ipaddress.ip_address(need("vtep"))
        block = ipaddress.ip_network(need("block"))
        cluster = ipaddress.ip_network(options["clusterSubnet"]) if options.get("clusterSubnet") else None
    except ValueError as exc:
        raise errors.ConfigError(
            f"vxlan options: {exc}; use addresses like 198.18.100.11 and CIDRs like 198.19.1.0/24"
        ) from None
    if cluster is not None and (cluster.version != block.version or not block.subnet_of(cluster)):  # type: ignore[arg-type]
        raise errors.ConfigError(f"vxlan option 'block' {block} is not inside 'clusterSubnet' {cluster}")
    mtu = options.get("underlayMtu")
    return Opts(
        vni=port_like("vni", need("vni"), 1, 2**24 - 1),
        port=port_like("port", options.get("port", defaults.VXLAN_PORT), 1, 65535),
        vtep=vtep,
        block=block,
        cluster=cluster,
        network=str(options.get("network") or "flatnet"),
        node=options.get("node"),
        bridge=str(options.get("bridge") or DEFAULT_BRIDGE),
        underlay_mtu=None if mtu is None else port_like("underlayMtu", mtu, 68 + 70, 65535),
    )


def overlay_veth_name(container_id: str, ifname: str) -> str:
    """Host-side veth name, derived so DEL finds it without stored state."""
    return "fv" + hashlib.sha1(f"{container_id}/{ifname}".encode()).hexdigest()[:11]


def _underlay(ip: Handle, o: Opts, ns: str | None) -> links.LinkInfo:
    for a in ip.dump_addrs():
        if a.address == str(o.vtep):
            return links.info(ip, a.index)
    raise errors.ParentMissing(
        f"vtep address {o.vtep} is on no link in {ns_label(ns)}; set option 'vtep' to the node's underlay address"
    )


def _vxlan_facts(ip: Handle, index: int) -> tuple[int | None, int | None, str | None]:
    data = ip.pyroute2().link("get", index=index)[0].get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
    if data is None:
        return None, None, None
    local = data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6")
    return data.get("IFLA_VXLAN_ID"), data.get("IFLA_VXLAN_PORT"), local


def _ensure_infra(ns: str | None, o: Opts) -> tuple[int, links.LinkInfo]:
    """Make the node's VXLAN device and bridge; return (overlay MTU, bridge)."""
    with infra_lock(ns), translate(f"preparing vxlan device {o.vx_name!r}", ns), netns.ipr(ns) as ip:
        under = _underlay(ip, o, ns)
        mtu = (o.underlay_mtu or under.mtu) - o.overhead
        vx = links.find(ip, o.vx_name)
        if vx is None:
            local = "vxlan_local" if o.vtep.version == 4 else "vxlan_local6"
            attrs = {
                "vxlan_id": o.vni,
                "vxlan_port": o.port,
                "vxlan_learning": 0,
                "vxlan_link": under.index,
                local: str(o.vtep),
                "mtu": mtu,
                "address": o.mac,
            }
            try:
                links.create(ip, "vxlan", o.vx_name, **attrs)
            except NetlinkError as exc:
                if is_errno(exc, 95, 97, 2):  # EOPNOTSUPP, EAFNOSUPPORT, ENOENT: kind unknown
                    raise feature_missing("vxlan", "CONFIG_VXLAN", "vxlan") from exc
                if not is_errno(exc, 17):  # EEXIST: a concurrent creator won
                    raise
            vx = links.require(ip, o.vx_name, ns, role="vxlan")
        facts = _vxlan_facts(ip, vx.index)
        if vx.kind != "vxlan" or facts != (o.vni, o.port, str(o.vtep)):
            raise errors.DatapathError(
                f"link {o.vx_name!r} in {ns_label(ns)} exists with (vni, port, local) {facts}, expected "
                f"({o.vni}, {o.port}, {o.vtep}); delete it or fix the vxlan options"
            )
        if vx.mtu != mtu:
            ip.set_link(vx.index, mtu=mtu)
        addrs.add(ip, vx.index, ipaddress.ip_interface(f"{o.block.network_address}/{o.block.max_prefixlen}"))
        links.set_up(ip, vx.index)
        bridge, _ = links.ensure(ip, "bridge", o.bridge, mtu=mtu)
        addrs.add(ip, bridge.index, o.gateway)
    fwd = "net/ipv4/ip_forward" if o.block.version == 4 else "net/ipv6/conf/all/forwarding"
    sysctl.set_many(ns, {fwd: "1"})
    if o.cluster is not None:
        nft.ensure_snat(ns, o.network, o.cluster)
    return mtu, bridge


def ensure_node(host_netns: str | None, options: dict[str, Any]) -> str:
    """Prepare the node (VXLAN device, bridge, forwarding, SNAT); return the VTEP MAC to register."""
    o = parse_options(options)
    _ensure_infra(host_netns, o)
    return o.mac


def _peers(o: Opts, raw: object) -> dict[IPNetwork, tuple[str, str, str]]:
    """Validated peers other than this node: block -> (via address, vxlan MAC, vtep)."""
    if not isinstance(raw, list):
        raise errors.ConfigError("vxlan option 'peers' must be a list of {node, vtep, mac, block} objects")
    out: dict[IPNetwork, tuple[str, str, str]] = {}
    for i, p in enumerate(raw):
        try:
            block, vtep, mac = ipaddress.ip_network(p["block"]), ipaddress.ip_address(p["vtep"]), str(p["mac"]).lower()
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.ConfigError(
                f"vxlan option peers[{i}] is malformed ({exc}); expected {{node, vtep, mac, block}}"
            ) from None
        if vtep == o.vtep or block == o.block or (o.node and p.get("node") == o.node):
            continue
        if block.version != o.block.version or block.overlaps(o.block):
            raise errors.ConfigError(f"peer block {block} (peers[{i}]) overlaps this node's block {o.block}")
        out[block] = (str(block.network_address), mac, str(vtep))
    return out


def sync_peers(host_netns: str | None, options: dict[str, Any]) -> int:
    """Make routes/neighbours/FDB on fnvx match ``options["peers"]``; remove departed peers.

    Idempotent; returns the number of peer blocks routed.
    """
    o = parse_options(options)
    want = _peers(o, options.get("peers", []))
    fam = AF_INET if o.block.version == 4 else AF_INET6
    with translate(f"syncing vxlan peers on {o.vx_name!r}", host_netns), netns.ipr(host_netns) as ip:
        vx = links.require(ip, o.vx_name, host_netns, role="vxlan (call ensure_node first)")
        for r in routes.list_(ip, vx.index, family=o.block.version):
            if r.proto == RTPROT_FLATNET and (r.dst not in want or str(r.gw) != want[r.dst][0]):
                routes.remove(ip, r)
        vias = {via: mac for via, mac, _ in want.values()}
        for n in ip.dump_neighs(fam, ifindex=vx.index):
            if n.state & NUD_PERMANENT and n.dst and vias.get(n.dst) != n.lladdr:
                ip.del_neigh(vx.index, n.dst)
        fdbs = {mac: vtep for _, mac, vtep in want.values()}
        for f in ip.pyroute2().fdb("dump", ifindex=vx.index):
            mac, dst = f.get("NDA_LLADDR"), f.get("NDA_DST")
            if f["ifindex"] == vx.index and dst and fdbs.get(mac) != dst:
                ip.pyroute2().fdb("del", ifindex=vx.index, lladdr=mac, dst=dst)
        for block, (via, mac, vtep) in want.items():
            try:  # stale remotes of this MAC were deleted above; "replace" is EOPNOTSUPP for vxlan
                ip.pyroute2().fdb("add", ifindex=vx.index, lladdr=mac, dst=vtep)
            except NetlinkError as exc:
                if not is_errno(exc, 17):  # EEXIST: already there, as wanted
                    raise
            ip.replace_neigh(Neigh(vx.index, via, lladdr=mac, state=NUD_PERMANENT))
            ip.replace_route(
                rtnl.Route(str(block), gateway=via, oif=vx.index, flags=RTNH_F_ONLINK, proto=RTPROT_FLATNET)
            )
    return len(want)


def remove_node(host_netns: str | None, options: dict[str, Any]) -> None:
    """Undo ensure_node (device, bridge, SNAT): for a node leaving the overlay. Idempotent."""
    o = parse_options(options)
    if not netns.exists(host_netns):
        return
    with translate("removing vxlan node links", host_netns), netns.ipr(host_netns) as ip:
        links.delete(ip, o.vx_name)
        links.delete(ip, o.bridge)
    nft.remove_snat(host_netns, o.network)


class VxlanDatapath:
    """Pods behind a node bridge, reaching other nodes' pods through one VXLAN device."""

    def add(self, spec: AttachSpec) -> Attachment:
        validate_spec(spec)
        o = parse_options(spec.options)
        for iface in spec.addresses:
            if iface.version == o.block.version and iface.ip not in o.block:
                raise errors.ConfigError(
                    f"pod address {iface} is outside this node's block {o.block}; allocate from block_pool()"
                )
        mappings = spec.options.get("portMappings") or []
        pod_ip = next((a.ip for a in spec.addresses if a.version == o.block.version), None)
        if mappings:
            if pod_ip is None:
                raise errors.ConfigError("portMappings need a pod address in the node's block family")
            nft.validate_mappings(str(pod_ip), mappings)
        require_host_netns(spec)
        ns_path = require_container_netns(spec)
        pod.check_absent(spec, ns_path)
        mtu, bridge = _ensure_infra(spec.host_netns, o)
        if spec.mtu is not None and spec.mtu > mtu:
            raise errors.ConfigError(
                f"mtu {spec.mtu} exceeds the overlay MTU {mtu} (underlay - {o.overhead}); lower it or omit it"
            )
        mtu = spec.mtu or mtu
        if "peers" in spec.options:
            sync_peers(spec.host_netns, spec.options)
        if not spec.routes:
            default = ipaddress.ip_network("0.0.0.0/0" if o.block.version == 4 else "::/0")
            spec = dataclasses.replace(spec, routes=(Route(default, o.gateway.ip),))
        host, tmp = overlay_veth_name(spec.container_id, spec.ifname), tmp_name(spec.container_id, spec.ifname)
        with undo_on_error() as undo:
            with translate(f"creating veth {host!r}", spec.host_netns), netns.ipr(spec.host_netns) as ip:
                links.delete(ip, host)  # stale: its container side is not in this netns (checked)
                links.create_veth_into(ip, host, tmp, mtu, ns_path)  # peer born in the pod netns
                undo.push(f"delete veth {host}", lambda: _delete_host(spec.host_netns, host))
                host_info = links.require(ip, host, spec.host_netns, role="veth")
                ip.set_link(host_info.index, master=bridge.index)
                links.set_up(ip, host_info.index)
            mac, mtu = pod.adopt(spec, ns_path, tmp, spec.mac, undo)
            if mappings:
                undo.push(
                    "remove port mappings", lambda: nft.remove_portmaps(spec.host_netns, o.network, spec.container_id)
                )
                nft.add_portmaps(spec.host_netns, o.network, spec.container_id, str(pod_ip), mappings)
        return Attachment(
            ifname=spec.ifname, mac=mac, sandbox=spec.netns, mtu=mtu, host_ifname=host, host_mac=host_info.mac
        )

    def delete(self, spec: AttachSpec) -> None:
        if netns.exists(spec.host_netns):
            network = str(spec.options.get("network") or "flatnet")
            nft.remove_portmaps(spec.host_netns, network, spec.container_id)
        pod.remove(spec)
        with translate("removing the host veth", spec.host_netns):
            _delete_host(spec.host_netns, overlay_veth_name(spec.container_id, spec.ifname))

    def check(self, spec: AttachSpec) -> None:
        validate_spec(spec)
        o = parse_options(spec.options)
        require_host_netns(spec)
        ns_path = require_container_netns(spec)
        host = overlay_veth_name(spec.container_id, spec.ifname)
        with translate("inspecting the overlay links", spec.host_netns), netns.ipr(spec.host_netns) as ip:
            vx, bridge, veth = (links.find(ip, n) for n in (o.vx_name, o.bridge, host))
            facts = _vxlan_facts(ip, vx.index) if vx else None
            bridge_addrs = addrs.list_(ip, bridge.index) if bridge else []
        if vx is None or facts != (o.vni, o.port, str(o.vtep)) or not vx.up:
            raise pod.mismatch(
                f"vxlan device {o.vx_name!r} is missing, down or not (vni {o.vni}, port {o.port}, local {o.vtep})"
            )
        if bridge is None or o.gateway not in bridge_addrs:
            raise pod.mismatch(f"bridge {o.bridge!r} is missing or lacks gateway {o.gateway}")
        pod.check(spec, ns_path, spec.mtu or vx.mtu, "veth")
        if veth is None or veth.master != bridge.index or not veth.up:
            raise pod.mismatch(f"host veth {host!r} is missing, down or not on bridge {o.bridge!r}")
        if spec.options.get("portMappings") and not nft.portmap_rules(spec.host_netns, o.network, spec.container_id):
            raise pod.mismatch(f"port mapping rules of container {spec.container_id} are missing")

    def status(self, spec: AttachSpec) -> None:
        o = parse_options(spec.options)
        require_host_netns(spec)
        with translate("looking up the vtep", spec.host_netns), netns.ipr(spec.host_netns) as ip:
            _underlay(ip, o, spec.host_netns)
        nft.require_nft()


def _delete_host(host_ns: str | None, name: str) -> None:
    if netns.exists(host_ns):
        with netns.ipr(host_ns) as ip:
            links.delete(ip, name)
