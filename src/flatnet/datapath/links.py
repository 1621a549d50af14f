"""Link steps over an open ``rtnl.Handle``: look up, create, move, rename, delete.

Functions take a ``Handle`` bound to the right netns (``netns.ipr(ns)``: the short netlink
path, pyroute2 behind it for what that path does not encode) and raw netlink/OS errors escape; callers wrap them in ``common.translate`` so the message names
the step and the namespace. Creation of a link *kind* the kernel lacks is turned into
``KernelFeatureMissing`` here, because only here do we know which kind was asked for.
"""

from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator


from flatnet.datapath.rtnl import Handle, NetlinkError
from flatnet import errors
from flatnet.datapath import kernel
from flatnet.datapath.common import feature_missing, ns_label

# errno values the kernel answers when a link kind is not compiled in or not loadable
_NO_KIND = (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EAFNOSUPPORT, errno.ENOENT)


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


def _get_by_name(ip: Handle, name: str) -> Any | None:
    """The kernel's RTM_NEWLINK message for ``name``, or None (ENODEV).

    One RTM_GETLINK carrying IFLA_IFNAME: the kernel looks the name up itself. (pyroute2's
    ``link_lookup`` dumps every link and filters in Python: O(links), and a node with a
    thousand pod veths has a thousand links.)
    """
    try:
        return ip.link("get", ifname=name)[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def indexes(ip: Handle) -> dict[str, int]:
    """Name -> index of every link in ``ip``'s netns (one dump; for a netns with few links,
    such as a pod's, where it replaces several lookups by name)."""
    return {str(msg.get("ifname")): int(msg["index"]) for msg in ip.link("dump")}


def lookup(ip: Handle, name: str) -> int | None:
    """Index of link ``name`` or None."""
    msg = _get_by_name(ip, name)
    return int(msg["index"]) if msg is not None else None


def info(ip: Handle, index: int) -> LinkInfo:
    """Read a link's kind, MTU, MAC, master and admin state."""
    return _info(ip.link("get", index=index)[0])


def _info(msg: Any) -> LinkInfo:
    index = int(msg["index"])
    return LinkInfo(
        index=index,
        name=msg.get("ifname"),
        kind=msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
        mtu=int(msg.get("mtu")),
        mac=str(msg.get("address") or ""),
        master=msg.get("master") or None,
        up=bool(msg["flags"] & 1),
    )


def find(ip: Handle, name: str) -> LinkInfo | None:
    """LinkInfo of ``name`` or None when it does not exist."""
    msg = _get_by_name(ip, name)
    return _info(msg) if msg is not None else None


def require(ip: Handle, name: str, ns: str | None, role: str = "master") -> LinkInfo:
    """The link ``name``, or ParentMissing naming the link and the netns."""
    found = find(ip, name)
    if found is None:
        raise errors.ParentMissing(
            f"{role} link {name!r} does not exist in {ns_label(ns)}; "
            f"create it or fix the '{role}' field of the network config"
        )
    return found


def _add(ip: Handle, kind: str, name: str, attrs: dict[str, object]) -> None:
    attrs = {k: v for k, v in attrs.items() if v is not None}
    try:
        ip.link("add", ifname=name, kind=kind, **attrs)
    except NetlinkError as exc:
        feature = kernel.for_kind(kind)  # the config option and module to name
        if exc.code in _NO_KIND and feature is not None:
            raise feature_missing(kind, feature.config, feature.module or kind) from exc
        raise


def create(ip: Handle, kind: str, name: str, **attrs: object) -> int:
    """Create a link of ``kind`` and return its index; missing kernel support is named."""
    _add(ip, kind, name, attrs)
    index = lookup(ip, name)
    if index is None:  # pragma: no cover - kernel said yes but the link is gone
        raise errors.DatapathError(f"{kind} link {name!r} vanished right after creation")
    return index


def child_attrs(kind: str, parent: int, mtu: int | None, mac: str | None) -> dict:
    """Netlink attributes of a macvlan (bridge mode) or ipvlan (L2 mode) child of ``parent``."""
    if kind == "macvlan":
        return {"link": parent, "macvlan_mode": "bridge", "mtu": mtu, "address": mac}
    if kind == "ipvlan":
        return {"link": parent, "ipvlan_mode": 0, "mtu": mtu}  # 0 = IPVLAN_MODE_L2
    raise errors.ConfigError(f"unknown child link kind {kind!r}")


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
    with netns_fd(ns_path) as fd:
        _add(ip, kind, name, {**child_attrs(kind, parent, mtu, mac), "net_ns_fd": fd})


def create_veth_into(ip: Handle, name: str, peer: str, mtu: int | None, ns_path: str) -> None:
    """veth ``name`` here whose peer ``peer`` is born inside netns ``ns_path`` (no move)."""
    with netns_fd(ns_path) as fd:
        _add(ip, "veth", name, {"mtu": mtu, "peer": {"ifname": peer, "mtu": mtu, "net_ns_fd": fd}})


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
        ip.link("del", index=index)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return False
        raise
    return True


def set_up(ip: Handle, index: int) -> None:
    ip.link("set", index=index, state="up")


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
        msg = ip.link("get", index=index)[0]
        if msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA", "IFLA_BRPORT_STATE") == BR_STATE_FORWARDING:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)
