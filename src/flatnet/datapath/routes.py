"""Route steps over an open pyroute2 handle (main table only).

Routes flatnet installs in the node's netns carry protocol ``RTPROT_FLATNET`` so DEL and
CHECK can recognise them; pod routes come straight from the IPAM result (``spec.routes``).
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass


from flatnet.datapath.rtnl import Handle, NetlinkError
from flatnet.datapath.api import IPAddress, IPNetwork, Route
from flatnet.datapath.common import RTPROT_FLATNET

MAIN_TABLE = 254
RTPROT_KERNEL = 2
RTN_UNICAST = 1
RT_SCOPE_LINK = 253
RTNH_F_ONLINK = 4
_MAX_DUPLICATE_HOST_ROUTES = 16


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


def _dst(route: Route) -> str:
    return str(route.dst)


def add(ip: Handle, index: int, route: Route) -> None:
    """Add ``route`` out of link ``index``; an identical existing route is fine."""
    kwargs: dict = {"dst": _dst(route), "oif": index}
    if route.gw is not None:
        kwargs["gateway"] = str(route.gw)
        if route.onlink:
            kwargs["flags"] = RTNH_F_ONLINK
    else:
        kwargs["scope"] = RT_SCOPE_LINK if route.dst.version == 4 else 0
    try:
        ip.route("add", **kwargs)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


def host_route_dst(addr: IPAddress) -> str:
    """``addr`` as a /32 or /128 destination."""
    return f"{addr}/{addr.max_prefixlen}"


def add_host(ip: Handle, index: int, addr: IPAddress, src: IPAddress | None = None) -> None:
    """Node route ``addr/32`` (or /128) straight out of link ``index``, tagged as ours;
    ``src``: the node's source address towards it (``prefsrc``)."""
    kwargs: dict = {"dst": host_route_dst(addr), "oif": index, "proto": RTPROT_FLATNET}
    if src is not None:
        kwargs["prefsrc"] = str(src)
    if addr.version == 4:
        kwargs["scope"] = RT_SCOPE_LINK
    try:
        ip.route("replace", **kwargs)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


def del_host(ip: Handle, addr: IPAddress) -> bool:
    """Remove our host route(s) to ``addr`` if present; True if one was removed (idempotent).

    Deleted by key (dst, proto ours, and for IPv4 the link scope add_host gives it): the
    kernel finds the route itself, so the cost does not grow with the node's route count (a
    dump-and-filter here made every DEL O(routes) on a node with a thousand pods).
    """
    kwargs: dict = {"dst": host_route_dst(addr), "proto": RTPROT_FLATNET, "table": MAIN_TABLE}
    if addr.version == 4:
        kwargs["scope"] = RT_SCOPE_LINK
    removed = False
    for _ in range(_MAX_DUPLICATE_HOST_ROUTES):  # one per link; a few at most, bounded
        try:
            ip.route("del", **kwargs)
        except NetlinkError as exc:
            if exc.code not in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
                raise
            return removed
        removed = True
    return removed


def list_(ip: Handle, index: int | None, family: int | None = None) -> list[RouteEntry]:
    """Main-table unicast routes, optionally only those out of link ``index``."""
    out: list[RouteEntry] = []
    for msg in ip.route("dump", table=MAIN_TABLE):
        if msg["type"] != RTN_UNICAST or msg.get("table") != MAIN_TABLE:
            continue
        fam = 4 if msg["family"] == 2 else 6
        if family is not None and fam != family:
            continue
        oif = msg.get("oif")
        if index is not None and oif != index:
            continue
        dst = msg.get("dst") or ("0.0.0.0" if fam == 4 else "::")
        gw = msg.get("gateway")
        out.append(
            RouteEntry(
                dst=ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False),
                gw=ipaddress.ip_address(gw) if gw else None,
                oif=oif,
                proto=msg["proto"],
                priority=msg.get("priority"),
                scope=msg["scope"],
                prefsrc=msg.get("prefsrc"),
            )
        )
    return out


def readd_on(ip: Handle, entry: RouteEntry, index: int) -> None:
    """Recreate ``entry`` out of link ``index`` (used to move a node's routes to its bridge)."""
    kwargs: dict = {"dst": str(entry.dst), "oif": index, "proto": entry.proto, "scope": entry.scope}
    if entry.gw is not None:
        kwargs["gateway"] = str(entry.gw)
    if entry.priority is not None:
        kwargs["priority"] = entry.priority
    if entry.prefsrc:
        kwargs["prefsrc"] = entry.prefsrc
    try:
        ip.route("add", **kwargs)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


def remove(ip: Handle, entry: RouteEntry) -> None:
    """Delete ``entry`` if still present (idempotent)."""
    kwargs: dict = {"dst": str(entry.dst), "oif": entry.oif, "scope": entry.scope}
    if entry.gw is not None:
        kwargs["gateway"] = str(entry.gw)
    if entry.priority is not None:
        kwargs["priority"] = entry.priority
    try:
        ip.route("del", **kwargs)
    except NetlinkError as exc:
        if exc.code not in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
            raise
