"""The first-hop filter's bench rows (issue 20): the goals judged from them, and the pool the
crowded node's pods come from."""

from __future__ import annotations

import ipaddress
import json

from flatnet.cni import parse_netconf
from flatnet_lab.bench import dataplane, targets
from flatnet_lab.bench.profile import FULL
from flatnet_lab.bench.results import Results
from flatnet_lab.lab import netconf
from flatnet_lab.lab.topology import default_topology

SEC = "data plane"


def results(crowded: dict[str, tuple[float, float]]) -> Results:
    """The filtered macvlan pods at 10 Gbit/s and 50 µs, unfiltered a little better, and
    ``crowded``: subject -> (TCP, RR p50)."""
    r = Results()
    for _ in range(2):
        for subject, (tcp, rr) in {
            targets.FILTERED: (10.0, 50.0),
            targets.UNFILTERED: (10.1, 49.0),
            **crowded,
        }.items():
            r.add(SEC, subject, "TCP 1 stream", "Gbit/s", tcp, better="higher")
            r.add(SEC, subject, "RR p50", "µs", rr)
    return r


def first_hop(r: Results) -> dict[str, targets.Target]:
    return {t.goal: t for t in targets.judge(r) if t.goal.startswith("first-hop filter")}


def test_filter_off_goals_are_judged_as_before() -> None:
    got = first_hop(results({}))
    assert set(got) == {
        "first-hop filter: macvlan TCP 1 stream >= 97% of unfiltered",
        "first-hop filter: macvlan RR p50 <= 1.05x unfiltered",
    }
    tcp = got["first-hop filter: macvlan TCP 1 stream >= 97% of unfiltered"]
    assert tcp.holds is True and tcp.measured == "10 vs 10.1 Gbit/s (0.99x)"


def test_crowded_node_is_judged_against_the_filtered_pods_alone() -> None:
    subject = dataplane.CROWDED.format(500)
    got = first_hop(results({subject: (9.5, 52.0)}))
    head = "first-hop filter, 500 other pods' filters on the node: macvlan"
    tcp = got[f"{head} TCP 1 stream >= 97% of without them"]
    rr = got[f"{head} RR p50 <= 1.05x without them"]
    assert tcp.holds is False and tcp.measured == "9.5 vs 10 Gbit/s (0.95x)"  # grew: 5% slower
    assert rr.holds is True and rr.measured == "52 vs 50 µs (1.04x)"


def test_crowded_latency_growth_misses() -> None:
    got = first_hop(results({dataplane.CROWDED.format(8): (10.0, 60.0)}))
    rr = got["first-hop filter, 8 other pods' filters on the node: macvlan RR p50 <= 1.05x without them"]
    assert rr.holds is False and "(1.20x)" in rr.measured


def test_no_crowded_goal_without_its_numbers() -> None:
    r = results({})
    for metric, _, _ in dataplane.METRICS:
        r.unavailable(SEC, dataplane.CROWDED.format(500), metric, "the lab's macvlan pods have no filter")
    assert len(first_hop(r)) == 2  # only the filter-off pair
    r = Results()  # nor without the filtered pods to compare with
    r.add(SEC, dataplane.CROWDED.format(500), "TCP 1 stream", "Gbit/s", 9.0, better="higher")
    assert first_hop(r) == {}


def test_the_wide_network_is_flat_with_room_for_the_full_profiles_pods() -> None:
    topo = default_topology(2)
    confs = netconf.node_configs(topo, topo.nodes[0], {"type": "memory"})
    wide, flat = confs["flat-wide"], confs["flat"]
    same = {k: v for k, v in wide.items() if k not in ("name", "ipam")}
    assert same == {k: v for k, v in flat.items() if k not in ("name", "ipam")}  # parent, mode, filter
    parse_netconf(json.dumps(wide).encode())  # the plugin's own parser takes it
    plane = [ipaddress.ip_network(p["subnet"]) for p in flat["ipam"]["pools"]]
    for pool in wide["ipam"]["pools"]:
        net = ipaddress.ip_network(pool["subnet"])
        assert not any(net.overlaps(p) for p in plane if p.version == net.version)
        lab_range = "198.18.0.0/15" if net.version == 4 else "2001:db8::/32"
        assert net.subnet_of(ipaddress.ip_network(lab_range))  # type: ignore[arg-type]
        size = int(ipaddress.ip_address(pool["rangeEnd"])) - int(ipaddress.ip_address(pool["rangeStart"])) + 1
        assert size >= 2 * FULL.filter_pods
        assert not pool.get("sticky")  # nothing stays held after the bench's DELs
