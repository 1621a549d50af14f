"""Pods reach a ClusterIP when their node has no address on the pod VLAN.

The common production shape: the node's NIC on the pod VLAN is a bare trunk/parent and the
node's own address is on a management network. kube-proxy's DNAT lives on the node, so the
pod must route ``serviceCidrs`` through it; with no node address in the pod subnet the
route is an onlink one via the node's management address (datapath/services.py). Built
in its own namespaces (fnm-*), macvlan and bridge pods, real TCP through a kube-proxy-style
DNAT (testbed/net.install_service) to a backend on the VLAN behind a router:

    fnm-X-rtr   mgmt 198.19.50.1/24 <-> vlan 198.18.100.1/24 (forwarding)
    fnm-X-node  eth0 198.19.50.11/24 (mgmt), eth1 (macvlan parent) and eth2 (bridge port) on
                the pod VLAN with NO address; DNAT 198.19.128.10:5280 -> backend
    fnm-X-be    198.18.100.200/24 on the pod VLAN (the Service's backend)
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
from typing import Iterator

import pytest
from flatnet_topo import sh, tcp_exchange

from flatnet import errors
from flatnet.datapath import get_datapath
from flatnet_lab.testbed import net as labnet
from flatnet.datapath.api import AttachSpec, Route

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")]

VIP, PORT, BACKEND = "198.19.128.10", 5280, "198.18.100.200"
SERVICE_CIDR = "198.19.128.0/24"


class Net:
    def __init__(self) -> None:
        tag = secrets.token_hex(2)
        self.sw, self.rtr, self.node, self.be = (f"fnm-{tag}-{n}" for n in ("sw", "rtr", "node", "be"))
        self.namespaces = [self.sw, self.rtr, self.node, self.be]
        self.pods: list[str] = []
        self.tag = tag

    def build(self) -> None:
        for ns in self.namespaces:
            labnet.ensure_netns(ns)
        for br in ("mgmt", "vlan"):
            labnet.ensure_bridge(self.sw, br)
        ports = [
            (self.rtr, "mgmt", "mgmt", ["198.19.50.1/24"]),
            (self.rtr, "vlan", "vlan", ["198.18.100.1/24"]),
            (self.node, "eth0", "mgmt", ["198.19.50.11/24"]),
            (self.node, "eth1", "vlan", []),
            (self.node, "eth2", "vlan", []),
            (self.be, "eth0", "vlan", [f"{BACKEND}/24"]),
        ]
        for i, (ns, ifname, bridge, addrs) in enumerate(ports):
            port = f"p{i}"
            labnet.ensure_veth(ns, ifname, self.sw, port)
            labnet.set_master(self.sw, port, bridge)
            if addrs:
                labnet.ensure_addresses(ns, ifname, addrs)
        labnet.set_sysctl(self.rtr, "net.ipv4.ip_forward", "1")
        labnet.set_sysctl(self.node, "net.ipv4.ip_forward", "1")
        labnet.ensure_route(self.node, "default", "198.19.50.1")
        labnet.ensure_route(self.be, "default", "198.18.100.1")
        labnet.install_service(self.node, VIP, PORT, BACKEND, PORT)

    def pod(self) -> str:
        name = f"fnm-{self.tag}-p{len(self.pods) + 1}"
        labnet.ensure_netns(name)
        self.pods.append(name)
        return name

    def close(self) -> None:
        for ns in [*reversed(self.pods), *reversed(self.namespaces)]:
            labnet.remove_netns(ns)


@pytest.fixture
def net() -> Iterator[Net]:
    n = Net()
    try:
        n.build()
        yield n
    finally:
        n.close()


def _spec(net: Net, pod_ns: str, mode: str, master: str, n: int, cidrs: list[str]) -> AttachSpec:
    return AttachSpec(
        container_id=f"fnm-ctr-{pod_ns}",
        ifname="eth0",
        netns=f"/run/netns/{pod_ns}",
        mode=mode,
        master=master,
        addresses=(ipaddress.IPv4Interface(f"198.18.100.{50 + n}/24"),),
        routes=(Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("198.18.100.1")),),
        host_netns=net.node,
        options={"serviceCidrs": cidrs},
    )


@pytest.mark.parametrize("mode,master", [("macvlan", "eth1"), ("bridge", "eth2")])
def test_pod_reaches_a_cluster_ip_through_a_node_without_a_pod_vlan_address(net: Net, mode: str, master: str) -> None:
    dp = get_datapath(mode)
    pod_ns = net.pod()
    spec = _spec(net, pod_ns, mode, master, 1, [SERVICE_CIDR])
    dp.add(spec)
    try:
        route = sh(pod_ns, "ip", "-4", "route", "show", SERVICE_CIDR).stdout
        assert "via 198.19.50.11" in route and "onlink" in route, route
        client, peer = tcp_exchange(net.be, BACKEND, pod_ns, VIP, PORT)
        assert client.startswith("hello "), (client, peer)
        assert peer == "198.19.50.11"  # kube-proxy's masquerade: the reply comes back via the node
        # the pod's own traffic to the VLAN stays flat (no NAT): the backend sees the pod
        client, peer = tcp_exchange(net.be, BACKEND, pod_ns, BACKEND, PORT + 1)
        assert client.startswith("hello ") and peer == "198.18.100.51", (client, peer)
    finally:
        dp.delete(spec)
    node_routes = sh(net.node, "ip", "-4", "route", "show", "198.18.100.51").stdout
    assert node_routes.strip() == "", node_routes  # DEL left no host route behind


def test_a_service_family_the_node_has_no_address_of_is_an_error_not_a_gap(net: Net) -> None:
    pod_ns = net.pod()
    spec = _spec(net, pod_ns, "macvlan", "eth1", 2, ["2001:db8:128::/112"])
    with pytest.raises(errors.ConfigError, match="serviceCidrs has 2001:db8:128::/112"):
        get_datapath("macvlan").add(spec)
    links = subprocess.run(
        ["ip", "netns", "exec", pod_ns, "ip", "-o", "link"], capture_output=True, text=True, timeout=15
    ).stdout
    assert "eth0" not in links  # refused before anything was plumbed
