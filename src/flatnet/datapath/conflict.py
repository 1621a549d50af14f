"""Is an address already in use on the pod's VLAN? Ask the wire before handing it out.

A flat network is shared: VMs and servers flatnet does not manage sit on the same VLAN, and
an address configured there by hand inside a pool's range would otherwise go to a pod too.
Before an address is plumbed, the agent probes it from the node's link on that VLAN (the
parent ``master`` / ``master.<vlan>``, or the bridge), from a raw AF_PACKET socket opened in
the node's netns:

- IPv4: an ARP probe per RFC 5227 §2.1.1 — ARP request, sender IP 0.0.0.0 (so no cache
  anywhere learns anything), target IP the address. A reply, or any ARP whose *sender* IP
  is the address, or another probe for it from another MAC, is a conflict.
- IPv6: a DAD-style neighbour solicitation (RFC 4862 §5.4.2) — from ::, to the address's
  solicited-node group, no source link-layer option. A neighbour advertisement for it, or
  another DAD probe for it from another MAC, is a conflict.

``count`` probes ``interval`` apart, then the answer waits until ``wait`` seconds after the
first one: bounded, whatever the wire does. RFC 5227's own timers (1-2 s) suit a host
configuring itself; a pod ADD budgets tens of milliseconds, which LAN hosts answer well within.
The frame builders and parsers are pure functions (unit-tested without root).

A macvlan/ipvlan parent never hears its own children (kubernetes#41736), so a probe from the
parent alone cannot see a pod *on this node* that holds the address (another network's pod on
the same VLAN, a podman container). ``probe_links`` adds the node's shim (``datapath/shim.py``),
a sibling child of the parent, which hears them; both probes run at once. Frames a socket sees
leaving its own link (``PACKET_OUTGOING``: our probes, and the shim's probes seen on the parent)
are never an answer.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import threading
import time
from concurrent.futures import Future
from typing import Any

from flatnet.datapath import links, netns
from flatnet.datapath.api import AttachSpec, IPAddress
from flatnet.datapath.common import shim_name, vlan_ifname
from flatnet.datapath.neigh import BROADCAST, ETH_P_ARP, ETH_P_IPV6, _checksum
from flatnet.datapath.rtnlreq import mac_bytes, mac_text

UNSPEC6 = ipaddress.IPv6Address("::")
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_ALLMULTI = 2
PACKET_OUTGOING = 4  #: sll_pkttype of a frame this host sent (seen by a socket on that link)


def solicited_node(addr: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(int(ipaddress.IPv6Address("ff02::1:ff00:0")) | (int(addr) & 0xFFFFFF))


def arp_probe_frame(mac: str, addr: ipaddress.IPv4Address) -> bytes:
    """Ethernet broadcast + ARP request: sender ``mac``/0.0.0.0, target ?/``addr``."""
    src = mac_bytes(mac)
    eth = BROADCAST + src + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + src + b"\x00" * 4 + b"\x00" * 6 + addr.packed
    return eth + arp


def dad_ns_frame(mac: str, addr: ipaddress.IPv6Address) -> bytes:
    """Ethernet + IPv6 (:: -> solicited-node group) + ICMPv6 NS for ``addr``, no options."""
    src = mac_bytes(mac)
    group = solicited_node(addr)
    icmp_wo_sum = struct.pack("!BBHI", 135, 0, 0, 0) + addr.packed
    pseudo = UNSPEC6.packed + group.packed + struct.pack("!I3xB", len(icmp_wo_sum), 58)
    csum = _checksum(pseudo + icmp_wo_sum)
    icmp = icmp_wo_sum[:2] + struct.pack("!H", csum) + icmp_wo_sum[4:]
    ip6 = struct.pack("!IHBB", 0x60000000, len(icmp), 58, 255) + UNSPEC6.packed + group.packed
    eth = b"\x33\x33" + group.packed[-4:] + src + struct.pack("!H", ETH_P_IPV6)
    return eth + ip6 + icmp


def arp_conflict(frame: bytes, addr: ipaddress.IPv4Address, own_mac: bytes) -> str | None:
    """The MAC that claims ``addr`` in this Ethernet frame, or None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
    if sha == own_mac:
        return None  # our own probe, looped back
    if spa == addr.packed:
        return mac_text(sha)  # a reply, or anyone announcing or using it
    if op == 1 and spa == b"\x00" * 4 and tpa == addr.packed:
        return mac_text(sha)  # another host probing for it at the same time (RFC 5227 §2.1.1)
    return None


def nd_conflict(frame: bytes, addr: ipaddress.IPv6Address, own_mac: bytes) -> str | None:
    """The MAC that claims ``addr`` (NA for it, or a rival DAD probe), or None."""
    if len(frame) < 14 + 40 + 24 or frame[12:14] != b"\x86\xdd" or frame[20] != 58:
        return None
    if frame[6:12] == own_mac:
        return None
    icmp = frame[54:]
    kind, target = icmp[0], icmp[8:24]
    if target != addr.packed:
        return None
    if kind == 136:
        return mac_text(frame[6:12])
    if kind == 135 and frame[22:38] == UNSPEC6.packed:
        return mac_text(frame[6:12])
    return None


#: probe sockets kept per (node netns, link, protocol) between probes, at most this many each
KEEP_PER_LINK = 8
#: frames already queued on a kept socket when a probe starts are dropped, at most this many
#: (they predate the probe: an ARP of a pod that used the address before is no conflict)
STALE_MAX = 4096


class _Kept:
    """Probe sockets kept open between probes, for a process that opts in (the agent daemon,
    ``keep_sockets``). Closing a packet socket waits for an RCU grace period (10-20 ms; an
    IPv6 one also takes the RTNL lock to leave its multicast group), and done after every
    probe it slowed what ran next on the node: measured through containerd's CRI, a sandbox
    start was ~7 ms slower with a close per probe than with kept sockets. A kept socket is
    used by one probe at a time (borrowed, given back), so concurrent probes need no
    demultiplexing. Kept sockets pin the node netns, hence the opt-in: a test's Service may
    outlive its netns; the agent's node netns lives as long as the agent."""

    def __init__(self) -> None:
        self.enabled = False
        self._idle: dict[tuple[int, int, int], list[socket.socket]] = {}
        self._lock = threading.Lock()

    def take(self, key: tuple[int, int, int] | None) -> socket.socket | None:
        if key is None:
            return None
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def give(self, key: tuple[int, int, int] | None, sock: socket.socket) -> None:
        if key is not None and self.enabled:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if len(idle) < KEEP_PER_LINK:
                    idle.append(sock)
                    return
        sock.close()

    def close_all(self) -> None:
        """Close every kept socket (a test done with its netns; the agent at exit)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for socks in idle.values():
            for sock in socks:
                sock.close()

    def kept(self) -> list[socket.socket]:
        with self._lock:
            return [sock for socks in self._idle.values() for sock in socks]


_kept = _Kept()


def keep_sockets() -> None:
    """Keep probe sockets open between probes in this process (the agent daemon does)."""
    _kept.enabled = True


def _key(ifname: str, proto: int) -> tuple[int, int, int] | None:
    """(netns inode, link index, protocol) as seen from the calling thread, or None when
    sockets are not kept. A re-created link has a new index: its old sockets are not used."""
    if not _kept.enabled:
        return None
    return (os.stat("/proc/thread-self/ns/net").st_ino, socket.if_nametoindex(ifname), proto)


def _open(ifname: str, proto: int, v4: bool) -> socket.socket:
    # protocol 0 at creation, the real one at bind: a socket created with a protocol is
    # hooked in at once, and bind() to a link then unhooks it again, which waits for an RCU
    # grace period (synchronize_net, 8-15 ms measured) on every probe
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.bind((ifname, proto))
        if not v4:  # the NA for a DAD probe goes to ff02::1: make sure the link lets it in
            mreq = struct.pack("iHH8s", socket.if_nametoindex(ifname), PACKET_MR_ALLMULTI, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    except BaseException:
        sock.close()
        raise
    return sock


def _drop_stale(sock: socket.socket) -> None:
    sock.setblocking(False)
    for _ in range(STALE_MAX):
        try:
            sock.recv(2048)
        except BlockingIOError:
            return


def _socket_for(ifname: str, proto: int, v4: bool) -> tuple[socket.socket, tuple[int, int, int] | None]:
    """A kept socket bound to ``ifname`` (its stale frames dropped) or a new one; its key."""
    key = _key(ifname, proto)
    sock = _kept.take(key)
    if sock is not None:
        _drop_stale(sock)
        return sock, key
    return _open(ifname, proto, v4), key


def _heard(sock: socket.socket, check: Any, addr: IPAddress, own: bytes) -> str | None:
    """The claiming MAC in the next frame on ``sock`` (None: not an answer). A frame this
    host sent is never one: on a parent, the shim's probe leaves with another MAC."""
    frame, where = sock.recvfrom(2048)
    if where[2] == PACKET_OUTGOING:
        return None
    return check(frame, addr, own)  # type: ignore[no-any-return]


def _probe(
    ifname: str, addr: IPAddress, count: int, interval: float, wait: float
) -> tuple[str | None, socket.socket, tuple[int, int, int] | None]:
    v4 = addr.version == 4
    proto = ETH_P_ARP if v4 else ETH_P_IPV6
    sock, key = _socket_for(ifname, proto, v4)
    try:
        own = sock.getsockname()[4][:6]
        if isinstance(addr, ipaddress.IPv4Address):
            frame = arp_probe_frame(mac_text(own), addr)
        else:
            frame = dad_ns_frame(mac_text(own), addr)
        check = arp_conflict if v4 else nd_conflict
        sock.setblocking(True)
        start = time.monotonic()
        deadline = start + wait
        sent = 0
        while True:
            now = time.monotonic()
            if sent < count and now >= start + sent * interval:
                sock.send(frame)
                sent += 1
                continue
            if now >= deadline:
                break
            until = min(deadline, start + sent * interval if sent < count else deadline)
            ready, _, _ = select.select([sock], [], [], max(0.0, until - now))
            if ready:
                got = _heard(sock, check, addr, own)
                if got is not None:
                    return got, sock, key
        # what arrived while this thread was not running counts too: the wait bounds the
        # wire's answer, not our scheduling
        sock.setblocking(False)
        while True:
            try:
                got = _heard(sock, check, addr, own)
            except BlockingIOError:
                return None, sock, key
            if got is not None:
                return got, sock, key
    except BaseException:
        sock.close()  # a kept socket whose link went away, too: not kept again
        raise


class Pending:
    """A probe on the wire: ``result()`` waits for its end and is the answering MAC or None.

    The probe runs on its own thread (inside the node's netns) from ``start`` on, so the
    caller can plumb the pod meanwhile and ask for the answer only before the address goes
    live. ``result()`` raises OSError when the probe could not be sent (no such link, no
    permission).
    """

    def __init__(self, future: Future[tuple[str | None, socket.socket, tuple[int, int, int] | None]]) -> None:
        self._future = future

    def result(self) -> str | None:
        return self._future.result()[0]


def start(
    host_ns: str | None, ifname: str, addr: IPAddress, count: int = 2, interval: float = 0.01, wait: float = 0.03
) -> Pending:
    """Start probing ``addr`` on ``ifname`` (in ``host_ns``); returns at once.

    The first frame is on the wire within a thread start of the call. After the answer is
    known the socket is kept for the next probe on that link (``keep_sockets``) or closed
    on the probe's thread: a packet socket's close waits for an RCU grace period (10-20 ms)
    that nobody needs to wait for.
    """
    return Pending(netns.spawn_in(host_ns, _probe, _close, ifname, addr, count, interval, wait))


def probe(
    host_ns: str | None, ifname: str, addr: IPAddress, count: int = 2, interval: float = 0.01, wait: float = 0.03
) -> str | None:
    """The MAC of a host that answers for ``addr`` on ``ifname`` (in ``host_ns``), or None.

    Raises OSError when the probe cannot be sent (no such link, no permission).
    """
    return start(host_ns, ifname, addr, count, interval, wait).result()


def _close(result: tuple[str | None, socket.socket, tuple[int, int, int] | None]) -> None:
    _kept.give(result[2], result[1])


def probe_links(spec: AttachSpec) -> list[str]:
    """Every node link to probe the pod's VLAN from ([]: none exists yet).

    ``probe_link``'s link, and for macvlan/ipvlan the node's shim on that parent too when it
    exists: it hears the parent's other children, the pods of this node.
    """
    first = probe_link(spec)
    if first is None:
        return []
    out = [first]
    if spec.mode in ("macvlan", "ipvlan") and first != spec.bridge:
        shim = shim_name(first)
        with netns.ipr(spec.host_netns) as ip:
            if links.find(ip, shim) is not None:
                out.append(shim)
    return out


def probe_link(spec: AttachSpec) -> str | None:
    """The node's link on the pod's VLAN, when it exists already (None: nothing to probe from).

    macvlan/ipvlan: the parent (``master`` or ``master.<vlan>``); bridge: the bridge.
    """
    names: list[str] = []
    if spec.mode == "bridge" and spec.bridge:
        names.append(spec.bridge)
    if spec.master:
        names.append(vlan_ifname(spec.master, spec.vlan) if spec.vlan is not None else spec.master)
    with netns.ipr(spec.host_netns) as ip:
        for name in names:
            info = links.find(ip, name)
            if info is not None:
                return name
    return None
