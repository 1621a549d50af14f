"""Link steps over an open ``rtnl.Handle``: look up, create, move, rename, delete.

Functions take a ``Handle`` bound to the right netns (``netns.ipr(ns)``) and call its typed
verbs; kinds the verbs do not make (bridge, vlan, vxlan) are asked of pyroute2 explicitly
(``Handle.pyroute2()``). Raw netlink/OS errors escape; callers wrap them in
``common.translate`` so the message names the step and the namespace. Creation of a link
*kind* the kernel lacks is turned into ``KernelFeatureMissing`` here, because only here do we
know which kind was asked for.
"""

from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager
from typing import Iterator

from flatnet import errors
from flatnet.datapath import kernel
from flatnet.datapath.common import feature_missing, ns_label
from flatnet.datapath.rtnl import Handle, LinkInfo, NetlinkError
from flatnet.datapath.rtnlreq import ChildKind

__all__ = ["LinkInfo"]  # re-exported: the mode modules plan with it

# errno values the kernel answers when a link kind is not compiled in or not loadable
_NO_KIND = (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EAFNOSUPPORT, errno.ENOENT)


def indexes(ip: Handle) -> dict[str, int]:
    """Name -> index of every link in ``ip``'s netns (one dump; for a netns with few links,
    such as a pod's, where it replaces several lookups by name)."""
    return {link.name: link.index for link in ip.dump_links()}


def lookup(ip: Handle, name: str) -> int | None:
    """Index of link ``name`` or None."""
    found = ip.get_link(name)
    return found.index if found is not None else None


def info(ip: Handle, index: int) -> LinkInfo:
    """Read a link's kind, MTU, MAC, master and admin state."""
    found = ip.get_link(index)
    if found is None:
        raise NetlinkError(errno.ENODEV)
    return found


def find(ip: Handle, name: str) -> LinkInfo | None:
    """LinkInfo of ``name`` or None when it does not exist."""
    return ip.get_link(name)


def require(ip: Handle, name: str, ns: str | None, role: str = "master") -> LinkInfo:
    """The link ``name``, or ParentMissing naming the link and the netns."""
    found = find(ip, name)
    if found is None:
        raise errors.ParentMissing(
            f"{role} link {name!r} does not exist in {ns_label(ns)}; "
            f"create it or fix the '{role}' field of the network config"
        )
    return found


@contextmanager
def _named_kind(kind: str) -> Iterator[None]:
    """A refusal for a kind the kernel lacks as KernelFeatureMissing (config option, module)."""
    try:
        yield
    except NetlinkError as exc:
        feature = kernel.for_kind(kind)
        if exc.code in _NO_KIND and feature is not None:
            raise feature_missing(kind, feature.config, feature.module or kind) from exc
        raise


def create(ip: Handle, kind: str, name: str, **attrs: object) -> int:
    """Create a link of ``kind`` and return its index; missing kernel support is named.

    A macvlan/ipvlan child (``attrs`` from ``child_attrs``) is one ``add_child``; any other kind
    (bridge, vlan, vxlan: ``attrs`` are pyroute2's ``link("add")`` arguments) is pyroute2's.
    """
    attrs = {k: v for k, v in attrs.items() if v is not None}
    if kind in ("macvlan", "ipvlan"):
        parent, mtu, mac = attrs.get("link"), attrs.get("mtu"), attrs.get("address")
        if not isinstance(parent, int) or set(attrs) - {"link", "mtu", "address"}:
            raise errors.DatapathError(f"a {kind} link is made from child_attrs(), not {sorted(attrs)}")
        return create_child(ip, kind, name, parent, mtu if isinstance(mtu, int) else None, str(mac) if mac else None)
    with _named_kind(kind):
        ip.pyroute2().link("add", ifname=name, kind=kind, **attrs)
    index = lookup(ip, name)
    if index is None:  # pragma: no cover - kernel said yes but the link is gone
        raise errors.DatapathError(f"{kind} link {name!r} vanished right after creation")
    return index


def child_kind(kind: str) -> ChildKind:
    """``kind`` checked to be one ``add_child`` makes."""
    if kind == "macvlan":
        return "macvlan"
    if kind == "ipvlan":
        return "ipvlan"
    raise errors.ConfigError(f"unknown child link kind {kind!r}")


def child_attrs(kind: str, parent: int, mtu: int | None, mac: str | None) -> dict[str, object]:
    """``create``'s attributes of a macvlan (bridge mode) or ipvlan (L2 mode) child of ``parent``."""
    child_kind(kind)
    return {"link": parent, "mtu": mtu, "address": mac if kind == "macvlan" else None}


def create_child(ip: Handle, kind: str, name: str, parent: int, mtu: int | None, mac: str | None) -> int:
    """A macvlan (bridge mode) or ipvlan (L2 mode) child of ``parent`` here; its index."""
    with _named_kind(kind):
        ip.add_child(child_kind(kind), name, parent, mtu=mtu, mac=mac if kind == "macvlan" else None)
    index = lookup(ip, name)
    if index is None:  # pragma: no cover - kernel said yes but the link is gone
        raise errors.DatapathError(f"{kind} link {name!r} vanished right after creation")
    return index


@contextmanager
def netns_fd(ns_path: str) -> Iterator[int]:
    """An open fd of the netns at ``ns_path``, for IFLA_NET_NS_FD."""
    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def create_child_in(
    ip: Handle, kind: str, name: str, parent: int, mtu: int | None, mac: str | None, ns_path: str
) -> None:
    """A macvlan/ipvlan child of ``parent`` (in ``ip``'s netns) born inside netns ``ns_path``.

    Creating it there directly (IFLA_NET_NS_FD on RTM_NEWLINK) instead of creating it here and
    moving it skips the kernel's netns move, which waits for an RCU grace period: 1 ms
    instead of ~16 ms per pod on this project's test machine.
    """
    with netns_fd(ns_path) as fd, _named_kind(kind):
        ip.add_child(child_kind(kind), name, parent, mtu=mtu, mac=mac if kind == "macvlan" else None, netns_fd=fd)


def create_veth_into(ip: Handle, name: str, peer: str, mtu: int | None, ns_path: str) -> None:
    """veth ``name`` here whose peer ``peer`` is born inside netns ``ns_path`` (no move)."""
    with netns_fd(ns_path) as fd, _named_kind("veth"):
        ip.add_veth(name, peer, mtu=mtu, peer_netns_fd=fd)


def ensure(ip: Handle, kind: str, name: str, **attrs: object) -> tuple[LinkInfo, bool]:
    """Link ``name`` of ``kind``, created if missing, up; (link, created by this call).

    Shared node links (bridge, shim, VLAN sub-interface) are ensured, never assumed: a
    concurrent creator (EEXIST) is fine, a same-named link of another kind is an error.
    """
    created = False
    existing = find(ip, name)
    if existing is None:
        try:
            create(ip, kind, name, **attrs)
            created = True
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise
        existing = find(ip, name)
    if existing is None:
        raise errors.DatapathError(f"{kind} link {name!r} vanished while being set up; retry")
    if existing.kind != kind:
        raise errors.DatapathError(
            f"link {name!r} exists but is a {existing.kind or 'plain'} link, not {kind}; "
            "rename or remove it, or configure another name"
        )
    if existing.up:
        return existing, created
    set_up(ip, existing.index)
    return info(ip, existing.index), created


def ensure_vlan(ip: Handle, master: LinkInfo, name: str, vlan: int) -> tuple[LinkInfo, bool]:
    """The 802.1Q sub-interface ``name`` on ``master``, created if needed; (link, created)."""
    return ensure(ip, "vlan", name, link=master.index, vlan_id=vlan)


def delete(ip: Handle, name: str) -> bool:
    """Delete link ``name`` if present; True if something was deleted (idempotent)."""
    index = lookup(ip, name)
    if index is None:
        return False
    return delete_index(ip, index)


def delete_index(ip: Handle, index: int) -> bool:
    """Delete link #``index`` if still present; True if something was deleted (idempotent)."""
    try:
        ip.del_link(index)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return False
        raise
    return True


def set_up(ip: Handle, index: int) -> None:
    ip.set_link(index, up=True)


BR_STATE_FORWARDING = 3


def await_forwarding(ip: Handle, index: int, timeout: float = 1.0) -> bool:
    """Wait until bridge port #``index`` forwards; False if it does not within ``timeout``.

    A veth port gets its carrier when the pod's end comes up, but the bridge hears of it
    later, from the kernel's link-watch work: frames the pod sends meanwhile (its ARP/NA
    announcements) are dropped at the port. Bounded: a bridge running STP keeps a new port
    in listening/learning for seconds, and an announcement is worth no longer a wait.
    """
    deadline = time.monotonic() + timeout
    while True:
        link = ip.get_link(index)
        if link is not None and link.port_state == BR_STATE_FORWARDING:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)
