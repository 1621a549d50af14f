"""The test-bed's kernel steps: namespaces, bridges, veths, addresses, routes, sysctls, DNAT.

What the lab, the bench, chaos and the tests build around flatnet (never part of the runtime
datapath, which is ``flatnet.datapath``; only the two of them import pyroute2). The lab
manager describes what it wants (``flatnet_lab.lab.topology``) and asks this module for each
step; chaos and the bench build their smaller networks from the same steps. Every step is an *ensure*:
it looks first and only changes what is missing, so re-running ``lab up`` after a crash
completes the lab instead of failing on "File exists". All links live inside lab
namespaces: veth pairs are created inside one lab namespace with the peer placed directly
in another, so nothing ever appears, even briefly, in the caller's (root) namespace.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import subprocess
from typing import Self, Sequence

from pyroute2 import netns as pr_netns

from flatnet.datapath.netns import NETNS_RUN_DIR, iproute, ns_path, run_in
from flatnet.datapath.rtnl import NetlinkError  # what netns.iproute handles raise
from flatnet.errors import DatapathError

NFT = "/usr/sbin/nft"
SERVICE_TABLE = "fnlab_svc"


def _fail(what: str, exc: BaseException) -> DatapathError:
    return DatapathError(f"lab: {what} failed: {exc}", "run 'flatnet lab down' and retry")


def list_namespaces(prefix: str) -> list[str]:
    """Names under /run/netns that start with ``prefix`` (sorted)."""
    try:
        return sorted(n for n in os.listdir(NETNS_RUN_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def _write_sysctl(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(value)


def set_sysctl(ns: str, key: str, value: str) -> None:
    """Write ``net.*`` sysctl ``key`` inside ``ns`` (/proc/sys/net follows the thread's netns)."""
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        run_in(ns, _write_sysctl, path, value)
    except OSError as exc:
        raise _fail(f"sysctl {key}={value} in {ns}", exc) from exc


def create_netns(name: str) -> None:
    """A bare netns ``name`` (what a container runtime makes for a pod: nothing inside)."""
    try:
        pr_netns.create(name)
    except OSError as exc:
        raise _fail(f"creating netns {name}", exc) from exc


def ensure_netns(name: str) -> bool:
    """Create netns ``name`` if missing, loopback up, IPv6 DAD off; True if it was created.

    DAD is off because lab addresses are assigned by design and a tentative IPv6 address
    would make the first pings of a fresh lab fail for a second or two.
    """
    created = False
    if not os.path.exists(ns_path(name) or ""):
        try:
            pr_netns.create(name)
        except OSError as exc:
            raise _fail(f"creating netns {name}", exc) from exc
        created = True
    for key in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
        set_sysctl(name, key, "0")
    link_up(name, "lo")
    return created


def remove_netns(name: str) -> None:
    """Unmount and delete netns ``name``; its links (and their veth peers) go with it."""
    try:
        pr_netns.remove(name)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _fail(f"removing netns {name}", exc) from exc


def pids_in_netns(name: str) -> list[int]:
    """Processes whose network namespace is ``name`` (so they can be stopped before removal)."""
    try:
        target = os.stat(ns_path(name) or "")
    except FileNotFoundError:
        return []
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue  # gone, or a kernel thread
        if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev):
            pids.append(int(entry))
    return pids


def link_exists(ns: str, ifname: str) -> bool:
    with iproute(ns) as ip:
        return bool(ip.link_lookup(ifname=ifname))


def _index(ip: object, ns: str, ifname: str) -> int:
    found = ip.link_lookup(ifname=ifname)  # type: ignore[attr-defined]
    if not found:
        raise DatapathError(f"lab: link {ifname} missing in {ns}", "run 'flatnet lab up' again")
    return int(found[0])


def link_up(ns: str, ifname: str) -> None:
    try:
        with iproute(ns) as ip:
            ip.link("set", index=_index(ip, ns, ifname), state="up")
    except NetlinkError as exc:
        raise _fail(f"setting {ifname} up in {ns}", exc) from exc


def ensure_bridge(ns: str, name: str, vlan_filtering: bool = False) -> None:
    """A bridge (STP off, so ports forward at once; no multicast snooping), up.

    ``vlan_filtering``: a VLAN-aware switch whose ports start in no VLAN at all (default
    PVID 0): each port gets its VLANs from ``set_port_vlans``.
    """
    extra = {"br_vlan_filtering": 1, "br_vlan_default_pvid": 0} if vlan_filtering else {}
    try:
        with iproute(ns) as ip:
            if not ip.link_lookup(ifname=name):
                ip.link("add", ifname=name, kind="bridge", br_mcast_snooping=0, **extra)
    except NetlinkError as exc:
        raise _fail(f"creating bridge {name} in {ns}", exc) from exc
    link_up(ns, name)


def set_port_vlans(ns: str, port: str, tagged: Sequence[int] = (), access: int | None = None) -> None:
    """VLANs of a VLAN-aware switch port: ``tagged`` (a trunk) and/or one ``access`` VLAN
    (PVID, untagged). Idempotent (adding a VLAN a port has is not an error)."""
    try:
        with iproute(ns) as ip:
            idx = _index(ip, ns, port)
            for vid in tagged:
                ip.vlan_filter("add", index=idx, vlan_info={"vid": vid})
            if access is not None:
                ip.vlan_filter("add", index=idx, vlan_info={"vid": access, "flags": ["pvid", "untagged"]})
    except NetlinkError as exc:
        raise _fail(f"setting the VLANs of switch port {port} in {ns}", exc) from exc


def ensure_vlan_link(ns: str, parent: str, name: str, vid: int) -> None:
    """The 802.1Q sub-interface ``name`` (VLAN ``vid``) of ``parent`` in ``ns``, up."""
    try:
        with iproute(ns) as ip:
            if not ip.link_lookup(ifname=name):
                ip.link("add", ifname=name, kind="vlan", link=_index(ip, ns, parent), vlan_id=vid)
    except NetlinkError as exc:
        raise _fail(f"creating VLAN {vid} link {name} on {parent} in {ns}", exc) from exc
    link_up(ns, name)


def vlan_switch_supported() -> bool:
    """Can this kernel build a VLAN-filtering bridge with 802.1Q trunks? Probed in a
    throwaway namespace (the only sure answer: modules may load on demand)."""
    name = f"fnlab-probe-{os.getpid()}"
    try:
        pr_netns.create(name)
    except OSError:
        return False
    try:
        with iproute(name) as ip:
            ip.link("add", ifname="probe-br", kind="bridge", br_vlan_filtering=1)
            ip.link("add", ifname="probe-a", kind="veth", peer={"ifname": "probe-b"})
            ip.link("add", ifname="probe-a.7", kind="vlan", link=ip.link_lookup(ifname="probe-a")[0], vlan_id=7)
        return True
    except NetlinkError:
        return False
    finally:
        remove_netns(name)


def ensure_veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair ``ns_a/name_a`` <-> ``ns_b/name_b``, both up; a half-made pair is redone."""
    try:
        with iproute(ns_a) as ipa, iproute(ns_b) as ipb:
            have_a = bool(ipa.link_lookup(ifname=name_a))
            have_b = bool(ipb.link_lookup(ifname=name_b))
            if not (have_a and have_b and _peer_matches(ipa, ipb, name_a, name_b)):
                # half a pair (a crash mid-build) or a wrong pairing: start over
                for ip, name in ((ipa, name_a), (ipb, name_b)):
                    for idx in ip.link_lookup(ifname=name):
                        ip.link("del", index=idx)
                ipa.link("add", ifname=name_a, kind="veth", peer={"ifname": name_b, "net_ns_fd": ns_path(ns_b)})
    except NetlinkError as exc:
        raise _fail(f"creating veth {ns_a}/{name_a} <-> {ns_b}/{name_b}", exc) from exc
    link_up(ns_a, name_a)
    link_up(ns_b, name_b)


def _peer_matches(ipa: object, ipb: object, name_a: str, name_b: str) -> bool:
    """True when ``name_a``'s veth peer is ``name_b`` (peer ifindex == name_b's index)."""
    link_a = ipa.get_links(ifname=name_a)[0]  # type: ignore[attr-defined]
    idx_b = ipb.link_lookup(ifname=name_b)[0]  # type: ignore[attr-defined]
    return link_a.get("link") == idx_b


def set_master(ns: str, ifname: str, bridge: str) -> None:
    try:
        with iproute(ns) as ip:
            idx, br = _index(ip, ns, ifname), _index(ip, ns, bridge)
            if ip.get_links(idx)[0].get("master") != br:
                ip.link("set", index=idx, master=br)
    except NetlinkError as exc:
        raise _fail(f"attaching {ifname} to {bridge} in {ns}", exc) from exc


def ensure_addresses(ns: str, ifname: str, cidrs: Sequence[str]) -> None:
    """Add each ``addr/prefix`` to ``ifname`` unless already there."""
    try:
        with iproute(ns) as ip:
            idx = _index(ip, ns, ifname)
            for cidr in cidrs:
                iface = ipaddress.ip_interface(cidr)
                try:
                    ip.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise
    except NetlinkError as exc:
        raise _fail(f"adding addresses to {ifname} in {ns}", exc) from exc


def ensure_route(ns: str, dst: str, gw: str) -> None:
    """Route ``dst`` ("default" or CIDR) via ``gw`` (replace: idempotent)."""
    gw_ip = ipaddress.ip_address(gw)
    family = socket.AF_INET6 if gw_ip.version == 6 else socket.AF_INET
    if dst == "default":
        dst = "::/0" if gw_ip.version == 6 else "0.0.0.0/0"
    try:
        with iproute(ns) as ip:
            ip.route("replace", dst=dst, gateway=str(gw_ip), family=family)
    except NetlinkError as exc:
        raise _fail(f"route {dst} via {gw} in {ns}", exc) from exc


def _nft(ruleset: str) -> None:
    proc = subprocess.run([NFT, "-f", "-"], input=ruleset, text=True, capture_output=True, timeout=20, check=False)
    if proc.returncode != 0:
        raise DatapathError(f"lab: nft failed: {proc.stderr.strip()}", ruleset)


def install_service(ns: str, vip: str, port: int, backend: str, backend_port: int) -> None:
    """DNAT ``vip:port`` (tcp) to ``backend:backend_port`` in ``ns``, kube-proxy style.

    Both hooks: prerouting for traffic routed through the node (flat pods route the
    Service range via their node, overlay pods come through the node anyway), output for
    the node's own connections; postrouting masquerades the hairpin, as kube-proxy does.
    Replaces any previous service table.
    """
    match = f"ip daddr {ipaddress.IPv4Address(vip)} tcp dport {int(port)}"
    target = f"dnat to {ipaddress.IPv4Address(backend)}:{int(backend_port)}"
    ruleset = (
        f"table ip {SERVICE_TABLE} {{}}\n"
        f"delete table ip {SERVICE_TABLE}\n"
        f"table ip {SERVICE_TABLE} {{\n"
        f"  chain prerouting {{\n    type nat hook prerouting priority dstnat;\n"
        f"    {match} {target}\n  }}\n"
        f"  chain output {{\n    type nat hook output priority -100;\n"
        f"    {match} {target}\n  }}\n"
        # kube-proxy's hairpin masquerade: a flat pod on the backend's segment would get
        # the backend's reply directly (from the backend address, not the VIP) and drop it
        f"  chain postrouting {{\n    type nat hook postrouting priority srcnat;\n"
        f"    ct original ip daddr {ipaddress.IPv4Address(vip)} masquerade\n  }}\n"
        f"}}\n"
    )
    run_in(ns, _nft, ruleset)


def remove_service(ns: str) -> None:
    """Remove the service table from ``ns`` (absent is fine)."""
    run_in(ns, _nft, f"table ip {SERVICE_TABLE} {{}}\ndelete table ip {SERVICE_TABLE}\n")


def configure_link(ns: str | None, ifname: str, cidr: str, mtu: int) -> None:
    """MTU, one ``addr/prefix`` and up for ``ifname`` in ``ns`` (None: the caller's netns)."""
    iface = ipaddress.ip_interface(cidr)
    try:
        with iproute(ns) as ip:
            idx = _index(ip, str(ns), ifname)
            ip.link("set", index=idx, mtu=mtu)
            ip.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            ip.link("set", index=idx, state="up")
    except NetlinkError as exc:
        raise _fail(f"configuring {ifname} in {ns or 'this netns'}", exc) from exc


def run_cmd(
    ns: str, argv: Sequence[str], timeout: float = 30.0, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``ns`` (the child is forked from a thread that joined it)."""
    return run_in(
        ns, subprocess.run, list(argv), input=input, text=True, capture_output=True, timeout=timeout, check=False
    )


def spawn(ns: str, argv: Sequence[str], **popen_kwargs: object) -> subprocess.Popen:
    """Start ``argv`` in the background inside ``ns`` (stopped by ``lab down``)."""
    return run_in(ns, subprocess.Popen, list(argv), **popen_kwargs)


class BuiltOnEnter:
    """``with Bed() as bed``: ``build()`` on enter (on failure ``close()`` undoes what was
    built, then the error propagates), ``close()`` on exit."""

    def build(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
