"""Every configuration example in README.md and docs/ is accepted by the project's parser.

- each fenced JSON block (or shell here-document of JSON) that is a network config (a plugin with ``"type": "flatnet"`` or a
  conflist) goes through ``parse_conflist``/``parse_netconf``; a fragment written with
  ``...`` is parsed inside a minimal config, so its keys and values are still checked;
- each ``--set-json KEY=JSON`` of a ``helm install`` line is rendered into the chart
  (real Helm, tests/helpers/chart.py) and the conflist it installs is parsed;
- each YAML block that quotes the chart's output (a PrometheusRule alert) matches what the
  chart renders.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

from flatnet.cni.config import parse_conflist, parse_netconf  # noqa: E402
from tests.helpers import chart  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flatnet"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SET_JSON = re.compile(r"--set-json '([\w.]+)=(.*?)'")
BASE = {"cniVersion": "1.0.0", "name": "docs", "type": "flatnet", "master": "eth1",
        "ipam": {"pools": [{"subnet": "198.18.100.0/24"}]}}  # fmt: skip


def blocks(lang: str) -> list[tuple[str, str]]:
    return [(d.name, body) for d in DOCS for tag, body in FENCE.findall(d.read_text()) if tag == lang]


def _plugins(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The flatnet plugin configs of a conflist or a single config, as a runtime feeds them."""
    if "plugins" in doc:
        conflist = parse_conflist(json.dumps(doc).encode())
        return [conflist.plugin_config(i) for i, p in enumerate(conflist.plugins) if p.get("type") == "flatnet"]
    return [doc] if doc.get("type") == "flatnet" else []


HEREDOC = re.compile(r"<<'?EOF'?\n(.*?)^EOF$", re.S | re.M)


def json_bodies() -> list[tuple[str, str]]:
    """Fenced JSON blocks, and JSON written by a shell block's here-document (a walk's conflist)."""
    found = blocks("json")
    for lang in ("sh", "bash", "console"):
        for name, body in blocks(lang):
            found += [(name, doc) for doc in HEREDOC.findall(body) if doc.lstrip().startswith("{")]
    return found


def json_examples() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, body in json_bodies():
        text = re.sub(r",\s*\.\.\.\s*}", "}", body)  # a fragment: {"type": "flatnet", "inProcess": ..., ...}
        doc = json.loads(text)
        fragment = text != body
        for plugin in _plugins(doc):
            out.append((name, {**BASE, **plugin} if fragment else plugin))
    return out


def test_the_docs_have_config_examples() -> None:
    names = {name for name, _ in json_examples()}
    assert {"README.md", "PODMAN.md"} <= names, names


@pytest.mark.parametrize("example", json_examples(), ids=lambda e: e[0])
def test_json_config_examples_parse(example: tuple[str, dict[str, Any]]) -> None:
    _name, plugin = example
    conf = parse_netconf(json.dumps(plugin).encode())
    assert conf.type == "flatnet"


def _installed_plugin(overrides: dict[str, Any]) -> dict[str, Any]:
    docs = chart.docs(overrides, namespace="flatnet")
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "flatnet-cni-config")
    return _plugins(json.loads(cm["data"]["conflist"]))[0]


def test_helm_set_json_examples_render_a_config_the_parser_accepts() -> None:
    found = [(d.name, k, v) for d in DOCS for k, v in SET_JSON.findall(d.read_text())]
    assert found, "the docs' --set-json example is gone: update this test"
    for name, key, value in found:
        plugin = _installed_plugin({key: json.loads(value)})
        conf = parse_netconf(json.dumps(plugin).encode())
        if key == "store":
            assert conf.store["endpoints"] == json.loads(value)["endpoints"], name


def test_yaml_examples_quote_what_the_chart_renders() -> None:
    quoted = [(n, b) for n, b in blocks("yaml") if "charts/flatnet/templates/" in b]
    assert quoted
    for name, body in quoted:
        template = re.search(r"charts/flatnet/templates/(\S+)", body).group(1)
        overrides = {"prometheusRule.enabled": True} if "prometheusrule" in template else {}
        rendered = chart.docs(overrides, namespace="flatnet")
        rules = [r for d in rendered for g in (d.get("spec") or {}).get("groups", []) for r in g["rules"]]
        for example in yaml.safe_load(body):
            match = next((r for r in rules if r.get("alert") == example["alert"]), None)
            assert match is not None, f"{name}: the chart has no alert {example['alert']}"
            for key, value in example.items():
                assert match[key] == value, f"{name}: {example['alert']}.{key} differs from the chart"
