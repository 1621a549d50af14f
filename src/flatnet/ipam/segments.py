"""The segment index (``seg/<vlan>/<ip>``) of a store: build it, and say what overlaps.

Stores written before the index have only per-pool keys, so several pools sharing a subnet
may already hold one address twice. ``migrate`` builds the index once (the agent runs it
when it opens a store): every held address gets its segment key in a txn that compares the
pool's record, so a concurrent release cannot leave a key behind. An address held twice is
*not* rewritten — which pod should lose it is a person's decision — it is reported (here,
by ``flatnet ipam ls`` and by ``flatnet doctor cluster``), its first holder keeps the
segment key, and the other holder's release leaves that key alone (``_txn.SegDrop``).

``overlaps`` lists pools of one segment whose ranges share addresses: what
``flatnet doctor cluster`` shows, and what a network's own pools may not do unless they
say they share (``cni/ipamconf``).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from flatnet.ipam import records as r
from flatnet.ipam.api import Compare, IPAddress, PoolSpec, Store
from flatnet.ipam.pool import PoolRange

log = logging.getLogger("flatnet.ipam")


@dataclass
class Migration:
    """What ``migrate`` did: keys written, addresses held by two pools or more."""

    done_before: bool = False
    written: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)


def _held(store: Store) -> tuple[dict[str, PoolSpec], list[tuple[str, IPAddress, int | None, Any]]]:
    """Every pool definition, and every address a pool holds: (pool, ip, vlan, entry).

    Reads the whole ``pools/`` range: for the one-off migration and the admin tools only.
    """
    defs: dict[str, PoolSpec] = {}
    held: list[tuple[str, IPAddress, int | None, Any]] = []
    entries = store.range("pools/")
    for e in entries:
        if e.key.endswith("/def"):
            spec = r.spec_from_json(e.value)
            defs[spec.name] = spec
    for e in entries:
        parts = e.key.split("/")
        if len(parts) != 4 or parts[2] != "ips":
            continue
        name = unquote(parts[1])
        ip = ipaddress.ip_address(unquote(parts[3]))
        d = json.loads(e.value)
        vlan = d["vlan"] if "vlan" in d else (defs[name].vlan if name in defs else None)
        held.append((name, ip, vlan, e))
    return defs, held


def duplicates(store: Store) -> list[dict[str, Any]]:
    """Addresses held by more than one pool of one segment: {"vlan", "address", "pools", "holders"}."""
    _defs, held = _held(store)
    by: dict[tuple[int | None, IPAddress], list[tuple[str, str]]] = {}
    for name, ip, vlan, e in held:
        by.setdefault((vlan, ip), []).append((name, r.describe_holder(e.value)))
    out = []
    for (vlan, ip), who in sorted(by.items(), key=lambda kv: (str(kv[0][0]), int(kv[0][1]))):
        if len(who) > 1:
            out.append(
                {
                    "vlan": vlan,
                    "address": str(ip),
                    "pools": [n for n, _ in who],
                    "holders": [f"pool {n}: {h}" for n, h in who],
                }
            )
    return out


def migrate(store: Store) -> Migration:
    """Build the segment index of a store written before it; once (``meta/segments``).

    Idempotent and safe beside allocators already using the index: a key is only created
    where none is, in a txn that compares the pool's record as read.
    """
    out = Migration()
    if store.get(r.SEG_MIGRATED) is not None:
        out.done_before = True
        return out
    _defs, held = _held(store)
    for name, ip, vlan, e in held:
        gkey = r.seg_key(vlan, ip)
        # where the key exists already (this pool's, or another's: a duplicate) it stays
        if store.txn([Compare(e.key, e.version, e.value), Compare(gkey, 0)], {gkey: name}):
            out.written += 1
    out.duplicates = duplicates(store)
    store.txn([Compare(r.SEG_MIGRATED, 0)], {r.SEG_MIGRATED: "1"})
    for d in out.duplicates:
        log.error(
            "ipam: %s on VLAN %s is held by %d pools at once (%s): left as it is; release all but one",
            d["address"],
            d["vlan"] if d["vlan"] is not None else "untagged",
            len(d["pools"]),
            "; ".join(d["holders"]),
        )
    if out.written:
        log.info("ipam: segment index built: %d address(es) indexed", out.written)
    return out


def shared_range(a: PoolSpec, b: PoolSpec) -> tuple[IPAddress, IPAddress] | None:
    """The first and last address the usable ranges of ``a`` and ``b`` share (None: none)."""
    if a.family != b.family or a.vlan != b.vlan:
        return None
    ra, rb = PoolRange(a), PoolRange(b)
    lo = max(ra.net + ra.first, rb.net + rb.first)
    hi = min(ra.net + ra.last, rb.net + rb.last)
    if lo > hi:
        return None
    return ipaddress.ip_address(lo), ipaddress.ip_address(hi)


def overlaps(pools: list[PoolSpec]) -> list[dict[str, Any]]:
    """Pairs of pools of one segment whose ranges share addresses: {"pools", "vlan", "shared"}."""
    out = []
    for i, a in enumerate(pools):
        for b in pools[i + 1 :]:
            both = shared_range(a, b)
            if both is not None:
                out.append(
                    {
                        "pools": [a.name, b.name],
                        "vlan": a.vlan,
                        "shared": f"{both[0]}-{both[1]}",
                        "addresses": int(both[1]) - int(both[0]) + 1,
                    }
                )
    return out


def store_overlaps(store: Store) -> list[dict[str, Any]]:
    """``overlaps`` of every pool defined in ``store``, each with how many shared addresses
    are held right now and by which pools."""
    defs, held = _held(store)
    out = overlaps(sorted(defs.values(), key=lambda p: p.name))
    for o in out:
        first, last = (ipaddress.ip_address(x) for x in o["shared"].split("-"))
        lo, hi, fam = int(first), int(last), first.version
        names = set(o["pools"])
        o["held"] = sum(
            1 for n, ip, v, _e in held if n in names and v == o["vlan"] and ip.version == fam and lo <= int(ip) <= hi
        )
    return out
