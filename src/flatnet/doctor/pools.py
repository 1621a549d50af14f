"""Pool exhaustion: warn before ADDs start failing with "pool exhausted" (code 101).

Usage comes from a JSON file (``--usage``: what ``flatnet ipam`` or a monitoring job
exported) or, when this flatnet build can compute it, straight from the store.
Accepted shapes: ``{"pools": [{"name", "size", "used"}]}``, a bare list of those, or
``{"<pool>": {"size", "used"}}``.
"""

from __future__ import annotations

from typing import Any

from flatnet.doctor.findings import Finding
from flatnet.errors import DecodeError

WARN_AT = 0.80
ERROR_AT = 0.95


def parse_usage(doc: Any) -> list[tuple[str, int, int]]:
    """(name, size, used) per pool; DecodeError naming the expected shape otherwise."""
    if isinstance(doc, dict) and isinstance(doc.get("pools"), list):
        rows = doc["pools"]
    elif isinstance(doc, list):
        rows = doc
    elif isinstance(doc, dict):
        rows = [{"name": k, **v} for k, v in doc.items() if isinstance(v, dict)]
    else:
        rows = None
    out = []
    try:
        for row in rows or []:
            out.append((str(row["name"]), int(row["size"]), int(row["used"])))
    except (KeyError, TypeError, ValueError):
        rows = None
    if rows is None:
        raise DecodeError(
            "the pool usage file has the wrong shape",
            'expected {"pools": [{"name": "flat-v4", "size": 254, "used": 12}]}',
        )
    return out


def check_pools(usage: list[tuple[str, int, int]]) -> list[Finding]:
    """warn at 80% used, error at 95% or when no address is left."""
    out = []
    for pool, size, used in usage:
        if size <= 0:
            continue
        share = used / size
        if share < WARN_AT:
            continue
        sev = "error" if share >= ERROR_AT or used >= size else "warn"
        out.append(
            Finding(
                sev,
                "pool-near-exhaustion",
                f"Pool/{pool}",
                f"{used} of {size} addresses in use ({share:.0%}), {max(size - used, 0)} left",
                "when a pool is empty every new pod on this network fails its CNI ADD with "
                "code 101 (pool exhausted) and stays in ContainerCreating",
                f"add a range or a second pool to the network config, or release leaked "
                f"addresses: flatnet ipam ls --pool {pool}; flatnet ipam release ...",
            )
        )
    return out


def usage_from_store(cfg: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(name, size, used) for every pool defined in the store ``cfg`` (an open_store config).

    Pools record their definition in the store at first use, so ``Ipam.pools`` alone says
    how big each pool is; ``Ipam.usage`` counts leases and sticky holds.
    """
    from flatnet.ipam import Ipam, open_store

    store = open_store(cfg)
    try:
        ipam = Ipam(store)
        out = []
        for spec in ipam.pools():
            used, total = ipam.usage(spec)
            out.append((spec.name, total, used))
        return out
    finally:
        store.close()


def check_quarantined(quarantined: list[dict[str, Any]]) -> list[Finding]:
    """One warning per address that answered a conflict probe on the VLAN (``ipam.quarantined``)."""
    import time

    out = []
    for q in quarantined:
        left = float(q.get("until") or 0) - time.time()
        out.append(
            Finding(
                "warn",
                "address-conflict",
                f"Pool/{q['pool']}",
                f"{q['address']} is in use on the VLAN by a host flatnet does not manage "
                f"({q.get('mac') or 'unknown MAC'}): quarantined, "
                + (f"retried in {int(left)} s" if left > 0 else "retried when the pool needs it"),
                "an address configured by hand inside the pool's range would break both that host "
                "and the pod given it; flatnet skips it while something answers for it",
                f"find the host with MAC {q.get('mac') or '?'} and move it out of the range, or add "
                f"{q['address']} to the pool's 'exclude'",
            )
        )
    return out


def quarantined_from_store(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The quarantined addresses of every pool in the store ``cfg``."""
    from flatnet.ipam import Ipam, open_store

    store = open_store(cfg)
    try:
        return Ipam(store).quarantined()
    finally:
        store.close()
