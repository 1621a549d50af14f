"""Pods in the lab, plumbed by the real plugin and agents, checked with real traffic."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from typing import Iterator

import pytest

from tests.helpers.lab import CLIENT, SERVER, fresh_lab

from flatnet_lab.testbed import net as labnet
from tests.helpers.net import ping
from flatnet.errors import FlatnetError
from flatnet_lab.lab import manager, pods
from flatnet_lab.lab.topology import POD_NS_PREFIX, PREFIX, Topology

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
]


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with fresh_lab() as topo:
        yield topo


@pytest.fixture
def cleanup_pods() -> Iterator[list[str]]:
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            pods.del_pod(name)


def _in_pool(ip: str, topo: Topology) -> bool:
    a = ipaddress.ip_address(ip)
    return ipaddress.ip_address(topo.flat.v4_start) <= a <= ipaddress.ip_address(topo.flat.v4_end)


def test_flat_pod_is_on_the_vms_plane(topo: Topology, cleanup_pods: list[str]) -> None:
    cleanup_pods.append("web1")
    pod = pods.add_pod("node1", "web1", "flat")
    assert _in_pool(pod.ip, topo), pod.result
    assert pod.netns == f"{POD_NS_PREFIX}web1"
    assert ping(f"{PREFIX}vm1", pod.ip)  # a VM reaches the pod by its own address
    assert pods.exec_in_pod("web1", ["ping", "-c", "1", "-W", "1", "198.18.100.202"]).returncode == 0
    assert ping(f"{PREFIX}out", pod.ip)  # routable from outside, no NodePort
    assert not ping(f"{PREFIX}vlan200", pod.ip, tries=1, wait=1)  # other VLAN: isolated
    assert [p.name for p in pods.list_pods()] == ["web1"]
    assert manager.status().pods[0]["name"] == "web1"


def test_pod_keeps_its_source_address_outside(topo: Topology, cleanup_pods: list[str]) -> None:
    cleanup_pods.append("client1")
    pod = pods.add_pod("node2", "client1", "flat")
    server = labnet.spawn(
        f"{PREFIX}out", [sys.executable, "-c", SERVER, "9000", "out"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        out = pods.exec_in_pod("client1", [sys.executable, "-c", CLIENT, "198.19.200.10", "9000"])
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["out", pod.ip]  # no SNAT on the flat plane
    finally:
        server.kill()
        server.wait(timeout=10)


def test_bridge_pod_shares_the_flat_pool(topo: Topology, cleanup_pods: list[str]) -> None:
    cleanup_pods.extend(["mac2", "br3"])
    mac = pods.add_pod("node2", "mac2", "flat")
    br = pods.add_pod("node3", "br3", "flat-bridge")
    assert _in_pool(br.ip, topo) and br.ip != mac.ip
    assert ping(f"{PREFIX}vm2", br.ip)
    assert pods.exec_in_pod("mac2", ["ping", "-c", "1", "-W", "1", br.ip]).returncode == 0


def test_del_pod_removes_it_and_sticky_address_returns(topo: Topology) -> None:
    first = pods.add_pod("node1", "redis-0", "flat", namespace="db")
    try:
        pods.del_pod("redis-0")
        assert f"{POD_NS_PREFIX}redis-0" not in labnet.list_namespaces(PREFIX)
        assert not ping(f"{PREFIX}vm1", first.ip, tries=1, wait=1)
        again = pods.add_pod("node3", "redis-0", "flat", namespace="db")
        assert again.ip == first.ip  # same pod identity, same address, other node
        assert ping(f"{PREFIX}vm1", again.ip)
    finally:
        pods.del_pod("redis-0")
    pods.del_pod("redis-0")  # gone already: fine


def test_plugin_error_keeps_its_code(topo: Topology) -> None:
    with pytest.raises(FlatnetError) as info:
        pods.add_pod("node1", "bad", "no-such-network")
    assert "flat" in info.value.details
    node3 = topo.node("node3")
    from flatnet.datapath.netns import iproute

    with iproute(node3.ns) as ip:  # the node lost its parent link (renamed away; down to rename)
        idx = ip.link_lookup(ifname=node3.flat_master)[0]
        ip.link("set", index=idx, state="down")
        ip.link("set", index=idx, ifname="gone0")
    try:
        with pytest.raises(FlatnetError) as info:
            pods.add_pod("node3", "orphan", "flat")
        assert info.value.code == 103, (info.value.code, info.value.msg)  # PARENT_MISSING
        assert f"{POD_NS_PREFIX}orphan" not in labnet.list_namespaces(PREFIX)
    finally:
        with iproute(node3.ns) as ip:
            ip.link("set", index=idx, ifname=node3.flat_master)
        manager.up(nodes=3)  # idempotent up repairs the rest (link up, IPv6 address, routes)
        assert ping(f"{PREFIX}vm1", node3.ipv6)


def test_service_vip_reaches_a_pod_on_another_node(topo: Topology, cleanup_pods: list[str]) -> None:
    cleanup_pods.append("svc2")
    backend = pods.add_pod("node2", "svc2", "flat")
    server = pods.spawn_in_pod("svc2", [sys.executable, "-c", SERVER, "80", "svc2"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        chosen = manager.install_service(["svc2"])
        assert chosen == {n.name: backend.ip for n in topo.nodes}
        node1 = topo.node("node1")
        out = labnet.run_cmd(node1.ns, [sys.executable, "-c", CLIENT, topo.service.vip, "80"])
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["svc2", node1.ipv4]
    finally:
        server.kill()
        server.wait(timeout=10)
        for node in topo.nodes:
            labnet.remove_service(node.ns)


def test_overlay_pods_talk_across_nodes(topo: Topology, cleanup_pods: list[str]) -> None:
    cleanup_pods.extend(["ov1", "ov2"])
    a = pods.add_pod("node1", "ov1", "overlay")
    b = pods.add_pod("node2", "ov2", "overlay")
    cluster = ipaddress.ip_network(topo.overlay.cluster_subnet)
    assert ipaddress.ip_address(a.ip) in cluster and ipaddress.ip_address(b.ip) in cluster
    assert pods.exec_in_pod("ov1", ["ping", "-c", "1", "-W", "2", b.ip]).returncode == 0
