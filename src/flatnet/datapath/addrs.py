"""Address steps over an open ``rtnl.Handle`` (the short netlink path, pyroute2 behind it).

IPv6 addresses are added with IFA_F_NODAD: a pod address comes from IPAM, so it is unique by
construction, and waiting ~1-2 s for Duplicate Address Detection would delay every pod start
(and make the address unusable right after ADD returns).
"""

from __future__ import annotations

import errno
import ipaddress


from flatnet.datapath.rtnl import Handle, NetlinkError
from flatnet.datapath.api import IPInterface

IFA_F_NODAD = 0x02
RT_SCOPE_UNIVERSE = 0


def add(ip: Handle, index: int, iface: IPInterface) -> None:
    """Add ``iface`` (address + prefix) to link ``index``; an identical address is fine."""
    kwargs: dict = {"index": index, "address": str(iface.ip), "prefixlen": iface.network.prefixlen}
    if iface.version == 6:
        kwargs["flags"] = IFA_F_NODAD
    elif iface.network.prefixlen < 31:
        kwargs["broadcast"] = str(iface.network.broadcast_address)
    try:
        ip.addr("add", **kwargs)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


def remove(ip: Handle, index: int, iface: IPInterface) -> None:
    """Remove ``iface`` from link ``index`` if present (idempotent)."""
    try:
        ip.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    except NetlinkError as exc:
        if exc.code not in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
            raise


def list_(ip: Handle, index: int, global_only: bool = True) -> list[IPInterface]:
    """Addresses on link ``index``; by default only global scope (no link-local, no host)."""
    out: list[IPInterface] = []
    for msg in ip.addr("dump", index=index):
        if global_only and msg["scope"] != RT_SCOPE_UNIVERSE:
            continue
        addr = msg.get("address")
        if addr is None:
            continue
        iface = ipaddress.ip_interface(f"{addr}/{msg['prefixlen']}")
        if global_only and iface.version == 6 and iface.ip.is_link_local:
            continue
        out.append(iface)
    return out
