"""What a bench run measured: one ``Measurement`` per (section, subject, metric).

Each measurement keeps its raw per-repeat samples; the table shows min/median/max of
them and the ratio of the median to the section's baseline subject *measured in the same
run* (never a number remembered from an earlier run). Subjects that could not be measured
(a kernel without ipvlan) are recorded as unavailable with the reason, not left out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from flatnet_lab.bench.stats import Summary, ratio, summarize

#: section -> the subject every other subject of the section is compared with
BASELINES = {
    "control plane": "bridge+host-local",
    "cri": "bridge+host-local",
    "ipam": "sqlite",
    "etcd client": "flatnet _http (kept)",
    "data plane": "wire",
    "routes": "",
}


@dataclass
class Measurement:
    """Samples of one metric of one subject. ``better`` is "lower" or "higher"."""

    section: str
    subject: str
    metric: str
    unit: str
    samples: list[float] = field(default_factory=list)
    better: str = "lower"
    unavailable: str = ""
    note: str = ""

    @property
    def summary(self) -> Summary | None:
        return summarize(self.samples) if self.samples else None


@dataclass
class Results:
    """Every measurement of a run plus free-form facts (agent memory notes, targets)."""

    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(
        self, section: str, subject: str, metric: str, unit: str, value: float, better: str = "lower", note: str = ""
    ) -> Measurement:
        """Append one repeat's value to its measurement (created on first use)."""
        m = self.get(section, subject, metric)
        if m is None:
            m = Measurement(section, subject, metric, unit, better=better, note=note)
            self.measurements.append(m)
        m.samples.append(float(value))
        return m

    def unavailable(self, section: str, subject: str, metric: str, reason: str) -> None:
        """Record that ``subject`` cannot be measured here, and why."""
        if self.get(section, subject, metric) is None:
            self.measurements.append(Measurement(section, subject, metric, "", unavailable=reason))

    def get(self, section: str, subject: str, metric: str) -> Measurement | None:
        for m in self.measurements:
            if (m.section, m.subject, m.metric) == (section, subject, metric):
                return m
        return None

    def ratio_to_baseline(self, m: Measurement) -> float | None:
        """Median of ``m`` over the median of the section's baseline for the same metric."""
        base_subject = BASELINES.get(m.section, "")
        if not base_subject or m.summary is None:
            return None
        base = self.get(m.section, base_subject, m.metric)
        if base is None or base.summary is None:
            return None
        return ratio(m.summary.median, base.summary.median)

    def subjects(self, section: str) -> list[str]:
        return list(dict.fromkeys(m.subject for m in self.measurements if m.section == section))

    def to_json(self) -> str:
        return json.dumps(
            {"measurements": [asdict(m) for m in self.measurements], "notes": self.notes, "extra": self.extra}, indent=2
        )
