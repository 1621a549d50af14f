"""The lab's network with real traffic: the flat plane, routing, VLAN isolation, Service DNAT."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator

import pytest

from tests.helpers.lab import CLIENT, SERVER, fresh_lab

from flatnet_lab.testbed import net as labnet
from tests.helpers.net import ping
from flatnet_lab.lab.topology import PREFIX, Topology

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
]


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    """One lab (network only: no agents needed here) for the whole module."""
    with fresh_lab(agents=False) as topo:
        yield topo


@pytest.mark.parametrize("k", [1, 2, 3])
def test_vm_pings_every_node(topo: Topology, k: int) -> None:
    node = topo.node(f"node{k}")
    assert ping(f"{PREFIX}vm1", node.ipv4)
    assert ping(f"{PREFIX}vm2", node.ipv6)


def test_outside_host_reaches_router_and_flat_plane(topo: Topology) -> None:
    assert ping(f"{PREFIX}out", topo.flat.v4_gateway)  # the router's VLAN-100 side
    assert ping(f"{PREFIX}out", "198.18.100.201")  # routed onto the flat plane
    assert ping(f"{PREFIX}out", topo.node("node2").ipv4)


def test_vlan200_host_cannot_reach_nodes(topo: Topology) -> None:
    """Same subnet, other L2: nothing answers, while a VLAN-100 host reaches the same node."""
    node = topo.node("node1")
    assert ping(f"{PREFIX}vm1", node.ipv4)  # the node is up and answering
    assert not ping(f"{PREFIX}vlan200", node.ipv4, tries=1, wait=1)
    assert not ping(f"{PREFIX}vlan200", node.ipv6, tries=1, wait=1)
    assert not ping(f"{PREFIX}vlan200", "198.18.100.201", tries=1, wait=1)


def _serve(ns: str, port: int, tag: str) -> subprocess.Popen:
    proc = labnet.spawn(ns, [sys.executable, "-c", SERVER, str(port), tag], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _connect(ns: str, host: str, port: int) -> subprocess.CompletedProcess[str]:
    return labnet.run_cmd(ns, [sys.executable, "-c", CLIENT, host, str(port)], timeout=15)


def test_service_vip_is_dnated_on_the_node(topo: Topology) -> None:
    svc = topo.service
    backend = _serve(f"{PREFIX}vm2", 8080, "vm2")
    try:
        node1, node2 = topo.node("node1"), topo.node("node2")
        labnet.install_service(node1.ns, svc.vip, svc.port, "198.18.100.202", 8080)
        labnet.install_service(node1.ns, svc.vip, svc.port, "198.18.100.202", 8080)  # again
        out = _connect(node1.ns, svc.vip, svc.port)
        assert out.returncode == 0, out.stderr
        # the backend answers and saw the node's own address: DNAT only, no SNAT
        assert out.stdout.split() == ["vm2", node1.ipv4]
        # a node without the rule has no way to the virtual address
        assert _connect(node2.ns, svc.vip, svc.port).returncode != 0
        labnet.remove_service(node1.ns)
        assert _connect(node1.ns, svc.vip, svc.port).returncode != 0
        assert _connect(node1.ns, "198.18.100.202", 8080).stdout.split()[0] == "vm2"
    finally:
        backend.kill()
        backend.wait(timeout=10)


def test_forwarding_only_where_routing_is_needed(topo: Topology) -> None:
    def fwd(ns: str) -> str:
        out = labnet.run_cmd(ns, ["cat", "/proc/sys/net/ipv4/ip_forward"], timeout=10)
        return out.stdout.strip()

    assert fwd(f"{PREFIX}rtr") == "1"
    assert fwd(topo.node("node1").ns) == "1"
    assert fwd(f"{PREFIX}vm1") == "0"
    assert not ping(f"{PREFIX}out", "198.18.100.210", tries=1, wait=1)  # VLAN 200 is not routed at all
