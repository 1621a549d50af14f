"""First-hop security in the modes this machine's kernel cannot build (issue 20): ipvlan L2,
macvlan and ipvlan on an 802.1Q sub-interface, bridge mode on the VLAN-aware bridge.

Runs in the kernel tier's VM (marker ``kernel``; ``pytest tests -m kernel -k fhs``). The same
attacks and controls as tests/chaos/test_firsthop.py: each attack is sent from a pod by uid
65534 holding only CAP_NET_RAW and must have no effect; from the same pod with its filter
removed, and from a host on the segment, it must work. Legitimate traffic keeps flowing.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from tests.chaos import fhs_attacks
from tests.chaos import test_firsthop as flat
from tests.chaos.fhsnet import FhsNet

pytestmark = [
    pytest.mark.netns,
    pytest.mark.kernel("ipvlan", "8021q", "vlan_filtering"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

SHAPES = [("ipvlan", None), ("macvlan", 100), ("ipvlan", 100), ("bridge", 100)]


@pytest.fixture(scope="module", params=SHAPES, ids=[f"{m}-vlan{v}" if v else m for m, v in SHAPES])
def net(request: pytest.FixtureRequest) -> Iterator[FhsNet]:
    mode, vlan = request.param
    n = FhsNet(mode=mode, vlan=vlan)
    try:
        n.build()
        n.add_pod(21)
        n.add_pod(22)
        yield n
    finally:
        n.close()


@pytest.mark.parametrize("attack", list(fhs_attacks.ATTACKS))
def test_fhs_attack_blocked_from_pod(net: FhsNet, attack: str) -> None:
    flat.test_attack_blocked_from_pod_and_works_unfiltered_and_from_a_host(net, attack)


def test_fhs_qdisc_bypass(net: FhsNet) -> None:
    flat.test_qdisc_bypass_does_not_go_around_the_filter(net, "udp-from-gateway-ip")


def test_fhs_legitimate_traffic(net: FhsNet) -> None:
    flat.test_legitimate_traffic_flows(net)
    flat.test_dad_probe_from_unspecified_address_passes(net)


def test_fhs_check_and_del(net: FhsNet) -> None:
    flat.test_check_sees_a_missing_or_altered_filter_and_del_removes_it(net)


def test_fhs_mislabelled_frames(net: FhsNet) -> None:
    flat.test_mislabelled_frames_do_not_go_around_the_filter(net, "udp-from-gateway-ip", 0x88B5)
