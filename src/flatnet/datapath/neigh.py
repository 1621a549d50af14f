"""Neighbour announcements and proxy entries.

A pod address is often a *reused* address (sticky StatefulSet addresses, fast churn), so the
switch and the VMs around may still hold the old MAC for it. ADD therefore announces the new
binding once: a gratuitous ARP for IPv4 and an unsolicited neighbour advertisement (Override
flag) for IPv6, sent from a raw AF_PACKET socket opened inside the container netns. The frame
builders are pure functions so they can be unit-tested without root.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

from flatnet.datapath import netns
from flatnet.datapath.api import IPAddress, IPInterface
from flatnet.datapath.rtnl import Handle, Neigh, NetlinkError
from flatnet.datapath.rtnlreq import mac_bytes

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
NTF_PROXY = 0x08
BROADCAST = b"\xff" * 6
ALL_NODES_MAC = bytes.fromhex("333300000001")
ALL_NODES = ipaddress.IPv6Address("ff02::1")


def garp_frame(mac: str, addr: ipaddress.IPv4Address) -> bytes:
    """Ethernet + ARP request announcing ``addr`` is at ``mac`` (sender IP == target IP)."""
    src = mac_bytes(mac)
    eth = BROADCAST + src + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + src + addr.packed + b"\x00" * 6 + addr.packed
    return eth + arp


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def unsolicited_na_frame(mac: str, addr: ipaddress.IPv6Address) -> bytes:
    """Ethernet + IPv6 + ICMPv6 NA to ff02::1 (Override set, target link-layer option)."""
    src = mac_bytes(mac)
    # type 136, code 0, checksum placeholder, flags: Override (0x20000000)
    icmp_wo_sum = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + addr.packed + b"\x02\x01" + src
    pseudo = addr.packed + ALL_NODES.packed + struct.pack("!I3xB", len(icmp_wo_sum), 58)
    csum = _checksum(pseudo + icmp_wo_sum)
    icmp = icmp_wo_sum[:2] + struct.pack("!H", csum) + icmp_wo_sum[4:]
    ip6 = struct.pack("!IHBB", 0x60000000, len(icmp), 58, 255) + addr.packed + ALL_NODES.packed
    eth = ALL_NODES_MAC + src + struct.pack("!H", ETH_P_IPV6)
    return eth + ip6 + icmp


def frames_for(mac: str, addresses: tuple[IPInterface, ...]) -> list[bytes]:
    """One announcement frame per address (bounded: never more than len(addresses))."""
    out = []
    for iface in addresses:
        if isinstance(iface, ipaddress.IPv4Interface):
            out.append(garp_frame(mac, iface.ip))
        else:
            out.append(unsolicited_na_frame(mac, iface.ip))
    return out


def _send(ifname: str, frames: list[bytes]) -> tuple[int, socket.socket]:
    """Send ``frames`` from ``ifname``; return (count, the still-open socket)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        sock.settimeout(1.0)
        sock.bind((ifname, 0))
        sent = 0
        for frame in frames:
            sock.send(frame)
            sent += 1
    except BaseException:
        sock.close()
        raise
    return sent, sock


def _close(result: tuple[int, socket.socket]) -> None:
    result[1].close()


def announce(ns: str, ifname: str, mac: str, addresses: tuple[IPInterface, ...]) -> int:
    """Send one GARP / unsolicited NA per address from ``ifname`` inside ``ns``.

    Best effort: an announcement only speeds up convergence, so a send failure is not an
    ADD failure. Returns how many frames were sent.
    """
    frames = frames_for(mac, addresses)
    if not frames or not mac:
        return 0
    try:
        # the frames are on the wire when this returns; the socket's close (an RCU grace
        # period, 10-20 ms) finishes on the sending thread without holding up the ADD
        sent, _sock = netns.run_in_then(ns, _send, _close, ifname, frames)
        return sent
    except OSError:
        return 0


def add_proxy(ip: Handle, index: int, addr: IPAddress) -> None:
    """Proxy-NDP entry: answer neighbour solicitations for ``addr`` on link ``index``."""
    try:
        ip.add_neigh(Neigh(index, str(addr), flags=NTF_PROXY))
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


NUD_PERMANENT = 0x80


def set_static(ip: Handle, index: int, addr: IPAddress, mac: str) -> None:
    """A permanent neighbour entry ``addr`` -> ``mac`` on link ``index`` (idempotent).

    The ipvlan shim needs it: every ipvlan child shares the parent's MAC, and a pod's answer
    to the shim's ARP/NDP request (addressed to that shared MAC, for the node's address that
    no child owns) goes to the parent, never to the shim, so the shim could not resolve a pod.
    """
    ip.replace_neigh(Neigh(index, str(addr), lladdr=mac, state=NUD_PERMANENT))


def drop_static(ip: Handle, addr: IPAddress) -> None:
    """Remove permanent neighbour entries for ``addr`` on any link (absent is fine)."""
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    for entry in ip.dump_neighs(family):
        if entry.dst == str(addr) and entry.state & NUD_PERMANENT:
            try:
                ip.del_neigh(entry.ifindex, addr)
            except NetlinkError as exc:
                if exc.code not in (errno.ENOENT, errno.ESRCH):
                    raise
