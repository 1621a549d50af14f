"""Conflicts on the VLAN, in the lab: a VM takes an address of the pool by hand; the next pod
skips it (probed, answered, quarantined) and the VM keeps working — real traffic.

Run under the lab lock (``flock /tmp/fnlab.lock``; ``fresh_lab`` takes it as well).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from typing import Iterator

import pytest

from tests.helpers.lab import CLIENT, SERVER, fresh_lab

from flatnet_lab.testbed import net as labnet
from flatnet_lab.lab import netconf, pods
from flatnet_lab.lab.topology import PREFIX, Topology
from tests.helpers.cli import flatnet_cli

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
]
VM = f"{PREFIX}vm1"
PORT = 18085


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with fresh_lab(nodes=1) as topo:
        yield topo


def ping(ns: str, dst: str, tries: int = 3) -> bool:
    return any(
        labnet.run_cmd(ns, ["ping", "-c", "1", "-W", "1", dst], timeout=10).returncode == 0 for _ in range(tries)
    )


def test_a_hand_configured_vm_address_is_skipped_and_the_vm_keeps_it(topo: Topology) -> None:
    names: list[str] = []
    server: subprocess.Popen | None = None
    try:
        names.append("fni-c1")
        first = pods.add_pod("node1", "fni-c1", "flat")
        # the next address the pool would hand out, configured by hand on a VM
        taken = str(ipaddress.ip_address(first.ip) + 1)
        labnet.ensure_addresses(VM, "eth0", [f"{taken}/24"])
        names.append("fni-c2")
        second = pods.add_pod("node1", "fni-c2", "flat")
        assert second.ip != taken, f"the pod got {taken}, which the VM answers for"
        print(f"\nconflict: vm1 configured {taken} by hand; pod fni-c2 probed it, got {second.ip} instead")

        proc = flatnet_cli(
            "ipam",
            "ls",
            "--json",
            "--store",
            f"sqlite:{netconf.store_config('sqlite', None)['path']}",
            check=True,
        )
        quarantined = json.loads(proc.stdout)["quarantined"]
        vm_mac = json.loads(labnet.run_cmd(VM, ["ip", "-j", "link", "show", "eth0"]).stdout)[0]["address"]
        assert [(q["address"], q["mac"]) for q in quarantined] == [(taken, vm_mac)], quarantined
        print(f"ipam ls: quarantined {quarantined[0]['address']} ({quarantined[0]['why']})")

        # the VM keeps working at that address: ping and TCP from the new pod and from vm2
        server = subprocess.Popen(
            ["ip", "netns", "exec", VM, sys.executable, "-c", SERVER, str(PORT), "vm1"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        assert ping(f"{PREFIX}vm2", taken)
        out = pods.exec_in_pod("fni-c2", [sys.executable, "-c", CLIENT, taken, str(PORT)])
        assert out.returncode == 0 and out.stdout.split() == ["vm1", second.ip], out
        neigh = labnet.run_cmd(f"{PREFIX}vm2", ["ip", "neigh", "show", taken]).stdout
        assert vm_mac in neigh, neigh  # the VLAN still maps the address to the VM
        print(
            f"vm1 still answers at {taken}: ping from vm2 ok, TCP from pod fni-c2 ({second.ip}) ok, "
            f"vm2's neighbour entry {neigh.strip()}"
        )
    finally:
        if server is not None:
            server.kill()
            server.wait(10)
        for name in names:
            pods.del_pod(name)
