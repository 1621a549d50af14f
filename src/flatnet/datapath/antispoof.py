"""Anti-spoofing for bridge mode: a pod may only send as itself (its MAC, its IPs).

On a Linux bridge every pod veth is a port of the same L2 segment as the VMs. Without a
filter a pod can change its MAC or address and impersonate a neighbour (or the gateway):
poison ARP caches, steal replies, or send 802.1Q-tagged frames that the bridge (no
vlan_filtering on this kernel family) forwards unchanged to the uplink: VLAN hopping.

nftables ``bridge`` family, in the node's netns, one table ``flatnet_antispoof``::

    chain prerouting  (filter hook prerouting priority -300): iifname vmap @ports
    map   ports       ifname -> jump port-<host veth>
    chain port-<veth> the pod's allow-list; anything else is dropped:
        ether saddr != <pod mac>                      drop
        ether type not in {ip, ip6, arp}              drop   (no VLAN tags, no other L2 protocols)
        arp: sender MAC != pod mac / sender IP not the pod's IPv4      drop
        ip saddr not the pod's IPv4                   drop
        ip6 saddr not the pod's IPv6, fe80::/10 or :: drop   (link-local and DAD stay legal)
        ICMPv6 neighbour advertisement for a target that is not the pod's   drop
                                                      (or link-local: the pod's own one is pinned
                                                      by the pod-side filter)
        router advertisements, ICMP/ICMPv6 redirects       drop   (unless ``router``)
        DHCP/DHCPv6 server replies (udp sport 67 / 547)    drop   (unless ``dhcp_server``)

This node-side filter is the second line in bridge mode: the first is the pod's own egress
filter (datapath/firsthop.py), which a pod granted CAP_NET_ADMIN could remove; this one it
cannot reach.

Frames from other ports never enter a port chain, so the node, the uplink and the other
pods are untouched. Each ``install``/``remove`` is one ``nft -f`` transaction (atomic),
and both are idempotent, so a retried ADD or DEL is harmless.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Iterable

from flatnet.datapath import nft
from flatnet.errors import ConfigError, DatapathError

FAMILY = "bridge"
TABLE = "flatnet_antispoof"
BASE = "prerouting"
MAP = "ports"
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_LINK_LOCAL6 = "fe80::/10"
_LINK_LOCAL_TARGETS = f"{0xFE80 << 112:#x}-{(0xFEC0 << 112) - 1:#x}"  # fe80::/10 as 128-bit integers

IPLike = ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Interface | ipaddress.IPv6Interface | str


def chain_name(host_ifname: str) -> str:
    return f"port-{host_ifname}"


def _check_ifname(host_ifname: str) -> str:
    # the name is pasted into ruleset text: only characters an interface name may hold
    if not isinstance(host_ifname, str) or not _IFNAME.match(host_ifname):
        raise ConfigError(
            f"anti-spoofing: host interface name {host_ifname!r} is not a valid "
            "Linux interface name (1-15 of letters, digits, '_', '.', '-')"
        )
    return host_ifname


def _check_mac(mac: str) -> str:
    norm = mac.lower() if isinstance(mac, str) else ""
    if not _MAC.match(norm) or int(norm[:2], 16) & 1:
        raise ConfigError(f"anti-spoofing: pod MAC {mac!r} is not a unicast MAC like 02:42:ac:11:00:02")
    return norm


def _split(ips: Iterable[IPLike]) -> tuple[list[str], list[str]]:
    v4: list[str] = []
    v6: list[str] = []
    for raw in ips:
        try:
            ip = ipaddress.ip_interface(str(raw)).ip
        except ValueError:
            raise ConfigError(f"anti-spoofing: {raw!r} is not an IP address") from None
        (v4 if ip.version == 4 else v6).append(str(ip))
    return sorted(set(v4)), sorted(set(v6))


def _skeleton() -> str:
    """Table, base chain and port map (``add`` is a no-op when they exist)."""
    return (
        f"add table {FAMILY} {TABLE}\n"
        f"add chain {FAMILY} {TABLE} {BASE} {{ type filter hook prerouting priority -300; policy accept; }}\n"
        f"add map {FAMILY} {TABLE} {MAP} {{ type ifname : verdict; }}\n"
    )


def _base_rule_lines() -> str:
    # the single dispatch rule; flushed and re-added so it exists exactly once
    return f"flush chain {FAMILY} {TABLE} {BASE}\nadd rule {FAMILY} {TABLE} {BASE} iifname vmap @{MAP}\n"


def port_rules(mac: str, ips: Iterable[IPLike], router: bool = False, dhcp_server: bool = False) -> list[str]:
    """The allow-list of one port as rule bodies (also for tests and docs)."""
    mac = _check_mac(mac)
    v4, v6 = _split(ips)
    rules = [
        f"ether saddr != {mac} drop",
        "ether type != { ip, ip6, arp } drop",
        f"arp saddr ether != {mac} drop",
    ]
    if v4:
        set4 = "{ " + ", ".join(v4) + " }"
        rules += [f"arp saddr ip != {set4} drop", f"ip saddr != {set4} drop"]
    else:
        rules += ["ether type { ip, arp } drop"]
    set6 = "{ " + ", ".join([*v6, _LINK_LOCAL6, "::"]) + " }"
    rules += [f"ip6 saddr != {set6} drop"]
    # nft has no ND-target field: match the 128 bits after the ICMPv6 header's first 8 bytes
    # link-local targets pass here (the pod-side filter, firsthop.py, pins the pod's own one)
    own6 = [hex(int(ipaddress.IPv6Address(a))) for a in v6] + [_LINK_LOCAL_TARGETS]
    rules += ["icmpv6 type nd-neighbor-advert @th,64,128 != { " + ", ".join(own6) + " } drop"]
    if not router:
        rules += ["icmpv6 type { nd-router-advert, nd-redirect } drop", "icmp type redirect drop"]
    if not dhcp_server:
        rules += ["udp sport { 67, 547 } drop"]
    return rules


def install(
    host_netns: str | None,
    host_ifname: str,
    mac: str,
    ips: Iterable[IPLike],
    router: bool = False,
    dhcp_server: bool = False,
) -> None:
    """Allow only ``mac`` + ``ips`` from bridge port ``host_ifname`` (replaces earlier rules)."""
    name = _check_ifname(host_ifname)
    chain = chain_name(name)
    body = port_rules(mac, ips, router, dhcp_server)
    text = [
        _skeleton(),
        _base_rule_lines(),
        f"add chain {FAMILY} {TABLE} {chain}\n",
        f"flush chain {FAMILY} {TABLE} {chain}\n",
    ]
    text += [f"add rule {FAMILY} {TABLE} {chain} {rule}\n" for rule in body]
    # replace the map element (delete after an add makes the delete safe when absent)
    text += [
        f'add element {FAMILY} {TABLE} {MAP} {{ "{name}" : jump {chain} }}\n',
        f'delete element {FAMILY} {TABLE} {MAP} {{ "{name}" }}\n',
        f'add element {FAMILY} {TABLE} {MAP} {{ "{name}" : jump {chain} }}\n',
    ]
    nft.apply(host_netns, "".join(text))


def remove(host_netns: str | None, host_ifname: str) -> None:
    """Drop the port's allow-list and map entry. Idempotent; a missing netns is fine."""
    from flatnet.datapath import netns

    if not netns.exists(host_netns):
        return
    name = _check_ifname(host_ifname)
    chain = chain_name(name)
    nft.apply(
        host_netns,
        "".join(
            [
                _skeleton(),
                _base_rule_lines(),
                f"add chain {FAMILY} {TABLE} {chain}\n",
                f'add element {FAMILY} {TABLE} {MAP} {{ "{name}" : jump {chain} }}\n',
                f'delete element {FAMILY} {TABLE} {MAP} {{ "{name}" }}\n',
                f"flush chain {FAMILY} {TABLE} {chain}\n",
                f"delete chain {FAMILY} {TABLE} {chain}\n",
            ]
        ),
    )


def ports(host_netns: str | None) -> dict[str, int]:
    """Port chains present in ``host_netns``: {host ifname: rule count} (for leak scans)."""
    try:
        raw = nft._run(host_netns, ["-j", "list", "table", FAMILY, TABLE])
    except DatapathError as exc:
        if "No such file or directory" in exc.msg:
            return {}
        raise
    out: dict[str, int] = {}
    for item in json.loads(raw).get("nftables", []):
        chain = item.get("chain")
        if chain and chain["name"].startswith("port-"):
            out.setdefault(chain["name"][5:], 0)
        rule = item.get("rule")
        if rule and rule["chain"].startswith("port-"):
            out[rule["chain"][5:]] = out.get(rule["chain"][5:], 0) + 1
    return out
