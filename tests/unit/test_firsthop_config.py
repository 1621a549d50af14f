"""First-hop security settings: the config keys, the policy a pod's spec carries, the rules.

The filter itself is tested with real attacks in tests/chaos/test_firsthop.py (and the kernel
tier); here: how the network and pool keys become the pod's policy, bad values refused with
the field named, and the rules each policy yields.
"""

from __future__ import annotations

import copy
import json
import types
from typing import Any

import pytest

from flatnet.agent.spec import FIRST_HOP, build_spec, first_hop_policy
from flatnet.cni import parse_netconf
from flatnet.datapath import firsthop
from flatnet.errors import ConfigError, DatapathError, KernelFeatureMissing
from flatnet.ipam.api import Lease, Owner

BASE: dict[str, Any] = {
    "cniVersion": "1.1.0",
    "name": "flat100",
    "type": "flatnet",
    "master": "eth0",
    "ipam": {
        "pools": [
            {"name": "pods", "subnet": "198.18.100.0/24", "gateway": "198.18.100.1"},
            {"name": "routers", "subnet": "198.18.101.0/24", "allowRouterAdvertisements": True},
            {"name": "dhcp", "subnet": "2001:db8:100::/64", "allowDhcpServer": True},
        ]
    },
}


def _conf(**top: Any) -> Any:
    raw = copy.deepcopy(BASE)
    raw.update(top)
    return parse_netconf(json.dumps(raw).encode())


def _lease(pool: str, addr: str) -> Lease:
    import ipaddress

    return Lease(pool=pool, address=ipaddress.ip_interface(addr), gateway=None, vlan=None, owner=Owner("c1", "eth0"))


def test_defaults_filter_everything_and_pools_opt_in() -> None:
    conf = _conf()
    assert conf.first_hop_security is True
    by = {p.name: p for p in conf.pools}
    assert (by["pods"].allow_router, by["pods"].allow_dhcp_server) == (False, False)
    assert by["routers"].allow_router and by["dhcp"].allow_dhcp_server
    assert first_hop_policy(conf, [_lease("pods", "198.18.100.5/24")], []) == {
        "enforce": True,
        "router": False,
        "dhcpServer": False,
    }
    both = [_lease("routers", "198.18.101.5/24"), _lease("dhcp", "2001:db8:100::5/64")]
    assert first_hop_policy(conf, both, []) == {"enforce": True, "router": True, "dhcpServer": True}


def test_opt_out_is_explicit_and_reaches_the_spec() -> None:
    conf = _conf(firstHopSecurity=False)
    cmd = types.SimpleNamespace(conf=conf, container_id="c1", ifname="eth0", netns="/run/netns/x", args={})
    spec = build_spec(cmd, [_lease("pods", "198.18.100.5/24")], conf.pools, None, "n1")
    assert spec.options[FIRST_HOP]["enforce"] is False
    assert firsthop.Policy.from_options(spec.options) == firsthop.Policy(enforce=False)


@pytest.mark.parametrize(
    "where,patch",
    [
        ("firstHopSecurity", {"firstHopSecurity": "no"}),
        ("ipam.pools[0].allowRouterAdvertisements", {"pool": {"allowRouterAdvertisements": 1}}),
        ("ipam.pools[0].allowDhcpServer", {"pool": {"allowDhcpServer": "yes"}}),
    ],
)
def test_bad_values_name_the_field(where: str, patch: dict[str, Any]) -> None:
    raw = copy.deepcopy(BASE)
    if "pool" in patch:
        raw["ipam"]["pools"][0].update(patch["pool"])
    else:
        raw.update(patch)
    with pytest.raises(ConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
        parse_netconf(json.dumps(raw).encode())


def test_rules_per_policy() -> None:
    who = firsthop.allowed("02:00:00:00:00:05", ["198.18.100.5", "2001:db8:100::5"], ["fe80::5"])
    strict = firsthop.rules(who, firsthop.Policy())
    assert "icmpv6 type { nd-router-advert, nd-redirect } drop" in strict
    assert "udp sport { 67, 547 } drop" in strict
    assert "ether type != { ip, ip6, arp } drop" in strict
    assert any("fe80::5" in r and "ip6 saddr" in r for r in strict)
    router = firsthop.rules(who, firsthop.Policy(router=True, dhcp_server=True))
    assert not any("router-advert" in r or "sport { 67" in r or "redirect" in r for r in router)
    assert firsthop.fingerprint(who, firsthop.Policy()) != firsthop.fingerprint(who, firsthop.Policy(router=True))
    no4 = firsthop.rules(firsthop.allowed("02:00:00:00:00:05", ["2001:db8:100::5"]), firsthop.Policy())
    assert "ether type ip drop" in no4 and "arp saddr ip != 0.0.0.0 drop" in no4


@pytest.mark.parametrize("mac", ["01:00:5e:00:00:01", "02:00:00:00:00", "zz:00:00:00:00:01"])
def test_bad_identity_refused_before_nft(mac: str) -> None:
    with pytest.raises(ConfigError):
        firsthop.allowed(mac, ["198.18.100.5"])
    with pytest.raises(ConfigError):
        firsthop.allowed("02:00:00:00:00:05", ["198.18.100.5"], ["2001:db8::1"])  # not link-local


def test_a_kernel_refusing_the_egress_hook_is_a_missing_kernel_feature(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel's words for a missing hook (nft's "Operation not supported") become
    KernelFeatureMissing naming the config options and the opt-out key, not a silent no-filter."""

    def refuse(ns: object, text: str) -> None:
        raise DatapathError("nft -f - failed in netns x: Error: Could not process rule: Operation not supported")

    monkeypatch.setattr(firsthop.nft, "apply_inproc", refuse)
    who = firsthop.allowed("02:00:00:00:00:05", ["198.18.100.5"])
    with pytest.raises(KernelFeatureMissing, match="CONFIG_NETFILTER_EGRESS.*firstHopSecurity"):
        firsthop.install("/run/netns/x", "eth0", who, firsthop.Policy())


def test_tcp_is_let_go_only_after_every_source_check() -> None:
    """The early ``meta l4proto tcp accept`` (most of what a pod sends skips the ARP/ICMP/UDP
    rules) must come after the MAC, ethertype, label and IPv4/IPv6 source checks, and before
    none of them: moved up, a TCP segment from the gateway's address would pass (the
    tcp-from-gateway-ip attack in tests/chaos)."""
    who = firsthop.allowed("02:00:00:00:00:05", ["198.18.100.5", "2001:db8:100::5"], ["fe80::5"])
    for policy in (firsthop.Policy(), firsthop.Policy(router=True, dhcp_server=True)):
        body = firsthop.rules(who, policy)
        at = body.index("meta l4proto tcp accept")
        before, after = body[:at], body[at + 1 :]
        assert any(r.startswith("ether saddr") for r in before)
        assert any(r.startswith("ip saddr") for r in before) and any(r.startswith("ip6 saddr") for r in before)
        assert sum("meta protocol" in r for r in before) == 3
        assert not any(r.startswith(("ip saddr", "ip6 saddr", "ether")) for r in after)
        assert all(r.startswith(("arp ", "icmpv6 ", "icmp ", "udp ")) for r in after)
