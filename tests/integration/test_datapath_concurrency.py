"""Concurrent ADDs on a fresh node: shared node links (bridge, shim) are created exactly once."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from flatnet_topo import Topology, link_names, pod_addrs

from flatnet.datapath import get_datapath
from flatnet.datapath.api import AttachSpec
from flatnet.datapath.common import host_veth_name, shim_name
from tests.helpers.net import ping

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]


@pytest.mark.parametrize("mode", ["macvlan", "bridge"])
def test_parallel_adds_share_one_node_link(mode: str) -> None:
    ports = ("eth0", "eth1") if mode == "bridge" else ("eth0",)
    master = ports[-1]
    with Topology(nodes_n=1, ports=ports, addr_port=master) as topo:
        node = topo.nodes[0].ns
        specs = [
            AttachSpec(
                container_id=f"ctr-{i}",
                ifname="eth0",
                netns=f"/run/netns/{topo.pod()}",
                mode=mode,
                master=master,
                addresses=pod_addrs(i),
                host_netns=node,
            )
            for i in range(1, 5)
        ]
        dp = get_datapath(mode)
        with ThreadPoolExecutor(max_workers=4) as pool:
            atts = list(pool.map(dp.add, specs))
        try:
            assert len({a.mac for a in atts}) == 4
            shared = "fnbr0" if mode == "bridge" else shim_name(master)
            assert shared in link_names(node)
            for i in range(1, 5):
                assert ping(topo.vm, f"198.18.100.{50 + i}")
                assert ping(node, f"198.18.100.{50 + i}")
        finally:
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(dp.delete, specs))
        left = link_names(node)
        assert {host_veth_name(s.container_id, "eth0") for s in specs}.isdisjoint(left)
        assert not any(n.startswith("fntmp") for n in left)
