"""A flat L2 segment built from network namespaces, for the podman end-to-end test.

Why namespaces: podman runs in the root netns, but nothing of the flat network may
touch the machine's real interfaces. So the test builds its own wire:

    fne-vm-<tag>  (198.18.100.200/24, "a VM on the VLAN")
          | veth
    fne-sw-<tag>  (plain bridge br0: the switch)
          | veth
    fne-node-<tag> (parent link ``fnup0``: flatnet's ``master``, its ``hostNetns``)

flatnet creates the pod's macvlan on ``fnup0`` inside the node netns and moves it into
the container netns podman made, so the pod sits on the same segment as the VM.
Kernel work goes through pyroute2 only; teardown removes the three namespaces (their
veths go with them) and is safe to call on a half-built segment.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns

NETNS_DIR = "/run/netns"
SUBNET = ipaddress.ip_network("198.18.100.0/24")
VM_ADDR = ipaddress.ip_interface("198.18.100.200/24")
PARENT = "fnup0"


@dataclass(frozen=True)
class Segment:
    """Names of what ``build`` made; ``parent`` lives in ``node``."""

    switch: str
    node: str
    vm: str
    parent: str = PARENT
    vm_addr: ipaddress.IPv4Interface = VM_ADDR

    @property
    def namespaces(self) -> tuple[str, str, str]:
        return (self.switch, self.node, self.vm)


def _path(ns: str) -> str:
    return os.path.join(NETNS_DIR, ns)


def _up(ipr: IPRoute, ifname: str) -> int:
    idx = ipr.link_lookup(ifname=ifname)[0]
    ipr.link("set", index=idx, state="up")
    return idx


def _wire(sw: str, ns: str, inner: str, sw_port: str) -> None:
    """A veth from ``ns`` (named ``inner``) to the switch bridge (port ``sw_port``)."""
    with IPRoute(netns=_path(ns)) as ipr:
        ipr.link("add", ifname=inner, kind="veth", peer={"ifname": sw_port})
        port = ipr.link_lookup(ifname=sw_port)[0]
        ipr.link("set", index=port, net_ns_fd=_path(sw))
        _up(ipr, inner)
        _up(ipr, "lo")
    with IPRoute(netns=_path(sw)) as ipr:
        br = ipr.link_lookup(ifname="br0")[0]
        port = ipr.link_lookup(ifname=sw_port)[0]
        ipr.link("set", index=port, master=br, state="up")


def build(tag: str) -> Segment:
    """Create switch, node and VM namespaces wired as one L2 segment."""
    seg = Segment(switch=f"fne-sw-{tag}", node=f"fne-node-{tag}", vm=f"fne-vm-{tag}")
    try:
        for ns in seg.namespaces:
            pr_netns.create(ns)
        with IPRoute(netns=_path(seg.switch)) as ipr:
            ipr.link("add", ifname="br0", kind="bridge")
            _up(ipr, "br0")
            _up(ipr, "lo")
        _wire(seg.switch, seg.node, seg.parent, "swnode")
        _wire(seg.switch, seg.vm, "eth0", "swvm")
        with IPRoute(netns=_path(seg.vm)) as ipr:
            idx = ipr.link_lookup(ifname="eth0")[0]
            ipr.addr("add", index=idx, address=str(VM_ADDR.ip), prefixlen=VM_ADDR.network.prefixlen)
    except BaseException:
        destroy(seg)
        raise
    return seg


def destroy(seg: Segment) -> None:
    """Remove every namespace of the segment that exists; never raises for missing ones."""
    for ns in seg.namespaces:
        if os.path.exists(_path(ns)):
            try:
                pr_netns.remove(ns)
            except OSError:
                pass
