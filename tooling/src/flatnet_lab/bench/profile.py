"""Bench profiles: how much work each measurement does.

``quick`` is the CI smoke profile (every subject, every code path, small numbers, under
two minutes); ``full`` is what writes docs/BENCHMARKS.md. Both measure every subject in
the same run, so ratios always compare numbers taken minutes apart on the same machine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    repeats: int  # repeats of every measurement (min/median/max over them)
    cni_sequential: int  # sequential ADD+DEL pairs per repeat per subject
    cni_burst: int  # pods ADDed at once (thread pool), then DELed at once
    agent_pods: int  # pods (or leases) behind the agent's "loaded" RSS
    agent_add_budget: float  # seconds of real ADDs before the rest become direct leases
    ipam_allocs: int  # allocations per IPAM measurement (split over the clients)
    ipam_clients: tuple[int, ...]
    ipam_pools: tuple[int, ...]
    dup_pods: int  # pods for the duplicate check ...
    dup_nodes: int  # ... spread over this many simulated nodes
    dup_threads: int  # ... and again with each node's agent serving this many ADDs at once
    iperf_seconds: float
    rr_samples: int
    filter_pods: int  # other macvlan pods (first-hop filter each) on the client's node, then measured again
    route_steps: tuple[int, ...]  # pods per node at which routes are counted
    cri_pods: int  # pods per repeat per subject through containerd's CRI


QUICK = Profile(
    "quick",
    repeats=2,
    cni_sequential=3,
    cni_burst=10,
    agent_pods=20,
    agent_add_budget=10.0,
    ipam_allocs=200,
    ipam_clients=(1, 8),
    ipam_pools=(1_000, 1_000_000),
    dup_pods=500,
    dup_nodes=100,
    dup_threads=16,
    iperf_seconds=1.0,
    rr_samples=100,
    filter_pods=8,
    route_steps=(0, 1),
    cri_pods=5,
)
FULL = Profile(
    "full",
    repeats=3,
    cni_sequential=20,
    cni_burst=100,
    agent_pods=1_000,
    agent_add_budget=60.0,
    ipam_allocs=2_000,
    ipam_clients=(1, 8, 32, 128),
    ipam_pools=(256, 1_000, 4_000, 1_000_000),
    dup_pods=10_000,
    dup_nodes=100,
    dup_threads=16,
    iperf_seconds=3.0,
    rr_samples=1_000,
    filter_pods=500,
    route_steps=(0, 1, 2, 4),
    cri_pods=30,
)
PROFILES = {"quick": QUICK, "full": FULL}
