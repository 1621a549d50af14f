"""A namespace per VLAN, on real 802.1Q: pool rules put each namespace's pods on its VLAN.

Runs in the kernel tier's VM (marker ``kernel``). The network has two pools of one subnet,
``frontend`` on VLAN 100 and ``payments`` on VLAN 300, each naming its namespace; the agent's
``Service`` serves CNI ADD/DEL (through ``flatnet.cni.dispatch``, as the forwarder hands them
over) with the pod's namespace and name in CNI_ARGS, the real macvlan datapath and a SQLite store.
Topology: a VLAN-filtering switch; the node's port a trunk of VLANs 100 and 300; ``vm100`` has
its address on its own ``eth0.100``, ``vm300`` on ``eth0.300``, both in the pods' subnet — so only
the VLAN keeps a VM from a pod of the other namespace, not routing.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
from flatnet_topo import Node, link_names
from vlan_topo import TrunkTopology

from flatnet.agent.service import Service
from flatnet.cni import dispatch, parse_netconf
from flatnet.datapath import netns
from tests.helpers.net import ping

pytestmark = [
    pytest.mark.netns,
    pytest.mark.kernel("8021q", "vlan_filtering"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

POOLS = [
    {
        "name": "frontend",
        "subnet": "198.18.100.0/24",
        "rangeStart": "198.18.100.20",
        "rangeEnd": "198.18.100.59",
        "vlan": 100,
        "namespaces": ["frontend"],
    },
    {
        "name": "payments",
        "subnet": "198.18.100.0/24",
        "rangeStart": "198.18.100.60",
        "rangeEnd": "198.18.100.99",
        "vlan": 300,
        "namespaces": ["payments"],
    },
]


class NamespaceVlans(TrunkTopology):
    """One node on a trunk of VLANs 100 and 300; a VM on each VLAN, same subnet."""

    @property
    def vm300(self) -> str:
        return f"fnt-{self.tag}-v300"

    def build(self) -> None:
        from vlan_topo import must

        self._ns(self.switch)
        must(self.switch, "ip", "link", "add", "br0", "type", "bridge", "vlan_filtering", "1", "vlan_default_pvid", "0")
        must(self.switch, "ip", "link", "set", "br0", "up")
        ns = self._ns(f"fnt-{self.tag}-n1")
        self._trunk(ns, "n1p0", (100, 300))
        self.nodes.append(
            Node(ns, ipaddress.IPv4Interface("198.18.100.11/24"), ipaddress.IPv6Interface("2001:db8::11/64"), ("eth0",))
        )
        self._ns(self.vm)
        self._trunk(self.vm, "vm100", (100,))
        self._sub(self.vm, 100, ["198.18.100.200/24"])
        self._ns(self.vm300)
        self._trunk(self.vm300, "vm300", (300,))
        self._sub(self.vm300, 300, ["198.18.100.201/24"])


@pytest.fixture
def topo() -> Iterator[NamespaceVlans]:
    with NamespaceVlans(nodes_n=1) as t:
        yield t


def netconf(topo: NamespaceVlans, db: Path) -> dict[str, Any]:
    """The network as containerd would pass it (the capability declared, no annotation set)."""
    return {
        "cniVersion": "1.0.0",
        "name": "flat",
        "type": "flatnet",
        "mode": "macvlan",
        "master": "eth0",
        "hostNetns": topo.nodes[0].ns,
        "capabilities": {"io.kubernetes.cri.pod-annotations": True},
        "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {}},
        "ipam": {"pools": POOLS, "store": {"type": "sqlite", "path": str(db)}},
    }


def call(svc: Service, conf: dict[str, Any], verb: str, cid: str, pod_ns: str, k8s_ns: str) -> dict[str, Any]:
    env = {
        "CNI_COMMAND": verb,
        "CNI_CONTAINERID": cid,
        "CNI_IFNAME": "eth0",
        "CNI_NETNS": netns.ns_path(pod_ns) or "",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": f"K8S_POD_NAMESPACE={k8s_ns};K8S_POD_NAME={cid}",
    }
    out = io.StringIO()
    code = dispatch(svc, env, json.dumps(conf).encode(), out, io.StringIO())
    text = out.getvalue()
    res = json.loads(text) if text.strip() else {}
    assert code == 0, res
    return res


def test_namespace_per_vlan_each_vm_reaches_only_its_namespaces_pod(topo: NamespaceVlans, tmp_path: Path) -> None:
    svc = Service(node="n1", lock_dir=str(tmp_path / "locks"))
    conf = netconf(topo, tmp_path / "ipam.db")
    web_ns, pay_ns = topo.pod(), topo.pod()
    try:
        web = call(svc, conf, "ADD", "web-0", web_ns, "frontend")
        pay = call(svc, conf, "ADD", "api-0", pay_ns, "payments")
        web_ip = web["ips"][0]["address"].split("/")[0]
        pay_ip = pay["ips"][0]["address"].split("/")[0]
        assert 20 <= int(web_ip.rsplit(".", 1)[1]) <= 59, web_ip  # the frontend pool, VLAN 100
        assert 60 <= int(pay_ip.rsplit(".", 1)[1]) <= 99, pay_ip  # the payments pool, VLAN 300
        assert {"eth0.100", "eth0.300"} <= link_names(topo.nodes[0].ns), "one 802.1Q sub-interface per VLAN"
        # VM on VLAN 100: the frontend pod, not the payments one (same subnet, other VLAN)
        assert ping(topo.vm, web_ip), "VM on VLAN 100 -> frontend pod"
        assert not ping(topo.vm, pay_ip, tries=1, count=2, wait=1), "VLAN 100 must not reach the VLAN-300 pod"
        # VM on VLAN 300: the reverse
        assert ping(topo.vm300, pay_ip), "VM on VLAN 300 -> payments pod"
        assert not ping(topo.vm300, web_ip, tries=1, count=2, wait=1), "VLAN 300 must not reach the VLAN-100 pod"
        # and from the pods' side
        assert ping(pay_ns, "198.18.100.201") and not ping(pay_ns, "198.18.100.200", tries=1, count=2, wait=1)
        ipam = svc.ipam(parse_netconf(json.dumps(conf).encode()))
        got = {(l.owner.pod, l.pool, l.vlan, dict(l.owner.choices).get(l.pool)) for l in ipam.leases()}
        assert got == {
            ("frontend/web-0", "frontend", 100, "namespace"),
            ("payments/api-0", "payments", 300, "namespace"),
        }
    finally:
        for cid, pod_ns, k8s in (("web-0", web_ns, "frontend"), ("api-0", pay_ns, "payments")):
            call(svc, conf, "DEL", cid, pod_ns, k8s)
        svc.close()
    assert link_names(web_ns) == {"lo"} and link_names(pay_ns) == {"lo"}
