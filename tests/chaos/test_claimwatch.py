"""Address conflicts after ADD (issue 20 part 2), with real frames on a real segment.

A host on the VLAN that is not a pod claims a live pod's address (a gratuitous ARP, an
unsolicited neighbour advertisement): the agent's watcher counts it by pool, with both MACs,
and writes it where ``flatnet ipam ls`` reads it. The pod's own announcements and the
other hosts' claims of their own addresses are not conflicts.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Iterator

import pytest

pytestmark = [
    pytest.mark.netns,
    pytest.mark.chaos,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

from flatnet.agent import claimwatch  # noqa: E402
from flatnet.datapath import claims  # noqa: E402
from flatnet.ipam.api import Lease, Owner  # noqa: E402
from tests.chaos import frames  # noqa: E402
from tests.chaos.fhsnet import FhsNet  # noqa: E402
from tests.helpers.net import wait_until  # noqa: E402


@pytest.fixture(scope="module", params=["macvlan", "bridge"])
def net(request: pytest.FixtureRequest) -> Iterator[FhsNet]:
    n = FhsNet(mode=request.param)
    try:
        n.build()
        n.add_pod(21)
        yield n
    finally:
        n.close()


class Node:
    """The surface of the agent's service the watcher reads: served networks and leases."""

    node = "n1"

    def __init__(self, net: FhsNet) -> None:
        pod = net.pods[0]
        assert pod.spec is not None
        self.host_netns = net.node
        self.conf = type(
            "Conf",
            (),
            {
                "name": "flat",
                "mode": net.mode,
                "master": "eth0",
                "bridge": "fnbr0",
                "vlan": None,
                "host_netns": net.node,
            },
        )()
        self.leases = [
            Lease(
                "pool-a", a, None, None, Owner(pod.spec.container_id, "eth0", "flat", node="n1", netns=pod.spec.netns)
            )
            for a in pod.spec.addresses
        ]

    def served_networks(self) -> list:
        return [self.conf]

    def ipam(self, conf: object) -> object:
        leases = self.leases
        return type("Ipam", (), {"leases": staticmethod(lambda: leases)})()


def _drain(w: claimwatch.ClaimWatch, want: int) -> bool:
    return wait_until(lambda: (w.poll_once() or True) and w.total >= want, 4.0)


def test_a_host_claiming_a_pods_address_is_a_conflict(net: FhsNet, tmp_path: object) -> None:
    pod = net.pods[0]
    seen: list[tuple[str, str, str, str]] = []
    state = os.path.join(str(tmp_path), "conflicts.json")
    w = claimwatch.ClaimWatch(Node(net), lambda *a: seen.append(a), state, poll=0.3)
    try:
        w.refresh_now()
        assert str(pod.ip4) in w.watched and w.sockets, "the watcher listens on the node link"
        host = net.outsider()
        # the pod announcing itself, and a host announcing its own address: no conflict
        frames.send_as_attacker(pod.ns, "eth0", frames.eth("ff:ff:ff:ff:ff:ff", pod.mac, 0x0806,
                                frames.arp(2, pod.mac, pod.ip4, "ff:ff:ff:ff:ff:ff", pod.ip4)))  # fmt: skip
        garp_own = frames.arp(2, host.mac, host.ip4, "ff:ff:ff:ff:ff:ff", host.ip4)
        frames.send_as_attacker(host.ns, "eth0", frames.eth("ff:ff:ff:ff:ff:ff", host.mac, 0x0806, garp_own))
        w.poll_once()
        assert w.total == 0, w.recent
        # a host taking the pod's IPv4 (gratuitous ARP) and IPv6 (unsolicited NA)
        garp = frames.arp(2, host.mac, pod.ip4, "ff:ff:ff:ff:ff:ff", pod.ip4)
        frames.send_as_attacker(host.ns, "eth0", frames.eth("ff:ff:ff:ff:ff:ff", host.mac, 0x0806, garp), count=1)
        assert _drain(w, 1)
        pod6 = str(next(a.ip for a in pod.spec.addresses if a.version == 6))  # type: ignore[union-attr]
        na = frames.neighbor_advert(host.mac, host.ll6, pod6, "33:33:00:00:00:01", "ff02::1")
        frames.send_as_attacker(host.ns, "eth0", na, count=1)
        assert _drain(w, 2)
    finally:
        w.stop()
    assert ("pool-a", pod.ip4, pod.mac, host.mac) in seen
    assert ("pool-a", pod6, pod.mac, host.mac) in seen
    recorded = {c["address"]: c for c in claimwatch.load(state)}
    assert recorded[pod.ip4]["other_mac"] == host.mac and recorded[pod.ip4]["pod_mac"] == pod.mac


def test_parse_ignores_probes_and_reads_the_na_option() -> None:
    probe = frames.eth("ff:ff:ff:ff:ff:ff", "02:00:00:00:00:09", 0x0806,
                       frames.arp(1, "02:00:00:00:00:09", "0.0.0.0", "00:00:00:00:00:00", "198.18.100.5"))  # fmt: skip
    assert claims.parse(probe) is None
    na = frames.neighbor_advert("02:00:00:00:00:09", "fe80::9", "2001:db8:100::5", "33:33:00:00:00:01", "ff02::1")
    assert claims.parse(na) == (ipaddress.IPv6Address("2001:db8:100::5"), "02:00:00:00:00:09")
    assert claims.parse(b"\x00" * 10) is None


def test_ipam_ls_and_doctor_show_what_the_watcher_recorded(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher's record (written as in the test above) reaches `flatnet ipam ls` and doctor."""
    from flatnet.cli.ipam import _live_conflicts
    from flatnet.doctor.node import service_findings
    from flatnet.doctor.nodefacts import NodeFacts

    sock = os.path.join(str(tmp_path), "agent.sock")
    w = claimwatch.ClaimWatch(None, None, claimwatch.state_path(sock))
    w.watched = {"198.18.100.21": claimwatch.Watched("pool-a", "02:00:00:00:00:21", "c" * 64, "flat")}
    assert w.handle(claims.Claim(ipaddress.IPv4Address("198.18.100.21"), "02:00:00:00:00:99", "eth0")) == 1
    assert w.handle(claims.Claim(ipaddress.IPv4Address("198.18.100.21"), "02:00:00:00:00:21", "eth0")) == 0
    monkeypatch.setenv("FLATNET_AGENT_SOCKET", sock)
    listed = _live_conflicts(None)
    assert [(c["address"], c["other_mac"], c["count"]) for c in listed] == [("198.18.100.21", "02:00:00:00:00:99", 1)]
    assert _live_conflicts("other-pool") == []
    facts = NodeFacts()
    facts.agent, facts.store = ("ok", ""), ("skipped", "")
    found = [f for f in service_findings(facts, sock) if f.code == "address-conflict"]
    assert len(found) == 1 and "02:00:00:00:00:99" in found[0].what
