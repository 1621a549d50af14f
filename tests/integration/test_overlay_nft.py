"""nftables helpers of the overlay mode in a real, private netns, plus option validation."""

from __future__ import annotations

import secrets
from typing import Iterator

import pytest
from pyroute2 import netns as pnetns

from flatnet.datapath import nft, vxlan
from flatnet.errors import ConfigError, DatapathError

MAPS = [{"hostPort": 18080, "containerPort": 80}, {"hostPort": 18053, "containerPort": 53, "protocol": "UDP"}]


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"fnt-{secrets.token_hex(3)}"
    pnetns.create(name)
    try:
        yield name
    finally:
        pnetns.remove(name)


@pytest.mark.netns
def test_empty_namespace_has_no_rules_and_removals_are_noops(ns: str) -> None:
    assert nft.list_rules(ns) == []
    assert nft.remove_portmaps(ns, "ovl", "c1") == 0
    nft.remove_snat(ns, "ovl")
    assert nft.list_rules(ns) == []


@pytest.mark.netns
def test_snat_is_idempotent_and_removable(ns: str) -> None:
    nft.ensure_snat(ns, "ovl", "198.19.0.0/17")
    nft.ensure_snat(ns, "ovl", "198.19.0.0/17")
    rules = nft.list_rules(ns)
    assert len(rules) == 1
    assert rules[0].family == "ip" and rules[0].chain.startswith("snat-") and "masquerade" in rules[0].text
    assert "198.19.0.0" in rules[0].text
    nft.ensure_snat(ns, "other", "198.19.128.0/17")  # a second network gets its own chain
    assert len(nft.list_rules(ns)) == 2
    nft.remove_snat(ns, "ovl")
    nft.remove_snat(ns, "ovl")
    left = nft.list_rules(ns)
    assert len(left) == 1 and "198.19.128.0" in left[0].text


@pytest.mark.netns
def test_snat_v6_uses_the_ip6_table(ns: str) -> None:
    nft.ensure_snat(ns, "ovl6", "2001:db8:19::/64")
    assert [r.family for r in nft.list_rules(ns)] == ["ip6"]
    nft.remove_snat(ns, "ovl6")
    assert nft.list_rules(ns) == []


@pytest.mark.netns
def test_portmaps_per_container_idempotent_and_removed_exactly(ns: str) -> None:
    nft.add_portmaps(ns, "ovl", "c1", "198.19.0.2", MAPS)
    nft.add_portmaps(ns, "ovl", "c1", "198.19.0.2/24", MAPS)  # retried ADD: replaced, not doubled
    nft.add_portmaps(
        ns, "ovl", "c2", "198.19.0.3", [{"hostPort": 18081, "containerPort": 80, "hostIP": "198.18.100.11"}]
    )
    c1 = nft.portmap_rules(ns, "ovl", "c1")
    assert len(c1) == 4
    assert {r.chain for r in c1} == {nft.PRE, nft.OUT}
    assert all("dnat" in r.text and "198.19.0.2" in r.text for r in c1)
    c2 = nft.portmap_rules(ns, "ovl", "c2")
    assert len(c2) == 2 and all("198.18.100.11" in r.text for r in c2)
    assert nft.remove_portmaps(ns, "ovl", "c1") == 4
    assert nft.portmap_rules(ns, "ovl", "c1") == []
    assert nft.portmap_rules(ns, "ovl", "c2") == c2  # untouched
    assert nft.remove_portmaps(ns, "ovl", "c1") == 0
    assert nft.portmap_rules(ns, "other-net", "c2") == []  # the network is part of the identity


@pytest.mark.netns
def test_portmaps_v6(ns: str) -> None:
    nft.add_portmaps(ns, "ovl", "c6", "2001:db8:19::5", [{"hostPort": 8443, "containerPort": 443}])
    rules = nft.portmap_rules(ns, "ovl", "c6")
    assert {r.family for r in rules} == {"ip6"} and len(rules) == 2
    assert nft.remove_portmaps(ns, "ovl", "c6") == 2


@pytest.mark.netns
def test_apply_reports_nft_errors(ns: str) -> None:
    with pytest.raises(DatapathError, match="nft -f - failed"):
        nft.apply(ns, "add rule ip nosuchtable nosuchchain accept\n")


def test_missing_nft_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nft.shutil, "which", lambda _name: None)
    monkeypatch.setattr(nft.os.path, "exists", lambda _p: False)
    with pytest.raises(DatapathError, match="apt-get install nftables"):
        nft.apply(None, "")


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        ({"hostPort": 0, "containerPort": 80}, r"portMappings\[0\].hostPort"),
        ({"hostPort": 80, "containerPort": "80"}, r"portMappings\[0\].containerPort"),
        ({"hostPort": 80, "containerPort": 80, "protocol": "sctp"}, r"portMappings\[0\].protocol"),
        ({"hostPort": 80, "containerPort": 80, "hostIP": "nope"}, r"portMappings\[0\].hostIP"),
        ("8080:80", r"portMappings\[0\] must be an object"),
    ],
)
def test_bad_port_mappings_are_config_errors(mapping: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        nft.add_portmaps("fnt-never-used", "ovl", "c", "198.19.0.2", [mapping])  # type: ignore[list-item]


GOOD = {"vni": 7, "vtep": "198.18.100.11", "block": "198.19.1.0/24", "clusterSubnet": "198.19.0.0/17"}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"vni": None}, "needs option 'vni'"),
        ({"vni": 2**24}, "'vni' must be an integer"),
        ({"port": "4789"}, "'port' must be an integer"),
        ({"vtep": "node1"}, "vxlan options"),
        ({"block": "198.20.0.0/24"}, "not inside 'clusterSubnet'"),
        ({"underlayMtu": 100}, "'underlayMtu'"),
    ],
)
def test_vxlan_options_are_validated(change: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        vxlan.parse_options({**GOOD, **change})


def test_vxlan_derived_names_and_mac() -> None:
    o = vxlan.parse_options(GOOD)
    assert o.vx_name == "fnvx7" and o.port == 4789 and str(o.gateway) == "198.19.1.1/24"
    assert o.mac == vxlan.parse_options(dict(GOOD)).mac  # stable across calls
    first = int(o.mac.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01  # locally administered, unicast
    name = vxlan.overlay_veth_name("cid", "eth0")
    assert name.startswith("fv") and len(name) == 13


def test_peer_overlapping_own_block_is_rejected() -> None:
    opts = {
        **GOOD,
        "peers": [{"node": "x", "vtep": "198.18.100.12", "mac": "0e:00:00:00:00:01", "block": "198.19.0.0/16"}],
    }
    with pytest.raises(ConfigError, match="overlaps"):
        vxlan.sync_peers("fnt-never-used", opts)
