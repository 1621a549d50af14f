"""ipvlan (L2) mode: the happy path where the kernel has it, the exact error where it does not."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from flatnet_topo import Topology, link_names, pod_addrs, route_dsts
from pyroute2 import netns as pnetns

from flatnet import errors
from flatnet.datapath import get_datapath, netns
from flatnet.datapath.api import AttachSpec
from tests.helpers.net import ping

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]


def kernel_has_ipvlan() -> bool:
    """Try to create an ipvlan in a throwaway netns (the only sure answer)."""
    name = "fnt-ipvprobe-" + os.urandom(3).hex()
    pnetns.create(name)
    try:
        with netns.ipr(name) as ip:
            ip.link("add", ifname="fnpa", kind="veth", peer={"ifname": "fnpb"})
            try:
                ip.link("add", ifname="fnpiv", kind="ipvlan", link=ip.link_lookup(ifname="fnpa")[0], ipvlan_mode=0)
                return True
            except Exception:  # noqa: BLE001 - any failure: not usable here
                return False
    finally:
        pnetns.remove(name)


HAS_IPVLAN = os.geteuid() == 0 and kernel_has_ipvlan()


@pytest.fixture(scope="module")
def topo():
    with Topology(nodes_n=1) as t:
        yield t


def _spec(topo: Topology, pod_ns: str, n: int, **kw: object) -> AttachSpec:
    spec = AttachSpec(
        container_id=f"ctr-{pod_ns}", ifname="eth0", netns=f"/run/netns/{pod_ns}", mode="ipvlan",
        master="eth0", addresses=pod_addrs(n), host_netns=topo.nodes[0].ns,
    )
    return replace(spec, **kw) if kw else spec


@pytest.mark.kernel_feature("ipvlan")
def test_ipvlan_pod_is_reachable(topo: Topology) -> None:
    pod_ns = topo.pod()
    spec = _spec(topo, pod_ns, 1)
    dp = get_datapath("ipvlan")
    dp.add(spec)
    try:
        dp.check(spec)
        assert ping(topo.vm, "198.18.100.51")
        assert ping(topo.nodes[0].ns, "198.18.100.51")
    finally:
        dp.delete(spec)
    assert link_names(pod_ns) == {"lo"}


@pytest.mark.skipif(HAS_IPVLAN, reason="kernel has ipvlan: the missing-feature path cannot happen")
def test_missing_ipvlan_is_named_and_leaves_nothing(topo: Topology) -> None:
    node = topo.nodes[0].ns
    pod_ns = topo.pod()
    before = link_names(node), route_dsts(node)
    with pytest.raises(errors.KernelFeatureMissing) as exc:
        get_datapath("ipvlan").add(_spec(topo, pod_ns, 2))
    assert exc.value.code == errors.KERNEL_FEATURE_MISSING
    assert "CONFIG_IPVLAN" in exc.value.msg and "modprobe ipvlan" in exc.value.msg
    assert (link_names(node), route_dsts(node)) == before
    assert link_names(pod_ns) == {"lo"}


def test_ipvlan_refuses_a_mac(topo: Topology) -> None:
    pod_ns = topo.pod()
    with pytest.raises(errors.ConfigError) as exc:
        get_datapath("ipvlan").add(_spec(topo, pod_ns, 3, mac="02:00:00:00:00:01"))
    assert "mac" in exc.value.msg
    assert link_names(pod_ns) == {"lo"}
