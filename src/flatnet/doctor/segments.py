"""Pools of one L2 segment that share addresses, and addresses held twice (issue 26).

flatnet keeps one holder per address per segment (VLAN) across every pool of a store
(``ipam.segments``), so overlapping pools of different networks are legal: they share, and
each hands out what the others do not hold. They are still worth seeing — a pool that
shares looks bigger than it is — so ``doctor cluster`` lists them as warnings; an address held
by two pools at once (only possible in a store written before the segment index) is an
error with the command that ends it.
"""

from __future__ import annotations

from typing import Any

from flatnet.doctor.findings import Finding


def check_segments(overlaps: list[dict[str, Any]], duplicates: list[dict[str, Any]]) -> list[Finding]:
    out = []
    for o in overlaps:
        a, b = o["pools"]
        vlan = o["vlan"] if o["vlan"] is not None else "untagged"
        out.append(
            Finding(
                "warn",
                "pools-share-segment",
                f"Pool/{a}",
                f"pools {a} and {b} share {o['addresses']} address(es) {o['shared']} on VLAN {vlan}; "
                f"{o.get('held', 0)} of them held now",
                "an address is handed to one pod per VLAN whatever pool asks, so shared addresses "
                "count against both pools: each may run out before its own range looks full",
                "if the sharing is not intended, give the pools disjoint rangeStart/rangeEnd; "
                "if it is, size each pool for the other's pods too",
                related=(f"Pool/{b}",),
            )
        )
    for d in duplicates:
        vlan = d["vlan"] if d["vlan"] is not None else "untagged"
        out.append(
            Finding(
                "error",
                "address-held-twice",
                f"Pool/{d['pools'][0]}",
                f"{d['address']} on VLAN {vlan} is held by {len(d['pools'])} pools at once: " + "; ".join(d["holders"]),
                "two pods with one address on one VLAN break each other's traffic; this store was "
                "written before flatnet kept one holder per segment, and it is not rewritten silently",
                f"delete all but one of those pods, or: flatnet ipam release --pool {d['pools'][-1]} --ip {d['address']}",
                related=tuple(f"Pool/{p}" for p in d["pools"][1:]),
            )
        )
    return out


def segments_from_store(cfg: dict[str, Any]) -> list[Finding]:
    """``check_segments`` of every pool in the store ``cfg`` (an open_store config)."""
    from flatnet.ipam import open_store, segments

    store = open_store(cfg)
    try:
        return check_segments(segments.store_overlaps(store), segments.duplicates(store))
    finally:
        store.close()
