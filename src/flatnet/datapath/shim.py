"""The node-side "shim": how a node reaches its own macvlan/ipvlan pods.

A macvlan/ipvlan parent never receives frames from its own children (kubernetes#41736), so
a node cannot talk to the pods it hosts over the parent. A sibling child on the same parent,
``fns-<hash(parent)>``, can: the node routes ``<pod ip>/32`` (and /128) out of it. It needs no
address: ARP requests from pods for the node's IPv4 address are answered on any link
(arp_ignore=0), and IPv6 solicitations for the node's addresses are answered through
proxy-NDP entries on the shim. The shim is shared by every pod on that parent and goes
with the last of them (the DEL that removes the last flatnet host route through it deletes
it); a file lock per (node netns, shim), shared by ADDs and exclusive for that last DEL,
keeps an ADD in another thread or process from routing through a shim being deleted.
ipvlan children all wear the parent's MAC, so a pod's ARP/NDP answer to the shim lands on the
parent instead: for ipvlan the shim gets a permanent neighbour entry per pod address (the
parent's MAC), removed with the pod's host routes.

The node's source address towards its pods (``sources``): the host routes carry a
``prefsrc``, else the kernel would pick the first address of the node's first link (a
management address the pod cannot answer on its segment). Chosen as for Service gateways
(``services``): an address of the node inside the pod's subnet (on the parent first), else
any global address of the node of that family (the parent's first). An address outside the
pod's subnet gets an on-link /32 (/128) route in the pod, so the pod's answer is resolved on
its own segment, where the shim answers (ARP for any local address; proxy NDP for v6). So
host -> pod works with no address added to the parent.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import functools
import ipaddress
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from flatnet import defaults, errors
from flatnet.datapath import addrs, links, neigh, netns, routes, sysctl
from flatnet.datapath.api import AttachSpec, IPAddress, IPInterface, Route
from flatnet.datapath.common import RTPROT_FLATNET, Undo, infra_lock, log, shim_name, translate
from flatnet.datapath.links import LinkInfo
from flatnet.datapath.rtnl import Handle
from flatnet.datapath.rtnlreq import NLMSGHDR, RTA_OIF, RTMSG, U32, attrs, dump_routes

#: where the per-(node netns, shim) file locks live (a reboot clears them, as it does the shims)
LOCK_DIR = f"{defaults.RUN_DIR}/infra"
LOCK_WAIT = 30.0


def ensure(host_ns: str | None, kind: str, parent: LinkInfo) -> int:
    """The shim link for ``parent`` (created and brought up if missing); its index.

    Node infrastructure: kept after the last pod and not undone when an ADD fails later,
    since another pod may already route through it.
    """
    name = shim_name(parent.name)
    with translate(f"looking up shim {name!r}", host_ns), netns.ipr(host_ns) as ip:
        found = links.find(ip, name)
    if found is not None and found.up and found.kind == kind:
        return found.index  # every ADD after the node's first: one netlink call, no lock
    attrs = links.child_attrs(kind, parent.index, parent.mtu, None)
    with infra_lock(host_ns):
        with translate(f"creating shim {name!r}", host_ns), netns.ipr(host_ns) as ip:
            fresh = links.lookup(ip, name) is None
            if fresh:  # created down: its sysctls must be set before it first comes up
                links.create(ip, kind, name, **attrs)
        if fresh:
            sysctl.set_many(host_ns, sysctl.shim_iface(name), missing_ok=True)
        with translate(f"bringing up shim {name!r}", host_ns), netns.ipr(host_ns) as ip:
            link, _ = links.ensure(ip, kind, name, **attrs)
    return link.index


def add_pod(
    host_ns: str | None,
    shim: int,
    parent: LinkInfo,
    pod_ips: list[IPAddress],
    undo: Undo,
    kind: str = "macvlan",
    src: dict[int, IPAddress] | None = None,
) -> None:
    """Host routes to the pod through the shim (from ``src``'s address of the family, see
    :func:`sources`), and proxy-NDP for the node's own v6 addresses."""
    src = src or {}
    with translate("adding host routes to the pod", host_ns), netns.ipr(host_ns) as ip:
        for addr in pod_ips:
            routes.add_host(ip, shim, addr, src.get(addr.version))
            undo.push(f"delete host route {addr}", functools.partial(remove_pod, host_ns, [addr]))
            if kind == "ipvlan":
                neigh.set_static(ip, shim, addr, parent.mac)
        if any(a.version == 6 for a in pod_ips):
            for node_addr in addrs.list_(ip, parent.index):
                if node_addr.version == 6:
                    neigh.add_proxy(ip, shim, node_addr.ip)
            if 6 in src:  # a source on another link: answered on the shim too
                neigh.add_proxy(ip, shim, src[6])


def remove_pod(host_ns: str | None, pod_ips: list[IPAddress]) -> None:
    """Remove flatnet's host routes to ``pod_ips`` (idempotent; missing host netns is fine)."""
    if not pod_ips or not netns.exists(host_ns):
        return
    with translate("removing host routes to the pod", host_ns), netns.ipr(host_ns) as ip:
        for addr in pod_ips:
            routes.del_host(ip, addr)
            neigh.drop_static(ip, addr)  # the ipvlan shim's entry (none for macvlan)


def missing_routes(host_ns: str | None, parent: str, pod_ips: list[IPAddress]) -> list[str]:
    """What of the node side is missing for these pod addresses (for CHECK)."""
    name = shim_name(parent)
    with translate("inspecting the shim", host_ns), netns.ipr(host_ns) as ip:
        index = links.lookup(ip, name)
        if index is None:
            return [f"shim link {name!r} on parent {parent!r}"]
        have = {(r.dst.network_address, r.dst.prefixlen) for r in routes.list_(ip, index) if r.proto == RTPROT_FLATNET}
    return [f"host route {a}/{a.max_prefixlen} via {name}" for a in pod_ips if (a, a.max_prefixlen) not in have]


# ---- the shim's lifetime: one lock per (node netns, shim); gone with its last pod ----


def _lock_path(host_ns: str | None, name: str) -> str:
    """One lock file per netns *and* shim: the netns is named by its inode, so an agent that
    calls it "fn-node1" and a plugin that calls it /run/netns/fn-node1 share one lock."""
    st = os.stat(netns.ns_path(host_ns) or "/proc/self/ns/net")
    return os.path.join(LOCK_DIR, f"{name}-{st.st_dev}-{st.st_ino}.lock")


def _flock(fd: int, exclusive: bool, wait: float) -> bool:
    """Take the flock on ``fd`` within ``wait`` seconds (bounded backoff); False if not."""
    deadline, delay = time.monotonic() + wait, 0.002
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


@contextmanager
def holding(host_ns: str | None, parent: str, exclusive: bool, wait: float = LOCK_WAIT) -> Iterator[bool]:
    """Hold the shim's lock (shared: an ADD routing through it; exclusive: a DEL that may
    delete it). Yields False when ``wait`` ran out (the caller decides what that means)."""
    os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
    fd = os.open(_lock_path(host_ns, shim_name(parent)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        yield _flock(fd, exclusive, wait)
    finally:
        os.close(fd)  # closing drops the flock


@contextmanager
def in_use(host_ns: str | None, parent: str) -> Iterator[None]:
    """Around an ADD's ensure + add_pod: the shim cannot be retired meanwhile."""
    with holding(host_ns, parent, exclusive=False) as held:
        if not held:
            raise errors.DatapathError(
                f"shim {shim_name(parent)!r} stayed locked for {LOCK_WAIT:.0f}s (its last pod is being removed?); "
                "try again",
                code=errors.TRY_AGAIN_LATER,
            )
        yield


#: AttachSpec.options key: DEL leaves a shim its last pod left to ``retire_idle`` (the agent's
#: reconciler), instead of deleting it at once. A shim costs the node one link; deleting it
#: costs a DEL a kernel RCU wait (~25 ms on the test VM) and the node's next ADD a new shim,
#: which is most of a pod restart's network time on a node whose only pod it is.
KEEP_IDLE = "keepIdleShim"

_idle: set[tuple[str | None, str]] = set()  # (host netns, parent) whose last pod may be gone
_idle_lock = threading.Lock()


def leave_idle(host_ns: str | None, parent: str) -> None:
    """Remember that ``parent``'s shim may have lost its last pod (``retire_idle`` checks)."""
    with _idle_lock:
        _idle.add((host_ns, parent))


def retire_idle() -> list[str]:
    """Retire every shim left by ``leave_idle`` that still has no pod; the names retired.

    A shim that got a pod again is forgotten too (its next last DEL remembers it anew)."""
    with _idle_lock:
        todo = sorted(_idle, key=str)
        _idle.clear()
    done = []
    for host_ns, parent in todo:
        try:
            if retire_if_unused(host_ns, parent):
                done.append(shim_name(parent))
        except errors.DatapathError as exc:
            log.warning("could not retire the idle shim of %s (retried next pass): %s", parent, exc.msg)
            leave_idle(host_ns, parent)
    return done


def retire_if_unused(host_ns: str | None, parent: str) -> bool:
    """Delete ``parent``'s shim when no flatnet host route goes through it any more (the DEL
    of its last pod). True if deleted. A busy lock means an ADD is using it: kept."""
    if not netns.exists(host_ns):
        return False
    name = shim_name(parent)
    with holding(host_ns, parent, exclusive=True, wait=2.0) as held:
        if not held:
            return False
        with translate(f"retiring shim {name!r}", host_ns), netns.ipr(host_ns) as ip:
            index = links.lookup(ip, name)
            if index is None:
                return False
            if _has_flatnet_route(ip, index):
                return False
            log.info("deleting shim %s: its last pod is gone", name)
            return links.delete_index(ip, index)


def _has_flatnet_route(ip: Handle, index: int) -> bool:
    """Whether a flatnet host route (proto 201, main table) leaves through link ``index``.

    Every DEL asks, so it reads the raw route dump itself: ``routes.list_`` decodes each
    route into objects, ~1.1 s for the 2,000 host routes of a node with 1,000 dual-stack
    pods on the test VM; this reads two header fields and one attribute per route.
    """
    for raw in ip.request(dump_routes(0)):  # AF_UNSPEC: both families
        _fam, _dl, _sl, _tos, table, proto, _scope, _type, _flags = RTMSG.unpack_from(raw, NLMSGHDR.size)
        if proto != RTPROT_FLATNET or table != routes.MAIN_TABLE:
            continue
        oif = attrs(raw, NLMSGHDR.size + RTMSG.size).get(RTA_OIF)
        if oif is not None and U32.unpack(oif[:4])[0] == index:
            return True
    return False


# ---- the node's source address towards its pods ----


_IFA_F_DADFAILED, _IFA_F_TENTATIVE = 0x08, 0x40
_RT_SCOPE_UNIVERSE = 0


def _usable(ip: Handle, parent: int) -> list[IPInterface]:
    """The node's global addresses a route may take as source now, the parent's first (one
    dump of every link's addresses). Not one still tentative (IPv6 DAD running) or that
    failed DAD: the kernel refuses such a ``prefsrc``."""
    found: list[tuple[bool, int, IPInterface]] = []
    for a in ip.dump_addrs():
        if a.scope != _RT_SCOPE_UNIVERSE or a.flags & (_IFA_F_DADFAILED | _IFA_F_TENTATIVE):
            continue
        if a.address is not None:
            iface = a.iface
            if not iface.ip.is_link_local and not iface.ip.is_loopback:
                found.append((a.index != parent, a.index, iface))
    return [iface for _other, _index, iface in sorted(found, key=lambda f: (f[0], f[1]))]


def sources(spec: AttachSpec, parent: LinkInfo) -> dict[int, IPAddress]:
    """Per IP family of the pod, the node address the host routes take as source (module doc)."""
    with translate("choosing the node's source address", spec.host_netns), netns.ipr(spec.host_netns) as ip:
        mine = _usable(ip, parent.index)
    pod_ips = {a.ip for a in spec.addresses}
    out: dict[int, IPAddress] = {}
    for fam in sorted({a.version for a in spec.addresses}):
        nets = [a.network for a in spec.addresses if a.version == fam]
        cands = [a for a in mine if a.version == fam and a.ip not in pod_ips]
        inside = next((a.ip for a in cands if any(a.ip in n for n in nets)), None)
        chosen = inside if inside is not None else (cands[0].ip if cands else None)
        if chosen is not None:
            out[fam] = chosen
    return out


def with_onlink_sources(spec: AttachSpec, src: dict[int, IPAddress]) -> AttachSpec:
    """``spec`` plus a pod route to each source outside the pod's subnets (on its own link)."""
    extra = []
    for addr in src.values():
        dst = ipaddress.ip_network(f"{addr}/{addr.max_prefixlen}")
        if any(addr in a.network for a in spec.addresses) or any(r.dst == dst for r in spec.routes):
            continue
        extra.append(Route(dst=dst))
    return dataclasses.replace(spec, routes=tuple(spec.routes) + tuple(extra)) if extra else spec
