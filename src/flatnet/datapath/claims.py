"""Who claims an address on the VLAN after ADD: ARP senders and neighbour advertisements.

The ADD-time probe (``conflict.py``) sees only what answers while a pod is plumbed; a VM
configured later with a pod's address goes unnoticed, and half the VLAN then talks to it.
The agent therefore listens on each node link it serves (the parent ``master`` or
``master.<vlan>``, or the bridge) for claims of addresses:

- ARP (request or reply): the *sender* IP/MAC pair — what every host's neighbour cache
  learns from (RFC 5227 probes, sender 0.0.0.0, claim nothing);
- ICMPv6 neighbour advertisement: its target, at the target link-layer option's MAC (the
  Ethernet source where there is none).

Raw ``AF_PACKET`` sockets (one for ARP, one for IPv6 with all-multicast membership, since
unsolicited NAs go to ff02::1) opened in the node's netns; frames the node sends itself are
skipped. ``parse`` is a pure function (unit-tested without root); ``ClaimSocket.poll``
returns at most ``limit`` claims per call and waits at most ``timeout`` seconds.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
from dataclasses import dataclass

from flatnet.datapath import netns
from flatnet.datapath.rtnlreq import mac_text

ETH_P_ARP, ETH_P_IPV6 = 0x0806, 0x86DD
SOL_PACKET, PACKET_ADD_MEMBERSHIP, PACKET_MR_ALLMULTI = 263, 1, 2
PACKET_OUTGOING = 4


@dataclass(frozen=True)
class Claim:
    """``mac`` said it holds ``address`` (seen on ``link``)."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    mac: str
    link: str = ""


def parse(frame: bytes) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, str] | None:
    """(address, claiming MAC) for an ARP with a sender IP or an NA; None for anything else."""
    if len(frame) < 14:
        return None
    (etype,) = struct.unpack("!H", frame[12:14])
    if etype == ETH_P_ARP and len(frame) >= 42:
        htype, ptype, hlen, plen = struct.unpack("!HHBB", frame[14:20])
        if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
            return None
        sip = ipaddress.IPv4Address(frame[28:32])
        if int(sip) == 0:
            return None  # an RFC 5227 probe claims nothing
        return sip, mac_text(frame[22:28])
    if etype == ETH_P_IPV6 and len(frame) >= 14 + 40 + 24 and frame[20] == 58 and frame[54] == 136:
        target = ipaddress.IPv6Address(frame[62:78])
        mac = mac_text(frame[6:12])
        opts = frame[78:]
        while len(opts) >= 8 and opts[1]:
            kind, size = opts[0], opts[1] * 8
            if kind == 2 and size >= 8:  # target link-layer address
                mac = mac_text(opts[2:8])
                break
            opts = opts[size:]
        return target, mac
    return None


class ClaimSocket:
    """The two listening sockets on one node link, in the node's netns."""

    def __init__(self, host_ns: str | None, ifname: str) -> None:
        self.link = ifname
        self.socks: list[socket.socket] = []
        try:
            self.socks.append(netns.run_in(host_ns, _open, ifname, ETH_P_ARP, False))
            self.socks.append(netns.run_in(host_ns, _open, ifname, ETH_P_IPV6, True))
        except BaseException:
            self.close()
            raise

    def poll(self, timeout: float, limit: int = 256) -> list[Claim]:
        """Claims seen within ``timeout`` seconds (at most ``limit``)."""
        out: list[Claim] = []
        ready, _, _ = select.select(self.socks, [], [], timeout)
        for sock in ready:
            for _ in range(limit):
                try:
                    frame, addr = sock.recvfrom(2048, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                if len(addr) > 2 and addr[2] == PACKET_OUTGOING:
                    continue  # the node's own frames (its pods' and the shim's)
                found = parse(frame)
                if found is not None:
                    out.append(Claim(found[0], found[1], self.link))
                if len(out) >= limit:
                    return out
        return out

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks = []


def _open(ifname: str, proto: int, allmulti: bool) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
    try:
        sock.bind((ifname, proto))
        if allmulti:
            index = socket.if_nametoindex(ifname)
            mreq = struct.pack("iHH8s", index, PACKET_MR_ALLMULTI, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    except BaseException:
        sock.close()
        raise
    return sock
