"""The bench's ipvlan and 802.1Q rows, measured in the kernel tier's VM as ratios.

``flatnet bench`` on this machine reports ipvlan as unavailable (no CONFIG_IPVLAN) and has no
802.1Q row (no 8021q). Here, inside the VM booting Debian's kernel, the same measurement
functions (flatnet_lab.bench.iperf, flatnet_lab.lab.traffic) run over the same kind of topology
(tests/integration/flatnet_topo.py: two nodes on one segment), pod on node 1 -> pod on
node 2, side by side with the wire (node 1 -> node 2) and macvlan. Under TCG emulation
absolute figures mean nothing, so only ratios to the wire and to macvlan are reported
(the host's pytest summary prints them); a path that carries no traffic fails the test.
"""

from __future__ import annotations

import os

import pytest
from flatnet_topo import Topology, pod_addrs

from flatnet_lab.bench import iperf
from flatnet.datapath import get_datapath, netns
from flatnet.datapath.api import AttachSpec
from flatnet_lab.lab import traffic

pytestmark = [
    pytest.mark.netns,
    pytest.mark.kernel("ipvlan", "8021q"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

# (row, mode, vlan) - the rows the bench cannot measure on this machine, plus macvlan
ROWS = (
    ("flat macvlan", "macvlan", None),
    ("flat ipvlan", "ipvlan", None),
    ("flat macvlan on 802.1Q (eth0.100)", "macvlan", 100),
    ("flat ipvlan on 802.1Q (eth0.100)", "ipvlan", 100),
)
SECONDS = int(os.environ.get("FLATNET_VM_BENCH_SECONDS", "3"))


def _measure(src: str, dst: str, ip: str) -> tuple[float, float]:
    """(TCP 1-stream Gbit/s, RR p50 µs): the bench's own measurement calls."""
    gbps = iperf.throughput(src, dst, ip, SECONDS, 1, False, port=5401)
    lat = traffic.rr_latency(src, dst, ip, n=200, port=5499, timeout=30)
    return gbps, lat.p50_us


def _pods_path(topo: Topology, mode: str, vlan: int | None, n: int) -> tuple[float, float]:
    """A pod on each node (``mode``, on ``eth0`` or its 802.1Q ``eth0.<vlan>``), measured."""
    dp = get_datapath(mode)
    specs = []
    for node, k in ((0, n), (1, n + 1)):
        pod_ns = topo.pod()
        specs.append(
            AttachSpec(
                container_id=f"ctr-{pod_ns}",
                ifname="eth0",
                netns=netns.ns_path(pod_ns) or "",
                mode=mode,
                master="eth0",
                vlan=vlan,
                addresses=pod_addrs(k),
                host_netns=topo.nodes[node].ns,
            )
        )
    done = []
    try:
        for spec in specs:
            dp.add(spec)
            done.append(spec)
        dst = str(specs[1].addresses[0].ip)
        return _measure(os.path.basename(specs[0].netns), os.path.basename(specs[1].netns), dst)
    finally:
        for spec in done:
            dp.delete(spec)


def test_ipvlan_and_8021q_rows_against_the_wire_and_macvlan(record_property) -> None:
    rows: dict[str, tuple[float, float]] = {}
    # one topology per link kind: a parent cannot hold macvlan and ipvlan children at once
    # (the shim stays on it as node infrastructure)
    for kind in ("macvlan", "ipvlan"):
        with Topology(nodes_n=2) as topo:
            n1, n2 = topo.nodes
            if "wire" not in rows:
                rows["wire"] = _measure(n1.ns, n2.ns, str(n2.addr4.ip))
            for k, (row, mode, vlan) in enumerate(ROWS):
                if mode != kind:
                    continue
                rows[row] = _pods_path(topo, mode, vlan, 60 + 2 * k)
    wire_g, wire_l = rows["wire"]
    mac_g, mac_l = rows["flat macvlan"]
    lines = [
        "kernel-tier bench (ratios; TCG: absolute figures are meaningless)",
        f"  {'path':36} {'TCP/wire':>9} {'TCP/macvlan':>12} {'RR p50/wire':>12} {'RR p50/macvlan':>15}",
    ]
    for row, (g, lat) in rows.items():
        assert g > 0 and lat > 0, f"{row}: no traffic measured ({g} Gbit/s, {lat} µs)"
        lines.append(f"  {row:36} {g / wire_g:9.2f} {g / mac_g:12.2f} {lat / wire_l:12.2f} {lat / mac_l:15.2f}")
    for line in lines:
        record_property("kernel_tier_note", line)
    print("\n".join(lines))
