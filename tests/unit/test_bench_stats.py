"""Bench statistics and result bookkeeping: percentiles, summaries, ratios to the baseline."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flatnet_lab.bench.results import Results
from flatnet_lab.bench.stats import percentile, ratio, summarize


def test_percentile_is_nearest_rank() -> None:
    xs = list(range(1, 101))  # 1..100
    assert percentile(xs, 50) == 50
    assert percentile(xs, 99) == 99
    assert percentile(xs, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([3, 1, 2], 50) == 2  # unsorted input


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0, 100))
def test_percentile_is_a_sample_within_bounds(xs: list[float], pct: float) -> None:
    p = percentile(xs, pct)
    assert p in xs
    assert min(xs) <= p <= max(xs)


def test_percentile_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_and_ratio() -> None:
    s = summarize([3.0, 1.0, 2.0])
    assert (s.min, s.median, s.max, s.n) == (1.0, 2.0, 3.0, 3)
    assert ratio(4.0, 2.0) == 2.0
    assert ratio(1.0, 0.0) is None
    with pytest.raises(ValueError):
        summarize([])


def test_ratio_uses_the_baseline_of_the_same_run_and_metric() -> None:
    r = Results()
    for v in (10.0, 12.0, 11.0):
        r.add("control plane", "bridge+host-local", "ADD p50", "ms", v)
    for v in (30.0, 36.0, 33.0):
        r.add("control plane", "flatnet (agent)", "ADD p50", "ms", v)
    r.add("control plane", "flatnet (agent)", "DEL p50", "ms", 5.0)  # no baseline for it
    agent = r.get("control plane", "flatnet (agent)", "ADD p50")
    assert agent is not None and agent.samples == [30.0, 36.0, 33.0]
    assert r.ratio_to_baseline(agent) == pytest.approx(3.0)
    dele = r.get("control plane", "flatnet (agent)", "DEL p50")
    assert dele is not None and r.ratio_to_baseline(dele) is None


def test_unavailable_is_recorded_once_with_its_reason() -> None:
    r = Results()
    r.unavailable("data plane", "flat ipvlan", "UDP", "not available: kernel lacks CONFIG_IPVLAN")
    r.unavailable("data plane", "flat ipvlan", "UDP", "again")
    ms = [m for m in r.measurements if m.subject == "flat ipvlan"]
    assert len(ms) == 1 and ms[0].summary is None
    assert "CONFIG_IPVLAN" in ms[0].unavailable
