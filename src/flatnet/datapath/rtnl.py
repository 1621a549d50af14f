"""A netlink handle with a short path for the few calls every pod ADD and DEL makes.

Why: pyroute2 0.9's synchronous ``IPRoute`` runs each call through an asyncio loop and its
request/argument machinery, and decodes every attribute of every reply (a link message
carries its statistics and dozens of per-family settings). That is ~0.6-0.9 ms of Python
per call on the project's 2-core test VM, and a pod ADD makes about ten of them: most of the
agent's CPU in a burst of pod starts (``docs/BENCHMARKS.md``: the in-process ADD went from
545 to 239 ms p50 with this short path, the agent burst to 0.68x).

``Handle`` answers ``link``/``addr``/``route``/``neigh`` calls whose arguments it knows with
one ``send`` and the replies read straight from the socket, encoding requests the way pyroute2
does (``rtnlreq``: the unit tests decode them with pyroute2's message classes, and a kernel
test compares what both paths leave in a namespace). Replies are wrapped in
``Msg``: the few attributes the datapath reads are parsed directly; asking for any other
hands the raw bytes to pyroute2's decoder. Every other call — and any argument the short
path does not know — goes to a pyroute2 ``IPRoute`` opened on first use in the same netns.
Errors are this module's ``NetlinkError`` (the kernel's errno), also for the calls pyroute2
makes: the datapath catches one class, and a pod ADD/DEL never imports pyroute2 (its import
is ~0.3 s of every ``flatnet-inprocess`` call on the test VM).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import Any, Callable

from flatnet.datapath.rtnlreq import (
    IFA_ADDRESS,
    IFA_LOCAL,
    IFADDRMSG,
    IFINFOMSG,
    IFLA_ADDRESS,
    IFLA_BRPORT_STATE,
    IFLA_IFNAME,
    IFLA_INFO_KIND,
    IFLA_INFO_SLAVE_DATA,
    IFLA_LINKINFO,
    IFLA_MASTER,
    IFLA_MTU,
    NLA,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    U32,
    NDA_DST,
    NDA_LLADDR,
    NDMSG,
    Request,
    addr_request,
    link_request,
    mac_text,
    neigh_request,
    route_request,
)

_RECV = 1 << 18
_FIRST_RTM = 16  # message types below are netlink's own (NOOP, ERROR, DONE, OVERRUN)


class NetlinkError(OSError):
    """The kernel refused a netlink request; ``code`` (= ``errno``) is its errno."""

    def __init__(self, code: int, msg: str | None = None) -> None:
        super().__init__(code, msg or (os.strerror(code) if code > 0 else "netlink error"))
        self.code = code


def _translated(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a pyroute2 method) raising ``NetlinkError`` for pyroute2's; iterators are
    drained inside, so an error met while reading a dump is translated too."""

    def call(*args: Any, **kwargs: Any) -> Any:
        from pyroute2.netlink.exceptions import NetlinkError as Pyroute2Error

        try:
            out = fn(*args, **kwargs)
            return list(out) if hasattr(out, "__next__") else out
        except Pyroute2Error as exc:
            raise NetlinkError(int(exc.code or 0), str(exc)) from exc

    return call


_NESTED = 0x8000 | 0x4000  # NLA_F_NESTED | NLA_F_NET_BYTEORDER: masked off the type


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


class Msg:
    """A reply message: header fields by ``[name]``; ``get``/``get_attr``/``get_nested`` as in
    pyroute2, parsed here for the attributes the datapath reads, by pyroute2 for any other."""

    def __init__(self, raw: bytes, header: dict[str, int], fast: dict[str, Any], kind: str) -> None:
        #: ``kind``: pyroute2's class for the message, in ``pyroute2.netlink.rtnl.<kind>``
        self.raw, self.header, self.fast, self.kind = raw, header, fast, kind
        self._full: Any = None

    def full(self) -> Any:
        """pyroute2's decoding of the whole message (made once, on first need)."""
        if self._full is None:
            import importlib

            self._full = getattr(importlib.import_module(f"pyroute2.netlink.rtnl.{self.kind}"), self.kind)(self.raw)
            self._full.decode()
        return self._full

    def __getitem__(self, key: str) -> Any:
        if key in self.header:
            return self.header[key]
        return self.full()[key]

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.header:
            return self.header[key]
        if key in self.fast:
            value = self.fast[key]
            return default if value is None else value
        return self.full().get(key, default)

    def get_attr(self, name: str, default: Any = None) -> Any:
        return self.full().get_attr(name, default)

    def get_nested(self, *names: str) -> Any:
        if names == ("IFLA_LINKINFO", "IFLA_INFO_KIND"):
            return self.fast["kind"]
        if names == ("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA", "IFLA_BRPORT_STATE"):
            return self.fast["brport_state"]
        return self.full().get_nested(*names)


def _mac(raw: bytes | None) -> str | None:
    return mac_text(raw) if raw else None


def _link_msg(raw: bytes) -> Msg:
    family, kind, index, flags, change = IFINFOMSG.unpack_from(raw, NLMSGHDR.size)
    a = attrs(raw, NLMSGHDR.size + IFINFOMSG.size)
    info = attrs(a[IFLA_LINKINFO]) if IFLA_LINKINFO in a else {}
    port = attrs(info[IFLA_INFO_SLAVE_DATA]) if IFLA_INFO_SLAVE_DATA in info else {}

    return Msg(
        raw,
        {"family": family, "ifi_type": kind, "index": index, "flags": flags, "change": change},
        {
            "ifname": a[IFLA_IFNAME].rstrip(b"\0").decode() if IFLA_IFNAME in a else None,
            "mtu": U32.unpack(a[IFLA_MTU])[0] if IFLA_MTU in a else None,
            "address": _mac(a.get(IFLA_ADDRESS)),
            "master": U32.unpack(a[IFLA_MASTER])[0] if IFLA_MASTER in a else None,
            "kind": info[IFLA_INFO_KIND].rstrip(b"\0").decode() if IFLA_INFO_KIND in info else None,
            "brport_state": port[IFLA_BRPORT_STATE][0] if IFLA_BRPORT_STATE in port else None,
        },
        "ifinfmsg",
    )


def _addr_msg(raw: bytes) -> Msg:
    family, prefixlen, flags, scope, index = IFADDRMSG.unpack_from(raw, NLMSGHDR.size)
    a = attrs(raw, NLMSGHDR.size + IFADDRMSG.size)

    def text(kind: int) -> str | None:
        return str(ipaddress.ip_address(a[kind])) if kind in a else None

    return Msg(
        raw,
        {"family": family, "prefixlen": prefixlen, "flags": flags, "scope": scope, "index": index},
        {"address": text(IFA_ADDRESS), "local": text(IFA_LOCAL)},
        "ifaddrmsg",
    )


def _neigh_msg(raw: bytes) -> Msg:
    family, ifindex, state, flags, kind = NDMSG.unpack_from(raw, NLMSGHDR.size)
    a = attrs(raw, NLMSGHDR.size + NDMSG.size)

    return Msg(
        raw,
        {"family": family, "ifindex": ifindex, "state": state, "flags": flags, "ndm_type": kind},
        {
            "dst": str(ipaddress.ip_address(a[NDA_DST])) if NDA_DST in a else None,
            "lladdr": _mac(a.get(NDA_LLADDR)),
        },
        "ndmsg",
    )


class Handle:
    """An ``IPRoute`` look-alike over one netlink socket (see the module docstring).

    ``fd`` is a NETLINK_ROUTE socket already created in the right netns (``netns.open_ipr``);
    ``fallback`` opens the pyroute2 handle for everything else, on first use. Like pyroute2's
    handles, one ``Handle`` serves one thread at a time.
    """

    def __init__(self, fd: int, fallback: Callable[[], Any]) -> None:
        self._sock = socket.socket(fileno=fd)
        self._sock.settimeout(30.0)  # the kernel always answers; a safety net, not a pace
        self._seq = 0
        self._fallback = fallback
        self._slow: Any = None
        #: calls answered here / by pyroute2 (tests and profiling read them)
        self.counts = {"fast": 0, "slow": 0}

    def slow(self) -> Any:
        if self._slow is None:
            self._slow = self._fallback()
        self.counts["slow"] += 1
        return self._slow

    def __getattr__(self, name: str) -> Any:  # neigh, get_links, ...: pyroute2's
        attr = getattr(self.slow(), name)
        return _translated(attr) if callable(attr) else attr

    def link(self, cmd: str, **kw: Any) -> list[Any]:
        return self._either("link", link_request(cmd, kw), _link_msg, cmd, kw)

    def addr(self, cmd: str, **kw: Any) -> list[Any]:
        req = addr_request(cmd, kw)
        msgs = self._either("addr", req, _addr_msg, cmd, kw)
        if req is None or "index" not in kw:
            return msgs
        return [m for m in msgs if m["index"] == kw["index"]]  # the kernel dumps every link's

    def route(self, cmd: str, **kw: Any) -> list[Any]:
        return self._either("route", route_request(cmd, kw), None, cmd, kw)

    def neigh(self, cmd: str, **kw: Any) -> list[Any]:
        return self._either("neigh", neigh_request(cmd, kw), _neigh_msg, cmd, kw)

    def _either(
        self, verb: str, req: Request | None, parse: Callable[[bytes], Msg] | None, cmd: str, kw: dict[str, Any]
    ) -> list[Any]:
        """``req`` sent here (replies parsed by ``parse``), or, with no ``req``, pyroute2's ``verb``."""
        if req is None:
            return list(_translated(getattr(self.slow(), verb))(cmd, **kw))
        replies = self.request(*req)
        return [parse(raw) for raw in replies] if parse is not None else []

    def request(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        """Send one request; its data replies (raw messages) once acknowledged or done."""
        self.counts["fast"] += 1
        self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
        self._sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, 0) + body)
        out: list[bytes] = []
        while True:
            data = self._sock.recv(_RECV)
            off = 0
            while off + NLMSGHDR.size <= len(data):
                length, mtype, _mflags, mseq, _pid = NLMSGHDR.unpack_from(data, off)
                if length < NLMSGHDR.size:
                    raise NetlinkError(0, f"malformed netlink reply (length {length})")
                if mseq == seq:
                    if mtype in (NLMSG_ERROR, NLMSG_DONE):
                        code = -struct.unpack_from("=i", data, off + 16)[0] if length >= 20 else 0
                        if code > 0:
                            raise NetlinkError(code, os.strerror(code))
                        return out
                    if mtype >= _FIRST_RTM:  # not NLMSG_NOOP / NLMSG_OVERRUN
                        out.append(data[off : off + length])
                off += (length + 3) & ~3

    def close(self) -> None:
        self._sock.close()
        if self._slow is not None:
            self._slow.close()
