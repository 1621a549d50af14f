"""First-hop security: a pod sends only as itself, in every flat mode.

A pod on a flat network is a host on the shared VLAN, and a process in it that holds only
CAP_NET_RAW (every runtime grants it by default) can write any frame it likes: ARP replies
claiming the gateway, datagrams from the gateway's address, frames from the gateway's MAC,
IPv6 router advertisements, DHCP replies, 802.1Q-tagged frames. What stops them here is an
nftables ``netdev`` chain on the **egress hook of the pod's own interface, inside the pod's
netns**, installed by the node while the interface is still down:

* every frame the pod sends passes that hook, wherever it goes: off the node through the
  parent (macvlan, ipvlan), to a pod on the same parent (macvlan/ipvlan bridge between
  siblings never touches the parent), to the node's shim, or into the bridge (bridge mode);
  one hook covers the three paths that a parent-egress filter would need three hooks for;
* raw sockets cannot go around it: ``PACKET_QDISC_BYPASS`` skips tc's clsact egress but
  not netfilter's egress hook (``nf_hook_direct_egress``), which is why nftables and not tc;
* the chain holds the pod's own allow-list only, so the per-packet cost is a handful of
  comparisons and set lookups whatever the number of pods on the node (the node's tables
  do not grow with pods at all);
* it lives in the pod's netns, owned by the pod's network namespace: changing it needs
  CAP_NET_ADMIN there, which runtimes do not grant. A pod that is given CAP_NET_ADMIN can
  remove it (bridge mode keeps the node-side per-port filter of ``antispoof.py`` as well);
* it goes with the pod's netns (nothing stale on the node) and DEL removes it explicitly.

Table ``flatnet_firsthop`` (family ``netdev``), one chain ``egress-<ifname>`` per pod
interface, hook egress on that interface, policy accept, dropping what is not the pod::

    ether saddr != <pod mac>                                 drop
    ether type != { ip, ip6, arp }                           drop  (802.1Q/QinQ tags, other protocols)
    skb->protocol (what a raw socket labels it) != ether type drop  (else the checks below are skipped)
    ip saddr not the pod's IPv4                              drop
    ip6 saddr not the pod's IPv6 / own link-local / ::       drop  (:: for DAD and MLD)
    TCP                                                      accept (nothing below is about TCP)
    arp sender MAC != pod mac, or sender IP not the pod's    drop  (0.0.0.0 probes stay legal)
    neighbour advertisement for a target not the pod's       drop
    router advertisement, ICMP/ICMPv6 redirect               drop  (unless the pool allows routers)
    udp sport 67 (DHCP) / 547 (DHCPv6) server replies        drop  (unless the pool allows DHCP servers)

The link-local address is only known for sure once the link is up: ADD installs the chain
before the link goes up with the link-local the kernel will derive from the MAC (EUI-64),
reads the real one once the link is up and, only if it differs (another addr_gen_mode,
ipvlan's per-port IDs), installs again before anything is announced. Each install is one
transaction, through libnftables in-process where it is there (``nft.apply_inproc``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from flatnet import errors
from flatnet.datapath import nft

FAMILY = "netdev"
TABLE = "flatnet_firsthop"
OPTION = "firstHop"  # AttachSpec.options key holding a Policy as a dict
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_TAG = "fnfh "  # comment prefix of the first rule: the fingerprint CHECK compares


@dataclass(frozen=True)
class Policy:
    """What a network's pods may do beyond sending as themselves.

    ``enforce`` False is the network's explicit opt-out (``firstHopSecurity: false``): no
    filter at all. ``router``: router advertisements and redirects allowed (pool key
    ``allowRouterAdvertisements``); ``dhcp_server``: DHCP/DHCPv6 server replies allowed
    (pool key ``allowDhcpServer``).
    """

    enforce: bool = True
    router: bool = False
    dhcp_server: bool = False

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> "Policy":
        raw = (options or {}).get(OPTION) or {}
        return cls(
            enforce=bool(raw.get("enforce", True)),
            router=bool(raw.get("router", False)),
            dhcp_server=bool(raw.get("dhcpServer", False)),
        )

    def to_options(self) -> dict[str, bool]:
        return {"enforce": self.enforce, "router": self.router, "dhcpServer": self.dhcp_server}


@dataclass(frozen=True)
class Allowed:
    """The identity one pod interface may send as."""

    mac: str
    v4: tuple[str, ...] = ()
    v6: tuple[str, ...] = ()
    link_local: tuple[str, ...] = field(default=())


def chain_name(ifname: str) -> str:
    return f"egress-{ifname}"


def _check_ifname(ifname: str) -> str:
    if not isinstance(ifname, str) or not _IFNAME.match(ifname):
        raise errors.ConfigError(
            f"first-hop filter: interface name {ifname!r} is not a valid Linux interface name "
            "(1-15 of letters, digits, '_', '.', '-')"
        )
    return ifname


def eui64_link_local(mac: str) -> str:
    """The link-local address the kernel derives from ``mac`` (addr_gen_mode eui64, the
    default): predicted so ADD installs the filter once, before the link is up."""
    b = bytearray(bytes.fromhex(mac.replace(":", "")))
    b[0] ^= 0x02
    iid = bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + iid))


def allowed(mac: str, ips: Iterable[object], link_local: Iterable[object] = ()) -> Allowed:
    """Validate and normalise a pod's identity (the text goes into a ruleset)."""
    norm = mac.lower() if isinstance(mac, str) else ""
    if not _MAC.match(norm) or int(norm[:2], 16) & 1:
        raise errors.ConfigError(f"first-hop filter: pod MAC {mac!r} is not a unicast MAC like 02:42:ac:11:00:02")
    v4: set[str] = set()
    v6: set[str] = set()
    for raw in ips:
        try:
            ip = ipaddress.ip_interface(str(raw)).ip
        except ValueError:
            raise errors.ConfigError(f"first-hop filter: {raw!r} is not an IP address") from None
        (v4 if ip.version == 4 else v6).add(str(ip))
    ll: set[str] = set()
    for raw in link_local:
        ip6 = ipaddress.IPv6Address(str(raw).split("/")[0])
        if not ip6.is_link_local:
            raise errors.ConfigError(f"first-hop filter: {raw!r} is not an IPv6 link-local address")
        ll.add(str(ip6))
    return Allowed(norm, tuple(sorted(v4)), tuple(sorted(v6)), tuple(sorted(ll)))


def _set(items: Iterable[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def rules(who: Allowed, policy: Policy) -> list[str]:
    """The chain's rule bodies, first to last (also for tests and docs)."""
    out = [
        f"ether saddr != {who.mac} drop",
        "ether type != { ip, ip6, arp } drop",
        # the protocol the kernel files a frame under (skb->protocol) is what a raw socket's
        # sendto() says, not what the frame holds, and nftables' ip/ip6/arp matches follow it:
        # a frame labelled as anything but its own ethertype would skip every check below
        *(f"ether type {t} meta protocol != {t} drop" for t in ("ip", "ip6", "arp")),
        f"ip saddr != {_set(who.v4)} drop" if who.v4 else "ether type ip drop",
    ]
    own6 = [*who.v6, *who.link_local]
    out += [
        f"ip6 saddr != {_set([*own6, '::'])} drop",
        # TCP from the pod's own address, the bulk of what it sends, is done here: nothing
        # below concerns it (ARP, ICMP, ICMPv6, UDP), so it skips those rules' cost
        "meta l4proto tcp accept",
        f"arp saddr ether != {who.mac} drop",
        # 0.0.0.0: an RFC 5227 ARP probe (arping -D) claims no address
        f"arp saddr ip != {_set([*who.v4, '0.0.0.0'])} drop" if who.v4 else "arp saddr ip != 0.0.0.0 drop",
    ]
    # nft has no ND-target field: the 128 bits after the ICMPv6 header's first 8 bytes
    if own6:
        targets = _set(hex(int(ipaddress.IPv6Address(a))) for a in own6)
        out += [f"icmpv6 type nd-neighbor-advert @th,64,128 != {targets} drop"]
    else:
        out += ["icmpv6 type nd-neighbor-advert drop"]
    if not policy.router:
        out += ["icmpv6 type { nd-router-advert, nd-redirect } drop", "icmp type redirect drop"]
    if not policy.dhcp_server:
        out += ["udp sport { 67, 547 } drop"]
    return out


def fingerprint(who: Allowed, policy: Policy) -> str:
    """A short digest of what the chain enforces, kept in its first rule's comment."""
    text = json.dumps([who.mac, who.v4, who.v6, who.link_local, policy.router, policy.dhcp_server])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _ruleset(ifname: str, who: Allowed, policy: Policy) -> str:
    chain = chain_name(ifname)
    body = rules(who, policy)
    tag = f'comment "{_TAG}{fingerprint(who, policy)}"'
    lines = [
        f"add table {FAMILY} {TABLE}\n",
        f'add chain {FAMILY} {TABLE} {chain} {{ type filter hook egress device "{ifname}" priority -500; '
        "policy accept; }\n",
        f"flush chain {FAMILY} {TABLE} {chain}\n",
    ]
    lines += [f"add rule {FAMILY} {TABLE} {chain} {rule}{' ' + tag if n == 0 else ''}\n" for n, rule in enumerate(body)]
    return "".join(lines)


def install(ns_path: str, ifname: str, who: Allowed, policy: Policy) -> None:
    """Replace the interface's chain with ``who``'s allow-list, atomically (one transaction).

    KernelFeatureMissing when the kernel has no netdev egress hook (CONFIG_NETFILTER_EGRESS,
    Linux >= 5.16) or no nf_tables: the caller must not go on without a filter.
    """
    name = _check_ifname(ifname)
    try:
        nft.apply_inproc(ns_path, _ruleset(name, who, policy))
    except errors.KernelFeatureMissing:
        raise
    except errors.DatapathError as exc:
        if _missing_feature(exc.msg):
            raise missing_hook(exc.msg) from exc
        raise


def _missing_feature(msg: str) -> bool:
    low = msg.lower()
    return "not supported" in low or "protocol not supported" in low or "no such file or directory" in low


def missing_hook(detail: str = "") -> errors.KernelFeatureMissing:
    """The error for a kernel without nftables' netdev egress hook."""
    why = f" ({detail.strip()[:200]})" if detail else ""
    return errors.KernelFeatureMissing(
        "this kernel cannot filter what pods send: nftables' netdev egress hook needs Linux >= 5.16 "
        f"built with CONFIG_NETFILTER_EGRESS and CONFIG_NF_TABLES_NETDEV{why}; use such a kernel, "
        'or set "firstHopSecurity": false in the network config to run pods unfiltered (any pod can '
        "then impersonate the gateway)"
    )


def remove(ns_path: str, ifname: str) -> None:
    """Delete the interface's chain; idempotent: no chain, no table, or no such interface any
    more (DEL after the link went with its parent, or a second DEL) is nothing to remove.

    A netdev base chain goes with its device, so the chain is deleted by name alone: naming the
    device (add-then-delete) would fail with ENOENT once the link is gone."""
    chain = chain_name(_check_ifname(ifname))
    try:
        nft.apply_inproc(ns_path, f"delete chain {FAMILY} {TABLE} {chain}\n")
    except errors.DatapathError as exc:
        if "no such file or directory" not in exc.msg.lower():
            raise


def installed(ns_path: str, ifname: str) -> tuple[str | None, int]:
    """(fingerprint, rule count) of the interface's chain; (None, 0) when there is none."""
    chain = chain_name(_check_ifname(ifname))
    try:
        raw = nft._run(ns_path, ["-j", "list", "chain", FAMILY, TABLE, chain])
    except errors.DatapathError as exc:
        if "No such file or directory" in exc.msg:
            return None, 0
        raise
    tag: str | None = None
    count = 0
    for item in json.loads(raw).get("nftables", []):
        rule = item.get("rule")
        if rule:
            count += 1
            comment = rule.get("comment", "")
            if comment.startswith(_TAG) and tag is None:
                tag = comment[len(_TAG) :]
    return tag, count


def problem(ns_path: str, ifname: str, who: Allowed, policy: Policy) -> str | None:
    """What is wrong with the interface's chain for CHECK (None when it is as ADD made it)."""
    tag, count = installed(ns_path, ifname)
    if tag is None and count == 0:
        return f"first-hop filter chain {chain_name(ifname)!r} is missing from the pod netns"
    if tag != fingerprint(who, policy) or count != len(rules(who, policy)):
        return f"first-hop filter chain {chain_name(ifname)!r} differs from the pod's addresses/MAC/policy"
    return None


def snapshot(ns_path: str) -> str | None:
    """The netns's first-hop table as nft text (None when absent): for benches that measure a
    path with the filter off and put it back exactly as it was (``restore``)."""
    try:
        return nft._run(ns_path, ["list", "table", FAMILY, TABLE])
    except errors.DatapathError as exc:
        if "No such file or directory" in exc.msg:
            return None
        raise


def drop_table(ns_path: str) -> None:
    """Remove the netns's whole first-hop table (idempotent)."""
    nft.apply(ns_path, f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")


def restore(ns_path: str, text: str | None) -> None:
    """Put back a ``snapshot`` (replacing whatever table is there now)."""
    drop_table(ns_path)
    if text:
        nft.apply(ns_path, text)
