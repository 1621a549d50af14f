"""Bridge-mode specifics: the node's address moves to the bridge, veth names need no state."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import replace

import pytest
from flatnet_topo import Topology, iface_addrs, link_names, pod_addrs

from flatnet import errors
from flatnet.datapath import get_datapath, netns
from flatnet.datapath.api import AttachSpec, Route
from flatnet.datapath.common import host_veth_name
from tests.helpers.net import ping, sh

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]


def _mac(ns: str, ifname: str) -> str:
    return sh(ns, "ip", "-o", "link", "show", ifname).stdout.split("link/ether")[1].split()[0]


def _spec(topo: Topology, pod_ns: str, n: int, **kw: object) -> AttachSpec:
    spec = AttachSpec(
        container_id=f"ctr-{pod_ns}",
        ifname="eth0",
        netns=f"/run/netns/{pod_ns}",
        mode="bridge",
        master="eth1",
        addresses=pod_addrs(n),
        host_netns=topo.nodes[0].ns,
    )
    return replace(spec, **kw) if kw else spec


@pytest.fixture
def topo():
    with Topology(nodes_n=1, ports=("eth0", "eth1"), addr_port="eth1") as t:
        yield t


def test_node_address_and_routes_move_to_the_bridge(topo: Topology) -> None:
    node = topo.nodes[0].ns
    with netns.iproute(node) as ip:
        eth1 = ip.link_lookup(ifname="eth1")[0]
        ip.route("add", dst="198.18.120.0/24", gateway="198.18.100.1", oif=eth1)
    port_mac = _mac(node, "eth1")
    assert ping(topo.vm, "198.18.100.11")
    dp = get_datapath("bridge")
    pods = []
    for n in (1, 2):
        pod_ns = topo.pod()
        pods.append(_spec(topo, pod_ns, n))
        dp.add(pods[-1])
    try:
        assert iface_addrs(node, "fnbr0") == {"198.18.100.11/24", "2001:db8:100::11/64"}
        assert iface_addrs(node, "eth1") == set()
        routes = sh(node, "ip", "route", "show", "198.18.120.0/24").stdout
        assert "via 198.18.100.1 dev fnbr0" in routes
        # the bridge keeps the port's MAC even after pod veths (random MACs) joined it
        assert _mac(node, "fnbr0") == port_mac
        assert ping(topo.vm, "198.18.100.11")
        assert ping(topo.vm, "2001:db8:100::11")
        assert ping(node, "198.18.100.52")
    finally:
        for spec in pods:
            dp.delete(spec)
    assert "fnbr0" in link_names(node)  # node infrastructure is kept after the last pod
    assert iface_addrs(node, "fnbr0") == {"198.18.100.11/24", "2001:db8:100::11/64"}
    assert ping(topo.vm, "198.18.100.11")


def test_del_finds_the_host_veth_without_netns(topo: Topology) -> None:
    node = topo.nodes[0].ns
    pod_ns = topo.pod()
    spec = _spec(topo, pod_ns, 3)
    att = get_datapath("bridge").add(spec)
    host = host_veth_name(spec.container_id, "eth0")
    assert att.host_ifname == host and len(host) <= 15
    assert host in link_names(node)
    get_datapath("bridge").delete(replace(spec, netns=""))
    assert host not in link_names(node)
    assert link_names(pod_ns) == {"lo"}  # the pair died with its host side


def test_bridge_without_master_links_local_pods(topo: Topology) -> None:
    dp = get_datapath("bridge")
    a, b = topo.pod(), topo.pod()
    sa = _spec(topo, a, 4, master=None, bridge="fnbrlocal")
    sb = _spec(topo, b, 5, master=None, bridge="fnbrlocal")
    dp.add(sa)
    dp.add(sb)
    try:
        assert ping(a, "198.18.100.55")
        assert not ping(topo.vm, "198.18.100.55", tries=1)  # not on the wire
        dp.check(sb)
    finally:
        dp.delete(sa)
        dp.delete(sb)


def test_master_enslaved_elsewhere_is_refused(topo: Topology) -> None:
    node = topo.nodes[0].ns
    with netns.iproute(node) as ip:
        ip.link("add", ifname="otherbr", kind="bridge")
        ip.link("set", index=ip.link_lookup(ifname="eth1")[0], master=ip.link_lookup(ifname="otherbr")[0])
    pod_ns = topo.pod()
    with pytest.raises(errors.DatapathError) as exc:
        get_datapath("bridge").add(_spec(topo, pod_ns, 6))
    assert "eth1" in exc.value.msg and "enslaved" in exc.value.msg
    assert "fnbr0" not in link_names(node)
    assert link_names(pod_ns) == {"lo"}


def test_vlan_without_master_is_a_config_error(topo: Topology) -> None:
    with pytest.raises(errors.ConfigError) as exc:
        get_datapath("bridge").add(_spec(topo, topo.pod(), 7, master=None, vlan=200))
    assert "master" in exc.value.msg


def test_pod_gateway_route_and_default_mtu(topo: Topology) -> None:
    pod_ns = topo.pod()
    gw = ipaddress.ip_address("198.18.100.200")  # the VM plays router here
    spec = _spec(topo, pod_ns, 8, routes=(Route(ipaddress.ip_network("198.18.130.0/24"), gw),))
    att = get_datapath("bridge").add(spec)
    try:
        assert att.mtu == 1500
        assert "198.18.130.0/24 via 198.18.100.200 dev eth0" in sh(pod_ns, "ip", "route").stdout
    finally:
        get_datapath("bridge").delete(spec)
