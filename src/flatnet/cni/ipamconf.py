"""The ``ipam`` section of a flatnet network configuration.

``ipam`` is flatnet's own section, so it is read strictly: an unknown key is almost
always a typo ("subnett", "rangestart") that would otherwise silently widen a pool,
and the error suggests the intended key. Pools are tried in order at allocation time;
several pools per family are allowed.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from flatnet.cni import _fields as f
from flatnet.errors import ConfigError
from flatnet.fieldref import note
from flatnet.ipam.api import DEFAULT_STICKY_HOLD, IPAddress, IPNetwork, PoolSpec
from flatnet.ipam import segments
from flatnet.ipam.store import STORE_KEYS, store_config

IPAM_KEYS = ("type", "pools", "store")
POOL_KEYS = (
    "name",
    "subnet",
    "rangeStart",
    "rangeEnd",
    "gateway",
    "exclude",
    "vlan",
    "sticky",
    "stickyHold",
    "conflictProbe",
    "routes",
    "namespaces",
    "shared",
    "allowRouterAdvertisements",
    "allowDhcpServer",
)
MAX_STICKY_HOLD = 365 * 86400  # a year: longer is almost surely seconds mistaken for something else
ROUTE_KEYS = ("dst", "gw")


def parse_ipam(
    raw: object, netname: str, mode: str, pools_required: bool = True
) -> tuple[list[PoolSpec], dict[str, Any]]:
    """Return (pools, store config). Pools may be omitted when the mode provides them
    (``pools_required`` False: the mode registry's node-block pool provider, vxlan)."""
    section = f.obj({} if raw is None else raw, "ipam")
    f.check_keys(section, IPAM_KEYS, "ipam")
    f.string(section.get("type"), "ipam.type")
    items = f.array(section.get("pools"), "ipam.pools")
    if not items and pools_required:
        raise ConfigError(
            f"ipam.pools is required in {mode} mode: add at least one pool, e.g. "
            '"ipam": {"pools": [{"subnet": "198.18.100.0/24", "gateway": "198.18.100.1"}]}'
        )
    pools = [_pool(item, f"ipam.pools[{n}]", netname) for n, item in enumerate(items)]
    seen: set[str] = set()
    for n, pool in enumerate(pools):
        if pool.name in seen:
            raise ConfigError(
                f"ipam.pools[{n}].name {pool.name!r} is used by an earlier pool; pool names must be unique"
            )
        seen.add(pool.name)
    _namespaces_unambiguous(pools)
    _check_overlaps(pools, items)
    return pools, _store(section.get("store"))


def _check_overlaps(pools: list[PoolSpec], items: list[Any]) -> None:
    """Two pools of one network on one segment may not share addresses unless both say
    ``"shared": true``: each would count the other's pods against its own range, which is
    almost always a copy-paste slip (one holder per address is kept either way)."""
    shared = [
        f.boolean(f.obj(raw, f"ipam.pools[{n}]").get("shared"), f"ipam.pools[{n}].shared", False)
        for n, raw in enumerate(items)
    ]
    for i, a in enumerate(pools):
        for j in range(i + 1, len(pools)):
            both = segments.shared_range(a, pools[j])
            if both is None or (shared[i] and shared[j]):
                continue
            raise ConfigError(
                f"ipam.pools[{j}] ({pools[j].name!r}) overlaps ipam.pools[{i}] ({a.name!r}) on "
                f"{both[0]}-{both[1]} (same VLAN); give them disjoint rangeStart/rangeEnd, or set "
                f'"shared": true on both if they are meant to share those addresses'
            )


def default_pool_name(netname: str, subnet: IPNetwork) -> str:
    """``<network>-<subnet>`` with "/" made safe for keys and file names."""
    return f"{netname}-{subnet.with_prefixlen}".replace("/", "_")


def _pool(raw: object, where: str, netname: str) -> PoolSpec:
    d = f.obj(raw, where)
    f.check_keys(d, POOL_KEYS, where)
    subnet = f.network(d.get("subnet"), f"{where}.subnet", required=True)
    assert subnet is not None
    name = f.string(d.get("name"), f"{where}.name") or default_pool_name(netname, subnet)
    start = _host(d.get("rangeStart"), f"{where}.rangeStart", subnet)
    end = _host(d.get("rangeEnd"), f"{where}.rangeEnd", subnet)
    if start is not None and end is not None and int(start) > int(end):  # both in the subnet
        raise ConfigError(f"{where}.rangeStart {start} is after rangeEnd {end}; swap them or fix the range")
    gateway = _host(d.get("gateway"), f"{where}.gateway", subnet)
    exclude = frozenset(
        _host(x, f"{where}.exclude[{n}]", subnet, allow_edges=True)
        for n, x in enumerate(f.array(d.get("exclude"), f"{where}.exclude"))
    )
    return PoolSpec(
        name=name,
        subnet=subnet,
        range_start=start,
        range_end=end,
        gateway=gateway,
        exclude=frozenset(x for x in exclude if x is not None),
        vlan=f.integer(d.get("vlan"), f"{where}.vlan", 1, 4094),
        sticky=f.boolean(d.get("sticky"), f"{where}.sticky", False),
        sticky_hold=_hold(d.get("stickyHold"), f"{where}.stickyHold"),
        conflict_probe=f.boolean(d.get("conflictProbe"), f"{where}.conflictProbe", True),
        # first-hop security (datapath/firsthop.py): off by default, for the rare router/DHCP pod
        allow_router=f.boolean(d.get("allowRouterAdvertisements"), f"{where}.allowRouterAdvertisements", False),
        allow_dhcp_server=f.boolean(d.get("allowDhcpServer"), f"{where}.allowDhcpServer", False),
        routes=tuple(
            _route(r, f"{where}.routes[{n}]", subnet) for n, r in enumerate(f.array(d.get("routes"), f"{where}.routes"))
        ),
        namespaces=_namespaces(d.get("namespaces"), f"{where}.namespaces"),
    )


def _namespaces(raw: object, where: str) -> tuple[str, ...]:
    """Kubernetes namespace names (RFC 1123 labels); absent: the pool serves every namespace."""
    items = f.array(raw, where)
    if raw is None:
        return ()
    if not items:
        raise ConfigError(f'{where} is empty: list namespaces such as ["payments"], or drop the key to serve every one')
    out: list[str] = []
    for n, item in enumerate(items):
        text = f.string(item, f"{where}[{n}]", required=True, example="payments")
        assert text is not None  # required
        problem = f.namespace_problem(text)
        if problem:
            raise ConfigError(f"{where}[{n}] {text[:80]!r} is not a Kubernetes namespace name: it {problem}")
        if text in out:
            raise ConfigError(f"{where}[{n}] {text!r} is listed twice; list each namespace once")
        out.append(text)
    return tuple(out)


def _namespaces_unambiguous(pools: list[PoolSpec]) -> None:
    """Every namespace's default pools share one VLAN: a pod has one interface, and which of
    two VLANs it landed on would otherwise depend on which pool had room."""
    first: dict[str, PoolSpec] = {}
    for pool in pools:
        for ns in pool.namespaces:
            other = first.setdefault(ns, pool)
            if other.vlan != pool.vlan:
                raise ConfigError(
                    f"ipam.pools: namespace {ns!r} is named by pool {other.name!r} ({_vlan(other)}) and pool "
                    f"{pool.name!r} ({_vlan(pool)}): its pods' default would be ambiguous; "
                    "name each namespace only in pools of one VLAN"
                )


def _vlan(pool: PoolSpec) -> str:
    return f"VLAN {pool.vlan}" if pool.vlan is not None else "the network's VLAN"


def _hold(raw: object, where: str) -> float:
    """Seconds a released sticky address stays reserved for its pod (default: a day)."""
    note(where, "number (seconds)", DEFAULT_STICKY_HOLD, 0, MAX_STICKY_HOLD)
    if raw is None:
        return DEFAULT_STICKY_HOLD
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw <= MAX_STICKY_HOLD:
        raise ConfigError(
            f"{where} {raw!r} must be a number of seconds from 0 to {MAX_STICKY_HOLD}, "
            f"e.g. 3600 (how long a deleted pod's sticky address waits for it; "
            f"default {int(DEFAULT_STICKY_HOLD)})"
        )
    return float(raw)


def _host(raw: object, where: str, subnet: IPNetwork, allow_edges: bool = False) -> IPAddress | None:
    """An address that must lie inside ``subnet`` (and not be its network/broadcast)."""
    addr = f.address(raw, where)
    if addr is None:
        return None
    if addr.version != subnet.version or addr not in subnet:
        raise ConfigError(f"{where} {addr} is outside the pool's subnet {subnet}; use an address inside it")
    small = subnet.prefixlen >= subnet.max_prefixlen - 1  # /31, /32, /127, /128
    if not allow_edges and not small:
        if addr == subnet.network_address:
            raise ConfigError(
                f"{where} {addr} is the network address of {subnet}; "
                f"use a host address such as {subnet.network_address + 1}"
            )
        if subnet.version == 4 and addr == subnet.broadcast_address:
            raise ConfigError(
                f"{where} {addr} is the broadcast address of {subnet}; "
                f"use a host address such as {subnet.broadcast_address - 1}"
            )
    return addr


def _route(raw: object, where: str, subnet: IPNetwork) -> tuple[IPNetwork, IPAddress | None]:
    d = f.obj(raw, where)
    f.check_keys(d, ROUTE_KEYS, where)
    dst = f.network(d.get("dst"), f"{where}.dst", required=True)
    assert dst is not None
    gw = f.address(d.get("gw"), f"{where}.gw")
    if dst.version != subnet.version:
        raise ConfigError(
            f"{where}.dst {dst} is IPv{dst.version} but the pool's subnet "
            f"{subnet} is IPv{subnet.version}; put it in a pool of that family"
        )
    if gw is not None and gw.version != dst.version:
        raise ConfigError(f"{where}.gw {gw} is not the same IP family as dst {dst}")
    return dst, gw


def _store(raw: object) -> dict[str, Any]:
    """The ``ipam.store`` section: keys checked here (with a suggestion for a typo), the
    values by the store registry (``flatnet.ipam.store``), as for every other store config."""
    if raw is None:
        return store_config(None)
    d = f.obj(raw, "ipam.store")
    f.check_keys(d, STORE_KEYS, "ipam.store")
    return store_config(d, "ipam.store")


def parse_ip_list(items: list[Any], where: str) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface | IPAddress]:
    """Requested addresses: "addr/prefix" (an interface) or "addr" (an address)."""
    out: list[Any] = []
    for n, item in enumerate(items):
        text = f.string(item, f"{where}[{n}]", required=True, example="198.18.100.40/24")
        assert text is not None  # required
        try:
            out.append(ipaddress.ip_interface(text) if "/" in str(text) else ipaddress.ip_address(text))
        except ValueError:
            raise ConfigError(
                f"{where}[{n}] must be an IP address, optionally with a "
                f'prefix, such as "198.18.100.40/24"; got {text!r}'
            ) from None
    return out
