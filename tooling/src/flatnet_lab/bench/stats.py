"""Small statistics for benchmarks: nearest-rank percentiles and min/median/max summaries.

Nearest rank (no interpolation) on purpose: a reported p99 is a latency that actually
happened, which is what an operator reading the table expects.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (``pct`` in 0..100); ValueError when empty."""
    if not values:
        raise ValueError("percentile of no samples")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is outside 0..100")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct * len(ordered) / 100)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    """min / median / max over the repeats of one measurement."""

    min: float
    median: float
    max: float
    n: int


def summarize(samples: Sequence[float]) -> Summary:
    """Summary of the repeats; ValueError when there are none (a bench must measure)."""
    if not samples:
        raise ValueError("no samples to summarize")
    return Summary(min(samples), statistics.median(samples), max(samples), len(samples))


def ratio(value: float, baseline: float) -> float | None:
    """``value / baseline``; None when the baseline is zero (nothing to compare with)."""
    if baseline == 0:
        return None
    return value / baseline
