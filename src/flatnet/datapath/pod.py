"""The container side of every mode: name, MTU, MAC, addresses, routes, announcements.

Each mode only differs in *how* a link arrives in the container netns (a macvlan/ipvlan
child moved in, or the peer of a veth); from then on the steps are the same, so they live
here once. Also CHECK's reading of the container side and DEL's removal of it.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Callable

from flatnet import errors
from flatnet.datapath import addrs, firsthop, links, neigh, netns, routes, sysctl
from flatnet.datapath.api import AttachSpec, IPAddress
from flatnet.datapath.common import Undo, ns_label, tmp_name, translate


def check_absent(spec: AttachSpec, ns_path: str) -> None:
    """InterfaceExists if ``spec.ifname`` is already in the container netns (left untouched).

    A link still carrying this attachment's temporary name is the remains of an ADD that was
    killed before the rename; it is removed so the new ADD can move its own link in.
    """
    with translate(f"looking up {spec.ifname!r}", ns_path), netns.ipr(ns_path) as ip:
        present = links.indexes(ip)  # one dump: a fresh pod netns holds little more than lo
        if spec.ifname in present:
            raise errors.InterfaceExists(
                f"interface {spec.ifname!r} already exists in container netns {ns_path}; "
                "pick another ifname (CNI_IFNAME) or DEL the previous attachment first"
            )
        tmp = tmp_name(spec.container_id, spec.ifname)
        if tmp in present:
            links.delete_index(ip, present[tmp])


def adopt(
    spec: AttachSpec,
    ns_path: str,
    tmp: str,
    mac: str | None,
    undo: Undo,
    node_side: Callable[[], None] | None = None,
    before_announce: Callable[[], None] | None = None,
    first_hop: bool = False,
) -> tuple[str, int]:
    """Turn link ``tmp`` (just moved into the container netns) into the configured pod iface.

    Returns (mac, mtu) as the kernel reports them. Registers the link's removal on ``undo``.
    ``node_side`` (the mode's node-side steps that need no MAC) runs once the addresses are
    set and before ``spec.address_gate``: the conflict probe's wait overlaps it too.
    ``before_announce`` runs once the link is up, before the announcements: where the
    pod's frames need the node side to be ready too (a bridge port), it waits for that.
    ``first_hop``: the flat modes' egress filter (datapath/firsthop.py) goes on while the link
    is down, and is completed with the link-local address once it is up, before announcing.
    """
    with translate(f"configuring {spec.ifname!r}", ns_path), netns.ipr(ns_path) as ip:
        arrived = links.find(ip, tmp)
        if arrived is None:
            raise errors.DatapathError(f"link {tmp!r} did not arrive in container netns {ns_path}")
        index = arrived.index
        undo.push(f"delete pod link #{index}", lambda: _delete_index(ns_path, index))
        try:
            ip.set_link(index, name=spec.ifname)
        except Exception as exc:
            if links.lookup(ip, spec.ifname) is not None:
                raise errors.InterfaceExists(
                    f"interface {spec.ifname!r} appeared in container netns {ns_path} during ADD"
                ) from exc
            raise
        if mac:
            ip.set_link(index, mac=mac)
    sysctl.set_many(ns_path, sysctl.pod_iface(spec.ifname), missing_ok=True)
    with translate(f"addressing {spec.ifname!r}", ns_path), netns.ipr(ns_path) as ip:
        for iface in spec.addresses:
            addrs.add(ip, index, iface)
    final_mac = (mac or arrived.mac).lower()
    policy = firsthop.Policy.from_options(spec.options)
    guard = first_hop and policy.enforce
    if guard:  # before the link is up: not one frame leaves unfiltered
        predicted = firsthop.allowed(final_mac, [a.ip for a in spec.addresses], [firsthop.eui64_link_local(final_mac)])
        firsthop.install(ns_path, spec.ifname, predicted, policy)
        undo.push(f"remove first-hop filter of {spec.ifname}", lambda: remove_filter(ns_path, spec.ifname))
    if node_side is not None:
        node_side()  # routes towards a pod whose link is still down: nothing reaches it yet
    if spec.address_gate is not None:
        spec.address_gate()  # the link is still down: nothing about these addresses left the pod
    with translate(f"bringing up {spec.ifname!r}", ns_path), netns.ipr(ns_path) as ip:
        links.set_up(ip, index)
        for route in spec.routes:
            try:
                routes.add(ip, index, route)
            except Exception as exc:
                raise errors.DatapathError(
                    f"adding route {route.dst} via {route.gw or 'link'} on {spec.ifname!r} in "
                    f"{ns_path} failed ({exc}); is the gateway inside one of the pod's subnets?"
                ) from exc
    if guard:  # the real link-local, now that the link is up: install again only if it differs
        actual = filter_identity(spec, ns_path, final_mac)
        if actual != predicted:
            firsthop.install(ns_path, spec.ifname, actual, policy)
    if before_announce is not None:
        before_announce()
    neigh.announce(ns_path, spec.ifname, final_mac, spec.addresses)
    return final_mac, arrived.mtu


def link_mac(ns: str, ifname: str) -> str | None:
    """The MAC of ``ifname`` in a pod's netns; None when the netns or the link is gone."""
    path = netns.ns_path(ns)
    if not path or not os.path.exists(path):
        return None
    try:
        with netns.ipr(path) as ip:
            link = links.find(ip, ifname)
    except (OSError, errors.FlatnetError):
        return None
    return link.mac.lower() if link is not None else None


def link_locals(ns_path: str, ifname: str) -> list[IPAddress]:
    """The IPv6 link-local addresses on ``ifname`` (the kernel adds them when it comes up)."""
    with translate(f"reading {ifname!r}", ns_path), netns.ipr(ns_path) as ip:
        index = links.lookup(ip, ifname)
        if index is None:
            return []
        return [i.ip for i in addrs.list_(ip, index, global_only=False) if i.ip.is_link_local]


def filter_identity(spec: AttachSpec, ns_path: str, mac: str) -> firsthop.Allowed:
    """Who the pod on ``spec.ifname`` is: its MAC, its addresses and its link-local (the one
    on the link; the EUI-64 one ADD predicted while the link has none yet)."""
    lls: list[object] = [*link_locals(ns_path, spec.ifname)] or [firsthop.eui64_link_local(mac)]
    return firsthop.allowed(mac, [a.ip for a in spec.addresses], lls)


def install_filter(spec: AttachSpec, ns_path: str, mac: str, policy: firsthop.Policy) -> None:
    """(Re)install the pod's first-hop filter with its current link-local (ADD, reconciler)."""
    firsthop.install(ns_path, spec.ifname, filter_identity(spec, ns_path, mac), policy)


def remove_filter(ns_path: str, ifname: str) -> None:
    """Drop the pod interface's first-hop filter; a missing netns is nothing to do."""
    if os.path.exists(ns_path):
        firsthop.remove(ns_path, ifname)


def check_filter(spec: AttachSpec, ns_path: str, mac: str) -> None:
    """STATE_MISMATCH when the pod's first-hop filter is missing or not what ADD installed."""
    policy = firsthop.Policy.from_options(spec.options)
    if not policy.enforce:
        return
    found = firsthop.problem(ns_path, spec.ifname, filter_identity(spec, ns_path, mac), policy)
    if found:
        raise mismatch(found)


def repair_filter(spec: AttachSpec) -> bool:
    """Reinstall a live pod's first-hop filter when it is missing or not what it should be.

    For the agent's reconciler: pods plumbed before the filter existed (an upgrade) or whose
    table was flushed get it back from the leases. True when something was (re)installed;
    False when it was right, the netns or link is gone, or the network opted out.
    """
    policy = firsthop.Policy.from_options(spec.options)
    path = netns.ns_path(spec.netns)
    if not policy.enforce or not path or not os.path.exists(path):
        return False
    with translate(f"inspecting {spec.ifname!r}", path), netns.ipr(path) as ip:
        link = links.find(ip, spec.ifname)
    if link is None:
        return False
    who = filter_identity(spec, path, link.mac.lower())
    if firsthop.problem(path, spec.ifname, who, policy) is None:
        return False
    firsthop.install(path, spec.ifname, who, policy)
    return True


def delete_named(ns_path: str, name: str) -> None:
    """Delete link ``name`` in the pod netns if both still exist (undo of a creation)."""
    if not os.path.exists(ns_path):
        return
    with netns.ipr(ns_path) as ip:
        links.delete(ip, name)


def _delete_index(ns_path: str, index: int) -> None:
    if not os.path.exists(ns_path):
        return
    with netns.ipr(ns_path) as ip:
        try:
            ip.del_link(index)
        except Exception:  # noqa: BLE001 - already gone is fine in undo
            pass


def remove(spec: AttachSpec, first_hop: bool = False) -> list[IPAddress]:
    """Delete the pod iface if the netns and link still exist; return the addresses it had.

    Idempotent: an empty/missing netns or a missing link is simply nothing to do.
    ``first_hop``: also drop the interface's first-hop filter chain (flat modes).
    """
    path = netns.ns_path(spec.netns)
    if not path or not os.path.exists(path):
        return []
    found: list[IPAddress] = []
    with translate(f"removing {spec.ifname!r}", path), netns.ipr(path) as ip:
        present = links.indexes(ip)  # one dump: a pod netns holds little more than lo
        tmp = tmp_name(spec.container_id, spec.ifname)
        if tmp in present:
            links.delete_index(ip, present[tmp])  # a killed ADD's half-made link
        index = present.get(spec.ifname)
        if index is None:
            return []
        found = [iface.ip for iface in addrs.list_(ip, index)]
        try:
            ip.del_link(index)
        except Exception as exc:  # noqa: BLE001
            if links.lookup(ip, spec.ifname) is not None:
                raise errors.DatapathError(f"could not delete {spec.ifname!r} in {path}: {exc}") from exc
    if first_hop and firsthop.Policy.from_options(spec.options).enforce:
        remove_filter(path, spec.ifname)
    return found


def mismatch(msg: str) -> errors.DatapathError:
    return errors.DatapathError(msg, code=errors.STATE_MISMATCH)


def check(
    spec: AttachSpec, ns_path: str, expected_mtu: int | None, kind: str | None, first_hop: bool = False
) -> links.LinkInfo:
    """Raise STATE_MISMATCH naming the first difference between the container side and spec
    (``first_hop``: the flat modes' egress filter included)."""
    with translate(f"inspecting {spec.ifname!r}", ns_path), netns.ipr(ns_path) as ip:
        link = links.find(ip, spec.ifname)
        if link is None:
            raise mismatch(f"interface {spec.ifname!r} is missing from container netns {ns_label(ns_path)}")
        if kind is not None and link.kind != kind:
            raise mismatch(f"interface {spec.ifname!r} is a {link.kind} link, expected {kind}")
        if not link.up:
            raise mismatch(f"interface {spec.ifname!r} is down in {ns_path}")
        if expected_mtu is not None and link.mtu != expected_mtu:
            raise mismatch(f"interface {spec.ifname!r} has MTU {link.mtu}, expected {expected_mtu}")
        if spec.mac and link.mac.lower() != spec.mac.lower():
            raise mismatch(f"interface {spec.ifname!r} has MAC {link.mac}, expected {spec.mac}")
        have = set(addrs.list_(ip, link.index))
        for iface in spec.addresses:
            if iface not in have:
                raise mismatch(f"address {iface} is missing from {spec.ifname!r} in {ns_path}")
        have_routes = {(r.dst, r.gw) for r in routes.list_(ip, link.index)}
        for route in spec.routes:
            if (route.dst, route.gw) not in have_routes:
                via = f" via {route.gw}" if route.gw else ""
                raise mismatch(f"route {route.dst}{via} is missing on {spec.ifname!r} in {ns_path}")
    if first_hop:
        check_filter(spec, ns_path, link.mac.lower())
    return link


def address_set(spec: AttachSpec, extra: list[IPAddress]) -> list[IPAddress]:
    """Pod addresses to clean up after: those in spec plus those found on the link, deduplicated."""
    seen: dict[str, IPAddress] = {}
    for addr in [i.ip for i in spec.addresses] + extra:
        seen[str(addr)] = ipaddress.ip_address(addr)
    return list(seen.values())
