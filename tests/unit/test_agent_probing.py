"""ADD with a conflict probe (agent/probing.py) over FakeDatapath + memory store: the logic;
the probe itself is tested on real links in tests/integration/test_conflict_probe.py."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from flatnet.datapath.fake import FakeDatapath
from test_agent_service import Harness, make_conf

POOLS = [
    {"name": "v4", "subnet": "198.18.100.0/24", "rangeStart": "198.18.100.32", "rangeEnd": "198.18.100.40"},
    {"name": "v6", "subnet": "2001:db8:100::/64", "rangeStart": "2001:db8:100::10", "rangeEnd": "2001:db8:100::20"},
]


@pytest.fixture
def h(tmp_path: Any) -> Harness:
    return Harness(tmp_path)


def _wire(h: Harness, taken: set[str]) -> list[str]:
    asked: list[str] = []

    def probe(spec: Any, ip: Any) -> Any:
        asked.append(str(ip))
        answer = "02:00:00:00:00:99" if str(ip) in taken else None
        return lambda: answer

    h.svc.conflict_probe = probe
    return asked


def test_an_answered_address_is_quarantined_and_the_pod_gets_the_next(h: Harness) -> None:
    conf = make_conf(pools=POOLS)
    asked = _wire(h, {"198.18.100.32", "198.18.100.33", "2001:db8:100::10"})
    code, res = h.call("ADD", conf, cid="p1", netns="/run/netns/p1")
    assert code == 0, res
    v4, v6 = sorted(ip["address"] for ip in res["ips"])
    assert v4 not in ("198.18.100.32/24", "198.18.100.33/24") and v6 == "2001:db8:100::11/64"
    assert asked.count(v4.split("/")[0]) == 1 and asked.count("2001:db8:100::11") == 1
    from flatnet.cni import parse_netconf
    import json

    ipam = h.svc.ipam(parse_netconf(json.dumps(conf).encode()))
    quarantined = sorted(q["address"] for q in ipam.quarantined())
    assert quarantined == ["198.18.100.32", "198.18.100.33", "2001:db8:100::10"]
    assert all(q["mac"] == "02:00:00:00:00:99" for q in ipam.quarantined())
    # the next pod does not get them either (and they are not probed again)
    asked.clear()
    code, res = h.call("ADD", conf, cid="p2", netns="/run/netns/p2")
    assert code == 0 and res["ips"][0]["address"] not in ("198.18.100.32/24", "198.18.100.33/24", v4)
    assert "198.18.100.32" not in asked


def test_a_requested_address_in_use_on_the_vlan_fails_cleanly(h: Harness) -> None:
    conf = make_conf(pools=POOLS[:1], runtimeConfig={"ips": ["198.18.100.36/24"]}, capabilities={"ips": True})
    _wire(h, {"198.18.100.36"})
    code, res = h.call("ADD", conf, cid="p1")
    assert code != 0 and "198.18.100.36" in res["msg"] and "in use on the VLAN" in res["msg"]
    assert h.leases(make_conf(pools=POOLS[:1])) == [] and not h.dp.attachments


def test_probing_off_per_pool_and_a_repeated_add_is_not_reprobed(h: Harness) -> None:
    off = make_conf(pools=[{**POOLS[0], "conflictProbe": False}])
    asked = _wire(h, {"198.18.100.32"})
    code, res = h.call("ADD", off, cid="p1")
    assert code == 0 and res["ips"][0]["address"] == "198.18.100.32/24" and asked == []
    on = make_conf(pools=POOLS[:1])
    asked2 = _wire(h, set())
    assert h.call("ADD", on, cid="p2", netns="/run/netns/p2")[0] == 0 and asked2 == ["198.18.100.33"]


def test_too_many_conflicts_in_a_row_is_an_error_that_says_why(h: Harness) -> None:
    conf = make_conf(pools=POOLS[:1])
    _wire(h, {str(ipaddress.ip_address("198.18.100.32") + i) for i in range(9)})
    code, res = h.call("ADD", conf, cid="p1")
    assert code == 1 and res["code"] == 101 and "in use on the VLAN" in res["msg"]
    assert h.leases(conf) == [] and not h.dp.attachments


class GatedDatapath(FakeDatapath):
    """A datapath that, like the real ones (datapath/pod.py adopt), awaits the probes before
    the pod's link goes up and records what went up: the gate's raise must stop it there."""

    def __init__(self) -> None:
        super().__init__(masters={"vlan100"})
        self.went_up: list[str] = []

    def add(self, spec: Any) -> Any:
        if spec.address_gate is not None:
            spec.address_gate()
        self.went_up += [str(a.ip) for a in spec.addresses]
        return super().add(spec)


def test_the_datapath_awaits_the_probe_before_the_link_goes_up(h: Harness) -> None:
    h.dp = gated = GatedDatapath()
    conf = make_conf(pools=POOLS[:1])
    waited: list[str] = []

    def probe(spec: Any, ip: Any) -> Any:
        def answer() -> str | None:
            waited.append(str(ip))
            return "02:00:00:00:00:99" if str(ip) == "198.18.100.32" else None

        return answer  # nothing awaited yet: the answer comes when the datapath asks

    h.svc.conflict_probe = probe
    code, res = h.call("ADD", conf, cid="p1")
    assert code == 0 and res["ips"][0]["address"] == "198.18.100.33/24"
    assert waited == ["198.18.100.32", "198.18.100.33"]
    assert gated.went_up == ["198.18.100.33"]  # the answered address never went up
    assert [k for k in gated.attachments] == [("/run/netns/pod1", "eth0")]
