"""Which kernel calls of the real datapaths leave the netlink short path (``rtnl.watch()``).

The macvlan, ipvlan and bridge datapaths plumb, check and remove pods in real namespaces
(flatnet_topo: a node, a switch, a VM on the segment) with real traffic, while ``rtnl.watch()``
records every call of every netlink handle. A pod's calls must all be typed verbs on the
short path; the only calls asked of pyroute2 (``Handle.pyroute2()``) are the ones the verbs
leave to it on purpose: creating a bridge (with or without VLAN filtering) and its VLAN
filter entries. macvlan and ipvlan never leave the short path, not even for the node's shim.
ipvlan and the VLAN-aware bridge need kernel features this machine lacks: those run in the
kernel tier's VM (tests/helpers/kernel_tier.py).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Iterator

import pytest
from flatnet_topo import Topology, link_names, pod_addrs

from flatnet.datapath import get_datapath, netns, rtnl
from flatnet.datapath.api import AttachSpec
from tests.helpers.net import ping

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

BRIDGE_ESCAPES = {"link add"}  # the bridge itself (a first try with vlan_filtering, then plain)
VLAN_ESCAPES = BRIDGE_ESCAPES | {"vlan_filter add", "vlan_filter del"}  # + the ports' VLANs


@pytest.fixture
def topo() -> Iterator[Topology]:
    with Topology(nodes_n=1) as t:
        yield t


def _spec(topo: Topology, mode: str, n: int, **kw: object) -> AttachSpec:
    pod_ns = topo.pod()
    spec = AttachSpec(
        container_id=f"ctr-{pod_ns}",
        ifname="eth0",
        netns=netns.ns_path(pod_ns) or "",
        mode=mode,
        master="eth0",
        addresses=pod_addrs(n),
        host_netns=topo.nodes[0].ns,
    )
    return replace(spec, **kw) if kw else spec


def _lifecycle(topo: Topology, mode: str, reach: bool = True, **kw: object) -> dict[str, list[str]]:
    """Two pods ADDed, reached from the VM (``reach``), CHECKed and DELeted: what each step
    asked of pyroute2.

    The first ADD also makes the node's infrastructure (shim, bridge); the second finds it.
    """
    dp = get_datapath(mode)
    first, second = _spec(topo, mode, 11, **kw), _spec(topo, mode, 12, **kw)
    escapes: dict[str, list[str]] = {}
    shorts = 0
    try:
        for step, call in (
            ("first add", lambda: dp.add(first)),
            ("second add", lambda: dp.add(second)),
            ("check", lambda: (dp.check(first), dp.check(second))),
        ):
            with netns.session(), rtnl.watch() as tally:  # one handle per netns, as the agent has
                call()
            escapes[step], shorts = tally.escapes, shorts + tally.short
        for spec in (first, second) if reach else ():
            assert ping(topo.vm, str(spec.addresses[0].ip)), f"{mode}: the VM reaches the pod"
    finally:
        with netns.session(), rtnl.watch() as tally:
            for spec in (first, second):
                dp.delete(spec)
        escapes["delete"], shorts = tally.escapes, shorts + tally.short
    for spec in (first, second):
        assert link_names(os.path.basename(spec.netns)) == {"lo"}, f"{mode}: DEL removed the pod's link"
    assert shorts > 20, "the steps ran through the short path"
    return escapes


def test_netlink_macvlan_never_leaves_the_short_path(topo: Topology) -> None:
    escapes = _lifecycle(topo, "macvlan")
    assert escapes == {"first add": [], "second add": [], "check": [], "delete": []}


@pytest.mark.kernel("ipvlan")
def test_netlink_ipvlan_never_leaves_the_short_path(topo: Topology) -> None:
    escapes = _lifecycle(topo, "ipvlan")
    assert escapes == {"first add": [], "second add": [], "check": [], "delete": []}


def test_netlink_bridge_asks_pyroute2_only_for_the_bridge(topo: Topology) -> None:
    escapes = _lifecycle(topo, "bridge")
    assert escapes["first add"] and set(escapes["first add"]) <= BRIDGE_ESCAPES, escapes
    assert escapes == {"first add": escapes["first add"], "second add": [], "check": [], "delete": []}


@pytest.mark.kernel("vlan_filtering", "8021q")
def test_netlink_vlan_aware_bridge_asks_pyroute2_for_the_bridge_and_its_vlans(topo: Topology) -> None:
    escapes = _lifecycle(topo, "bridge", reach=False, vlan=100)  # the VM's switch port is untagged
    assert escapes["first add"] and set(escapes["first add"]) <= VLAN_ESCAPES, escapes
    # every pod's port joins its VLAN through pyroute2 (vlan_filter); nothing else does
    assert escapes["second add"] and set(escapes["second add"]) <= {"vlan_filter add", "vlan_filter del"}, escapes
    assert escapes["check"] == [] and escapes["delete"] == [], escapes
