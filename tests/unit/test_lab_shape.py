"""The lab switch's two shapes, as data (flatnet_lab.lab.topology): no kernel needed."""

from __future__ import annotations

import pytest

from flatnet.errors import ConfigError
from flatnet_lab.lab.topology import default_topology


def test_per_vlan_shape_is_one_plain_bridge_per_vlan_and_access_ports_only() -> None:
    topo = default_topology(2)
    assert topo.shape == "per-vlan"
    assert [(s.vlan, s.bridge) for s in topo.segments] == [(100, "br100"), (200, "br200")]
    assert not any(i.trunk for h in topo.hosts for i in h.ifaces)
    assert "per VLAN" in topo.describe()


def test_vlan_aware_shape_puts_nodes_on_trunks_and_everyone_else_on_access_ports() -> None:
    topo = default_topology(2, "vlan-aware")
    assert {s.bridge for s in topo.segments} == {"br0"}
    for host in topo.hosts:
        for iface in host.ifaces:
            if iface.segment is None:
                assert iface.trunk is None  # point-to-point links are not switch ports
            elif host.role == "node":
                assert iface.trunk == f"t-{iface.name}" and len(iface.trunk) <= 15
            else:
                assert iface.trunk is None, (host.ns, iface)
    # the names the rest of the lab uses do not change with the shape
    flat = default_topology(2)
    assert [(n.flat_master, n.bridge_master, n.ipv4) for n in topo.nodes] == [
        (n.flat_master, n.bridge_master, n.ipv4) for n in flat.nodes
    ]
    assert "VLAN-filtering bridge" in topo.describe()


def test_unknown_shape_is_refused_by_name() -> None:
    with pytest.raises(ConfigError) as exc:
        default_topology(2, "stacked")
    assert "stacked" in exc.value.msg and "vlan-aware" in exc.value.details
