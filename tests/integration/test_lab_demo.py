"""The reachability matrix and ``flatnet lab demo`` on the real lab, with real packets.

The demo test comes first and takes no lock itself: the demo holds the lab lock while it
runs, and the module's lab fixture (which also holds it) is only created afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Iterator

import pytest

from tests.helpers.lab import fresh_lab

from flatnet_lab.testbed import net as labnet
from flatnet_lab.lab import manager, reach
from flatnet_lab.lab.topology import POD_NS_PREFIX, PREFIX, Topology

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
]

CLI = [sys.executable, "-m", "flatnet.cli.main"]


def _pod_namespaces() -> list[str]:
    return labnet.list_namespaces(POD_NS_PREFIX)


def test_demo_end_to_end_leaves_nothing_behind() -> None:
    lab_was_up = manager.state() is not None
    before = labnet.list_namespaces(PREFIX)
    proc = subprocess.run(
        [*CLI, "lab", "demo", "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "220"},
    )
    out = proc.stdout
    assert proc.returncode == 0, f"demo failed:\n{out[-4000:]}\n{proc.stderr[-2000:]}"
    for key in (
        "(a) reachability",
        "FLAT measured",
        "OVERLAY measured",
        "(b) source address seen by the VM",
        "SNAT",
        "(c) outside host -> pod",
        "node:hostPort (DNAT)",
        "(d) routes per node",
        "(e) bandwidth and latency",
        "Gbit/s",
        "wire node1 -> node2",
        "every reachability cell matched its model",
    ):
        assert key in out, f"{key!r} missing from the demo output:\n{out[-4000:]}"
    assert "MISMATCH" not in out
    assert not [ns for ns in _pod_namespaces() if ns.startswith(f"{POD_NS_PREFIX}demo-")]
    if lab_was_up:
        assert manager.state() is not None  # not ours to take down
    else:
        assert labnet.list_namespaces(PREFIX) == before == []
        assert manager.state() is None


def test_check_reach_without_a_lab_says_so() -> None:
    if manager.state() is not None:
        pytest.skip("a lab is up (the module fixture's or someone else's)")
    proc = subprocess.run([*CLI, "check", "reach"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "no lab is up" in proc.stderr and "flatnet lab up" in proc.stderr


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with fresh_lab() as topo:
        yield topo


@pytest.mark.parametrize("network", ["flat", "overlay"])
def test_matrix_matches_the_model(topo: Topology, network: str) -> None:
    [m] = reach.check_lab([network])
    assert [c.key for c in m.cells] == [r.key for r in reach.ROWS]
    report = "\n".join(f"{c.label}: {c.text()} (expected {c.expected.text()})" for c in m.cells)
    assert m.mismatches == [], report
    cells = {c.key: c for c in m.cells}
    node1 = topo.nodes[0]
    pod_vm = cells["pod-vm"].result
    assert pod_vm.ok
    if network == "flat":
        # the VM saw the pod's own address and port: no NAT anywhere on the path
        assert pod_vm.seen_src_ip == pod_vm.client_src_ip != node1.ipv4
        assert pod_vm.seen_src_port == pod_vm.client_src_port
        assert cells["vm-pod"].result.ok and cells["out-pod"].result.ok
        assert cells["out-pod"].result.seen_src_ip == "198.19.200.10"
    else:
        # the seed's flannel picture: the VM sees the node, not the pod
        assert pod_vm.seen_src_ip == node1.ipv4 != pod_vm.client_src_ip
        assert not cells["vm-pod"].result.ok and not cells["out-pod"].result.ok
    assert cells["pod-pod"].result.ok and cells["pod-svc"].result.ok
    assert not cells["v200-pod"].result.ok
    assert not [ns for ns in _pod_namespaces() if ns.startswith(f"{POD_NS_PREFIX}chk-")]


def test_check_reach_cli_json(topo: Topology) -> None:
    proc = subprocess.run(
        [*CLI, "check", "reach", "--network", "flat", "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    data = json.loads(proc.stdout)
    assert data["ok"] is True
    [net] = data["networks"]
    assert net["network"] == "flat" and net["mismatches"] == []
    assert len(net["cells"]) == len(reach.ROWS)
