"""A netlink handle whose verbs are the datapath's kernel calls, each one ``send`` on a socket.

Why: pyroute2 0.9's synchronous ``IPRoute`` runs each call through an asyncio loop and its
request/argument machinery, and decodes every attribute of every reply (a link message
carries its statistics and dozens of per-family settings). That is ~0.6-0.9 ms of Python
per call on the project's 2-core test VM, and a pod ADD makes about ten of them: most of the
agent's CPU in a burst of pod starts (``docs/BENCHMARKS.md``: the in-process ADD went from
545 to 239 ms p50 with this short path, the agent burst to 0.68x). Importing pyroute2 alone
is ~0.3 s of every ``flatnet-inprocess`` call, so a pod ADD/DEL/CHECK never imports it.

``Handle``'s verbs (``get_link``, ``add_child``, ``set_link``, ``add_addr``, ``replace_route``,
``dump_neighs``, ...) take typed arguments, encode the request the way pyroute2 does
(``rtnlreq``), and return typed values (``LinkInfo``, ``AddrInfo``, ``Route``, ``Neigh``) read
straight from the replies. What they do not cover — bridges, VLAN filtering, FDB entries,
vxlan devices, generic link kinds — is asked of pyroute2 *by name*: ``handle.pyroute2()`` is an
``IPRoute`` opened in the same netns on first use, its errors translated to this module's
``NetlinkError`` (the datapath catches one class) and every call counted (``counts``,
``watch()``), so a test can assert which calls left the short path.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal

from flatnet.datapath import rtnlreq as rq
from flatnet.datapath.rtnlreq import IPText

_RECV = 1 << 18
_FIRST_RTM = 16  # message types below are netlink's own (NOOP, ERROR, DONE, OVERRUN)
IFLA_BR_VLAN_FILTERING = 7
IFInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class NetlinkError(OSError):
    """The kernel refused a netlink request; ``code`` (= ``errno``) is its errno."""

    def __init__(self, code: int, msg: str | None = None) -> None:
        super().__init__(code, msg or (os.strerror(code) if code > 0 else "netlink error"))
        self.code = code


@dataclass(frozen=True)
class LinkInfo:
    """The facts about a link that the datapath plans with."""

    index: int
    name: str
    kind: str | None
    mtu: int
    mac: str
    master: int | None
    up: bool
    #: IFLA_LINK: the parent of a macvlan/ipvlan/vlan child, a veth's peer
    parent: int | None = None
    #: IFLA_BRPORT_STATE when the link is a bridge port (3: forwarding)
    port_state: int | None = None
    #: a bridge's vlan_filtering (None: not a bridge)
    vlan_filtering: bool | None = None


@dataclass(frozen=True)
class AddrInfo:
    """One address as the kernel lists it."""

    index: int
    family: int
    prefixlen: int
    scope: int
    address: str | None
    local: str | None = None
    broadcast: str | None = None
    flags: int = 0

    @property
    def iface(self) -> IFInterface:
        return ipaddress.ip_interface(f"{self.address}/{self.prefixlen}")


@dataclass(frozen=True)
class Route:
    """A route to add, replace or delete, and a route as a dump lists it.

    ``dst`` is a network in text ("198.18.0.0/24", "::/0"). ``proto`` None means static when
    adding and "any" when deleting; the other defaults are what ``ip route`` gives.
    """

    dst: str
    oif: int | None = None
    gateway: str | None = None
    priority: int | None = None
    prefsrc: str | None = None
    proto: int | None = None
    scope: int = 0
    flags: int = 0
    table: int = rq.MAIN_TABLE
    type: int = rq.RTN_UNICAST
    family: int = 0


@dataclass(frozen=True)
class Neigh:
    """A neighbour entry (static by default; ``flags`` 0x08 = NTF_PROXY for proxy NDP)."""

    ifindex: int
    dst: str
    lladdr: str | None = None
    state: int = rq.NUD_PERMANENT
    flags: int = 0
    family: int = 0


@dataclass
class Tally:
    """Calls made by every handle while a ``watch()`` is open: on the short path, and those
    that went to pyroute2 (``"<method> <first argument>"``, e.g. ``"vlan_filter add"``)."""

    short: int = 0
    escapes: list[str] = field(default_factory=list)


_watchers: list[Tally] = []
_watch_lock = threading.Lock()


@contextmanager
def watch() -> Iterator[Tally]:
    """Count every handle's calls in this process while the block runs (tests, profiling)."""
    tally = Tally()
    with _watch_lock:
        _watchers.append(tally)
    try:
        yield tally
    finally:
        with _watch_lock:
            _watchers.remove(tally)


class Pyroute2:
    """pyroute2's ``IPRoute`` in the handle's netns, reached explicitly (``Handle.pyroute2()``).

    Any of its methods, called as on ``IPRoute``; pyroute2's ``NetlinkError`` comes out as
    this module's, and iterators are drained inside, so an error met while reading a dump is
    translated too.
    """

    def __init__(self, handle: Handle) -> None:
        self._handle = handle

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            from pyroute2 import NetlinkError as Pyroute2Error  # its public name

            self._handle._escaped(name, args)
            try:
                out = getattr(self._handle._iproute(), name)(*args, **kwargs)
                return list(out) if hasattr(out, "__next__") else out
            except Pyroute2Error as exc:
                words = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else None
                raise NetlinkError(int(exc.code or 0), words) from exc

        return call


class Handle:
    """Typed rtnetlink verbs over one NETLINK_ROUTE socket (see the module docstring).

    ``fd`` is a socket already created in the right netns (``netns.open_ipr``); ``opener``
    opens pyroute2's handle there, on the first ``pyroute2()`` call. Like pyroute2's handles,
    one ``Handle`` serves one thread at a time.
    """

    def __init__(self, fd: int, opener: Callable[[], Any]) -> None:
        self._sock = socket.socket(fileno=fd)
        self._sock.settimeout(30.0)  # the kernel always answers; a safety net, not a pace
        self._seq = 0
        self._opener = opener
        self._ipr: Any = None
        #: calls answered here / by pyroute2 (tests and profiling read them)
        self.counts = {"short": 0, "pyroute2": 0}

    # --- the escape hatch ---------------------------------------------------------------------

    def pyroute2(self) -> Pyroute2:
        """pyroute2 in this handle's netns, for what the verbs do not cover (bridges, FDB,
        VLAN filtering, vxlan and other link kinds): imports pyroute2 on first use."""
        return Pyroute2(self)

    def _iproute(self) -> Any:
        if self._ipr is None:
            self._ipr = self._opener()
        return self._ipr

    def _escaped(self, method: str, args: tuple[Any, ...]) -> None:
        self.counts["pyroute2"] += 1
        what = f"{method} {args[0]}" if args and isinstance(args[0], str) else method
        for tally in _watchers:
            tally.escapes.append(what)

    # --- links --------------------------------------------------------------------------------

    def get_link(self, key: str | int) -> LinkInfo | None:
        """Link by name (str) or index (int); None when there is none (ENODEV).

        By name, one RTM_GETLINK carrying IFLA_IFNAME: the kernel looks the name up itself
        (pyroute2's ``link_lookup`` dumps every link: O(links) on a node with a thousand pods).
        """
        req = rq.get_link(name=key) if isinstance(key, str) else rq.get_link(index=key)
        try:
            return _link(self.request(req)[0])
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise

    def dump_links(self) -> list[LinkInfo]:
        return [_link(raw) for raw in self.request(rq.dump_links())]

    def add_child(
        self,
        kind: rq.ChildKind,
        name: str,
        parent: int,
        *,
        mode: int | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        netns_fd: int | None = None,
    ) -> None:
        """A macvlan (bridge mode unless ``mode``) or ipvlan (L2) child of link ``parent``,
        born inside the netns of ``netns_fd`` when given."""
        self.request(rq.add_child(kind, name, parent, mode=mode, mtu=mtu, mac=mac, netns_fd=netns_fd))

    def add_veth(self, name: str, peer: str, *, mtu: int | None = None, peer_netns_fd: int | None = None) -> None:
        self.request(rq.add_veth(name, peer, mtu=mtu, peer_netns_fd=peer_netns_fd))

    def set_link(
        self,
        index: int,
        *,
        name: str | None = None,
        mac: str | None = None,
        mtu: int | None = None,
        master: int | None = None,
        up: bool | None = None,
    ) -> None:
        self.request(rq.set_link(index, name=name, mac=mac, mtu=mtu, master=master, up=up))

    def del_link(self, index: int) -> None:
        self.request(rq.del_link(index))

    # --- addresses ----------------------------------------------------------------------------

    def add_addr(
        self, index: int, iface: IFInterface | str, *, broadcast: IPText | None = None, flags: int = 0
    ) -> None:
        i = ipaddress.ip_interface(iface)
        self.request(rq.add_addr(index, i.ip, i.network.prefixlen, broadcast=broadcast, flags=flags))

    def del_addr(self, index: int, iface: IFInterface | str) -> None:
        i = ipaddress.ip_interface(iface)
        self.request(rq.del_addr(index, i.ip, i.network.prefixlen))

    def dump_addrs(self, index: int | None = None, family: int = 0) -> list[AddrInfo]:
        """Addresses of link ``index`` (None: of every link), of ``family`` (0: both)."""
        out = [_addr(raw) for raw in self.request(rq.dump_addrs(family))]
        return out if index is None else [a for a in out if a.index == index]  # the kernel dumps all

    # --- routes -------------------------------------------------------------------------------

    def add_route(self, route: Route) -> None:
        self._route("add", route)

    def replace_route(self, route: Route) -> None:
        self._route("replace", route)

    def del_route(self, route: Route) -> None:
        self._route("del", route)

    def _route(self, cmd: Literal["add", "replace", "del"], r: Route) -> None:
        self.request(
            rq.route(
                cmd,
                r.dst,
                oif=r.oif,
                gateway=r.gateway,
                priority=r.priority,
                prefsrc=r.prefsrc,
                proto=r.proto,
                scope=r.scope,
                flags=r.flags,
                table=r.table,
            )
        )

    def dump_routes(self, family: int = 0) -> list[Route]:
        """Every route of every table (of ``family``; 0: both)."""
        return [_route(raw) for raw in self.request(rq.dump_routes(family))]

    # --- neighbours ---------------------------------------------------------------------------

    def add_neigh(self, n: Neigh) -> None:
        self.request(rq.neigh("add", n.ifindex, n.dst, lladdr=n.lladdr, state=n.state, flags=n.flags))

    def replace_neigh(self, n: Neigh) -> None:
        self.request(rq.neigh("replace", n.ifindex, n.dst, lladdr=n.lladdr, state=n.state, flags=n.flags))

    def del_neigh(self, ifindex: int, dst: IPText) -> None:
        self.request(rq.del_neigh(ifindex, dst))

    def dump_neighs(self, family: int = 0, ifindex: int | None = None) -> list[Neigh]:
        """Neighbour entries (not proxy ones) of ``family`` (0: both), of link ``ifindex``."""
        out = [_neigh(raw) for raw in self.request(rq.dump_neighs(family))]
        return out if ifindex is None else [n for n in out if n.ifindex == ifindex]

    # --- the wire -----------------------------------------------------------------------------

    def request(self, req: rq.Request) -> list[bytes]:
        """Send one request; its data replies (raw messages) once acknowledged or done."""
        kind, flags, body = req
        self.counts["short"] += 1
        for tally in _watchers:
            tally.short += 1
        self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
        self._sock.send(rq.NLMSGHDR.pack(rq.NLMSGHDR.size + len(body), kind, flags, seq, 0) + body)
        out: list[bytes] = []
        while True:
            data = self._sock.recv(_RECV)
            off = 0
            while off + rq.NLMSGHDR.size <= len(data):
                length, mtype, _mflags, mseq, _pid = rq.NLMSGHDR.unpack_from(data, off)
                if length < rq.NLMSGHDR.size:
                    raise NetlinkError(0, f"malformed netlink reply (length {length})")
                if mseq == seq:
                    if mtype in (rq.NLMSG_ERROR, rq.NLMSG_DONE):
                        code = -struct.unpack_from("=i", data, off + 16)[0] if length >= 20 else 0
                        if code > 0:
                            raise NetlinkError(code, os.strerror(code))
                        return out
                    if mtype >= _FIRST_RTM:  # not NLMSG_NOOP / NLMSG_OVERRUN
                        out.append(data[off : off + length])
                off += (length + 3) & ~3

    def close(self) -> None:
        self._sock.close()
        if self._ipr is not None:
            self._ipr.close()


# --- replies -> values ---------------------------------------------------------------------------


def _mac(raw: bytes | None) -> str:
    return rq.mac_text(raw) if raw else ""


def _link(raw: bytes) -> LinkInfo:
    _family, _type, index, flags, _change = rq.IFINFOMSG.unpack_from(raw, rq.NLMSGHDR.size)
    a = rq.attrs(raw, rq.NLMSGHDR.size + rq.IFINFOMSG.size)
    info = rq.attrs(a[rq.IFLA_LINKINFO]) if rq.IFLA_LINKINFO in a else {}
    port = rq.attrs(info[rq.IFLA_INFO_SLAVE_DATA]) if rq.IFLA_INFO_SLAVE_DATA in info else {}
    kind = rq.text(info[rq.IFLA_INFO_KIND]) if rq.IFLA_INFO_KIND in info else None
    filtering = None
    if kind == "bridge":
        data = rq.attrs(info[rq.IFLA_INFO_DATA]) if rq.IFLA_INFO_DATA in info else {}
        filtering = bool(data.get(IFLA_BR_VLAN_FILTERING, b"\0")[0])
    return LinkInfo(
        index=index,
        name=rq.text(a[rq.IFLA_IFNAME]) if rq.IFLA_IFNAME in a else "",
        kind=kind,
        mtu=rq.u32(a[rq.IFLA_MTU]) if rq.IFLA_MTU in a else 0,
        mac=_mac(a.get(rq.IFLA_ADDRESS)),
        master=rq.u32(a[rq.IFLA_MASTER]) or None if rq.IFLA_MASTER in a else None,
        up=bool(flags & rq.IFF_UP),
        parent=rq.u32(a[rq.IFLA_LINK]) if rq.IFLA_LINK in a else None,
        port_state=port[rq.IFLA_BRPORT_STATE][0] if rq.IFLA_BRPORT_STATE in port else None,
        vlan_filtering=filtering,
    )


def _addr(raw: bytes) -> AddrInfo:
    family, prefixlen, flags, scope, index = rq.IFADDRMSG.unpack_from(raw, rq.NLMSGHDR.size)
    a = rq.attrs(raw, rq.NLMSGHDR.size + rq.IFADDRMSG.size)

    def ip(kind: int) -> str | None:
        return rq.ip_text(a[kind]) if kind in a else None

    return AddrInfo(
        index=index,
        family=family,
        prefixlen=prefixlen,
        scope=scope,
        address=ip(rq.IFA_ADDRESS),
        local=ip(rq.IFA_LOCAL),
        broadcast=ip(rq.IFA_BROADCAST),
        flags=rq.u32(a[rq.IFA_FLAGS]) if rq.IFA_FLAGS in a else flags,
    )


def _route(raw: bytes) -> Route:
    family, dst_len, _src_len, _tos, table, proto, scope, kind, flags = rq.RTMSG.unpack_from(raw, rq.NLMSGHDR.size)
    a = rq.attrs(raw, rq.NLMSGHDR.size + rq.RTMSG.size)
    dst = rq.ip_text(a[rq.RTA_DST]) if rq.RTA_DST in a else ("::" if family == socket.AF_INET6 else "0.0.0.0")
    return Route(
        dst=f"{dst}/{dst_len}",
        oif=rq.u32(a[rq.RTA_OIF]) if rq.RTA_OIF in a else None,
        gateway=rq.ip_text(a[rq.RTA_GATEWAY]) if rq.RTA_GATEWAY in a else None,
        priority=rq.u32(a[rq.RTA_PRIORITY]) if rq.RTA_PRIORITY in a else None,
        prefsrc=rq.ip_text(a[rq.RTA_PREFSRC]) if rq.RTA_PREFSRC in a else None,
        proto=proto,
        scope=scope,
        flags=flags,
        table=rq.u32(a[rq.RTA_TABLE]) if rq.RTA_TABLE in a else table,
        type=kind,
        family=family,
    )


def _neigh(raw: bytes) -> Neigh:
    family, ifindex, state, flags, _type = rq.NDMSG.unpack_from(raw, rq.NLMSGHDR.size)
    a = rq.attrs(raw, rq.NLMSGHDR.size + rq.NDMSG.size)
    return Neigh(
        ifindex=ifindex,
        dst=rq.ip_text(a[rq.NDA_DST]) if rq.NDA_DST in a else "",
        lladdr=rq.mac_text(a[rq.NDA_LLADDR]) if rq.NDA_LLADDR in a else None,
        state=state,
        flags=flags,
        family=family,
    )
