"""The chart offers exactly the modes it can configure: every mode its values schema allows
renders a conflist the project's parser accepts, and a mode it cannot configure (the vxlan
overlay: no clusterSubnet in the chart) is refused by the schema that Helm checks values
against, instead of reaching a node's install-cni init container."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

from flatnet.cni.config import parse_conflist, parse_netconf  # noqa: E402
from flatnet.datapath import modes  # noqa: E402
from tests.helpers import chart  # noqa: E402

CHART = Path(__file__).resolve().parents[2] / "charts" / "flatnet"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
OFFERED = SCHEMA["properties"]["network"]["properties"]["mode"]["enum"]


def _values(overrides: dict[str, Any]) -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for dotted, v in overrides.items():
        *path, last = dotted.split(".")
        d = values
        for p in path:
            d = d[p]
        d[last] = v
    return values


def test_the_chart_offers_every_flat_mode_and_no_overlay() -> None:
    flat = [m for m in modes.names() if not modes.get(m).overlay]
    assert OFFERED == flat
    jsonschema.validate(_values({}), SCHEMA)  # the chart's own defaults pass


@pytest.mark.parametrize("mode", OFFERED)
def test_every_offered_mode_renders_a_conflist_the_parser_accepts(mode: str) -> None:
    jsonschema.validate(_values({"network.mode": mode}), SCHEMA)
    docs = chart.docs({"network.mode": mode}, namespace="flatnet")
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "flatnet-cni-config")
    conflist = parse_conflist(cm["data"]["conflist"].encode())
    plugin = conflist.plugin_config(next(i for i, p in enumerate(conflist.plugins) if p["type"] == "flatnet"))
    conf = parse_netconf(json.dumps(plugin).encode())
    assert conf.mode == mode and conf.pools


@pytest.mark.parametrize("mode", [m for m in modes.names() if m not in OFFERED] + ["vlan"])
def test_a_mode_the_chart_cannot_configure_is_refused_by_its_schema(mode: str) -> None:
    with pytest.raises(jsonschema.ValidationError, match=repr(mode)):
        jsonschema.validate(_values({"network.mode": mode}), SCHEMA)
