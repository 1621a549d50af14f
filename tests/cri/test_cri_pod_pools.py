"""Pools per namespace and pod annotations through containerd's CRI, the way kubelet drives it.

The node's conflist declares the capability ``io.kubernetes.cri.pod-annotations`` (as the
chart's does), so containerd passes each sandbox's annotations (``PodSandboxConfig.annotations``,
set here as kubelet sets them from the pod's metadata) to flatnet in runtimeConfig, and the pod's
namespace and name in CNI_ARGS. Each rule ends with real traffic from the VM on the same L2; each
refusal with containerd's RunPodSandbox error carrying flatnet's message, and nothing left on the
node (no link, route, nft rule or lease beyond the baseline).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from typing import Any, Iterator

import pytest

from flatnet_lab.testbed import net as labnet
from flatnet_lab.testbed.cri import CriError, CriNode, PortMap, snapshot

from .conftest import assert_clean, require_tools
from .traffic import ping

pytestmark = [pytest.mark.netns, pytest.mark.cri, pytest.mark.timeout(600)]

POOL, IP = "flatnet.io/pool", "flatnet.io/ip"
SUBNET = "198.18.100.0/23"
POOLS: list[dict[str, Any]] = [
    {"name": "shared", "subnet": SUBNET, "rangeStart": "198.18.100.20", "rangeEnd": "198.18.100.99"},
    {
        "name": "payments",
        "subnet": SUBNET,
        "rangeStart": "198.18.101.20",
        "rangeEnd": "198.18.101.59",
        "namespaces": ["payments"],
        "sticky": True,
    },
    {"name": "db", "subnet": SUBNET, "rangeStart": "198.18.101.100", "rangeEnd": "198.18.101.119"},
]
for _p in POOLS:
    _p["gateway"] = "198.18.100.1"


def in_pool(ip: str, name: str) -> bool:
    p = next(p for p in POOLS if p["name"] == name)
    lo, hi = (int(ipaddress.ip_address(p[k])) for k in ("rangeStart", "rangeEnd"))
    return lo <= int(ipaddress.ip_address(ip)) <= hi


class PoolsNode(CriNode):
    """The test-bed's CRI node with three pools, one for namespace ``payments`` only, and the
    annotations capability declared on flatnet's plugin."""

    def conflist(self) -> dict[str, Any]:
        conf = super().conflist()
        main = conf["plugins"][0]
        main["capabilities"] = {"io.kubernetes.cri.pod-annotations": True}
        main["ipam"]["pools"] = POOLS
        return conf


@pytest.fixture(scope="module")
def node() -> Iterator[CriNode]:
    require_tools()
    with PoolsNode(network="flatnet") as n:
        assert n.cri is not None
        pod_id, _ = n.run_pod("warmup", "kube-system", port_mappings=[PortMap(80, 30998)])
        n.cri.stop_remove(pod_id)
        n.baseline = snapshot.take(n)  # type: ignore[attr-defined]
        yield n


def ipam_ls(node: CriNode) -> dict[str, dict[str, Any]]:
    """``flatnet ipam ls --json`` on the node's store, by address."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, "-m", "flatnet.cli.main", "ipam", "ls", "--json", "--store", f"sqlite:{node.db}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    return {x["address"].split("/")[0]: x for x in json.loads(proc.stdout)["leases"]}


def run(node: CriNode, name: str, ns: str, **annotations: str) -> tuple[str, str]:
    """RunPodSandbox with these annotations; (sandbox id, its address)."""
    pod_id, _ = node.run_pod(name, ns, annotations=annotations)
    st = node.cri.pod_status(pod_id)
    assert st.ready and st.ip, st
    return pod_id, st.ip


def refused(node: CriNode, name: str, ns: str, **annotations: str) -> str:
    """RunPodSandbox that must fail; containerd's error text (which quotes flatnet's)."""
    with pytest.raises(CriError) as info:
        node.run_pod(name, ns, annotations=annotations)
    assert not [p for p in node.cri.list_pods() if p[2] == name and p[3]], "a refused pod must not run"
    return info.value.details


def test_namespace_rule_and_default_reach_the_vm_and_are_recorded(node: CriNode) -> None:
    pay_id, pay_ip = run(node, "api-0", "payments")
    shop_id, shop_ip = run(node, "web-0", "shop")
    assert in_pool(pay_ip, "payments") and in_pool(shop_ip, "shared"), (pay_ip, shop_ip)
    assert ping(node.vm, pay_ip) and ping(node.vm, shop_ip)
    ls = ipam_ls(node)
    assert (ls[pay_ip]["namespace"], ls[pay_ip]["name"], ls[pay_ip]["pool"], ls[pay_ip]["choice"]) == (
        "payments",
        "api-0",
        "payments",
        "namespace",
    )
    assert (ls[shop_ip]["namespace"], ls[shop_ip]["name"], ls[shop_ip]["choice"]) == ("shop", "web-0", "default")
    for pod_id in (pay_id, shop_id):
        node.cri.stop_remove(pod_id)  # CNI DEL releases
    assert pay_ip not in ipam_ls(node) and shop_ip not in ipam_ls(node)
    assert_clean(node)


def test_pool_annotation_picks_the_pool(node: CriNode) -> None:
    pod_id, ip = run(node, "pg-0", "shop", **{POOL: "db"})
    assert in_pool(ip, "db"), ip
    assert ping(node.vm, ip)
    ls = ipam_ls(node)[ip]
    assert (ls["pod"], ls["pool"], ls["choice"]) == ("shop/pg-0", "db", "annotation")
    node.cri.stop_remove(pod_id)
    assert ip not in ipam_ls(node)
    assert_clean(node)


def test_fixed_address_wins_over_stickiness_and_a_reservation_of_another_pod_is_refused(node: CriNode) -> None:
    first_id, sticky_ip = run(node, "db-0", "payments")
    node.cri.stop_remove(first_id)  # db-0's address now waits for it (sticky pool)
    msg = refused(node, "intruder", "payments", **{IP: sticky_ip})
    assert f"pod annotation flatnet.io/ip '{sticky_ip}'" in msg and "reserved for sticky pod payments/db-0" in msg, msg
    fixed = "198.18.101.44"
    pod_id, ip = run(node, "db-0", "payments", **{IP: fixed})
    assert ip == fixed != sticky_ip
    assert ping(node.vm, fixed)
    ls = ipam_ls(node)[fixed]
    assert (ls["pod"], ls["pool"], ls["choice"]) == ("payments/db-0", "payments", "ip")
    node.cri.stop_remove(pod_id)
    assert fixed not in ipam_ls(node)
    assert_clean(node)


@pytest.mark.parametrize(
    ("ns", "annotations", "words"),
    [
        ("shop", {POOL: "nope"}, ["flatnet.io/pool 'nope'", "this network has no pool 'nope'", "may use: shared"]),
        ("shop", {POOL: "payments"}, ["flatnet.io/pool 'payments'", "serves only namespaces payments, not 'shop'"]),
        ("shop", {IP: "198.18.101.30"}, ["flatnet.io/ip '198.18.101.30'", "which serves only namespaces payments"]),
        ("shop", {IP: "198.19.7.7"}, ["flatnet.io/ip '198.19.7.7'", "outside every pool", "may use: shared"]),
        ("shop", {IP: "198.18.100.7/23"}, ["flatnet.io/ip '198.18.100.7/23'", "has a prefix length"]),
        ("shop", {POOL: "db,,"}, ["flatnet.io/pool 'db,,'", "empty item"]),
        ("shop", {POOL: "db,shared"}, ["names two IPv4 pools (db, shared)"]),
    ],
)
def test_refusals_reach_run_pod_sandbox_and_leave_nothing(
    node: CriNode, ns: str, annotations: dict[str, str], words: list[str]
) -> None:
    msg = refused(node, "bad-0", ns, **annotations)
    for word in words:
        assert word in msg, msg
    assert_clean(node)


def test_a_fixed_address_held_by_another_pod_is_refused(node: CriNode) -> None:
    pod_id, ip = run(node, "vip-0", "shop", **{IP: "198.18.100.77"})
    assert ip == "198.18.100.77"
    msg = refused(node, "vip-1", "shop", **{IP: "198.18.100.77"})
    assert "pod annotation flatnet.io/ip '198.18.100.77'" in msg and "held by" in msg and "shop/vip-0" in msg, msg
    assert ping(node.vm, ip), "the holder is untouched"
    node.cri.stop_remove(pod_id)
    assert_clean(node)


def test_a_fixed_address_in_use_on_the_wire_is_refused_then_quarantined(node: CriNode) -> None:
    squatter = "198.18.100.88"
    labnet.ensure_addresses(node.vm, "eth0", [f"{squatter}/23"])  # a host outside flatnet uses it
    try:
        msg = refused(node, "sq-0", "shop", **{IP: squatter})
        assert "pod annotation flatnet.io/ip '198.18.100.88'" in msg and "in use on the VLAN" in msg, msg
        msg = refused(node, "sq-1", "shop", **{IP: squatter})
        assert "pod annotation flatnet.io/ip '198.18.100.88'" in msg and "quarantined" in msg, msg
    finally:
        subprocess.run(
            ["ip", "-n", node.vm, "addr", "del", f"{squatter}/23", "dev", "eth0"], capture_output=True, check=False
        )
    assert_clean(node)
