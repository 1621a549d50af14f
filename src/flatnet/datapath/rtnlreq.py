"""Requests of ``rtnl.Handle``'s short path: rtnetlink messages for the calls it knows.

Each builder takes the arguments of the pyroute2 call it stands for (``IPRoute.link``,
``addr``, ``route``, ``neigh``) and returns the message type, netlink flags and body encoded as pyroute2
0.9 encodes them (the same attributes, defaults and flags: ``tests/unit/test_rtnlreq.py``
decodes them with pyroute2's message classes, ``tests/integration/test_rtnl.py`` compares what
each path leaves in a namespace), or None when the arguments are not ones it knows: the
caller then goes through pyroute2.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any

# message types and flags (linux/netlink.h, linux/rtnetlink.h)
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
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
NLMSGHDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
IFADDRMSG = struct.Struct("=BBBBI")
RTMSG = struct.Struct("=BBBBBBBBI")
NDMSG = struct.Struct("=BxxxiHBB")
NLA = struct.Struct("=HH")
U32 = struct.Struct("=I")


def _nla(kind: int, payload: bytes) -> bytes:
    size = NLA.size + len(payload)
    return NLA.pack(size, kind) + payload + b"\0" * (-size % 4)


def _u32(kind: int, value: int) -> bytes:
    return _nla(kind, U32.pack(value))


def _str(kind: int, value: str) -> bytes:
    return _nla(kind, value.encode() + b"\0")


def _ip(kind: int, value: Any) -> bytes:
    return _nla(kind, ipaddress.ip_address(value).packed)


def mac_bytes(mac: str) -> bytes:
    """``"02:00:5e:00:53:07"`` -> its six bytes."""
    return bytes.fromhex(mac.replace(":", ""))


def mac_text(raw: bytes) -> str:
    """Six bytes -> ``"02:00:5e:00:53:07"``."""
    return ":".join(f"{b:02x}" for b in raw)


def _family(value: Any) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(value).version == 6 else socket.AF_INET


Request = tuple[int, int, bytes]
_ACKED = F_REQUEST | F_ACK
_MACVLAN_MODES = {"bridge": 4}
_LINK_ADD = {"ifname", "kind", "link", "macvlan_mode", "ipvlan_mode", "mtu", "address", "net_ns_fd", "peer"}
_LINK_SET = {"index", "ifname", "address", "state", "mtu", "master"}
_ROUTE_ADD = {"dst", "oif", "gateway", "flags", "scope", "proto", "priority", "prefsrc"}
_ROUTE_DEL = {"dst", "proto", "table", "scope", "oif", "gateway", "priority"}
IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS = 29, 1 << 3
_NO_STATS = _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)  # the datapath never reads them


def _link_common(kw: dict[str, Any]) -> bytes:
    out = _str(IFLA_IFNAME, kw["ifname"]) if kw.get("ifname") is not None else b""
    if kw.get("link") is not None:
        out += _u32(IFLA_LINK, kw["link"])
    if kw.get("mtu") is not None:
        out += _u32(IFLA_MTU, kw["mtu"])
    if kw.get("address") is not None:
        out += _nla(IFLA_ADDRESS, mac_bytes(kw["address"]))
    if kw.get("master") is not None:
        out += _u32(IFLA_MASTER, kw["master"])
    if kw.get("net_ns_fd") is not None:
        out += _u32(IFLA_NET_NS_FD, kw["net_ns_fd"])
    return out


def _link_data(kw: dict[str, Any]) -> bytes | None:
    kind = kw.get("kind")
    if kind == "macvlan" and kw.get("macvlan_mode", "bridge") in _MACVLAN_MODES and kw.get("ipvlan_mode") is None:
        return _u32(1, _MACVLAN_MODES[kw.get("macvlan_mode", "bridge")])  # IFLA_MACVLAN_MODE
    if kind == "ipvlan" and isinstance(kw.get("ipvlan_mode", 0), int) and kw.get("macvlan_mode") is None:
        return _nla(1, struct.pack("=H", kw.get("ipvlan_mode", 0)))  # IFLA_IPVLAN_MODE
    peer = kw.get("peer")
    if kind == "veth" and isinstance(peer, dict) and set(peer) <= {"ifname", "mtu", "net_ns_fd"}:
        return _nla(1, IFINFOMSG.pack(0, 0, 0, 0, 0) + _link_common(peer))  # VETH_INFO_PEER
    return None


_NUMERIC = {"index", "link", "mtu", "master", "net_ns_fd", "prefixlen", "flags", "oif", "scope", "proto"}
_NUMERIC |= {"priority", "table", "ifindex", "family"}  # and a neighbour's state (a link's is "up")


def _plain(kw: dict[str, Any]) -> bool:
    """Numbers where the kernel wants numbers: pyroute2 also takes names ("link", "stale"),
    paths and the like, which the short path leaves to it."""
    peer = kw.get("peer")
    numbers = all(isinstance(v, int) for k, v in kw.items() if k in _NUMERIC and v is not None)
    return numbers and (not isinstance(peer, dict) or _plain(peer))


def link_request(cmd: str, kw: dict[str, Any]) -> Request | None:
    """The request for ``IPRoute.link(cmd, **kw)``, or None: not one the short path knows."""
    keys = set(kw)
    if not _plain(kw):
        return None
    if cmd == "get" and keys in ({"ifname"}, {"index"}):
        index = kw.get("index", 0)
        name = _str(IFLA_IFNAME, kw["ifname"]) if "ifname" in kw else b""
        return RTM_GETLINK, _ACKED, IFINFOMSG.pack(0, 0, index, 0, 0) + name + _NO_STATS
    if cmd == "dump" and not keys:
        return RTM_GETLINK, F_REQUEST | F_DUMP, IFINFOMSG.pack(0, 0, 0, 0, 0) + _NO_STATS
    if cmd == "del" and keys == {"index"}:
        return RTM_DELLINK, _ACKED, IFINFOMSG.pack(0, 0, kw["index"], 0, 0)
    if cmd == "set" and "index" in keys and keys <= _LINK_SET and kw.get("state") in (None, "up", "down"):
        up = {"up": (IFF_UP, IFF_UP), "down": (0, IFF_UP), None: (0, 0)}[kw.get("state")]
        return RTM_NEWLINK, _ACKED, IFINFOMSG.pack(0, 0, kw["index"], *up) + _link_common(kw)
    if cmd == "add" and keys <= _LINK_ADD and "ifname" in keys:
        data = _link_data(kw)
        if data is None:
            return None
        info = _nla(IFLA_LINKINFO, _str(IFLA_INFO_KIND, kw["kind"]) + _nla(IFLA_INFO_DATA, data))
        return RTM_NEWLINK, _ACKED | F_CREATE | F_EXCL, IFINFOMSG.pack(0, 0, 0, 0, 0) + _link_common(kw) + info
    return None


def addr_request(cmd: str, kw: dict[str, Any]) -> Request | None:
    """The request for ``IPRoute.addr(cmd, **kw)``, or None."""
    keys = set(kw)
    if not _plain(kw):
        return None
    if cmd == "dump" and keys <= {"index"}:
        return RTM_GETADDR, F_REQUEST | F_DUMP, IFADDRMSG.pack(0, 0, 0, 0, 0)
    if cmd == "add" and {"index", "address", "prefixlen"} <= keys <= {
        "index",
        "address",
        "prefixlen",
        "flags",
        "broadcast",
    }:
        family = _family(kw["address"])
        body = IFADDRMSG.pack(family, kw["prefixlen"], 0, 0, kw["index"]) + _ip(IFA_ADDRESS, kw["address"])
        if kw.get("broadcast") is not None:
            body += _ip(IFA_BROADCAST, kw["broadcast"])
        if family == socket.AF_INET:
            body += _ip(IFA_LOCAL, kw["address"])
        if kw.get("flags"):
            body += _u32(IFA_FLAGS, kw["flags"])
        return RTM_NEWADDR, _ACKED | F_CREATE | F_EXCL, body
    return None


def _route_dst(dst: str) -> tuple[int, int, bytes]:
    net = ipaddress.ip_network(dst, strict=False)
    family = socket.AF_INET6 if net.version == 6 else socket.AF_INET
    return family, net.prefixlen, _nla(RTA_DST, net.network_address.packed) if net.prefixlen else b""


def route_request(cmd: str, kw: dict[str, Any]) -> Request | None:
    """The request for ``IPRoute.route(cmd, **kw)``, or None."""
    keys = set(kw)
    if not _plain(kw):
        return None
    if "dst" not in keys or not isinstance(kw["dst"], str) or "/" not in kw["dst"]:
        return None
    family, dst_len, dst = _route_dst(kw["dst"])
    tail = b""
    if kw.get("oif") is not None:
        tail += _u32(RTA_OIF, kw["oif"])
    if kw.get("gateway") is not None:
        tail += _ip(RTA_GATEWAY, kw["gateway"])
    if kw.get("priority") is not None:
        tail += _u32(RTA_PRIORITY, kw["priority"])
    if cmd in ("add", "replace") and keys <= _ROUTE_ADD:
        if kw.get("prefsrc") is not None:
            tail += _ip(RTA_PREFSRC, kw["prefsrc"])
        head = (family, dst_len, 0, 0, MAIN_TABLE, kw.get("proto", RTPROT_STATIC), kw.get("scope", 0), RTN_UNICAST)
        flags = _ACKED | F_CREATE | (F_EXCL if cmd == "add" else F_REPLACE)
        return RTM_NEWROUTE, flags, RTMSG.pack(*head, kw.get("flags", 0)) + dst + tail
    if cmd == "del" and keys <= _ROUTE_DEL:
        table = kw.get("table", MAIN_TABLE)
        head = (family, dst_len, 0, 0, table, kw.get("proto", 0), kw.get("scope", 0), 0, 0)
        return RTM_DELROUTE, _ACKED, RTMSG.pack(*head) + dst + (_u32(RTA_TABLE, table) if "table" in kw else b"") + tail
    return None


_NEIGH_SET = {"dst", "ifindex", "family", "lladdr", "state", "flags"}


def neigh_request(cmd: str, kw: dict[str, Any]) -> Request | None:
    """The request for ``IPRoute.neigh(cmd, **kw)``, or None."""
    keys = set(kw)
    if not _plain(kw) or not isinstance(kw.get("state", 0), int):
        return None
    if cmd == "dump" and keys <= {"family"}:
        return RTM_GETNEIGH, F_REQUEST | F_DUMP, NDMSG.pack(kw.get("family", 0), 0, 0, 0, 0)
    if not {"dst", "ifindex"} <= keys or not isinstance(kw["ifindex"], int):
        return None
    family = kw.get("family") or _family(kw["dst"])
    dst = _ip(NDA_DST, kw["dst"])
    if cmd == "del" and keys <= {"dst", "ifindex", "family"}:
        return RTM_DELNEIGH, _ACKED, NDMSG.pack(family, kw["ifindex"], NUD_PERMANENT, 0, 0) + dst
    if cmd in ("add", "replace") and keys <= _NEIGH_SET:
        head = NDMSG.pack(family, kw["ifindex"], kw.get("state", NUD_PERMANENT), kw.get("flags", 0), 0)
        mac = _nla(NDA_LLADDR, mac_bytes(kw["lladdr"])) if kw.get("lladdr") else b""
        return RTM_NEWNEIGH, _ACKED | F_CREATE | (F_EXCL if cmd == "add" else F_REPLACE), head + dst + mac
    return None
