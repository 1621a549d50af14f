"""Two pools of one network that share addresses on one VLAN: an error unless both say
``"shared": true`` (issue 26); other VLANs and other families never overlap."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from flatnet.cni import parse_netconf
from flatnet.errors import ConfigError
from tests.unit.test_cni_config import BASE


def two(a: dict[str, Any], b: dict[str, Any]) -> bytes:
    d = copy.deepcopy(BASE)
    d["ipam"] = {"pools": [a, b]}
    return json.dumps(d).encode()


A = {"name": "a", "subnet": "198.18.100.0/24", "rangeStart": "198.18.100.10", "rangeEnd": "198.18.100.99"}


def test_overlapping_pools_of_one_network_are_an_error_naming_both() -> None:
    b = {**A, "name": "b", "rangeStart": "198.18.100.90", "rangeEnd": "198.18.100.120"}
    with pytest.raises(ConfigError) as exc:
        parse_netconf(two(A, b))
    msg = exc.value.msg
    assert "ipam.pools[1] ('b') overlaps ipam.pools[0] ('a') on 198.18.100.90-198.18.100.99" in msg
    assert '"shared": true' in msg and "rangeStart/rangeEnd" in msg
    # a wider subnet around it overlaps too
    wide = {"name": "w", "subnet": "198.18.100.0/23"}
    with pytest.raises(ConfigError, match="overlaps"):
        parse_netconf(two(A, wide))


def test_explicit_sharing_on_both_is_accepted_and_one_side_is_not() -> None:
    b = {**A, "name": "b"}
    with pytest.raises(ConfigError, match="overlaps"):
        parse_netconf(two({**A, "shared": True}, b))
    conf = parse_netconf(two({**A, "shared": True}, {**b, "shared": True}))
    assert [p.name for p in conf.pools] == ["a", "b"]
    with pytest.raises(ConfigError, match=r"ipam.pools\[0\].shared"):
        parse_netconf(two({**A, "shared": "yes"}, b))


def test_disjoint_ranges_other_vlans_and_families_are_fine() -> None:
    parse_netconf(two(A, {**A, "name": "b", "rangeStart": "198.18.100.100", "rangeEnd": "198.18.100.150"}))
    parse_netconf(two({**A, "vlan": 100}, {**A, "name": "b", "vlan": 101}))
    parse_netconf(two(A, {"name": "v6", "subnet": "2001:db8:100::/64"}))
