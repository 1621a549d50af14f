"""rtnetlink messages of ``rtnl.Handle``'s verbs: requests encoded, replies decoded.

Each builder returns the message type, netlink flags and body of one request, encoded the
way pyroute2 0.9 encodes the same call (the same attributes, defaults and flags:
``tests/unit/test_rtnlreq.py`` decodes them with pyroute2's message classes,
``tests/integration/test_rtnl.py`` compares what each path leaves in a namespace). Builders
take typed arguments only (numbers where the kernel wants numbers), so there is no "does the
short path know this call?" question left: a verb exists, or the caller asks pyroute2 by name
(``Handle.pyroute2()``). The ``parse_*`` functions read the few fields the datapath uses out of
the replies.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Literal

# message types and flags (linux/netlink.h, linux/rtnetlink.h)
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
F_REQUEST, F_MULTI, F_ACK = 0x1, 0x2, 0x4
F_REPLACE, F_EXCL, F_CREATE, F_DUMP = 0x100, 0x200, 0x400, 0x300
IFF_UP = 0x1
# attribute numbers
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_DATA = 1, 2, 5
IFLA_BRPORT_STATE = 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
RTPROT_STATIC, RTN_UNICAST, MAIN_TABLE = 4, 1, 254
NDA_DST, NDA_LLADDR, NUD_PERMANENT = 1, 2, 0x80
MACVLAN_MODE_BRIDGE, IPVLAN_MODE_L2 = 4, 0
NLMSGHDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
IFADDRMSG = struct.Struct("=BBBBI")
RTMSG = struct.Struct("=BBBBBBBBI")
NDMSG = struct.Struct("=BxxxiHBB")
NLA = struct.Struct("=HH")
U32 = struct.Struct("=I")

Request = tuple[int, int, bytes]
IPText = str | ipaddress.IPv4Address | ipaddress.IPv6Address
ChildKind = Literal["macvlan", "ipvlan"]
_ACKED = F_REQUEST | F_ACK
_NESTED = 0x8000 | 0x4000  # NLA_F_NESTED | NLA_F_NET_BYTEORDER: masked off the type


def _nla(kind: int, payload: bytes) -> bytes:
    size = NLA.size + len(payload)
    return NLA.pack(size, kind) + payload + b"\0" * (-size % 4)


def _u32(kind: int, value: int) -> bytes:
    return _nla(kind, U32.pack(value))


def _str(kind: int, value: str) -> bytes:
    return _nla(kind, value.encode() + b"\0")


def _ip(kind: int, value: IPText) -> bytes:
    return _nla(kind, ipaddress.ip_address(value).packed)


def mac_bytes(mac: str) -> bytes:
    """``"02:00:5e:00:53:07"`` -> its six bytes."""
    return bytes.fromhex(mac.replace(":", ""))


def mac_text(raw: bytes) -> str:
    """Six bytes -> ``"02:00:5e:00:53:07"``."""
    return ":".join(f"{b:02x}" for b in raw)


def family_of(value: IPText) -> int:
    """AF_INET or AF_INET6 for an address."""
    return socket.AF_INET6 if ipaddress.ip_address(value).version == 6 else socket.AF_INET


IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS = 29, 1 << 3
_NO_STATS = _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)  # the datapath never reads them


# --- links -------------------------------------------------------------------------------------


def _link_attrs(
    name: str | None = None,
    parent: int | None = None,
    mtu: int | None = None,
    mac: str | None = None,
    master: int | None = None,
    netns_fd: int | None = None,
) -> bytes:
    out = _str(IFLA_IFNAME, name) if name is not None else b""
    if parent is not None:
        out += _u32(IFLA_LINK, parent)
    if mtu is not None:
        out += _u32(IFLA_MTU, mtu)
    if mac is not None:
        out += _nla(IFLA_ADDRESS, mac_bytes(mac))
    if master is not None:
        out += _u32(IFLA_MASTER, master)
    if netns_fd is not None:
        out += _u32(IFLA_NET_NS_FD, netns_fd)
    return out


def get_link(index: int = 0, name: str | None = None) -> Request:
    """RTM_GETLINK for one link, by index or (index 0) by name: the kernel looks it up."""
    by_name = _str(IFLA_IFNAME, name) if name is not None else b""
    return RTM_GETLINK, _ACKED, IFINFOMSG.pack(0, 0, index, 0, 0) + by_name + _NO_STATS


def dump_links() -> Request:
    return RTM_GETLINK, F_REQUEST | F_DUMP, IFINFOMSG.pack(0, 0, 0, 0, 0) + _NO_STATS


def del_link(index: int) -> Request:
    return RTM_DELLINK, _ACKED, IFINFOMSG.pack(0, 0, index, 0, 0)


def set_link(
    index: int,
    *,
    name: str | None = None,
    mac: str | None = None,
    mtu: int | None = None,
    master: int | None = None,
    up: bool | None = None,
) -> Request:
    """RTM_NEWLINK changing link ``index``: only what is given (``up`` None: admin state kept)."""
    flags, change = (0, 0) if up is None else (IFF_UP if up else 0, IFF_UP)
    attrs = _link_attrs(name=name, mtu=mtu, mac=mac, master=master)
    return RTM_NEWLINK, _ACKED, IFINFOMSG.pack(0, 0, index, flags, change) + attrs


def _add_link(kind: str, data: bytes, attrs: bytes) -> Request:
    info = _nla(IFLA_LINKINFO, _str(IFLA_INFO_KIND, kind) + _nla(IFLA_INFO_DATA, data))
    return RTM_NEWLINK, _ACKED | F_CREATE | F_EXCL, IFINFOMSG.pack(0, 0, 0, 0, 0) + attrs + info


def add_child(
    kind: ChildKind,
    name: str,
    parent: int,
    *,
    mode: int | None = None,
    mtu: int | None = None,
    mac: str | None = None,
    netns_fd: int | None = None,
) -> Request:
    """A macvlan (default mode bridge) or ipvlan (default mode L2) child of link ``parent``."""
    if kind == "macvlan":
        data = _u32(1, MACVLAN_MODE_BRIDGE if mode is None else mode)  # IFLA_MACVLAN_MODE
    elif kind == "ipvlan":
        data = _nla(1, struct.pack("=H", IPVLAN_MODE_L2 if mode is None else mode))  # IFLA_IPVLAN_MODE
    else:
        raise ValueError(f"not a child link kind: {kind!r}")
    return _add_link(kind, data, _link_attrs(name=name, parent=parent, mtu=mtu, mac=mac, netns_fd=netns_fd))


def add_veth(name: str, peer: str, *, mtu: int | None = None, peer_netns_fd: int | None = None) -> Request:
    """A veth pair ``name``/``peer`` (the peer optionally born in another netns)."""
    data = _nla(1, IFINFOMSG.pack(0, 0, 0, 0, 0) + _link_attrs(name=peer, mtu=mtu, netns_fd=peer_netns_fd))
    return _add_link("veth", data, _link_attrs(name=name, mtu=mtu))  # VETH_INFO_PEER above


# --- addresses ---------------------------------------------------------------------------------


def add_addr(
    index: int, address: IPText, prefixlen: int, *, broadcast: IPText | None = None, flags: int = 0
) -> Request:
    family = family_of(address)
    body = IFADDRMSG.pack(family, prefixlen, 0, 0, index) + _ip(IFA_ADDRESS, address)
    if broadcast is not None:
        body += _ip(IFA_BROADCAST, broadcast)
    if family == socket.AF_INET:
        body += _ip(IFA_LOCAL, address)
    if flags:
        body += _u32(IFA_FLAGS, flags)
    return RTM_NEWADDR, _ACKED | F_CREATE | F_EXCL, body


def del_addr(index: int, address: IPText, prefixlen: int) -> Request:
    family = family_of(address)
    body = IFADDRMSG.pack(family, prefixlen, 0, 0, index) + _ip(IFA_ADDRESS, address)
    if family == socket.AF_INET:
        body += _ip(IFA_LOCAL, address)
    return RTM_DELADDR, _ACKED, body


def dump_addrs(family: int = 0) -> Request:
    return RTM_GETADDR, F_REQUEST | F_DUMP, IFADDRMSG.pack(family, 0, 0, 0, 0)


# --- routes ------------------------------------------------------------------------------------


def _route_dst(dst: str) -> tuple[int, int, bytes]:
    net = ipaddress.ip_network(dst, strict=False)
    family = socket.AF_INET6 if net.version == 6 else socket.AF_INET
    return family, net.prefixlen, _nla(RTA_DST, net.network_address.packed) if net.prefixlen else b""


def route(
    cmd: Literal["add", "replace", "del"],
    dst: str,
    *,
    oif: int | None = None,
    gateway: IPText | None = None,
    priority: int | None = None,
    prefsrc: IPText | None = None,
    proto: int | None = None,
    scope: int = 0,
    flags: int = 0,
    table: int = MAIN_TABLE,
) -> Request:
    """RTM_NEWROUTE (add: exclusive, replace) or RTM_DELROUTE for ``dst`` ("a.b.c.d/n")."""
    family, dst_len, head_dst = _route_dst(dst)
    tail = b""
    if oif is not None:
        tail += _u32(RTA_OIF, oif)
    if gateway is not None:
        tail += _ip(RTA_GATEWAY, gateway)
    if priority is not None:
        tail += _u32(RTA_PRIORITY, priority)
    if cmd == "del":  # proto 0 / type 0: any; the kernel matches on what is given
        head = RTMSG.pack(family, dst_len, 0, 0, table, proto or 0, scope, 0, 0)
        return RTM_DELROUTE, _ACKED, head + head_dst + _u32(RTA_TABLE, table) + tail
    if prefsrc is not None:
        tail += _ip(RTA_PREFSRC, prefsrc)
    proto = RTPROT_STATIC if proto is None else proto
    head = RTMSG.pack(family, dst_len, 0, 0, table, proto, scope, RTN_UNICAST, flags)
    mode = F_EXCL if cmd == "add" else F_REPLACE
    return (
        RTM_NEWROUTE,
        _ACKED | F_CREATE | mode,
        head + head_dst + (_u32(RTA_TABLE, table) if table > 255 else b"") + tail,
    )


def dump_routes(family: int = 0) -> Request:
    return RTM_GETROUTE, F_REQUEST | F_DUMP, RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)


# --- neighbours --------------------------------------------------------------------------------


def neigh(
    cmd: Literal["add", "replace"],
    ifindex: int,
    dst: IPText,
    *,
    lladdr: str | None = None,
    state: int = NUD_PERMANENT,
    flags: int = 0,
) -> Request:
    head = NDMSG.pack(family_of(dst), ifindex, state, flags, 0)
    mac = _nla(NDA_LLADDR, mac_bytes(lladdr)) if lladdr else b""
    mode = F_EXCL if cmd == "add" else F_REPLACE
    return RTM_NEWNEIGH, _ACKED | F_CREATE | mode, head + _ip(NDA_DST, dst) + mac


def del_neigh(ifindex: int, dst: IPText, *, flags: int = 0) -> Request:
    return RTM_DELNEIGH, _ACKED, NDMSG.pack(family_of(dst), ifindex, NUD_PERMANENT, flags, 0) + _ip(NDA_DST, dst)


def dump_neighs(family: int = 0) -> Request:
    return RTM_GETNEIGH, F_REQUEST | F_DUMP, NDMSG.pack(family, 0, 0, 0, 0)


# --- replies -----------------------------------------------------------------------------------


def attrs(data: bytes, start: int = 0) -> dict[int, bytes]:
    """Type -> payload of the attributes in ``data[start:]`` (last one wins)."""
    out: dict[int, bytes] = {}
    end = len(data)
    while start + 4 <= end:
        size, kind = NLA.unpack_from(data, start)
        if size < 4:
            break
        out[kind & ~_NESTED] = data[start + 4 : start + size]
        start += (size + 3) & ~3
    return out


def text(raw: bytes) -> str:
    """A NUL-terminated string attribute."""
    return raw.rstrip(b"\0").decode()


def ip_text(raw: bytes) -> str:
    """An address attribute (4 or 16 bytes) as text; anything else as hex."""
    return str(ipaddress.ip_address(raw)) if len(raw) in (4, 16) else raw.hex()


def u32(raw: bytes) -> int:
    return int(U32.unpack(raw[:4])[0])
