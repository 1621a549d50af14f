"""Pool arithmetic: usable offsets, edge prefixes, and config validation messages."""

from __future__ import annotations

import ipaddress

import pytest

from flatnet.errors import ConfigError
from flatnet.ipam import PoolRange, PoolSpec

ip = ipaddress.ip_address
net = ipaddress.ip_network


def usable(spec: PoolSpec) -> list[str]:
    pr = PoolRange(spec)
    out, off = [], pr.next_usable(0)
    while off is not None:
        out.append(str(pr.address(off)))
        off = pr.next_usable(off + 1)
    assert len(out) == pr.total
    return out


def test_v4_skips_network_and_broadcast() -> None:
    assert usable(PoolSpec("p", net("198.18.0.0/29"))) == [f"198.18.0.{i}" for i in range(1, 7)]


def test_v6_skips_only_the_network_address() -> None:
    got = usable(PoolSpec("p", net("2001:db8::/125")))
    assert got == [f"2001:db8::{i}" for i in range(1, 8)]


@pytest.mark.parametrize(
    "subnet, expected",
    [
        ("198.18.0.0/31", ["198.18.0.0", "198.18.0.1"]),
        ("198.18.0.5/32", ["198.18.0.5"]),
        ("198.18.0.0/30", ["198.18.0.1", "198.18.0.2"]),
        ("2001:db8::/127", ["2001:db8::", "2001:db8::1"]),
        ("2001:db8::9/128", ["2001:db8::9"]),
    ],
)
def test_point_to_point_and_host_prefixes(subnet: str, expected: list[str]) -> None:
    assert usable(PoolSpec("p", net(subnet))) == expected


def test_gateway_exclude_and_range_narrow_the_pool() -> None:
    spec = PoolSpec(
        "p",
        net("198.18.0.0/24"),
        range_start=ip("198.18.0.10"),
        range_end=ip("198.18.0.15"),
        gateway=ip("198.18.0.10"),
        exclude=frozenset({ip("198.18.0.12"), ip("198.18.0.200")}),
    )
    assert usable(spec) == ["198.18.0.11", "198.18.0.13", "198.18.0.14", "198.18.0.15"]
    pr = PoolRange(spec)
    assert "gateway" in pr.why_unusable(ip("198.18.0.10"))
    assert "exclude" in pr.why_unusable(ip("198.18.0.12"))
    assert "outside the range" in pr.why_unusable(ip("198.18.0.16"))
    assert "outside subnet" in pr.why_unusable(ip("198.19.0.1"))
    assert pr.why_unusable(ip("198.18.0.13")) is None


def test_total_counts_a_huge_pool_without_listing_it() -> None:
    pr = PoolRange(PoolSpec("big", net("2001:db8::/64"), gateway=ip("2001:db8::1")))
    assert pr.total == 2**64 - 2


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"gateway": ip("198.19.0.1")}, ["gateway", "outside the subnet"]),
        ({"range_start": ip("198.19.0.1")}, ["rangeStart", "outside the subnet"]),
        ({"range_end": ip("10.0.0.1")}, ["rangeEnd", "outside the subnet"]),
        ({"range_start": ip("198.18.0.9"), "range_end": ip("198.18.0.3")}, ["rangeStart", "after rangeEnd"]),
        ({"exclude": frozenset({ip("198.18.1.1")})}, ["exclude", "outside the subnet"]),
        (
            {"range_start": ip("198.18.0.3"), "range_end": ip("198.18.0.3"), "gateway": ip("198.18.0.3")},
            ["no usable address", "widen"],
        ),
    ],
)
def test_invalid_config_names_field_and_fix(kwargs: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        PoolRange(PoolSpec("p", net("198.18.0.0/28"), **kwargs))
    assert info.value.code == 7
    for w in words:
        assert w in info.value.msg
    assert "'p'" in info.value.msg
