"""First-hop security with real attacks (issue 20), in macvlan and bridge mode on this machine.

Each attack is sent from inside a pod by uid 65534 holding only CAP_NET_RAW and must leave
no trace on the VM, the switch or the gateway; the same attack from the same pod with its
filter removed, and from an ordinary host on the segment, must work (so each test can fail).
Legitimate traffic keeps flowing: pod <-> pod on one node, node -> pod, VM <-> pod (ping,
TCP, IPv6), DAD probes from ``::``.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

pytestmark = [
    pytest.mark.netns,
    pytest.mark.chaos,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

from flatnet.datapath import antispoof, firsthop  # noqa: E402
from flatnet.datapath.common import host_veth_name  # noqa: E402
from flatnet.datapath import pod as dpod  # noqa: E402
from flatnet.errors import DatapathError  # noqa: E402
from tests.chaos import fhs_attacks, frames  # noqa: E402
from tests.chaos.fhsnet import VM4, VM6, FhsNet  # noqa: E402
from tests.helpers.net import ping, sh  # noqa: E402
from tests.integration.flatnet_topo import tcp_exchange  # noqa: E402

MODES = ["macvlan", "bridge"]


@pytest.fixture(scope="module", params=MODES)
def net(request: pytest.FixtureRequest) -> Iterator[FhsNet]:
    n = FhsNet(mode=request.param)
    try:
        n.build()
        n.add_pod(21)
        n.add_pod(22)
        yield n
    finally:
        n.close()


@pytest.mark.parametrize("attack", list(fhs_attacks.ATTACKS))
def test_attack_blocked_from_pod_and_works_unfiltered_and_from_a_host(net: FhsNet, attack: str) -> None:
    run = fhs_attacks.ATTACKS[attack]
    pod = net.pods[0]
    assert not run(net, pod), f"{net.mode}: {attack} from a pod took effect"
    with net.unfiltered(pod):
        assert run(net, pod), f"{net.mode}: control failed: {attack} from the unfiltered pod had no effect"
    assert run(net, net.outsider()), f"control failed: {attack} from a host on the segment had no effect"
    assert not run(net, pod), f"{net.mode}: {attack} works again after the filter was restored"


@pytest.mark.parametrize("attack", ["udp-from-gateway-ip", "arp-reply-claims-gateway"])
def test_qdisc_bypass_does_not_go_around_the_filter(net: FhsNet, attack: str) -> None:
    """PACKET_QDISC_BYPASS skips tc egress; netfilter's egress hook still sees the frame."""
    run = fhs_attacks.ATTACKS[attack]
    pod = net.pods[0]
    assert not run(net, pod, bypass=True)
    with net.unfiltered(pod):
        assert run(net, pod, bypass=True)


@pytest.mark.parametrize(
    "attack,label",
    [("arp-reply-claims-gateway", 0x86DD), ("ipv6-router-advert", 0x0806), ("udp-from-gateway-ip", 0x88B5)],
)
def test_mislabelled_frames_do_not_go_around_the_filter(net: FhsNet, attack: str, label: int) -> None:
    """sendto() with another sll_protocol makes the kernel file the frame under that protocol
    (skb->protocol) whatever its ethertype says; nftables' protocol matches follow
    skb->protocol, so the filter first drops every frame whose label is not its ethertype."""
    run = fhs_attacks.ATTACKS[attack]
    pod = net.pods[0]
    assert not run(net, pod, label=label)
    with net.unfiltered(pod):
        assert run(net, pod, label=label)


def test_legitimate_traffic_flows(net: FhsNet) -> None:
    a, b = net.pods
    assert ping(a.ns, b.ip4), "pod -> pod on one node"
    assert ping(a.ns, VM4) and ping(net.name("vm"), a.ip4), "VM <-> pod"
    assert ping(a.ns, VM6) and ping(net.name("vm"), f"2001:db8:100::{21}"), "VM <-> pod over IPv6"
    if not (net.mode == "bridge" and net.vlan is not None):  # the node has no address in that VLAN
        assert ping(net.node, a.ip4), "node -> pod (macvlan/ipvlan: through the shim)"
    assert ping(a.ns, f"{b.ll6}%eth0"), "pod -> pod over IPv6 link-local"
    out, peer = tcp_exchange(net.name("vm"), "0.0.0.0", a.ns, VM4)
    assert out.startswith("hello") and peer == a.ip4


def test_dad_probe_from_unspecified_address_passes(net: FhsNet) -> None:
    pod = net.pods[0]
    target = "2001:db8:100::77"
    frame = frames.neighbor_solicit_dad(pod.mac, target)
    marker = frame[-16:]  # the target address
    assert net.vm_sniffed(marker, lambda: frames.send_as_attacker(pod.ns, "eth0", frame))


def test_check_sees_a_missing_or_altered_filter_and_del_removes_it(net: FhsNet) -> None:
    from flatnet.datapath import get_datapath

    pod = net.pods[1]
    assert pod.spec is not None
    dp = get_datapath(net.mode)
    dp.check(pod.spec)
    firsthop.remove(pod.spec.netns, "eth0")
    with pytest.raises(DatapathError, match="first-hop filter chain .* is missing"):
        dp.check(pod.spec)
    policy = firsthop.Policy(router=True)
    dpod.install_filter(pod.spec, pod.spec.netns, pod.mac, policy)  # wrong policy for this pod
    with pytest.raises(DatapathError, match="differs"):
        dp.check(pod.spec)
    dpod.install_filter(pod.spec, pod.spec.netns, pod.mac, firsthop.Policy())
    dp.check(pod.spec)
    tag, count = firsthop.installed(pod.spec.netns, "eth0")
    assert tag and count >= 8
    assert "flatnet_firsthop" in sh(pod.ns, "nft", "list", "tables").stdout


def test_reconciler_step_reinstalls_a_flushed_filter(net: FhsNet) -> None:
    """The agent's reconciler (Service.repair_first_hop -> pod.repair_filter) rebuilds a pod's
    filter from its leases: after an upgrade from a version without it, or a flushed table."""
    from flatnet.agent.reconcile import Reconciler
    from flatnet.ipam.api import Lease, Owner

    pod = net.pods[1]
    assert pod.spec is not None
    assert not dpod.repair_filter(pod.spec), "nothing to repair on a fresh pod"
    sh(pod.ns, "nft", "delete", "table", "netdev", firsthop.TABLE)
    host = host_veth_name(pod.spec.container_id, "eth0")
    if net.mode == "bridge":  # the node-side port filter would block it too: out of the way
        antispoof.remove(net.node, host)
    assert fhs_attacks.udp_from_gateway_address(net, pod), "control: without its table the pod can spoof"
    leases = [
        Lease(
            pool="p",
            address=a,
            gateway=None,
            vlan=None,
            owner=Owner(pod.spec.container_id, "eth0", "n", node="n", netns=pod.spec.netns),
        )
        for a in pod.spec.addresses
    ]

    class OneNetwork:  # the service surface the reconciler uses, over the real datapath step
        node = "n"

        def __init__(self) -> None:
            self.conf = type("Conf", (), {"name": "n", "mode": net.mode, "pools": [], "first_hop_security": True})()

        def served_networks(self) -> list:
            return [self.conf]

        def ipam(self, conf: object) -> object:
            return type("Ipam", (), {"leases": staticmethod(lambda: leases)})()

        def repair_first_hop(self, conf: object, cid: str, ifname: str, ls: list) -> bool:
            return dpod.repair_filter(pod.spec)

    report = Reconciler(OneNetwork()).run_once()
    assert report.filters_repaired == [f"{pod.spec.container_id[:12]}/eth0"], report
    assert not fhs_attacks.udp_from_gateway_address(net, pod)
    assert Reconciler(OneNetwork()).run_once().filters_repaired == []
    if net.mode == "bridge":
        antispoof.install(net.node, host, pod.mac, [a.ip for a in pod.spec.addresses])
