"""The chart's observability parts: metrics port, probes, and the pool-usage alert.

The alert is checked with Prometheus' own ``promtool`` (Debian's prometheus package, which
scripts/setup.sh installs): the rule file is valid, and on synthetic series it fires for a
pool above the threshold and not for one below. The real Prometheus sees it fire in the
lab (tests/integration/test_lab_prometheus.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_manifests import _validate_all, render_chart

from flatnet_lab.lab.alerts import rule_file
from flatnet.obs.http import DEFAULT_PORT

yaml = pytest.importorskip("yaml")


def _agent(docs: list[dict[str, Any]]) -> dict[str, Any]:
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    return ds["spec"]["template"]["spec"]["containers"][0]


def test_agent_serves_metrics_on_the_node_address_and_probes_use_them() -> None:
    docs = render_chart()
    assert "PrometheusRule" not in {d["kind"] for d in docs}  # off by default
    agent = _agent(docs)
    cmd = agent["command"]
    assert cmd[cmd.index("--metrics-address") + 1] == f"$(HOST_IP):{DEFAULT_PORT}"
    env = {e["name"]: e for e in agent["env"]}
    assert env["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert {"name": "metrics", "containerPort": DEFAULT_PORT, "protocol": "TCP"} in agent["ports"]
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_prometheus_rule_renders_when_enabled_and_is_the_lab_rule(tmp_path: Path) -> None:
    docs = render_chart({"prometheusRule.enabled": True})
    _validate_all(docs)
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == rule_file()  # what the lab loads into its Prometheus
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install prometheus (scripts/setup.sh)"
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pool_alert_fires_above_the_threshold_only(tmp_path: Path) -> None:
    """promtool's rule unit test: one pool at 95% for 10 minutes fires, one at 85% does not."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps(rule_file()))
    size = 'flatnet_ipam_pool_size_addresses{pool="%s",store="etcd",instance="%s"}'
    used = 'flatnet_ipam_pool_allocated_addresses{pool="%s",store="etcd",instance="%s"}'
    series = []
    for inst in ("n1:9631", "n2:9631"):  # every agent reports the shared pool: one alert per pool
        series += [
            {"series": size % ("full", inst), "values": "100x15"},
            {"series": used % ("full", inst), "values": "95x15"},
            {"series": size % ("ok", inst), "values": "100x15"},
            {"series": used % ("ok", inst), "values": "85x15"},
        ]
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": "FlatnetPoolNearlyFull", "exp_alerts": []},  # pending
                    {
                        "eval_time": "10m",
                        "alertname": "FlatnetPoolNearlyFull",
                        "exp_alerts": [
                            {
                                "exp_labels": {"pool": "full", "severity": "warning"},
                                "exp_annotations": rule_file()["groups"][0]["rules"][0]["annotations"],
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "test.yaml"
    path.write_text(json.dumps(test))
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install prometheus (scripts/setup.sh)"
    proc = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
