"""Route steps over an open ``rtnl.Handle`` (main table only), through its typed verbs.

Routes flatnet installs in the node's netns carry protocol ``RTPROT_FLATNET`` so DEL and
CHECK can recognise them; pod routes come straight from the IPAM result (``spec.routes``).
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass

from flatnet.datapath import rtnl
from flatnet.datapath.api import IPAddress, IPNetwork, Route
from flatnet.datapath.common import RTPROT_FLATNET
from flatnet.datapath.rtnl import Handle, NetlinkError

MAIN_TABLE = 254
RTPROT_KERNEL = 2
RTN_UNICAST = 1
RT_SCOPE_LINK = 253
RTNH_F_ONLINK = 4
_MAX_DUPLICATE_HOST_ROUTES = 16
_GONE = (errno.ESRCH, errno.ENOENT, errno.ENODEV)


@dataclass(frozen=True)
class RouteEntry:
    """One main-table unicast route as read back from the kernel."""

    dst: IPNetwork
    gw: IPAddress | None
    oif: int | None
    proto: int
    priority: int | None
    scope: int
    prefsrc: str | None


def add(ip: Handle, index: int, route: Route) -> None:
    """Add ``route`` out of link ``index``; an identical existing route is fine."""
    if route.gw is not None:
        flags = RTNH_F_ONLINK if route.onlink else 0
        want = rtnl.Route(str(route.dst), oif=index, gateway=str(route.gw), flags=flags)
    else:
        want = rtnl.Route(str(route.dst), oif=index, scope=RT_SCOPE_LINK if route.dst.version == 4 else 0)
    try:
        ip.add_route(want)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


def host_route_dst(addr: IPAddress) -> str:
    """``addr`` as a /32 or /128 destination."""
    return f"{addr}/{addr.max_prefixlen}"


def _host(addr: IPAddress, oif: int | None = None, src: IPAddress | None = None) -> rtnl.Route:
    scope = RT_SCOPE_LINK if addr.version == 4 else 0
    prefsrc = str(src) if src is not None else None
    return rtnl.Route(host_route_dst(addr), oif=oif, proto=RTPROT_FLATNET, scope=scope, prefsrc=prefsrc)


def add_host(ip: Handle, index: int, addr: IPAddress, src: IPAddress | None = None) -> None:
    """Node route ``addr/32`` (or /128) straight out of link ``index``, tagged as ours;
    ``src``: the node's source address towards it (``prefsrc``)."""
    try:
        ip.replace_route(_host(addr, index, src))
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


def del_host(ip: Handle, addr: IPAddress) -> bool:
    """Remove our host route(s) to ``addr`` if present; True if one was removed (idempotent).

    Deleted by key (dst, proto ours, and for IPv4 the link scope add_host gives it): the
    kernel finds the route itself, so the cost does not grow with the node's route count (a
    dump-and-filter here made every DEL O(routes) on a node with a thousand pods).
    """
    removed = False
    for _ in range(_MAX_DUPLICATE_HOST_ROUTES):  # one per link; a few at most, bounded
        try:
            ip.del_route(_host(addr))
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise
            return removed
        removed = True
    return removed


def list_(ip: Handle, index: int | None, family: int | None = None) -> list[RouteEntry]:
    """Main-table unicast routes, optionally only those out of link ``index``."""
    out: list[RouteEntry] = []
    for r in ip.dump_routes():
        if r.type != RTN_UNICAST or r.table != MAIN_TABLE:
            continue
        fam = 6 if r.family == 10 else 4
        if family is not None and fam != family:
            continue
        if index is not None and r.oif != index:
            continue
        out.append(
            RouteEntry(
                dst=ipaddress.ip_network(r.dst, strict=False),
                gw=ipaddress.ip_address(r.gateway) if r.gateway else None,
                oif=r.oif,
                proto=r.proto or 0,
                priority=r.priority,
                scope=r.scope,
                prefsrc=r.prefsrc,
            )
        )
    return out


def readd_on(ip: Handle, entry: RouteEntry, index: int) -> None:
    """Recreate ``entry`` out of link ``index`` (used to move a node's routes to its bridge)."""
    gw = str(entry.gw) if entry.gw is not None else None
    want = rtnl.Route(
        str(entry.dst),
        oif=index,
        gateway=gw,
        priority=entry.priority,
        prefsrc=entry.prefsrc or None,
        proto=entry.proto,
        scope=entry.scope,
    )
    try:
        ip.add_route(want)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


def remove(ip: Handle, entry: RouteEntry) -> None:
    """Delete ``entry`` if still present (idempotent)."""
    gw = str(entry.gw) if entry.gw is not None else None
    try:
        ip.del_route(rtnl.Route(str(entry.dst), oif=entry.oif, gateway=gw, priority=entry.priority, scope=entry.scope))
    except NetlinkError as exc:
        if exc.code not in _GONE:
            raise
