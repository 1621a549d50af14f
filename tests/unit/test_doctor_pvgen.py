"""pvgen writes local PVs from the real node names, and refuses the seed's mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flatnet.doctor.cluster import analyze
from flatnet.doctor.pvgen import generate, main
from flatnet.errors import ConfigError

yaml = pytest.importorskip("yaml")
DATA = Path(__file__).resolve().parents[1] / "data" / "doctor"
HEALTHY = json.loads((DATA / "healthy.json").read_text())  # nodes keludev05, keludev06


def test_one_pv_per_node_with_the_label_value() -> None:
    docs = list(
        yaml.safe_load_all(
            generate(HEALTHY, "/app/kelu/local-storage/redis", "8Gi", "local-storage-redis", "local-pv-redis")
        )
    )
    assert [d["metadata"]["name"] for d in docs] == ["local-pv-redis-keludev05", "local-pv-redis-keludev06"]
    term = docs[0]["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["values"] == ["keludev05"]
    assert docs[0]["spec"]["capacity"]["storage"] == "8Gi"
    assert docs[0]["spec"]["local"]["path"] == "/app/kelu/local-storage/redis"


def test_generated_pv_passes_the_doctor() -> None:
    text = generate(HEALTHY, "/data/redis", "8Gi", "local-storage-redis", "local-pv-redis", ["keludev05"])
    pv = yaml.safe_load(text)
    nodes = [i for i in HEALTHY["items"] if i["kind"] == "Node"]
    assert analyze({"kind": "List", "items": nodes + [pv]}) == []


def test_wrong_case_is_refused_with_the_right_name() -> None:
    with pytest.raises(ConfigError) as info:
        generate(HEALTHY, "/data", "8Gi", "c", "pv", ["KeluDev05"])
    assert "case mismatch" in info.value.details and "keludev05" in info.value.details


def test_bad_size_and_relative_path(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError):
        generate(HEALTHY, "/data", "8GB", "c", "pv")
    with pytest.raises(ConfigError, match="absolute"):
        generate(HEALTHY, "data", "8Gi", "c", "pv")
    assert (
        main(["--nodes-from", str(DATA / "healthy.json"), "--path", "/d", "--size", "8Gi", "--node", "KeluDev05"]) == 1
    )
    assert "case mismatch" in capsys.readouterr().err
