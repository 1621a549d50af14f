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
from flatnet.datapath import addrs, links, neigh, netns, routes, sysctl
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
) -> tuple[str, int]:
    """Turn link ``tmp`` (just moved into the container netns) into the configured pod iface.

    Returns (mac, mtu) as the kernel reports them. Registers the link's removal on ``undo``.
    ``node_side`` (the mode's node-side steps that need no MAC) runs once the addresses are
    set and before ``spec.address_gate``: the conflict probe's wait overlaps it too.
    ``before_announce`` runs once the link is up, before the announcements: where the
    pod's frames need the node side to be ready too (a bridge port), it waits for that.
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
    # a rename and bringing it up change neither: no second read of the link
    final_mac = (mac or arrived.mac).lower()
    if before_announce is not None:
        before_announce()
    neigh.announce(ns_path, spec.ifname, final_mac, spec.addresses)
    return final_mac, arrived.mtu


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


def remove(spec: AttachSpec) -> list[IPAddress]:
    """Delete the pod iface if the netns and link still exist; return the addresses it had.

    Idempotent: an empty/missing netns or a missing link is simply nothing to do.
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
    return found


def mismatch(msg: str) -> errors.DatapathError:
    return errors.DatapathError(msg, code=errors.STATE_MISMATCH)


def check(spec: AttachSpec, ns_path: str, expected_mtu: int | None, kind: str | None) -> links.LinkInfo:
    """Raise STATE_MISMATCH naming the first difference between the container side and spec."""
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
    return link


def address_set(spec: AttachSpec, extra: list[IPAddress]) -> list[IPAddress]:
    """Pod addresses to clean up after: those in spec plus those found on the link, deduplicated."""
    seen: dict[str, IPAddress] = {}
    for addr in [i.ip for i in spec.addresses] + extra:
        seen[str(addr)] = ipaddress.ip_address(addr)
    return list(seen.values())
