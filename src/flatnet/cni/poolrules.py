"""Which of a network's pools a pod allocates from: namespace rules and pod annotations.

Pure logic over the configured pools, the pod's namespace (CNI_ARGS ``K8S_POD_NAMESPACE``)
and its annotations (``flatnet.cni.annotations``); the agent calls ``choose`` on ADD, before
anything is allocated, so a refusal leaves nothing behind. The rules:

- a pool with ``namespaces`` serves only pods of those namespaces; a pool without serves all;
- a pod's **default** pools are those naming its namespace when there are any (a namespace
  per VLAN), else the pools without ``namespaces`` (the network as before);
- ``flatnet.io/pool: NAME[,NAME]`` picks the pool of each family it names (one per family),
  among those the namespace may use;
- ``flatnet.io/ip: ADDR[,ADDR]`` asks for fixed addresses: each must be usable in a pool the
  namespace may use (and in the pool ``flatnet.io/pool`` names for that family, if it names
  one). It goes to the allocator as a requested address, the path of CNI_ARGS ``IP`` and
  runtimeConfig ``ips``: it wins over the pod's sticky address; held, reserved or
  quarantined, the allocator refuses it;
- families the annotations leave out get their default pools on the VLAN of the chosen ones
  (a pod has one interface, on one VLAN): none there, no address of that family.

``Choice.how`` records for each chosen pool which rule chose it (``HOW``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from flatnet.cni import annotations as ann
from flatnet.errors import AddressUnavailable, ConfigError
from flatnet.ipam.api import IPAddress, PoolSpec
from flatnet.ipam.pool import PoolRange

NAMESPACE, ANNOTATION, FIXED, DEFAULT = "namespace", "annotation", "ip", "default"
#: how a pool was chosen: what a lease records and ``flatnet ipam ls`` shows
HOW = {
    NAMESPACE: "namespace rule",
    ANNOTATION: ann.POOL,
    FIXED: ann.IP,
    DEFAULT: "default",
}


@dataclass(frozen=True)
class Choice:
    """The pools to allocate from (in order, per family), the fixed addresses to request in
    them, and which rule chose each pool (pool name -> a key of ``HOW``)."""

    pools: tuple[PoolSpec, ...]
    requested: tuple[IPAddress, ...] = ()
    how: Mapping[str, str] = field(default_factory=dict)


def allowed(pool: PoolSpec, namespace: str | None) -> bool:
    """May a pod of ``namespace`` (None: not a Kubernetes pod) use ``pool``?"""
    return not pool.namespaces or namespace in pool.namespaces


def defaults(pools: Sequence[PoolSpec], namespace: str | None) -> tuple[list[PoolSpec], str]:
    """A pod's default pools and the rule that gave them (NAMESPACE or DEFAULT)."""
    named = [p for p in pools if namespace is not None and namespace in p.namespaces]
    if named:
        return named, NAMESPACE
    return [p for p in pools if not p.namespaces], DEFAULT


def _describe(pool: PoolSpec) -> str:
    vlan = f", VLAN {pool.vlan}" if pool.vlan is not None else ""
    only = f", namespaces {','.join(pool.namespaces)}" if pool.namespaces else ""
    return f"{pool.name} ({pool.subnet}{vlan}{only})"


def _may_use(pools: Sequence[PoolSpec], namespace: str | None) -> str:
    """The choices, for the end of an error message."""
    ok = [_describe(p) for p in pools if allowed(p, namespace)]
    who = f"namespace {namespace!r}" if namespace else "a pod without a namespace"
    return f"pools {who} may use: {', '.join(ok)}" if ok else f"no pool of this network serves {who}"


def choose(pools: Sequence[PoolSpec], namespace: str | None, annotations: Mapping[str, str]) -> Choice:
    """Apply the rules (module doc). ConfigError (7) for a malformed annotation, a pool that
    does not exist or that the namespace may not use; AddressUnavailable (102) for a fixed
    address no usable pool holds."""
    base, how_default = defaults(pools, namespace)
    if not annotations:
        if not base:
            raise ConfigError(
                f"no pool of this network serves namespace {namespace!r}: every pool names other namespaces; "
                f"add {namespace!r} to a pool's namespaces or add a pool without namespaces"
                if namespace
                else "no pool of this network serves a pod without a Kubernetes namespace: every pool names "
                "namespaces; add a pool without namespaces",
                ", ".join(map(_describe, pools)),
            )
        return Choice(tuple(base), (), {p.name: how_default for p in base})
    try:
        return _annotated(pools, namespace, annotations, base, how_default)
    except (ConfigError, AddressUnavailable) as exc:  # every refusal ends with the choices
        raise type(exc)(f"{exc.msg}; {_may_use(pools, namespace)}", exc.details) from None


def _annotated(
    pools: Sequence[PoolSpec],
    namespace: str | None,
    annotations: Mapping[str, str],
    base: list[PoolSpec],
    how_default: str,
) -> Choice:
    req = ann.parse_request(annotations)
    picked: dict[int, tuple[PoolSpec, str]] = {}
    for name in req.pools:
        pool = _named(pools, name, namespace, annotations[ann.POOL])
        if pool.family in picked:
            raise ConfigError(
                f"pod annotation {ann.POOL} {ann.show(annotations[ann.POOL])} names two IPv{pool.family} pools "
                f"({picked[pool.family][0].name}, {pool.name}): name at most one pool per address family"
            )
        picked[pool.family] = (pool, ANNOTATION)
    for ip in req.ips:
        named = picked.get(ip.version)
        picked[ip.version] = (_holding(pools, ip, namespace, named[0] if named else None, annotations), FIXED)
    vlans = {p.vlan for p, _how in picked.values()}
    if len(vlans) > 1:
        raise ConfigError(
            f"pod annotations {ann.POOL}/{ann.IP} choose pools on different VLANs ("
            + ", ".join(_describe(p) for p, _how in picked.values())
            + "): a pod has one interface, on one VLAN"
        )
    vlan = vlans.pop()
    chosen: list[PoolSpec] = []
    how: dict[str, str] = {}
    for pool in pools:  # the configured order, one family at a time as the allocator tries them
        mine = picked.get(pool.family)
        if mine is not None:
            if mine[0] is pool:
                chosen.append(pool)
                how[pool.name] = mine[1]
        elif pool in base and pool.vlan == vlan:
            chosen.append(pool)
            how[pool.name] = how_default
    return Choice(tuple(chosen), tuple(req.ips), how)


def _named(pools: Sequence[PoolSpec], name: str, namespace: str | None, value: str) -> PoolSpec:
    pool = next((p for p in pools if p.name == name), None)
    if pool is None:
        raise ConfigError(f"pod annotation {ann.POOL} {ann.show(value)}: this network has no pool {name!r}")
    if not allowed(pool, namespace):
        raise ConfigError(
            f"pod annotation {ann.POOL} {ann.show(value)}: pool {name!r} serves only namespaces "
            f"{', '.join(pool.namespaces)}, not {namespace or 'a pod without a namespace'!r}"
        )
    return pool


def _holding(
    pools: Sequence[PoolSpec],
    ip: IPAddress,
    namespace: str | None,
    named: PoolSpec | None,
    annotations: Mapping[str, str],
) -> PoolSpec:
    """The pool a fixed address is taken from: the first that may give it to this pod."""
    value = ann.show(annotations[ann.IP])
    where = f"pod annotation {ann.IP} {value}: {ip}"
    if named is not None:
        if ip not in named.subnet:
            raise ConfigError(
                f"{where} is not in pool {named.name!r} ({named.subnet}) that {ann.POOL} "
                f"{ann.show(annotations[ann.POOL])} names"
            )
        inside = [named]
    else:
        inside = [p for p in pools if p.family == ip.version and ip in p.subnet]
        # pools sharing a subnet split it by range: the one whose range holds the address decides
        inside = [p for p in inside if PoolRange(p).contains(ip)] or inside
    if not inside:
        raise AddressUnavailable(f"{where} is outside every pool of this network")
    mine = [p for p in inside if allowed(p, namespace)]
    if not mine:
        raise ConfigError(
            f"{where} is in pool {inside[0].name!r}, which serves only namespaces {', '.join(inside[0].namespaces)}, "
            f"not {namespace or 'a pod without a namespace'!r}"
        )
    reasons = []
    for pool in mine:
        why = PoolRange(pool).why_unusable(ip)
        if why is None:
            return pool
        reasons.append(why)
    raise AddressUnavailable(f"{where} cannot be given: {'; '.join(reasons)}")
