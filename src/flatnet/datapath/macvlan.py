"""macvlan mode (and the shared plan for ipvlan): the pod is a child link of the node's NIC.

ADD plan, each step undone on failure:
  1. checks: container netns exists, ``ifname`` free there, ``master`` exists in the host netns
  2. parent: ``master`` or its 802.1Q sub-interface ``<master>.<vlan>`` (created on demand, kept)
  3. child link with a temporary name, created directly inside the container netns (the
     kernel is told the parent's index in the host netns; MTU defaults to the parent's),
     then ``pod.adopt``: rename, MAC, addresses, then the node side (shim sibling +
     ``<pod ip>/32`` and ``/128`` routes through it) while the pod's link is still down,
     then the pod's first-hop filter (datapath/firsthop.py) while the link is down, then the
     conflict probe's answer (``AttachSpec.address_gate``), up, routes, announce
DEL removes the pod link and the host routes, and the shim with the last pod of its parent
(``shim.retire_if_unused``; through the agent, its reconciler's next pass does: ``shim.KEEP_IDLE``);
the VLAN sub-interface stays.
"""

from __future__ import annotations

from flatnet import errors
from flatnet.datapath import links, netns, pod, services, shim
from flatnet.datapath.api import AttachSpec, Attachment
from flatnet.datapath.common import (
    infra_lock,
    require_container_netns,
    require_host_netns,
    shim_name,
    tmp_name,
    translate,
    undo_on_error,
    validate_spec,
    vlan_ifname,
)
from flatnet.datapath.links import LinkInfo


class ChildLinkDatapath:
    """A pod link that is a child (macvlan/ipvlan) of the node's parent link."""

    kind = "macvlan"

    def _validate(self, spec: AttachSpec) -> None:
        validate_spec(spec)
        if not spec.master:
            raise errors.ConfigError(f"{self.kind} mode needs 'master': the node link on the pods' L2 segment")

    def _parent_name(self, spec: AttachSpec) -> str:
        assert spec.master is not None
        return vlan_ifname(spec.master, spec.vlan) if spec.vlan is not None else spec.master

    def _parent(self, spec: AttachSpec, create: bool) -> LinkInfo:
        """The link the child hangs off; creates the VLAN sub-interface if asked to."""
        assert spec.master is not None
        with translate(f"preparing parent of {self.kind} link", spec.host_netns), netns.ipr(spec.host_netns) as ip:
            master = links.require(ip, spec.master, spec.host_netns)
            if spec.vlan is None:
                return master
            name = vlan_ifname(spec.master, spec.vlan)
            if not create:
                return links.require(ip, name, spec.host_netns, role="vlan parent")
            with infra_lock(spec.host_netns):
                parent, _created = links.ensure_vlan(ip, master, name, spec.vlan)
            return parent

    def add(self, spec: AttachSpec) -> Attachment:
        self._validate(spec)
        require_host_netns(spec)
        ns_path = require_container_netns(spec)
        pod.check_absent(spec, ns_path)
        parent = self._parent(spec, create=True)
        spec = services.with_service_routes(spec, parent.index)
        src = shim.sources(spec, parent)
        spec = shim.with_onlink_sources(spec, src)
        tmp = tmp_name(spec.container_id, spec.ifname)
        with undo_on_error() as undo:
            with (
                translate(f"creating {self.kind} link on {parent.name!r}", spec.host_netns),
                netns.ipr(spec.host_netns) as ip,
            ):
                mac = spec.mac if self.kind == "macvlan" else None
                # born in the pod netns: no tmp link in the node netns, no slow netns move
                links.create_child_in(ip, self.kind, tmp, parent.index, spec.mtu or parent.mtu, mac, ns_path)
                undo.push(f"delete {tmp} in the pod", lambda: pod.delete_named(ns_path, tmp))

            def node_side() -> None:  # before the pod's link goes up (and while the probe waits)
                with shim.in_use(spec.host_netns, parent.name):  # not retired under our feet
                    shim_index = shim.ensure(spec.host_netns, self.kind, parent)
                    # undone last (after our host routes): a shim this ADD made for nobody goes too
                    undo.push("retire an unused shim", lambda: shim.retire_if_unused(spec.host_netns, parent.name))
                    ips = [a.ip for a in spec.addresses]
                    shim.add_pod(spec.host_netns, shim_index, parent, ips, undo, self.kind, src)
                services.answer_on_link(spec, shim_index, shim_name(parent.name), undo, host_routes=False)

            mac, mtu = pod.adopt(spec, ns_path, tmp, None, undo, node_side, first_hop=True)
        return Attachment(ifname=spec.ifname, mac=mac, sandbox=spec.netns, mtu=mtu)

    def delete(self, spec: AttachSpec) -> None:
        found = pod.remove(spec, first_hop=True)
        shim.remove_pod(spec.host_netns, pod.address_set(spec, found))
        if spec.master:
            if spec.options.get(shim.KEEP_IDLE):
                shim.leave_idle(spec.host_netns, self._parent_name(spec))
            else:
                shim.retire_if_unused(spec.host_netns, self._parent_name(spec))

    def check(self, spec: AttachSpec) -> None:
        self._validate(spec)
        require_host_netns(spec)
        ns_path = require_container_netns(spec)
        try:
            parent = self._parent(spec, create=False)
        except errors.ParentMissing as exc:
            raise errors.DatapathError(exc.msg, code=errors.STATE_MISMATCH) from exc
        pod.check(spec, ns_path, spec.mtu or parent.mtu, self.kind, first_hop=True)
        missing = shim.missing_routes(spec.host_netns, parent.name, [a.ip for a in spec.addresses])
        if missing:
            raise pod.mismatch(f"node side is missing: {', '.join(missing)}")

    def status(self, spec: AttachSpec) -> None:
        if not spec.master:
            raise errors.ConfigError(f"{self.kind} mode needs 'master'")
        require_host_netns(spec)
        with translate("looking up master", spec.host_netns), netns.ipr(spec.host_netns) as ip:
            links.require(ip, spec.master, spec.host_netns)


class MacvlanDatapath(ChildLinkDatapath):
    """macvlan in bridge mode: pods on one parent talk directly, others via the wire."""

    kind = "macvlan"
