"""A real Prometheus scrapes the three lab agents while pods come and a small pool fills up.

Debian's ``prometheus`` runs in the lab's vm2 namespace with its own config and data dir
and a 1 s scrape interval. The test adds pods through the real plugin and agents, then asks
Prometheus' HTTP API for the ADD count and rate, the p99 from the latency histogram and a
pool's usage, and compares each with what it did: its own pod count, the latencies the
agents logged (JSON lines) and what ``flatnet ipam ls`` shows. It then fills the 8-address
pool of ``flat-small`` with the chart's alerting rule loaded (the same template, ``for``
shortened) and sees ``FlatnetPoolNearlyFull`` fire for that pool only.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers.lab import fresh_lab

from flatnet_lab.lab import metrics_report as mr
from flatnet_lab.lab import procs
from flatnet_lab.lab.alerts import rule_file
from flatnet_lab.lab.prometheus import LabPrometheus
from flatnet_lab.lab.topology import Topology
from flatnet.obs.metrics import CNI_BUCKETS
from tests.helpers.cli import flatnet_cli

pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
]

BURST = 24
QUIET = 12.0  # seconds of flat counters before the burst
ADD_SERIES = 'flatnet_cni_request_duration_seconds_count{verb="ADD",result="0"}'
BUCKETS = 'flatnet_cni_request_duration_seconds_bucket{verb="ADD",result="0"}'


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Topology, LabPrometheus]]:
    with fresh_lab() as topo:
        with LabPrometheus(topo, scrape_interval=1.0).start(rule_file({"for": "2s"})) as prom:
            prom.wait_for("all three agents up", lambda: prom.targets_up() == 3)
            yield topo, prom


def expected_quantile(q: float, durations: list[float]) -> float:
    """What histogram_quantile(q) gives for these observations in the agent's buckets."""
    bounds = list(CNI_BUCKETS) + [math.inf]
    counts = [sum(1 for d in durations if d <= b) for b in bounds]
    rank = q * len(durations)
    i = next(k for k, c in enumerate(counts) if c >= rank)
    if bounds[i] == math.inf:
        return bounds[-2]
    lower, below = (0.0, 0) if i == 0 else (bounds[i - 1], counts[i - 1])
    return lower + (bounds[i] - lower) * (rank - below) / (counts[i] - below)


def ipam_ls_count(pool: str) -> int:
    """How many leases ``flatnet ipam ls --pool POOL --json`` lists."""
    proc = flatnet_cli(
        "ipam",
        "ls",
        "--store",
        f"sqlite:{procs.path('ipam.db')}",
        "--pool",
        pool,
        "--json",
        check=True,
    )
    return len(json.loads(proc.stdout)["leases"])


def test_promql_answers_match_what_the_lab_did(lab: tuple[Topology, LabPrometheus], tmp_path: Path) -> None:
    topo, prom = lab
    run_start = time.time()
    # one pod per node first, so every agent's ADD series exists before the burst
    warm = mr.burst(topo, [f"fno-warm-{n.index}" for n in topo.nodes])
    prom.wait_for("the warm-up ADDs", lambda: prom.value(f"sum({ADD_SERIES})") == 3)
    t0 = time.time()
    prom.wait_for("a scrape of every agent after t0", lambda: (prom.value(f"min(timestamp({ADD_SERIES}))") or 0) > t0)
    # a quiet stretch inside the window: Prometheus extrapolates increase() to the window's
    # edges (<= ~2 scrape intervals), which weighs less in a longer window
    time.sleep(max(0.0, t0 + QUIET - time.time()))
    names = [f"fno-burst-{i}" for i in range(BURST)]
    made = mr.burst(topo, names)
    # exact: the counters went up by the burst, on the three agents together
    prom.wait_for("the whole burst", lambda: prom.value(f"sum({ADD_SERIES})") == 3 + BURST)
    t1 = time.time()
    window = math.ceil(t1 - t0)

    increase = prom.value(f"sum(increase({ADD_SERIES}[{window}s]))", at=t1)
    rate = prom.value(f"sum(rate({ADD_SERIES}[{window}s]))", at=t1)
    assert increase is not None and rate is not None
    # Prometheus extrapolates to the window's edges: at most ~2 scrape intervals more
    assert BURST - 1e-9 <= increase <= BURST * window / (window - 3 * prom.scrape_interval), (increase, window)
    assert rate == pytest.approx(increase / window)

    # p99: the histogram's buckets over the burst only (now minus at t0) against the
    # latencies the agents logged for exactly these containers
    p99 = prom.value(f"histogram_quantile(0.99, sum by (le) ({BUCKETS}) - sum by (le) ({BUCKETS} @ {t0:.3f}))", at=t1)
    logged = mr.logged_durations(topo, {p.container_id for p in made})
    assert len(logged) == BURST
    assert p99 == pytest.approx(expected_quantile(0.99, logged), rel=1e-9), (p99, sorted(logged)[-3:])

    # pool usage: what the agents report = what 'flatnet ipam ls' shows = what the test added
    in_use = prom.value('max(flatnet_ipam_pool_in_use_addresses{pool="flat-v4"})')
    usage = prom.value(
        'max(flatnet_ipam_pool_allocated_addresses{pool="flat-v4"} / flatnet_ipam_pool_size_addresses{pool="flat-v4"})'
    )
    size = prom.value('max(flatnet_ipam_pool_size_addresses{pool="flat-v4"})')
    held = ipam_ls_count("flat-v4")
    assert in_use == held == len(warm) + BURST
    assert size == 160  # 198.18.100.32 - .191
    assert usage == pytest.approx((len(warm) + BURST) / 160)

    print(
        f"\nPromQL at t1 (burst of {BURST} pods, window {window}s):\n"
        f"  sum(increase({ADD_SERIES}[{window}s])) = {increase:.3f}\n"
        f"  sum(rate({ADD_SERIES}[{window}s])) = {rate:.4f} ADD/s (test: {BURST}/{window} = {BURST / window:.4f})\n"
        f"  histogram_quantile(0.99, burst buckets) = {p99:.4f} s (from agent logs: "
        f"{expected_quantile(0.99, logged):.4f} s; slowest logged ADD {max(logged):.4f} s)\n"
        f"  flat-v4 in use = {in_use:.0f} (ipam ls: {held}), usage = {usage:.4f}"
    )

    # the alert: 7 of 8 addresses (87.5%) stays quiet, the 8th (100%) makes it fire
    small = [f"fno-small-{i}" for i in range(8)]
    mr.burst(topo, small[:7], network="flat-small", workers=4)
    prom.wait_for(
        "small-v4 at 7/8", lambda: prom.value('max(flatnet_ipam_pool_allocated_addresses{pool="small-v4"})') == 7
    )
    time.sleep(4 * prom.scrape_interval)  # longer than the rule's 'for': it would have fired
    assert not [a for a in prom.alerts() if a["labels"].get("alertname") == mr.ALERT], prom.alerts()
    mr.burst(topo, small[7:], network="flat-small")
    alert = prom.wait_for("FlatnetPoolNearlyFull firing", lambda: mr.firing(prom, "small-v4"))[0]
    assert alert["labels"]["severity"] == "warning"
    assert float(alert["value"]) == 1.0
    series = prom.query('ALERTS{alertname="FlatnetPoolNearlyFull",alertstate="firing"}')
    assert [s["metric"]["pool"] for s in series] == ["small-v4"]  # flat-v4 (17%) does not fire
    print(
        f"  api/v1/alerts: {alert['labels']} state={alert['state']} value={alert['value']} activeAt={alert['activeAt']}"
    )

    png = tmp_path / "fno-metrics.png"
    mr.draw(prom, run_start, time.time(), str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
