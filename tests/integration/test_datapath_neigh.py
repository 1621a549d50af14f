"""Announcements (gratuitous ARP, unsolicited NA) are real frames a neighbour accepts.

Also the small pure pieces: deterministic names, mode lookup.
"""

from __future__ import annotations

import ipaddress
import os
import time

import pytest
from flatnet_topo import Topology

from flatnet import errors
from flatnet.datapath import get_datapath, neigh, netns
from flatnet.datapath.common import host_veth_name, shim_name
from tests.helpers.net import sh


def test_names_are_deterministic_and_fit_ifnamsiz() -> None:
    a = host_veth_name("c0ffee", "eth0")
    assert a == host_veth_name("c0ffee", "eth0") and a.startswith("fn") and len(a) == 13
    assert a != host_veth_name("c0ffee", "net1") != host_veth_name("c0ffef", "eth0")
    assert shim_name("eth0").startswith("fns-") and len(shim_name("bond0.1234")) <= 15
    assert shim_name("eth0") != shim_name("eth1")


def test_unknown_mode_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError) as exc:
        get_datapath("sriov")
    assert "sriov" in exc.value.msg and "macvlan" in exc.value.msg


def test_garp_frame_layout() -> None:
    frame = neigh.garp_frame("02:00:00:00:00:07", ipaddress.IPv4Address("198.18.1.7"))
    assert frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x06"
    assert frame[28:32] == frame[38:42] == bytes([198, 18, 1, 7])  # sender IP == target IP


@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
def test_announcements_replace_a_stale_binding_at_a_neighbour() -> None:
    """The VM still maps the (reused) pod addresses to an old MAC; one announcement fixes it."""
    with Topology(nodes_n=0) as topo:
        pod_ns = topo.pod()
        topo._port(pod_ns, "eth0", "pa", "br100", ["198.18.100.77/24", "2001:db8:100::77/64"])
        addrs = (ipaddress.ip_interface("198.18.100.77/24"), ipaddress.ip_interface("2001:db8:100::77/64"))
        with netns.iproute(topo.vm) as ip:
            vm_eth0 = ip.link_lookup(ifname="eth0")[0]
            for a in addrs:
                ip.neigh("add", dst=str(a.ip), ifindex=vm_eth0, lladdr="02:00:00:00:de:ad", state="stale")
        with netns.iproute(pod_ns) as ip:
            mac = ip.link("get", index=ip.link_lookup(ifname="eth0")[0])[0].get("address")
        table = sh(topo.vm, "ip", "neigh", "show", "dev", "eth0").stdout
        assert table.count("02:00:00:00:de:ad") == 2 and mac not in table
        assert neigh.announce(f"/run/netns/{pod_ns}", "eth0", mac, addrs) == 2
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            table = sh(topo.vm, "ip", "neigh", "show", "dev", "eth0").stdout
            if all(f"{a.ip} lladdr {mac}" in table for a in addrs):
                break
            time.sleep(0.1)
        assert f"198.18.100.77 lladdr {mac}" in table
        assert f"2001:db8:100::77 lladdr {mac}" in table
