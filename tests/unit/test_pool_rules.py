"""Pool rules per namespace and pod annotations: parsing, the choice, config validation.

Pure logic (``flatnet.cni.annotations``, ``flatnet.cni.poolrules``, the ``namespaces`` key of
``flatnet.cni.ipamconf``); hypothesis drives arbitrary annotation values through the choice:
either a choice the rules allow or a CNI error that names the annotation, never anything else.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flatnet.cni import parse_netconf
from flatnet.cni import annotations as ann
from flatnet.cni.poolrules import allowed, choose
from flatnet.errors import ADDRESS_UNAVAILABLE, INVALID_CONFIG, AddressUnavailable, ConfigError, FlatnetError

POOLS: list[dict[str, Any]] = [
    {
        "name": "v100",
        "subnet": "198.18.100.0/24",
        "gateway": "198.18.100.1",
        "rangeStart": "198.18.100.20",
        "vlan": 100,
    },
    {"name": "v100-6", "subnet": "2001:db8:100::/64", "vlan": 100},
    {
        "name": "v300",
        "subnet": "198.18.30.0/24",
        "gateway": "198.18.30.1",
        "vlan": 300,
        "namespaces": ["payments", "ledger"],
    },
    {"name": "v300-6", "subnet": "2001:db8:300::/64", "vlan": 300, "namespaces": ["payments"]},
    {"name": "v200", "subnet": "198.18.20.0/24", "vlan": 200},
]


def netconf(pools: list[dict[str, Any]] | None = None) -> Any:
    return parse_netconf(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "flat",
                "type": "flatnet",
                "master": "eth0",
                "ipam": {"pools": POOLS if pools is None else pools},
            }
        ).encode()
    )


SPECS = netconf().pools


def names(choice: Any) -> list[str]:
    return [p.name for p in choice.pools]


# --- the rules ------------------------------------------------------------------------------


def test_a_namespace_named_by_pools_gets_them_by_default() -> None:
    got = choose(SPECS, "payments", {})
    assert names(got) == ["v300", "v300-6"] and set(got.how.values()) == {"namespace"}
    assert names(choose(SPECS, "ledger", {})) == ["v300"]  # v300-6 does not name ledger


def test_other_namespaces_and_podman_get_the_pools_without_namespaces() -> None:
    for ns in ("default", "shop", None):
        got = choose(SPECS, ns, {})
        assert names(got) == ["v100", "v100-6", "v200"] and set(got.how.values()) == {"default"}


def test_pool_annotation_picks_its_family_and_the_rest_follows_its_vlan() -> None:
    got = choose(SPECS, "shop", {ann.POOL: "v200"})
    assert names(got) == ["v200"] and got.how == {"v200": "annotation"}  # no IPv6 pool on VLAN 200
    got = choose(SPECS, "shop", {ann.POOL: "v100"})
    assert names(got) == ["v100", "v100-6"] and got.how == {"v100": "annotation", "v100-6": "default"}
    got = choose(SPECS, "payments", {ann.POOL: " v300-6 , v300 "})
    assert names(got) == ["v300", "v300-6"] and set(got.how.values()) == {"annotation"}


def test_a_namespace_with_its_own_pools_may_still_name_a_shared_one() -> None:
    got = choose(SPECS, "payments", {ann.POOL: "v100"})
    assert names(got) == ["v100"], "payments' own pools are on VLAN 300: no IPv6 from them on VLAN 100"


def test_fixed_address_goes_to_its_pool_as_a_requested_address() -> None:
    got = choose(SPECS, "shop", {ann.IP: "198.18.100.77"})
    assert names(got) == ["v100", "v100-6"] and got.requested == (ipaddress.ip_address("198.18.100.77"),)
    assert got.how == {"v100": "ip", "v100-6": "default"}
    got = choose(SPECS, "payments", {ann.IP: "198.18.30.9,2001:db8:300::9", ann.POOL: "v300"})
    assert names(got) == ["v300", "v300-6"] and set(got.how.values()) == {"ip"}


@pytest.mark.parametrize(
    ("ns", "annotations", "error", "words"),
    [
        ("shop", {ann.POOL: "nope"}, ConfigError, ["flatnet.io/pool 'nope'", "no pool 'nope'", "may use: v100"]),
        ("shop", {ann.POOL: "v300"}, ConfigError, ["serves only namespaces payments, ledger", "not 'shop'"]),
        (None, {ann.POOL: "v300"}, ConfigError, ["not 'a pod without a namespace'"]),
        ("shop", {ann.POOL: "v100,v200"}, ConfigError, ["two IPv4 pools"]),
        ("shop", {ann.POOL: "v100,v100"}, ConfigError, ["names a pool twice"]),
        ("shop", {ann.POOL: "v100,"}, ConfigError, ["empty item (number 2)", "NAME or NAME,NAME"]),
        ("shop", {ann.POOL: ""}, ConfigError, ["is empty"]),
        ("shop", {ann.POOL: "a,b,c"}, ConfigError, ["has 3 items"]),
        ("shop", {ann.POOL: "v1 00"}, ConfigError, ["contains a space"]),
        ("shop", {ann.IP: "198.18.100.300"}, ConfigError, ["is not an IP address", "ADDR or ADDR,ADDR"]),
        ("shop", {ann.IP: "198.18.100.7/24"}, ConfigError, ["has a prefix length"]),
        ("shop", {ann.IP: "198.18.100.7,198.18.100.8"}, ConfigError, ["two IPv4 addresses"]),
        ("shop", {ann.IP: "192.0.2.7"}, AddressUnavailable, ["outside every pool", "may use: v100"]),
        ("shop", {ann.IP: "198.18.30.7"}, ConfigError, ["in pool 'v300', which serves only namespaces"]),
        ("shop", {ann.IP: "198.18.100.1"}, AddressUnavailable, ["the gateway of pool 'v100'"]),
        ("shop", {ann.IP: "198.18.100.5"}, AddressUnavailable, ["outside the range"]),
        ("shop", {ann.IP: "198.18.20.5", ann.POOL: "v100"}, ConfigError, ["is not in pool 'v100'"]),
        ("shop", {ann.IP: "198.18.20.5,2001:db8:100::5"}, ConfigError, ["different VLANs", "VLAN 200", "VLAN 100"]),
    ],
)
def test_refusals_name_the_annotation_the_value_and_the_choices(
    ns: str | None, annotations: dict[str, str], error: type[FlatnetError], words: list[str]
) -> None:
    with pytest.raises(error) as info:
        choose(SPECS, ns, annotations)
    msg = info.value.msg
    assert msg.startswith("pod annotation") or "annotations" in msg, msg
    assert info.value.code == (INVALID_CONFIG if error is ConfigError else ADDRESS_UNAVAILABLE)
    for word in words:
        assert word in msg, msg
    assert "may use:" in msg, msg


def test_no_pool_for_the_namespace_is_refused_with_the_pools_listed() -> None:
    only = [dict(POOLS[2])]
    with pytest.raises(ConfigError, match="no pool of this network serves namespace 'shop'"):
        choose(netconf(only).pools, "shop", {})
    with pytest.raises(ConfigError, match="without a Kubernetes namespace"):
        choose(netconf(only).pools, None, {})


def test_annotations_come_from_runtime_config_and_only_ours_are_read() -> None:
    rc = {ann.CAPABILITY: {ann.POOL: "v100", "other.io/x": "1", ann.IP: "198.18.100.40"}, "ips": []}
    assert ann.pod_annotations(rc) == {ann.POOL: "v100", ann.IP: "198.18.100.40"}
    assert ann.pod_annotations({}) == {}
    with pytest.raises(ConfigError, match="must be an object"):
        ann.pod_annotations({ann.CAPABILITY: ["x"]})
    with pytest.raises(ConfigError, match="must be a string"):
        ann.pod_annotations({ann.CAPABILITY: {ann.IP: 5}})


# --- hypothesis over annotation values -------------------------------------------------------

POOL_NAMES = [p["name"] for p in POOLS] + ["nope", "V100", ""]
ADDRS = ["198.18.100.40", "198.18.30.40", "198.18.20.40", "2001:db8:100::40", "2001:db8:300::40", "192.0.2.1", "x"]
piece = st.one_of(st.sampled_from(POOL_NAMES + ADDRS), st.text(max_size=12))
value = st.lists(piece, max_size=4).map(",".join) | st.text(max_size=40)
namespace = st.sampled_from(["payments", "ledger", "shop", None])


@settings(max_examples=400, deadline=None)
@given(ns=namespace, pool=st.none() | value, ip=st.none() | value)
def test_any_annotation_value_gives_an_allowed_choice_or_a_named_refusal(
    ns: str | None, pool: str | None, ip: str | None
) -> None:
    annotations = {k: v for k, v in ((ann.POOL, pool), (ann.IP, ip)) if v is not None}
    try:
        got = choose(SPECS, ns, annotations)
    except (ConfigError, AddressUnavailable) as exc:
        assert exc.code in (INVALID_CONFIG, ADDRESS_UNAVAILABLE)
        assert ann.POOL in exc.msg or ann.IP in exc.msg, exc.msg  # it names what to fix
        assert "may use:" in exc.msg, exc.msg  # and the choices
        return
    assert got.pools, "a choice always has a pool"
    assert all(allowed(p, ns) for p in got.pools), "never a pool the namespace may not use"
    fams = [p.family for p in got.pools if got.how[p.name] in ("annotation", "ip")]
    assert len(fams) == len(set(fams)), "one chosen pool per family"
    assert len({p.vlan for p in got.pools}) == 1 or not annotations, "an annotated pod stays on one VLAN"
    for addr in got.requested:
        assert addr.version in {p.family for p in got.pools}
        assert any(addr in p.subnet and got.how[p.name] == "ip" for p in got.pools)
    if pool:
        named = {n.strip() for n in pool.split(",")}
        assert {p.name for p in got.pools if got.how[p.name] == "annotation"} <= named


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_parsing_any_text_is_a_request_or_a_config_error(text: str) -> None:
    for key in (ann.POOL, ann.IP):
        try:
            req = ann.parse_request({key: text})
        except ConfigError as exc:
            assert key in exc.msg and exc.code == INVALID_CONFIG
            continue
        items = req.pools if key == ann.POOL else req.ips
        assert 1 <= len(items) <= 2


# --- the namespaces key ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespaces", "words"),
    [
        ([], "is empty"),
        (["Payments"], "is not a Kubernetes namespace name"),
        (["-x"], "starting and ending with a letter or digit"),
        (["a" * 64], "the limit is 63"),
        (["a_b"], "is not a Kubernetes namespace name"),
        (["a", "a"], "listed twice"),
        ([5], "must be a string"),
        ("payments", "must be a JSON array"),
    ],
)
def test_invalid_namespaces_are_refused_at_parse_time(namespaces: Any, words: str) -> None:
    pools = [dict(POOLS[0], namespaces=namespaces)]
    with pytest.raises(ConfigError, match="ipam.pools\\[0\\].namespaces") as info:
        netconf(pools)
    assert words in info.value.msg


def test_a_namespace_named_on_two_vlans_is_ambiguous() -> None:
    pools = [dict(POOLS[2]), dict(POOLS[4], namespaces=["ledger"])]
    with pytest.raises(ConfigError, match="namespace 'ledger' is named by pool 'v300' \\(VLAN 300\\) and pool 'v200'"):
        netconf(pools)
    # two pools of one VLAN for a namespace: the second takes over when the first is full
    pools = [dict(POOLS[2]), dict(POOLS[2], name="v300-more", subnet="198.18.31.0/24", gateway="198.18.31.1")]
    assert names(choose(netconf(pools).pools, "ledger", {})) == ["v300", "v300-more"]


def test_namespaces_key_typo_is_suggested() -> None:
    with pytest.raises(ConfigError, match="did you mean 'namespaces'"):
        netconf([dict(POOLS[0], namespace=["a"])])


def test_pools_sharing_a_subnet_are_told_apart_by_range() -> None:
    shared = [
        {"name": "all", "subnet": "198.18.100.0/23", "rangeStart": "198.18.100.20", "rangeEnd": "198.18.100.99"},
        {
            "name": "pay",
            "subnet": "198.18.100.0/23",
            "rangeStart": "198.18.101.20",
            "rangeEnd": "198.18.101.59",
            "namespaces": ["payments"],
        },
    ]
    specs = netconf(shared).pools
    assert names(choose(specs, "payments", {ann.IP: "198.18.101.30"})) == ["pay"]
    with pytest.raises(ConfigError, match="is in pool 'pay', which serves only namespaces payments"):
        choose(specs, "shop", {ann.IP: "198.18.101.30"})
    with pytest.raises(AddressUnavailable, match="outside the range 198.18.100.20-198.18.100.99 of pool 'all'"):
        choose(specs, "shop", {ann.IP: "198.18.101.200"})
