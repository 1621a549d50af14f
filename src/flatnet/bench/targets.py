"""The goals of issue 4, judged against this run's numbers (goals, not asserts)."""

from __future__ import annotations

from dataclasses import dataclass

from flatnet.bench.results import Results

#: store -> seconds allowed for 10,000 allocations
TEN_K_GOAL = {"sqlite": 3.0, "etcd": 10.0}
FLAT_BAND = (0.67, 1.5)  # 1M/1k allocation-rate ratio counted as "flat"


@dataclass(frozen=True)
class Target:
    goal: str
    measured: str
    holds: bool | None  # None: not measured in this run


def judge(r: Results) -> list[Target]:
    out: list[Target] = []
    dup = r.extra.get("ipam_dup", {})
    for store, goal in TEN_K_GOAL.items():
        d = dup.get(store)
        if not d:
            out.append(Target(f"10k allocations <= {goal:g} s ({store})", "not measured", None))
            continue
        per_10k = d["wall_s"] * 10_000 / max(1, d["allocated"])
        how = (f"{d['wall_s']:.2f} s for {d['allocated']} pods"
               + ("" if d["allocated"] >= 10_000 else f" (projected 10k: {per_10k:.1f} s)"))
        out.append(Target(f"10k allocations <= {goal:g} s ({store}, 8 client processes)", how,
                          per_10k <= goal))
        out.append(Target(f"no duplicate addresses ({store}, {d['nodes_seen']} nodes)",
                          f"{d['duplicates']} duplicates in {d['leases_in_store']} leases",
                          d["duplicates"] == 0))
    for store in ("sqlite", "etcd"):
        small = r.get("ipam", store, "alloc/s (1 cl, 1k pool)")
        big = r.get("ipam", store, "alloc/s (1 cl, 1M pool)")
        if small and big and small.summary and big.summary:
            q = big.summary.median / small.summary.median
            out.append(Target(f"allocation cost flat from 1k to 1M addresses ({store})",
                              f"1M/1k rate ratio {q:.2f}", FLAT_BAND[0] <= q <= FLAT_BAND[1]))
    return out
