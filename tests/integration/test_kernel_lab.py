"""The lab's switch in its real shape: one VLAN-filtering bridge, nodes on 802.1Q trunks.

Runs in the kernel tier's VM (marker ``kernel``), where ``lab up`` finds 8021q and bridge
vlan_filtering and so builds the ``vlan-aware`` shape (flatnet_lab.lab.topology); on this
machine's kernel it builds ``per-vlan`` (tests/integration/test_lab_*.py cover that one).
"""

from __future__ import annotations

import json
import os

import pytest
from vlan_topo import capture, wait_listening

from tests.helpers.net import ping, sh
from flatnet_lab.testbed import net as labnet
from flatnet_lab.lab import manager

pytestmark = [
    pytest.mark.netns,
    pytest.mark.kernel("8021q", "vlan_filtering"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
]


@pytest.fixture(scope="module")
def lab():
    assert labnet.vlan_switch_supported(), "the kernel tier's kernel must have 8021q + vlan_filtering"
    with manager.exclusive():
        if manager.state() is not None:
            pytest.fail("a lab is already up inside the VM")
        try:
            yield manager.up(nodes=2, agents=False)
        finally:
            manager.down()


def test_lab_up_builds_the_vlan_aware_switch_and_says_so(lab, record_property) -> None:
    assert lab.shape == "vlan-aware"
    assert manager.status().shape == "vlan-aware"
    assert "VLAN-filtering bridge" in lab.describe()
    record_property("kernel_tier_note", f"lab up in the VM: {lab.describe()}")
    sw = lab.switch_ns
    links = sh(sw, "ip", "-d", "-j", "link", "show", "type", "bridge").stdout
    bridges = {b["ifname"]: b["linkinfo"]["info_data"] for b in json.loads(links)}
    assert list(bridges) == ["br0"] and bridges["br0"]["vlan_filtering"] == 1, bridges
    vlans = {e["ifname"]: e["vlans"] for e in json.loads(sh(sw, "bridge", "-j", "vlan", "show").stdout)}
    trunk = vlans["n1-v100"]
    assert {v["vlan"] for v in trunk} == {100, 200}
    assert not any("PVID" in v.get("flags", []) for v in trunk), "a trunk has no untagged VLAN"
    assert [(v["vlan"], "PVID" in v.get("flags", [])) for v in vlans["vm1"]] == [(100, True)]
    assert [(v["vlan"], "PVID" in v.get("flags", [])) for v in vlans["h200"]] == [(200, True)]
    node = lab.node("node1").ns
    kind = json.loads(sh(node, "ip", "-d", "-j", "link", "show", "vlan100").stdout)[0]["linkinfo"]
    assert kind["info_kind"] == "vlan" and kind["info_data"]["id"] == 100


def test_lab_vm_reaches_a_node_through_a_tagged_trunk_and_vlan_200_does_not(lab) -> None:
    vm1, h200 = lab.host("fnlab-vm1").ns, lab.host("fnlab-vlan200").ns
    cap = capture(lab.switch_ns, "n1-v100", "vlan 100 and icmp", count=1, seconds=30)
    try:
        wait_listening(cap)
        assert ping(vm1, "198.18.100.11")
        out, _ = cap.communicate(timeout=35)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.communicate()
    assert "vlan 100" in out and "ethertype 802.1Q" in out, out
    assert not ping(h200, "198.18.100.11", tries=1, count=2, wait=1)
