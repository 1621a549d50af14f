"""Address steps over an open ``rtnl.Handle`` (its typed verbs: the short netlink path).

IPv6 addresses are added with IFA_F_NODAD: a pod address comes from IPAM, so it is unique by
construction, and waiting ~1-2 s for Duplicate Address Detection would delay every pod start
(and make the address unusable right after ADD returns).
"""

from __future__ import annotations

import errno

from flatnet.datapath.api import IPInterface
from flatnet.datapath.rtnl import Handle, NetlinkError

IFA_F_NODAD = 0x02
RT_SCOPE_UNIVERSE = 0


def add(ip: Handle, index: int, iface: IPInterface) -> None:
    """Add ``iface`` (address + prefix) to link ``index``; an identical address is fine."""
    v6 = iface.version == 6
    broadcast = iface.network.broadcast_address if not v6 and iface.network.prefixlen < 31 else None
    try:
        ip.add_addr(index, iface, broadcast=broadcast, flags=IFA_F_NODAD if v6 else 0)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


def remove(ip: Handle, index: int, iface: IPInterface) -> None:
    """Remove ``iface`` from link ``index`` if present (idempotent)."""
    try:
        ip.del_addr(index, iface)
    except NetlinkError as exc:
        if exc.code not in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
            raise


def list_(ip: Handle, index: int, global_only: bool = True) -> list[IPInterface]:
    """Addresses on link ``index``; by default only global scope (no link-local, no host)."""
    out: list[IPInterface] = []
    for msg in ip.dump_addrs(index):
        if global_only and msg.scope != RT_SCOPE_UNIVERSE:
            continue
        if msg.address is None:
            continue
        iface = msg.iface
        if global_only and iface.version == 6 and iface.ip.is_link_local:
            continue
        out.append(iface)
    return out
