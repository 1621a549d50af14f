"""The goals of issue 4, judged against this run's numbers (goals, not asserts)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from flatnet_lab.bench.results import Results

#: store -> seconds allowed for 10,000 allocations
TEN_K_GOAL = {"sqlite": 3.0, "etcd": 10.0}
FLAT_BAND = (0.67, 1.5)  # 1M/1k allocation-rate ratio counted as "flat"
FLAT_MODES = ("flat macvlan", "flat bridge", "flat bridge (br_netfilter off)", "flat ipvlan")
TCP_GOAL, LATENCY_GOAL = 0.97, 1.1  # of the wire's TCP 1-stream throughput / RR p50
#: the first-hop filter (issue 20): filtered macvlan against the same pods unfiltered, same run
FILTERED, UNFILTERED = "flat macvlan", "flat macvlan (first-hop filter off)"
FILTER_TCP_GOAL, FILTER_RR_GOAL = 0.97, 1.05
#: ... and the filtered macvlan pods again with N other filtered pods on the client's node
#: (bench/dataplane.py CROWDED), against the same pods with none: the same two goals (no growth)
CROWDED = re.compile(r"flat macvlan \((\d+) other pods' filters on the node\)")
ADD_GOAL = 1.5  # agent ADD p50 over the reference bridge+host-local ADD p50
BURST_GOAL = 1.2  # agent burst ADD total over the reference's
VERSION_GOAL = 1.0  # forwarder VERSION p50 over the reference plugin's (both answer it alone)
AGENT, REF = "flatnet (agent)", "bridge+host-local"
#: through containerd's CRI: RunPodSandbox p50 and Stop+Remove p50 over bridge+host-local
CRI_GOALS = {"RunPodSandbox p50": 1.1, "Stop+Remove p50": 1.2}


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
        how = f"{d['wall_s']:.2f} s for {d['allocated']} pods" + (
            "" if d["allocated"] >= 10_000 else f" (projected 10k: {per_10k:.1f} s)"
        )
        out.append(Target(f"10k allocations <= {goal:g} s ({store}, 8 client processes)", how, per_10k <= goal))
        out.append(
            Target(
                f"no duplicate addresses ({store}, {d['nodes_seen']} nodes)",
                f"{d['duplicates']} duplicates in {d['leases_in_store']} leases",
                d["duplicates"] == 0,
            )
        )
    for store in ("sqlite", "etcd"):
        small = _median(r, "ipam", store, "alloc/s (1 cl, 1k pool)")
        big = _median(r, "ipam", store, "alloc/s (1 cl, 1M pool)")
        if small and big is not None:
            q = big / small
            out.append(
                Target(
                    f"allocation cost flat from 1k to 1M addresses ({store})",
                    f"1M/1k rate ratio {q:.2f}",
                    FLAT_BAND[0] <= q <= FLAT_BAND[1],
                )
            )
    out += _small_pools(r) + _data_plane(r) + _first_hop(r) + _control_plane(r) + _cri(r)
    return out


#: issue 21: a 1k pool shared by 32 clients on etcd
SMALL_POOL_RATE, SMALL_POOL_P99, CEILING_SHARE = 1_500.0, 100.0, 0.40
#: issue 21: 10k pods / 100 nodes
SCALE_GOAL = {"sqlite": 2.0, "etcd": 3.0}


def _small_pools(r: Results) -> list[Target]:
    """Issue 21's goals: small shared pools without contention, against this run's etcd."""
    out: list[Target] = []
    rate = _median(r, "ipam", "etcd", "alloc/s (32 cl, 1k pool)")
    p99 = _median(r, "ipam", "etcd", "alloc p99 (32 cl, 1k pool)")
    big_p99 = _median(r, "ipam", "etcd", "alloc p99 (32 cl, 1M pool)")
    if rate is not None and p99 is not None:
        out.append(
            Target(
                f"etcd, 1k pool, 32 clients: >= {SMALL_POOL_RATE:,.0f} alloc/s, p99 <= {SMALL_POOL_P99:g} ms",
                f"{rate:,.0f} alloc/s, p99 {p99:.1f} ms",
                rate >= SMALL_POOL_RATE and p99 <= SMALL_POOL_P99,
            )
        )
    if p99 is not None and big_p99 is not None:
        out.append(
            Target(
                "etcd, 32 clients: 1k pool p99 no worse than the 1M pool's",
                f"{p99:.1f} vs {big_p99:.1f} ms",
                p99 <= big_p99 * 1.1,
            )
        )
    for store in ("sqlite", "etcd"):
        rates = [(c, _median(r, "ipam", store, f"alloc/s ({c} cl, 1k pool)")) for c in (1, 8, 32, 128)]
        seen = [(c, x) for c, x in rates if x is not None]
        if len(seen) >= 2:
            falls = [f"{a}->{b} cl" for (a, x), (b, y) in zip(seen, seen[1:], strict=False) if y < 0.9 * x]
            out.append(
                Target(
                    f"{store}, 1k pool: alloc/s does not fall as clients are added (10% noise band)",
                    ", ".join(f"{c} cl {x:,.0f}" for c, x in seen) + (f"; falls {', '.join(falls)}" if falls else ""),
                    not falls,
                )
            )
        out += _falls_against_big(r, store)
    ceiling = _median(r, "ipam", "etcd", "put ceiling (32 cl, one key per txn)")
    if rate is not None and ceiling:
        out.append(
            Target(
                f"etcd alloc/s at 32 clients >= {CEILING_SHARE:.0%} of etcd's own put ceiling",
                f"{rate:,.0f} vs {ceiling:,.0f} puts/s ({rate / ceiling:.0%})",
                rate >= CEILING_SHARE * ceiling,
            )
        )
    # placed by the nodes' agents, each serving its node's ADDs at once (as kubelet sends them);
    # a run without that row judges the one-after-another row
    dup = r.extra.get("ipam_dup_agents") or r.extra.get("ipam_dup", {})
    for store, goal in SCALE_GOAL.items():
        d = dup.get(store)
        if d:
            per_10k = d["wall_s"] * 10_000 / max(1, d["allocated"])
            how = f"agents, {d['threads']} ADDs at once per node" if d.get("threads", 1) > 1 else "one at a time"
            out.append(
                Target(
                    f"10k pods / 100 nodes <= {goal:g} s ({store}, {how})",
                    f"{per_10k:.2f} s, {d['duplicates']} duplicates",
                    per_10k <= goal and d["duplicates"] == 0,
                )
            )
    return out


def _falls_against_big(r: Results, store: str) -> list[Target]:
    """The 1k pool's change in alloc/s from one client count to the next, against the 1M
    pool's in the same run: a 1M pool's nodes share no key (each takes from a chunk of 64 that
    lasts its whole share), so its fall is what the machine does with more client processes
    (on 2 cores, 128 Python processes and etcd share the CPU), and the 1k pool's fall beyond it
    is what its shared keys cost. The goal itself (above) stays judged as written."""
    small = [(c, _median(r, "ipam", store, f"alloc/s ({c} cl, 1k pool)")) for c in (8, 32, 128)]
    big = [(c, _median(r, "ipam", store, f"alloc/s ({c} cl, 1M pool)")) for c in (8, 32, 128)]
    steps = [
        (a, b, y / x, v / u)
        for (a, x), (b, y), (_, u), (_, v) in zip(small, small[1:], big, big[1:], strict=False)
        if x and y and u and v
    ]
    if not steps:
        return []
    return [
        Target(
            f"{store}, 1k pool: alloc/s falls no more than the 1M pool's as clients are added "
            "(the machine's own fall, no shared keys; 10% band)",
            "; ".join(f"{a}->{b} cl: 1k {q:.2f}x, 1M {qb:.2f}x" for a, b, q, qb in steps),
            all(q >= 0.9 * qb for _, _, q, qb in steps),
        )
    ]


def _median(r: Results, section: str, subject: str, metric: str) -> float | None:
    m = r.get(section, subject, metric)
    return m.summary.median if m is not None and m.summary is not None else None


def _data_plane(r: Results) -> list[Target]:
    """Each flat mode against the wire of the same run: TCP 1 stream and RR p50."""
    out: list[Target] = []
    wire_tcp = _median(r, "data plane", "wire", "TCP 1 stream")
    wire_rr = _median(r, "data plane", "wire", "RR p50")
    for mode in FLAT_MODES:
        tcp = _median(r, "data plane", mode, "TCP 1 stream")
        rr = _median(r, "data plane", mode, "RR p50")
        if wire_tcp and tcp is not None:
            q = tcp / wire_tcp
            out.append(
                Target(
                    f"{mode}: TCP >= {TCP_GOAL:.0%} of the wire",
                    f"{tcp:.1f} vs {wire_tcp:.1f} Gbit/s ({q:.0%})",
                    q >= TCP_GOAL,
                )
            )
        if wire_rr and rr is not None:
            q = rr / wire_rr
            out.append(
                Target(
                    f"{mode}: latency <= {LATENCY_GOAL:g}x the wire (RR p50)",
                    f"{rr:.1f} vs {wire_rr:.1f} µs ({q:.2f}x)",
                    q <= LATENCY_GOAL,
                )
            )
    return out


def _first_hop(r: Results) -> list[Target]:
    """The macvlan pods with their first-hop filters against the same pods without them, and
    the same pods again with N other pods' filters on the node against them (no growth)."""
    # (what is judged, against what, the goal's words before and after the metric's)
    pairs = [(FILTERED, UNFILTERED, "first-hop filter: macvlan", "unfiltered")]
    for subject in r.subjects("data plane"):
        if m := CROWDED.fullmatch(subject):
            n = m.group(1)
            pairs.append(
                (subject, FILTERED, f"first-hop filter, {n} other pods' filters on the node: macvlan", "without them")
            )
    out: list[Target] = []
    for mine_subject, ref_subject, head, tail in pairs:
        for metric, goal, unit, higher in (
            ("TCP 1 stream", FILTER_TCP_GOAL, "Gbit/s", True),
            ("RR p50", FILTER_RR_GOAL, "µs", False),
        ):
            mine, ref = _median(r, "data plane", mine_subject, metric), _median(r, "data plane", ref_subject, metric)
            if mine is None or not ref:
                continue
            q = mine / ref
            what = f">= {goal:.0%} of" if higher else f"<= {goal:g}x"
            out.append(
                Target(
                    f"{head} {metric} {what} {tail}",
                    f"{mine:.3g} vs {ref:.3g} {unit} ({q:.2f}x)",
                    q >= goal if higher else q <= goal,
                )
            )
    return out


def _control_plane(r: Results) -> list[Target]:
    """ADD p50 within 1.5x of the reference, the burst within 1.2x, VERSION no slower."""
    out: list[Target] = []
    sec = "control plane"
    add, ref_add = _median(r, sec, AGENT, "ADD p50"), _median(r, sec, REF, "ADD p50")
    if add is not None and ref_add:
        out.append(
            Target(
                f"ADD p50 with the agent <= {ADD_GOAL:g}x bridge+host-local",
                f"{add:.1f} vs {ref_add:.1f} ms ({add / ref_add:.2f}x)",
                add <= ADD_GOAL * ref_add,
            )
        )
    burst = next(
        (
            m.metric
            for m in r.measurements
            if m.section == sec
            and m.subject == AGENT
            and m.metric.startswith("burst")
            and m.metric.endswith("ADD total")
        ),
        None,
    )
    if burst:
        mine, ref = _median(r, sec, AGENT, burst), _median(r, sec, REF, burst)
        if mine is not None and ref:
            out.append(
                Target(
                    f"{burst.replace(' total', '')} (agent) <= {BURST_GOAL:g}x bridge+host-local",
                    f"{mine:.2f} vs {ref:.2f} s ({mine / ref:.2f}x)",
                    mine <= BURST_GOAL * ref,
                )
            )
    ver, ref_ver = _median(r, sec, AGENT, "VERSION p50"), _median(r, sec, REF, "VERSION p50")
    if ver is not None and ref_ver:
        out.append(
            Target(
                f"VERSION p50 (the forwarder alone) <= {VERSION_GOAL:g}x the reference plugin's",
                f"{ver:.2f} vs {ref_ver:.2f} ms ({ver / ref_ver:.2f}x)",
                ver <= VERSION_GOAL * ref_ver,
            )
        )
    return out


def _cri(r: Results) -> list[Target]:
    """A pod sandbox through containerd: flatnet within the goal ratio of bridge+host-local."""
    out: list[Target] = []
    for metric, goal in CRI_GOALS.items():
        mine, ref = _median(r, "cri", AGENT, metric), _median(r, "cri", REF, metric)
        if mine is not None and ref:
            out.append(
                Target(
                    f"CRI {metric} (agent) <= {goal:g}x bridge+host-local",
                    f"{mine:.1f} vs {ref:.1f} ms ({mine / ref:.2f}x)",
                    mine <= goal * ref,
                )
            )
    return out
