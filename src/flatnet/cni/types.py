"""CNI result types and their JSON shape in every supported spec version.

One in-memory model (the richest, 1.1.0) converted at the edge: ``to_json(version)``
writes exactly what a runtime of that version expects, ``from_json`` reads any of them
(a ``prevResult`` may come from an older ADD). Shapes, from the spec:

- 0.3.0 / 0.3.1 / 0.4.0: each ``ips`` entry carries ``"version": "4" | "6"``.
- 1.0.0: no ``version`` in ips.
- 1.1.0: interfaces may carry ``mtu``, ``socketPath``, ``pciID``; routes ``mtu``,
  ``advmss``, ``priority``, ``table``, ``scope``.

Empty lists are omitted (Go ``omitempty``); ``dns`` is always written, possibly ``{}``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from flatnet.cni import version as _v
from flatnet.errors import DecodeError, FlatnetError
from flatnet.fieldref import note

from flatnet.iptypes import IPAddress as IPAddress, IPInterface as IPInterface, IPNetwork as IPNetwork

_ROUTE_EXTRAS = (("mtu", "mtu"), ("advmss", "advmss"), ("priority", "priority"), ("table", "table"), ("scope", "scope"))


@dataclass
class Interface:
    """A link the plugin made or touched; ``sandbox`` is the netns path ("" = host)."""

    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int | None = None  # 1.1.0+
    socket_path: str = ""  # 1.1.0+ (vhost-user and friends)
    pci_id: str = ""  # 1.1.0+


@dataclass
class IPConfig:
    """An address with its prefix; ``interface`` indexes ``Result.interfaces``."""

    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None


@dataclass
class Route:
    """A route to install in the sandbox; extra attributes exist from 1.1.0."""

    dst: IPNetwork
    gw: IPAddress | None = None
    mtu: int | None = None
    advmss: int | None = None
    priority: int | None = None
    table: int | None = None
    scope: int | None = None


@dataclass
class DNS:
    nameservers: list[str] = field(default_factory=list)
    domain: str = ""
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out

    @classmethod
    def from_json(cls, d: object, where: str = "dns", error: type[FlatnetError] = DecodeError) -> DNS:
        obj = _obj(d, where, error)
        return cls(
            nameservers=_str_list(obj.get("nameservers"), f"{where}.nameservers", error),
            domain=_opt_str(obj.get("domain"), f"{where}.domain", error),
            search=_str_list(obj.get("search"), f"{where}.search", error),
            options=_str_list(obj.get("options"), f"{where}.options", error),
        )


@dataclass
class Result:
    """What ADD answers. ``cni_version`` records where a parsed result came from."""

    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)
    cni_version: str = field(default="", compare=False)

    def to_json(self, version: str) -> dict[str, Any]:
        """The result as spec ``version`` shapes it (VersionError if unsupported)."""
        _v.check_supported(version)
        new = _v.at_least(version, "1.0.0")
        rich = _v.at_least(version, "1.1.0")
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [_iface_json(i, rich) for i in self.interfaces]
        if self.ips:
            out["ips"] = [_ip_json(ip, new) for ip in self.ips]
        if self.routes:
            out["routes"] = [_route_json(r, rich) for r in self.routes]
        out["dns"] = self.dns.to_json()
        return out

    @classmethod
    def from_json(
        cls, d: object, version: str | None = None, where: str = "result", error: type[FlatnetError] = DecodeError
    ) -> Result:
        """Read a result of any supported version.

        ``version`` is used when ``d`` has no ``cniVersion`` (a prevResult inherits the
        config's). ``where`` prefixes field names in messages; ``error`` is the class to
        raise (ConfigError when the result sits inside a network configuration).
        """
        obj = _obj(d, where, error)
        ver = obj.get("cniVersion") or version or _v.LATEST
        try:
            _v.check_supported(ver, f"{where}.cniVersion")
        except FlatnetError as exc:
            raise error(exc.msg) from None
        old = not _v.at_least(ver, "1.0.0")
        ifaces = [
            _iface_from(x, f"{where}.interfaces[{n}]", error)
            for n, x in enumerate(_list(obj.get("interfaces"), f"{where}.interfaces", error))
        ]
        ips = [
            _ip_from(x, f"{where}.ips[{n}]", old, len(ifaces), error)
            for n, x in enumerate(_list(obj.get("ips"), f"{where}.ips", error))
        ]
        routes = [
            _route_from(x, f"{where}.routes[{n}]", error)
            for n, x in enumerate(_list(obj.get("routes"), f"{where}.routes", error))
        ]
        dns_raw = obj.get("dns")
        dns = DNS() if dns_raw is None else DNS.from_json(dns_raw, f"{where}.dns", error)
        return cls(ifaces, ips, routes, dns, cni_version=ver)


# ---------------------------------------------------------------- writers


def _iface_json(i: Interface, rich: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": i.name}
    if i.mac:
        out["mac"] = i.mac
    if rich and i.mtu:
        out["mtu"] = i.mtu
    if i.sandbox:
        out["sandbox"] = i.sandbox
    if rich and i.socket_path:
        out["socketPath"] = i.socket_path
    if rich and i.pci_id:
        out["pciID"] = i.pci_id
    return out


def _ip_json(ip: IPConfig, new: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not new:
        out["version"] = str(ip.address.version)
    if ip.interface is not None:
        out["interface"] = ip.interface
    out["address"] = ip.address.with_prefixlen
    if ip.gateway is not None:
        out["gateway"] = str(ip.gateway)
    return out


def _route_json(r: Route, rich: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"dst": r.dst.with_prefixlen}
    if r.gw is not None:
        out["gw"] = str(r.gw)
    if rich:
        for attr, key in _ROUTE_EXTRAS:
            value = getattr(r, attr)
            if value is not None:
                out[key] = value
    return out


# ---------------------------------------------------------------- readers


def _obj(d: object, where: str, error: type[FlatnetError]) -> dict[str, Any]:
    note(where, "object")
    if not isinstance(d, dict):
        raise error(f"{where} must be a JSON object, got {type(d).__name__}")
    return d


def _list(d: object, where: str, error: type[FlatnetError]) -> list[Any]:
    if d is None:
        return []
    if not isinstance(d, list):
        raise error(f"{where} must be a JSON array, got {type(d).__name__}")
    return d


def _opt_str(d: object, where: str, error: type[FlatnetError]) -> str:
    note(where, "string")
    if d is None:
        return ""
    if not isinstance(d, str):
        raise error(f"{where} must be a string, got {type(d).__name__}")
    return d


def _str_list(d: object, where: str, error: type[FlatnetError]) -> list[str]:
    note(where, "array of strings")
    items = _list(d, where, error)
    for n, item in enumerate(items):
        _opt_str(item, f"{where}[{n}]", error)
    return list(items)


def _opt_int(d: object, where: str, error: type[FlatnetError]) -> int | None:
    if d is None:
        return None
    if isinstance(d, bool) or not isinstance(d, int):
        raise error(f"{where} must be an integer, got {d!r}")
    return d


def _iface_from(d: object, where: str, error: type[FlatnetError]) -> Interface:
    obj = _obj(d, where, error)
    name = _opt_str(obj.get("name"), f"{where}.name", error)
    if not name:
        raise error(f"{where}.name is required: every interface in a result has a name")
    return Interface(
        name=name,
        mac=_opt_str(obj.get("mac"), f"{where}.mac", error),
        sandbox=_opt_str(obj.get("sandbox"), f"{where}.sandbox", error),
        mtu=_opt_int(obj.get("mtu"), f"{where}.mtu", error) or None,
        socket_path=_opt_str(obj.get("socketPath"), f"{where}.socketPath", error),
        pci_id=_opt_str(obj.get("pciID"), f"{where}.pciID", error),
    )


def _ip_from(d: object, where: str, old: bool, n_ifaces: int, error: type[FlatnetError]) -> IPConfig:
    obj = _obj(d, where, error)
    raw = _opt_str(obj.get("address"), f"{where}.address", error)
    try:
        if "/" not in raw:
            raise ValueError("no prefix length")
        address = ipaddress.ip_interface(raw)
    except ValueError:
        raise error(f'{where}.address must be an address with prefix such as "198.18.0.5/24", got {raw!r}') from None
    gateway = _addr(obj.get("gateway"), f"{where}.gateway", error)
    if gateway is not None and gateway.version != address.version:
        raise error(f"{where}.gateway {gateway} is not the same IP family as {address}")
    index = _opt_int(obj.get("interface"), f"{where}.interface", error)
    if index is not None and not 0 <= index < n_ifaces:
        raise error(
            f"{where}.interface is {index} but the result has {n_ifaces} "
            f"interface(s); it must index the interfaces list"
        )
    if old and "version" in obj and obj["version"] != str(address.version):
        raise error(
            f'{where}.version is {obj["version"]!r} but {raw} is IPv{address.version}; set it to "{address.version}"'
        )
    return IPConfig(address=address, gateway=gateway, interface=index)


def _addr(d: object, where: str, error: type[FlatnetError]) -> IPAddress | None:
    if d is None or d == "":
        return None
    text = _opt_str(d, where, error)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise error(f"{where} must be an IP address, got {text!r}") from None


def _route_from(d: object, where: str, error: type[FlatnetError]) -> Route:
    obj = _obj(d, where, error)
    raw = _opt_str(obj.get("dst"), f"{where}.dst", error)
    try:
        dst = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise error(f'{where}.dst must be a network such as "0.0.0.0/0", got {raw!r}') from None
    gw = _addr(obj.get("gw"), f"{where}.gw", error)
    if gw is not None and gw.version != dst.version:
        raise error(f"{where}.gw {gw} is not the same IP family as {dst}")
    extras = {attr: _opt_int(obj.get(key), f"{where}.{key}", error) for attr, key in _ROUTE_EXTRAS}
    return Route(dst=dst, gw=gw, **extras)
