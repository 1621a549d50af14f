"""ipvlan (L2) mode: the happy paths in the kernel tier's VM, the exact error where it is missing.

The tests marked ``kernel`` need CONFIG_IPVLAN, which this machine's kernel lacks: on the host
they are run inside the kernel tier's VM (tests/helpers/kernel_tier.py); the missing-feature
test runs where the kernel has no ipvlan.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from flatnet_topo import Topology, link_names, pod_addrs, route_dsts, tcp_exchange
from pyroute2 import netns as pnetns

from flatnet import errors
from flatnet.datapath import get_datapath, netns
from flatnet.datapath.api import AttachSpec
from tests.helpers.net import ping, sh

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]


def kernel_has_ipvlan() -> bool:
    """Try to create an ipvlan in a throwaway netns (the only sure answer)."""
    name = "fnt-ipvprobe-" + os.urandom(3).hex()
    pnetns.create(name)
    try:
        with netns.iproute(name) as ip:
            ip.link("add", ifname="fnpa", kind="veth", peer={"ifname": "fnpb"})
            try:
                ip.link("add", ifname="fnpiv", kind="ipvlan", link=ip.link_lookup(ifname="fnpa")[0], ipvlan_mode=0)
                return True
            except Exception:  # noqa: BLE001 - any failure: not usable here
                return False
    finally:
        pnetns.remove(name)


HAS_IPVLAN = os.geteuid() == 0 and kernel_has_ipvlan()


@pytest.fixture(scope="module")
def topo():
    with Topology(nodes_n=1) as t:
        yield t


def _spec(topo: Topology, pod_ns: str, n: int, **kw: object) -> AttachSpec:
    spec = AttachSpec(
        container_id=f"ctr-{pod_ns}",
        ifname="eth0",
        netns=f"/run/netns/{pod_ns}",
        mode="ipvlan",
        master="eth0",
        addresses=pod_addrs(n),
        host_netns=topo.nodes[0].ns,
    )
    return replace(spec, **kw) if kw else spec


@pytest.mark.kernel("ipvlan")
def test_ipvlan_pod_is_reachable(topo: Topology) -> None:
    pod_ns = topo.pod()
    spec = _spec(topo, pod_ns, 1)
    dp = get_datapath("ipvlan")
    dp.add(spec)
    try:
        dp.check(spec)
        assert ping(topo.vm, "198.18.100.51")
        assert ping(topo.nodes[0].ns, "198.18.100.51")
    finally:
        dp.delete(spec)
    assert link_names(pod_ns) == {"lo"}


@pytest.mark.skipif(
    HAS_IPVLAN,
    reason="kernel has ipvlan: the missing-feature path cannot happen "
    "(this test runs on hosts without it, such as this project's machines and CI)",
)
def test_missing_ipvlan_is_named_and_leaves_nothing(topo: Topology) -> None:
    node = topo.nodes[0].ns
    pod_ns = topo.pod()
    before = link_names(node), route_dsts(node)
    with pytest.raises(errors.KernelFeatureMissing) as exc:
        get_datapath("ipvlan").add(_spec(topo, pod_ns, 2))
    assert exc.value.code == errors.KERNEL_FEATURE_MISSING
    assert "CONFIG_IPVLAN" in exc.value.msg and "modprobe ipvlan" in exc.value.msg
    assert (link_names(node), route_dsts(node)) == before
    assert link_names(pod_ns) == {"lo"}


def test_ipvlan_refuses_a_mac(topo: Topology) -> None:
    pod_ns = topo.pod()
    with pytest.raises(errors.ConfigError) as exc:
        get_datapath("ipvlan").add(_spec(topo, pod_ns, 3, mac="02:00:00:00:00:01"))
    assert "mac" in exc.value.msg
    assert link_names(pod_ns) == {"lo"}


def _mac(ns: str, ifname: str) -> str:
    return sh(ns, "cat", f"/sys/class/net/{ifname}/address").stdout.strip()


@pytest.mark.kernel("ipvlan")
def test_ipvlan_pods_of_a_node_show_one_mac_on_the_wire(topo: Topology) -> None:
    """Every ipvlan pod answers ARP with the node NIC's MAC: the wire (the VM's neighbour
    table) sees one MAC for all the node's pods, and the pods still talk to each other."""
    node = topo.nodes[0].ns
    dp = get_datapath("ipvlan")
    pods = [(topo.pod(), n) for n in (4, 5)]
    specs = [_spec(topo, ns, n) for ns, n in pods]
    for spec in specs:
        dp.add(spec)
    try:
        node_mac = _mac(node, "eth0")
        assert {_mac(ns, "eth0") for ns, _ in pods} == {node_mac}
        for _, n in pods:
            assert ping(topo.vm, f"198.18.100.{50 + n}")
        neigh = sh(topo.vm, "ip", "neigh", "show", "dev", "eth0").stdout
        macs = {
            ln.split("lladdr")[1].split()[0]
            for ln in neigh.splitlines()
            if "lladdr" in ln and ln.split()[0] in {"198.18.100.54", "198.18.100.55"}
        }
        assert macs == {node_mac}, neigh
        assert ping(pods[0][0], "198.18.100.55"), "pod -> pod on the same ipvlan parent"
    finally:
        for spec in specs:
            dp.delete(spec)


@pytest.mark.kernel("ipvlan")
def test_ipvlan_del_removes_everything_and_the_shim_serves_the_node(topo: Topology) -> None:
    node = topo.nodes[0].ns
    pod_ns = topo.pod()
    spec = _spec(topo, pod_ns, 6)
    dp = get_datapath("ipvlan")
    dp.add(spec)
    before_routes = route_dsts(node)
    try:
        # node -> own pod goes through the shim (an ipvlan sibling): the parent cannot reach
        # its own children directly; the pod sees the node's address as the source
        reply, peer = tcp_exchange(pod_ns, "198.18.100.56", node, "198.18.100.56", port=5302)
        assert reply.startswith("hello ") and peer == "198.18.100.11", (reply, peer)
        assert any(d.startswith("198.18.100.56") for d in before_routes), before_routes
    finally:
        dp.delete(spec)
    assert link_names(pod_ns) == {"lo"}
    assert not any(d.startswith("198.18.100.56") for d in route_dsts(node)), route_dsts(node)
    assert not any(d.startswith("2001:db8:100::56") for d in route_dsts(node))
    assert not ping(topo.vm, "198.18.100.56", tries=1, count=1, wait=1)
    dp.delete(spec)  # idempotent
