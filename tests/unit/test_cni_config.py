"""parse_netconf / parse_conflist: every field's validation and the defaults."""

from __future__ import annotations

import copy
import ipaddress
import json
from typing import Any

import pytest

from flatnet.cni import parse_conflist, parse_netconf
from flatnet.cni.runtimeconf import PortMapping, ValidAttachment
from flatnet.errors import ConfigError, DecodeError, VersionError

BASE: dict[str, Any] = {
    "cniVersion": "1.1.0",
    "name": "flat100",
    "type": "flatnet",
    "master": "vlan100",
    "ipam": {
        "pools": [
            {
                "subnet": "198.18.100.0/24",
                "gateway": "198.18.100.1",
                "rangeStart": "198.18.100.32",
                "rangeEnd": "198.18.100.191",
            }
        ]
    },
}
VXLAN: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "name": "ovl",
    "type": "flatnet",
    "mode": "vxlan",
    "clusterSubnet": "198.19.0.0/17",
}


def conf(base: dict[str, Any] | None = None, **changes: Any) -> bytes:
    d = copy.deepcopy(BASE if base is None else base)
    for key, value in changes.items():
        if value is _DROP:
            d.pop(key, None)
        else:
            d[key] = value
    return json.dumps(d).encode()


_DROP = object()


def pool(**changes: Any) -> dict[str, Any]:
    p = dict(BASE["ipam"]["pools"][0])
    p.update(changes)
    return {"pools": [{k: v for k, v in p.items() if v is not _DROP}]}


def test_minimal_flat_config_and_defaults() -> None:
    c = parse_netconf(conf())
    assert (c.cni_version, c.name, c.type, c.mode, c.master) == ("1.1.0", "flat100", "flatnet", "macvlan", "vlan100")
    assert c.agent_socket == "/run/flatnet/agent.sock"
    assert c.store == {"type": "sqlite", "path": "/var/lib/flatnet/ipam.db"}
    p = c.pools[0]
    assert p.name == "flat100-198.18.100.0_24"
    assert p.subnet == ipaddress.ip_network("198.18.100.0/24")
    assert (str(p.range_start), str(p.range_end), str(p.gateway)) == ("198.18.100.32", "198.18.100.191", "198.18.100.1")
    assert c.prev_result is None and c.valid_attachments is None
    assert c.raw["master"] == "vlan100"
    assert c.options == {"portMappings": [], "serviceCidrs": []}


def test_full_flat_config() -> None:
    ipam = {
        "pools": [
            {
                "name": "v4",
                "subnet": "198.18.100.0/24",
                "exclude": ["198.18.100.7"],
                "vlan": 100,
                "sticky": True,
                "stickyHold": 600,
                "routes": [{"dst": "198.19.0.0/16", "gw": "198.18.100.254"}],
            },
            {"subnet": "2001:db8:100::/64", "rangeStart": "2001:db8:100::1000"},
        ],
        "store": {"type": "etcd", "endpoints": "http://198.18.0.10:2379", "prefix": "/fn/"},
    }
    c = parse_netconf(
        conf(
            mode="bridge",
            mtu=1400,
            vlan=100,
            hostNetns="fnlab-node1",
            mac="02:AA:00:00:00:01",
            ipam=ipam,
            **{"example.com/runtime-key": {"x": 1}},
        )
    )
    assert c.bridge == "fnbr0" and c.mtu == 1400 and c.vlan == 100
    assert c.host_netns == "fnlab-node1" and c.mac == "02:aa:00:00:00:01"
    v4, v6 = c.pools
    assert (
        v4.sticky
        and v4.sticky_hold == 600
        and v6.sticky_hold == 86400
        and v4.vlan == 100
        and v4.exclude == {ipaddress.ip_address("198.18.100.7")}
    )
    assert v4.routes == ((ipaddress.ip_network("198.19.0.0/16"), ipaddress.ip_address("198.18.100.254")),)
    assert v6.family == 6 and v6.name == "flat100-2001:db8:100::_64"
    assert c.store == {"type": "etcd", "endpoints": ["http://198.18.0.10:2379"], "prefix": "/fn/"}


def test_store_timeout_reaches_the_store() -> None:
    """ipam.store.timeout is parsed and handed to open_store (which honours it)."""
    from flatnet.ipam.store import open_store

    c = parse_netconf(
        conf(ipam={"pools": [{"name": "p", "subnet": "198.18.100.0/24"}], "store": {"type": "memory", "timeout": 1.5}})
    )
    assert c.store == {"type": "memory", "timeout": 1.5}
    open_store(c.store).close()


def test_vxlan_defaults_and_options() -> None:
    c = parse_netconf(conf(VXLAN, vtepAddress="198.18.100.11", nodeName="node1"))
    assert c.overlay is not None
    assert c.pools == [] and c.overlay.vni == 1 and c.overlay.vxlan_port == 4789 and c.overlay.snat is True
    assert c.overlay.node_block_prefix == 26
    assert c.options == {
        "vni": 1,
        "port": 4789,
        "vtep": "198.18.100.11",
        "clusterSubnet": "198.19.0.0/17",
        "nodeBlockPrefix": 26,
        "nodeName": "node1",
        "snat": True,
        "portMappings": [],
        "serviceCidrs": [],
    }
    c = parse_netconf(conf(VXLAN, vni=42, vxlanPort=8472, nodeBlockPrefix="/24", snat=False))
    assert c.overlay is not None
    assert (c.overlay.vni, c.overlay.vxlan_port, c.overlay.node_block_prefix, c.overlay.snat) == (42, 8472, 24, False)


def test_runtime_config_args_prev_result_and_gc_list() -> None:
    prev = {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [{"address": "198.18.100.40/24", "interface": 0}],
    }
    c = parse_netconf(
        conf(
            runtimeConfig={
                "ips": ["198.18.100.40/24"],
                "mac": "02:00:00:00:00:09",
                "portMappings": [{"hostPort": 8080, "containerPort": 80}],
                "bandwidth": {"ingressRate": 1},
            },
            args={"cni": {"ips": ["198.18.100.41", "198.18.100.40/24"]}},
            prevResult=prev,
            **{"cni.dev/valid-attachments": [{"containerID": "abc", "ifname": "eth0"}]},
        )
    )
    assert c.requested_ips() == [ipaddress.ip_interface("198.18.100.40/24"), ipaddress.ip_address("198.18.100.41")]
    assert c.requested_mac == "02:00:00:00:00:09"
    assert c.runtime_config.port_mappings == [PortMapping(8080, 80, "tcp")]
    assert c.options["portMappings"] == [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    assert c.runtime_config.raw["bandwidth"] == {"ingressRate": 1}
    assert c.prev_result is not None and str(c.prev_result.ips[0].address) == "198.18.100.40/24"
    assert c.valid_attachments == [ValidAttachment("abc", "eth0")]
    legacy = parse_netconf(conf(**{"cni.dev/attachments": []}))
    assert legacy.valid_attachments == []


def test_cni_versions_array_picks_the_highest_supported() -> None:
    c = parse_netconf(conf(cniVersion=_DROP, cniVersions=["0.4.0", "1.0.0", "9.0.0"]))
    assert c.cni_version == "1.0.0"


@pytest.mark.parametrize(
    "data, where",
    [
        (b"", "empty"),
        (b'{"name": ', "line 1"),
        (b"\xff\xfe", "UTF-8"),
        (b"[1, 2]", "JSON object"),
        (b'{"a": NaN}', "NaN"),
        (b"[" * 100000, "JSON"),
    ],
)
def test_undecodable_input_is_code_6(data: bytes, where: str) -> None:
    with pytest.raises(DecodeError, match=where) as info:
        parse_netconf(data)
    assert info.value.code == 6


def test_decode_error_gives_line_and_column() -> None:
    with pytest.raises(DecodeError, match=r"line 3, column \d+"):
        parse_netconf(b'{\n "name": "x",\n "type": }')


@pytest.mark.parametrize("version", ["0.2.0", "2.0.0", "1.0", "abc", 1.0])
def test_bad_cni_version_is_code_1_listing_supported(version: Any) -> None:
    with pytest.raises(VersionError, match="1.1.0") as info:
        parse_netconf(conf(cniVersion=version))
    assert info.value.code == 1


# (changes to BASE, substring the message must contain: the field and the fix)
FIELD_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"cniVersion": _DROP}, "cniVersion is required"),
    ({"name": _DROP}, "name is required"),
    ({"name": "-bad"}, "name '-bad'"),
    ({"name": "a/b"}, "name 'a/b'"),
    ({"name": 7}, "name must be a string"),
    ({"type": _DROP}, "type is required"),
    ({"mode": "sriov"}, "use one of: macvlan, ipvlan, bridge, vxlan"),
    ({"master": _DROP}, "master is required"),
    ({"master": "a-very-long-interface"}, "master 'a-very-long-interface'"),
    ({"master": "eth 0"}, "master 'eth 0'"),
    ({"mode": "bridge", "bridge": "br/0"}, "bridge 'br/0'"),
    ({"mtu": 40}, "mtu is 40, out of range"),
    ({"mtu": "1500"}, "mtu must be an integer"),
    ({"vlan": 4095}, "vlan is 4095"),
    ({"vlan": True}, "vlan must be an integer"),
    ({"hostNetns": "rel/path"}, "hostNetns 'rel/path'"),
    ({"hostNetns": "a b"}, "hostNetns 'a b'"),
    ({"agentSocket": "agent.sock"}, "agentSocket 'agent.sock' must be an absolute path"),
    ({"agentSocket": "/" + "x" * 120}, "agentSocket is 121 bytes"),
    ({"mac": "02:00:00:00:00"}, "mac must be a MAC address"),
    ({"mac": "01:00:5e:00:00:01"}, "mac '01:00:5e:00:00:01' is a multicast"),
    ({"dns": {"nameservers": "x"}}, "dns.nameservers must be a JSON array"),
    ({"ipam": "x"}, "ipam must be a JSON object"),
    ({"ipam": {}}, "ipam.pools is required in macvlan mode"),
    ({"ipam": {"pools": [{}]}}, "ipam.pools[0].subnet is required"),
    ({"ipam": {"pool": []}}, "did you mean 'pools'?"),
    ({"ipam": {"pools": [], "bogus": 1}}, "valid keys: type, pools, store"),
    ({"ipam": pool(subnett="198.18.0.0/24")}, "unknown key 'subnett'; did you mean 'subnet'?"),
    ({"ipam": pool(rangestart="198.18.100.9")}, "did you mean 'rangeStart'?"),
    (
        {"ipam": pool(subnet="198.18.100.7/24", gateway=_DROP, rangeStart=_DROP, rangeEnd=_DROP)},
        'host bits set; did you mean "198.18.100.0/24"?',
    ),
    ({"ipam": pool(subnet="198.18.100.0")}, "add the prefix length"),
    ({"ipam": pool(subnet="nope/24")}, "ipam.pools[0].subnet must be a network"),
    ({"ipam": pool(gateway="198.18.101.1")}, "ipam.pools[0].gateway 198.18.101.1 is outside"),
    ({"ipam": pool(gateway="198.18.100.0")}, "gateway 198.18.100.0 is the network address"),
    ({"ipam": pool(rangeEnd="198.18.100.255")}, "rangeEnd 198.18.100.255 is the broadcast"),
    ({"ipam": pool(rangeStart="2001:db8::1")}, "rangeStart 2001:db8::1 is outside"),
    ({"ipam": pool(rangeStart="198.18.100.200")}, "rangeStart 198.18.100.200 is after rangeEnd"),
    ({"ipam": pool(exclude=["198.18.1.1"])}, "ipam.pools[0].exclude[0] 198.18.1.1 is outside"),
    ({"ipam": pool(exclude="198.18.100.5")}, "ipam.pools[0].exclude must be a JSON array"),
    ({"ipam": pool(vlan=0)}, "ipam.pools[0].vlan is 0"),
    ({"ipam": pool(sticky="yes")}, "ipam.pools[0].sticky must be true or false"),
    ({"ipam": pool(stickyHold=-1)}, "ipam.pools[0].stickyHold -1 must be a number of seconds"),
    ({"ipam": pool(stickyHold="1h")}, "ipam.pools[0].stickyHold '1h' must be a number of seconds"),
    ({"ipam": pool(routes=[{"dst": "2001:db8::/32"}])}, "routes[0].dst 2001:db8::/32 is IPv6"),
    ({"ipam": pool(routes=[{"dst": "198.19.0.0/16", "gw": "2001:db8::1"}])}, "routes[0].gw"),
    ({"ipam": pool(routes=[{"dest": "0.0.0.0/0"}])}, "did you mean 'dst'?"),
    (
        {"ipam": {"pools": [{"subnet": "198.18.0.0/24", "name": "p"}, {"subnet": "198.18.1.0/24", "name": "p"}]}},
        "pools[1].name 'p'",
    ),
    ({"ipam": {**pool(), "store": {"type": "redis"}}}, "use one of: sqlite, etcd, memory"),
    ({"ipam": {**pool(), "store": {"type": "etcd"}}}, "ipam.store.endpoints is required"),
    (
        {"ipam": {**pool(), "store": {"type": "etcd", "endpoints": ["198.18.0.1:2379"]}}},
        "ipam.store.endpoints[0] '198.18.0.1:2379' must be a URL",
    ),
    (
        {"ipam": {**pool(), "store": {"type": "sqlite", "path": "rel.db"}}},
        "ipam.store.path 'rel.db' must be an absolute path",
    ),
    ({"ipam": {**pool(), "store": {"typ": "sqlite"}}}, "did you mean 'type'?"),
    (
        {"ipam": {**pool(), "store": {"type": "etcd", "endpoints": ["http://198.18.0.1:2379"], "timeout": 0}}},
        "ipam.store.timeout 0 must be a number of seconds in (0, 600]",
    ),
    (
        {"ipam": {**pool(), "store": {"type": "sqlite", "timeout": "5"}}},
        "ipam.store.timeout '5' must be a number of seconds",
    ),
    ({"runtimeConfig": {"ips": ["198.18.100.300"]}}, "runtimeConfig.ips[0]"),
    ({"runtimeConfig": {"mac": "zz"}}, "runtimeConfig.mac"),
    (
        {"runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80}]}},
        "runtimeConfig.portMappings[0].hostPort is 0",
    ),
    (
        {"runtimeConfig": {"portMappings": [{"hostPort": 80}]}},
        "runtimeConfig.portMappings[0].containerPort is required",
    ),
    (
        {"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]}},
        "use one of: tcp, udp, sctp",
    ),
    ({"args": {"cni": {"ips": "198.18.100.5"}}}, "args.cni.ips must be a JSON array"),
    ({"prevResult": {"ips": [{"address": "bad"}]}}, "prevResult.ips[0].address"),
    ({"cni.dev/valid-attachments": [{"ifname": "eth0"}]}, "cni.dev/valid-attachments[0].containerID is required"),
]


@pytest.mark.parametrize("changes, message", FIELD_ERRORS, ids=[m[:40] for _, m in FIELD_ERRORS])
def test_each_field_error_names_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_netconf(conf(**changes))
    assert message in info.value.msg
    assert info.value.code == 7


VXLAN_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"clusterSubnet": _DROP}, "clusterSubnet is required"),
    ({"clusterSubnet": "198.19.0.1/17"}, 'did you mean "198.19.0.0/17"?'),
    ({"vni": 0}, "vni is 0"),
    ({"vni": 16777216}, "vni is 16777216"),
    ({"vxlanPort": 70000}, "vxlanPort is 70000"),
    ({"nodeBlockPrefix": 16}, "nodeBlockPrefix /16 must be longer than clusterSubnet"),
    ({"nodeBlockPrefix": 31}, "nodeBlockPrefix is 31"),
    ({"vtepAddress": "node1"}, "vtepAddress must be an IP address"),
    ({"snat": "no"}, "snat must be true or false"),
]


@pytest.mark.parametrize("changes, message", VXLAN_ERRORS, ids=[m[:30] for _, m in VXLAN_ERRORS])
def test_each_vxlan_field_error_names_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_netconf(conf(VXLAN, **changes))
    assert message in info.value.msg


def test_keys_runtimes_add_and_domain_qualified_keys_are_allowed() -> None:
    c = parse_netconf(conf(capabilities={"portMappings": True}, **{"k8s.example.com/x": 1}))
    assert c.raw["k8s.example.com/x"] == 1


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"inprocess": "/x"}, "unknown key 'inprocess'; did you mean 'inProcess'?"),
        ({"mastr": "eth0", "master": _DROP}, "unknown key 'mastr'; did you mean 'master'?"),
        ({"agentsocket": "/x.sock"}, "did you mean 'agentSocket'?"),
        ({"mdoe": "bridge"}, "did you mean 'mode'?"),
        ({"foo": 1}, "unknown key 'foo'; valid keys: mode, master,"),
        ({"bridge": "br1"}, "key 'bridge', which only mode bridge reads; this network's mode is 'macvlan'"),
        ({"vni": 7}, "which only mode vxlan reads"),
    ],
)
def test_unknown_plugin_keys_are_refused_naming_the_key_and_the_fix(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_netconf(conf(**changes))
    assert message in info.value.msg


def test_every_key_parse_netconf_reads_is_known() -> None:
    """The known-keys lists are THE list: a key read in config.py but missing there would be
    refused for every user (this reads the parser's source for ``raw.get("...")``)."""
    import inspect
    import re

    from flatnet.cni import config

    read = set(re.findall(r'raw(?:\.get\(|\[)"([A-Za-z][A-Za-z0-9]*)"', inspect.getsource(config)))
    known = {*config.SPEC_KEYS, *config.FLATNET_KEYS, *config.OVERLAY_KEYS, *config.CONFLIST_KEYS, "bridge"}
    assert read and read <= known, read - known


def test_conflist_keys_are_checked() -> None:
    data = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "flatnet"}], "disablecheck": True}
    with pytest.raises(ConfigError) as info:
        parse_conflist(json.dumps(data).encode())
    assert "did you mean 'disableCheck'?" in info.value.msg


def test_conflist() -> None:
    data = json.dumps(
        {
            "cniVersions": ["0.4.0", "1.1.0"],
            "name": "flat100",
            "plugins": [{"type": "flatnet", "master": "x"}, {"type": "tuning"}],
        }
    )
    cl = parse_conflist(data.encode())
    assert cl.cni_version == "1.1.0" and [p["type"] for p in cl.plugins] == ["flatnet", "tuning"]
    pc = cl.plugin_config(1, prev_result={"cniVersion": "1.1.0"})
    assert pc == {"type": "tuning", "name": "flat100", "cniVersion": "1.1.0", "prevResult": {"cniVersion": "1.1.0"}}
    with pytest.raises(ConfigError, match="plugins is required"):
        parse_conflist(b'{"cniVersion": "1.0.0", "name": "n", "plugins": []}')
    with pytest.raises(ConfigError, match=r"plugins\[0\].type is required"):
        parse_conflist(b'{"cniVersion": "1.0.0", "name": "n", "plugins": [{}]}')


def test_service_cidrs_validated_and_passed_to_the_datapath() -> None:
    c = parse_netconf(conf(None, serviceCidrs=["198.19.128.0/24", "2001:db8:128::/112"]))
    assert c.options["serviceCidrs"] == ["198.19.128.0/24", "2001:db8:128::/112"]
    with pytest.raises(ConfigError, match=r"serviceCidrs\[0\].*did you mean \"198.19.128.0/24\""):
        parse_netconf(conf(None, serviceCidrs=["198.19.128.1/24"]))
    with pytest.raises(ConfigError, match="serviceCidrs must be a JSON array"):
        parse_netconf(conf(None, serviceCidrs="198.19.128.0/24"))
