"""Result shapes per CNI spec version, and round trips through JSON."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flatnet.cni import DNS, SUPPORTED, Interface, IPConfig, Result, Route
from flatnet.cni import version as v
from flatnet.errors import ConfigError, DecodeError, VersionError

OLD = ("0.3.0", "0.3.1", "0.4.0")
NEW = ("1.0.0", "1.1.0")


def sample() -> Result:
    return Result(
        interfaces=[Interface("eth0", "02:00:c6:12:64:28", "/run/netns/fnt-abc", 1500)],
        ips=[
            IPConfig(ipaddress.ip_interface("198.18.100.40/24"), ipaddress.ip_address("198.18.100.1"), 0),
            IPConfig(ipaddress.ip_interface("2001:db8:100::1000/64"), None, 0),
        ],
        routes=[Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("198.18.100.1"), priority=100)],
        dns=DNS(nameservers=["198.18.100.53"], search=["svc.local"]),
    )


def test_version_answers_every_supported_version_oldest_first() -> None:
    """What VERSION tells a runtime is the spec versions the result types implement."""
    import io

    from flatnet.cni import dispatch

    assert SUPPORTED == ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
    out = io.StringIO()
    assert (
        dispatch(
            None,
            {"CNI_COMMAND": "VERSION"},  # type: ignore[arg-type]
            b'{"cniVersion": "1.1.0"}',
            out,
        )
        == 0
    )
    answer = json.loads(out.getvalue())
    assert answer["supportedVersions"] == list(SUPPORTED)
    assert answer["cniVersion"] == v.LATEST == SUPPORTED[-1]
    for ver in SUPPORTED:  # each one is a shape to_json knows
        assert sample().to_json(ver)["cniVersion"] == ver


@pytest.mark.parametrize("ver", OLD)
def test_old_versions_tag_each_ip_with_its_family(ver: str) -> None:
    out = sample().to_json(ver)
    assert out["cniVersion"] == ver
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    assert out["interfaces"] == [{"name": "eth0", "mac": "02:00:c6:12:64:28", "sandbox": "/run/netns/fnt-abc"}]
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "198.18.100.1"}]  # no 1.1 extras
    assert out["dns"] == {"nameservers": ["198.18.100.53"], "search": ["svc.local"]}


def test_1_0_0_has_no_ip_version_and_no_mtu() -> None:
    out = sample().to_json("1.0.0")
    assert out["ips"][0] == {"interface": 0, "address": "198.18.100.40/24", "gateway": "198.18.100.1"}
    assert out["ips"][1] == {"interface": 0, "address": "2001:db8:100::1000/64"}
    assert "mtu" not in out["interfaces"][0]
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "198.18.100.1"}]


def test_1_1_0_carries_interface_mtu_and_route_extras() -> None:
    out = sample().to_json("1.1.0")
    assert out["interfaces"][0]["mtu"] == 1500
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "198.18.100.1", "priority": 100}]
    assert "version" not in out["ips"][0]


def test_empty_lists_are_omitted_and_dns_always_present() -> None:
    out = Result().to_json("1.1.0")
    assert out == {"cniVersion": "1.1.0", "dns": {}}


def test_to_json_rejects_an_unsupported_version() -> None:
    with pytest.raises(VersionError, match="0.2.0"):
        sample().to_json("0.2.0")


@pytest.mark.parametrize("ver", SUPPORTED)
def test_from_json_reads_every_version(ver: str) -> None:
    back = Result.from_json(json.loads(json.dumps(sample().to_json(ver))))
    assert back.cni_version == ver
    assert [ip.address for ip in back.ips] == [ip.address for ip in sample().ips]
    assert back.interfaces[0].mtu == (1500 if ver == "1.1.0" else None)


def test_prev_result_without_cni_version_uses_the_given_one() -> None:
    d = {"ips": [{"version": "4", "address": "198.18.0.5/24"}]}
    assert Result.from_json(d, "0.3.1").cni_version == "0.3.1"


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"ips": [{"address": "198.18.0.5"}]}, "ips[0].address"),
        ({"ips": [{"address": "198.18.0.5/24", "interface": 2}]}, "ips[0].interface"),
        ({"ips": [{"address": "198.18.0.5/24", "gateway": "2001:db8::1"}]}, "ips[0].gateway"),
        ({"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "198.18.0.5/24"}]}, "ips[0].version"),
        ({"routes": [{"dst": "nowhere"}]}, "routes[0].dst"),
        ({"interfaces": [{"mac": "02:00:00:00:00:01"}]}, "interfaces[0].name"),
        ({"interfaces": "eth0"}, "interfaces"),
        ({"dns": {"nameservers": "198.18.0.53"}}, "dns.nameservers"),
        ({"cniVersion": "9.9.9"}, "cniVersion"),
    ],
)
def test_from_json_names_the_bad_field(bad: dict, field: str) -> None:
    with pytest.raises(DecodeError) as info:
        Result.from_json(bad)
    assert field in info.value.msg
    with pytest.raises(ConfigError, match="prevResult"):
        Result.from_json(bad, where="prevResult", error=ConfigError)


def test_version_helpers() -> None:
    assert v.compare("0.3.1", "0.4.0") == -1 and v.compare("1.1", "1.1.0") == 0
    assert v.pick_conflist_version(["0.4.0", "2.0.0", "1.0.0", 7]) == "1.0.0"
    with pytest.raises(VersionError, match="1.1.0"):
        v.pick_conflist_version(["0.2.0"])
    for bad in ("", "1.x", "1.0.0.0", "-1.0.0"):
        with pytest.raises(VersionError, match="malformed"):
            v.parse_version(bad)
    v.require_verb("CHECK", "0.4.0")
    with pytest.raises(VersionError, match="CHECK") as info:
        v.require_verb("CHECK", "0.3.1")
    assert info.value.code == 1


# ----------------------------------------------------------- property tests

_v4 = st.builds(lambda a, p: ipaddress.IPv4Interface((a, p)), st.integers(0, 2**32 - 1), st.integers(0, 32))
_v6 = st.builds(lambda a, p: ipaddress.IPv6Interface((a, p)), st.integers(0, 2**128 - 1), st.integers(0, 128))
_text = st.text(st.characters(codec="utf-8"), max_size=12)
_opt_int = st.none() | st.integers(0, 2**31)


@st.composite
def results(draw: st.DrawFn) -> Result:
    ifaces = draw(
        st.lists(
            st.builds(
                Interface,
                name=_text.filter(bool),
                mac=_text,
                sandbox=_text,
                mtu=st.none() | st.integers(1, 65535),
                socket_path=_text,
                pci_id=_text,
            ),
            max_size=3,
        )
    )
    ips = []
    for addr in draw(st.lists(_v4 | _v6, max_size=4)):
        gw = draw(st.none() | st.just(addr.ip))
        index = draw(st.none() | st.integers(0, len(ifaces) - 1)) if ifaces else None
        ips.append(IPConfig(addr, gw, index))
    routes = []
    for addr in draw(st.lists(_v4 | _v6, max_size=3)):
        routes.append(
            Route(
                addr.network,
                draw(st.none() | st.just(addr.ip)),
                draw(_opt_int),
                draw(_opt_int),
                draw(_opt_int),
                draw(_opt_int),
                draw(_opt_int),
            )
        )
    dns = DNS(
        draw(st.lists(_text, max_size=2)),
        draw(_text),
        draw(st.lists(_text, max_size=2)),
        draw(st.lists(_text, max_size=2)),
    )
    return Result(ifaces, ips, routes, dns)


@settings(max_examples=150, deadline=None)
@given(results())
def test_round_trip_latest_is_lossless(r: Result) -> None:
    back = Result.from_json(json.loads(json.dumps(r.to_json("1.1.0"))))
    assert back == r


@settings(max_examples=150, deadline=None)
@given(results(), st.sampled_from(SUPPORTED), st.sampled_from(SUPPORTED))
def test_round_trip_any_version_keeps_addresses(r: Result, first: str, second: str) -> None:
    once = Result.from_json(json.loads(json.dumps(r.to_json(first))))
    assert [(ip.address, ip.gateway, ip.interface) for ip in once.ips] == [
        (ip.address, ip.gateway, ip.interface) for ip in r.ips
    ]
    assert [(x.dst, x.gw) for x in once.routes] == [(x.dst, x.gw) for x in r.routes]
    # passing through a second version loses nothing the first could carry
    # (only 1.1.0 carries more than the others: mtu, socketPath, pciID, route extras)
    again = Result.from_json(once.to_json(second)).to_json(first)
    if second == "1.1.0" or first != "1.1.0":
        assert again == r.to_json(first)
    assert Result.from_json(r.to_json(first)).to_json(first) == r.to_json(first)
