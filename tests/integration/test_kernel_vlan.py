"""Real 802.1Q: pods on a tagged VLAN of a trunk, across a VLAN-filtering switch.

Runs in the kernel tier's VM (marker ``kernel``): this machine's kernel has neither 8021q nor
bridge vlan_filtering. Topology: tests/integration/vlan_topo.py (every port a trunk of VLANs
100 and 200; the VM's address is on its own ``eth0.100``, the VLAN-200 host's on ``eth0.200``
in the same subnet).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import replace

import pytest
from flatnet_topo import link_names, pod_addrs, tcp_exchange
from vlan_topo import TrunkTopology, capture, wait_listening

from tests.helpers.net import ping, sh
from flatnet.datapath import get_datapath, netns
from flatnet.datapath.api import AttachSpec, Route

pytestmark = [
    pytest.mark.netns,
    pytest.mark.kernel("8021q", "vlan_filtering"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

ROUTES = (Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("198.18.100.1")),)


@pytest.fixture(scope="module")
def topo():
    with TrunkTopology(nodes_n=2) as t:
        yield t


def _spec(topo: TrunkTopology, node: int, pod_ns: str, n: int, mode: str = "macvlan") -> AttachSpec:
    return AttachSpec(
        container_id=f"ctr-{pod_ns}",
        ifname="eth0",
        netns=netns.ns_path(pod_ns) or "",
        mode=mode,
        master="eth0",
        vlan=100,
        addresses=pod_addrs(n),
        routes=ROUTES,
        host_netns=topo.nodes[node].ns,
    )


def _ip(spec: AttachSpec) -> str:
    return str(next(a.ip for a in spec.addresses if a.version == 4))


def test_macvlan_on_vlan_100_reaches_the_vm_and_not_vlan_200(topo: TrunkTopology, record_property) -> None:
    node = topo.nodes[0].ns
    assert "eth0.100" not in link_names(node)
    pod_ns = topo.pod()
    spec = _spec(topo, 0, pod_ns, 41)
    pod_ip = _ip(spec)
    dp = get_datapath("macvlan")
    # the trunk seen from the switch: the node's port, frames to/from the pod only
    cap = capture(topo.switch, "n1p0", "vlan and icmp", count=2, seconds=40)
    try:
        wait_listening(cap)
        dp.add(spec)
        assert "eth0.100" in link_names(node), "the 802.1Q sub-interface is made on demand"
        assert ping(pod_ns, "198.18.100.200"), "pod on VLAN 100 -> VM on VLAN 100"
        out, _ = cap.communicate(timeout=45)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.communicate()
    tagged = [ln for ln in out.splitlines() if "vlan 100" in ln and pod_ip in ln]
    assert tagged, f"no 802.1Q-tagged frame of the pod on the trunk:\n{out}"
    assert "ethertype 802.1Q" in tagged[0]
    record_property("kernel_tier_note", f"trunk capture (tcpdump -e on the node's switch port): {tagged[0]}")
    try:
        dp.check(spec)
        assert ping(topo.vm, pod_ip), "VM on VLAN 100 -> pod"
        reply, peer = tcp_exchange(topo.vm, "198.18.100.200", pod_ns, "198.18.100.200", port=5301)
        assert reply == f"hello {pod_ip}" and peer == pod_ip, (reply, peer)
        # same subnet, other VLAN: no ARP answer crosses from VLAN 200 to VLAN 100
        assert not ping(topo.v200, pod_ip, tries=1, count=2, wait=1)
        assert not ping(pod_ns, "198.18.100.201", tries=1, count=2, wait=1)
    finally:
        dp.delete(spec)
    assert link_names(pod_ns) == {"lo"}
    assert "eth0.100" in link_names(node), "the sub-interface is node infrastructure: kept"


def test_pods_of_two_nodes_meet_on_vlan_100_across_the_switch(topo: TrunkTopology) -> None:
    dp = get_datapath("macvlan")
    a_ns, b_ns = topo.pod(), topo.pod()
    a, b = _spec(topo, 0, a_ns, 42), _spec(topo, 1, b_ns, 43)
    dp.add(a)
    try:
        dp.add(b)
        try:
            assert ping(a_ns, _ip(b))
            assert ping(b_ns, "198.18.100.200")
        finally:
            dp.delete(b)
    finally:
        dp.delete(a)


def test_vlan_200_host_sees_no_vlan_100_frame(topo: TrunkTopology) -> None:
    """The VLAN-200 host's trunk carries nothing of VLAN 100's broadcast (ARP) traffic."""
    pod_ns = topo.pod()
    spec = _spec(topo, 0, pod_ns, 44)
    dp = get_datapath("macvlan")
    cap = capture(topo.switch, "v200", "vlan 100", count=1, seconds=8)
    try:
        wait_listening(cap)
        dp.add(spec)
        sh(pod_ns, "ping", "-n", "-c", "3", "-W", "1", "198.18.100.250")  # ARP broadcasts on VLAN 100
        out, _ = cap.communicate(timeout=15)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.communicate()
        dp.delete(spec)
    assert "vlan 100" not in out, out


# --- bridge mode on a VLAN-aware bridge ---------------------------------------------------------


@pytest.fixture(scope="module")
def btopo():
    with TrunkTopology(nodes_n=1) as t:
        yield t


def _bridge_vlans(ns: str) -> dict[str, list[dict]]:
    import json

    out = sh(ns, "bridge", "-j", "vlan", "show").stdout
    return {e["ifname"]: e["vlans"] for e in json.loads(out or "[]")}


def test_bridge_mode_vlan_aware_bridge_access_ports_and_a_trunk(btopo: TrunkTopology) -> None:
    node = btopo.nodes[0].ns
    dp = get_datapath("bridge")
    p100, p200 = btopo.pod(), btopo.pod()
    s100 = _spec(btopo, 0, p100, 45, mode="bridge")
    s200 = replace(_spec(btopo, 0, p200, 46, mode="bridge"), vlan=200)
    dp.add(s100)
    try:
        dp.add(s200)
        try:
            names = link_names(node)
            assert "fnbr0" in names and not {"fnbr100", "fnbr200", "eth0.100", "eth0.200"} & names, names
            vlans = _bridge_vlans(node)
            trunk = {v["vlan"]: v.get("flags", []) for v in vlans["eth0"]}
            assert 100 in trunk and 200 in trunk and "Egress Untagged" not in trunk[100], trunk
            pods = {k: v for k, v in vlans.items() if k.startswith("fn") and k != "fnbr0"}
            assert sorted(sorted(v["vlan"] for v in vl) for vl in pods.values()) == [[100], [200]], pods
            for vl in pods.values():
                assert set(vl[0]["flags"]) >= {"PVID", "Egress Untagged"}, vl
            dp.check(s100)
            dp.check(s200)
            assert ping(p100, "198.18.100.200"), "VLAN-100 pod -> VM on VLAN 100"
            assert ping(p200, "198.18.100.201"), "VLAN-200 pod -> host on VLAN 200"
            # the same subnet on both VLANs: a VLAN-100 pod reaches neither VLAN 200's host nor pod
            assert not ping(p100, "198.18.100.201", tries=1, count=2, wait=1)
            assert not ping(p100, _ip(s200), count=2, wait=1)
            assert not ping(btopo.v200, _ip(s100), count=2, wait=1)
        finally:
            dp.delete(s200)
    finally:
        dp.delete(s100)
    assert link_names(p100) == {"lo"} and link_names(p200) == {"lo"}


def test_bridge_mode_vlan_aware_still_drops_spoofed_and_tagged_frames(btopo: TrunkTopology) -> None:
    dp = get_datapath("bridge")
    pod_ns = btopo.pod()
    spec = _spec(btopo, 0, pod_ns, 47, mode="bridge")
    dp.add(spec)
    try:
        assert ping(pod_ns, "198.18.100.200")
        # another source address on the pod's own port: the anti-spoofing rules drop it
        sh(pod_ns, "ip", "addr", "add", "198.18.100.99/24", "dev", "eth0")
        assert not _from(pod_ns, "198.18.100.99")
        # a tagged frame into VLAN 200 (VLAN hopping): neither the bridge nor the rules pass it
        sh(pod_ns, "ip", "link", "add", "link", "eth0", "name", "eth0.200", "type", "vlan", "id", "200")
        sh(pod_ns, "ip", "addr", "add", "198.18.100.98/24", "dev", "eth0.200")
        sh(pod_ns, "ip", "link", "set", "eth0.200", "up")
        assert not ping_via(pod_ns, "eth0.200", "198.18.100.201")
        assert ping(pod_ns, "198.18.100.200"), "the pod itself still works"
    finally:
        dp.delete(spec)


def _from(ns: str, src: str) -> bool:
    """A ping from ``src`` (not the pod's address) that the VM answers."""
    return sh(ns, "ping", "-n", "-c", "2", "-W", "1", "-I", src, "198.18.100.200").returncode == 0


def ping_via(ns: str, dev: str, dst: str) -> bool:
    return sh(ns, "ping", "-n", "-c", "2", "-W", "1", "-I", dev, dst).returncode == 0
