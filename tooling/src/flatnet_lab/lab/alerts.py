"""The chart's alerting rules as a Prometheus rule file, for the lab's real Prometheus.

The rules live in one place, ``charts/flatnet/templates/prometheusrule.yaml`` (a
PrometheusRule, off by default). Its ``spec`` *is* a Prometheus rule file (``groups:``), so
the lab renders that template with the chart's values (plus overrides, e.g. a short
``for`` so a test sees the alert fire within seconds) and loads the result: the rule the
test fires is the rule the chart ships. tests/unit/test_manifests.py checks both agree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flatnet.errors import FlatnetError

CHART = Path(__file__).resolve().parents[4] / "charts" / "flatnet"
TEMPLATE = CHART / "templates" / "prometheusrule.yaml"
_PLACEHOLDER = re.compile(r"\{\{\s*\.Values\.([A-Za-z0-9_.]+)\s*((?:\|\s*(?:toJson|quote)\s*)*)\}\}")
_CONTROL = re.compile(r"^\s*\{\{-?\s*(if\s+\.Values\.[\w.]+|end)\s*-?\}\}\s*$")


def _lookup(values: dict[str, Any], path: str) -> Any:
    cur: Any = values
    for part in path.split("."):
        cur = cur[part]
    return cur


def rule_file(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"groups": [...]}`` from the chart's PrometheusRule with values + ``overrides``.

    ``overrides`` keys are under ``prometheusRule`` (e.g. ``{"for": "5s"}``).
    """
    import json

    import yaml

    if not TEMPLATE.exists():
        raise FlatnetError(f"{TEMPLATE} not found", "run from a flatnet source checkout")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    values["prometheusRule"].update(overrides or {})

    def sub(m: re.Match[str]) -> str:
        value = _lookup(values, m.group(1))
        for pipe in (p.strip() for p in m.group(2).split("|") if p.strip()):
            value = (
                json.dumps(value, sort_keys=True, separators=(",", ":")) if pipe == "toJson" else json.dumps(str(value))
            )
        return str(value)

    lines = [l for l in TEMPLATE.read_text().splitlines() if not _CONTROL.match(l)]
    text = "\n".join(lines).replace("{{ .Release.Namespace }}", "flatnet")  # metadata only
    doc = yaml.safe_load(_PLACEHOLDER.sub(sub, text))
    return dict(doc["spec"])
