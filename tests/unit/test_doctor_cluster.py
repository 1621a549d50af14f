"""``flatnet doctor cluster`` over stored kubectl dumps (tests/data/doctor)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from flatnet.cli.main import main
from flatnet.doctor.cluster import analyze
from flatnet.doctor.findings import Finding, exit_code
from flatnet.doctor.quantity import parse_quantity
from flatnet.errors import ConfigError, DecodeError

DATA = Path(__file__).resolve().parents[1] / "data" / "doctor"


def dump(name: str) -> Any:
    return json.loads((DATA / f"{name}.json").read_text())


def by_object(findings: list[Finding]) -> dict[str, Finding]:
    return {f.object: f for f in findings}


def test_seed_case_mismatch_is_called_out_with_the_exact_fix() -> None:
    found = by_object(analyze(dump("seed-case-mismatch")))
    pv = found["PersistentVolume/local-pv-redis"]
    assert pv.severity == "error" and pv.code == "pv-hostname-case"
    assert "case mismatch" in pv.what and "'KeluDev05'" in pv.what and "'keludev05'" in pv.what
    assert 'values: ["keludev05"]' in pv.fix
    pod = found["Pod/default/redis-master-0"]
    assert pod.code == "sched-no-pv" and pod.severity == "error"
    # the pod is linked to the claim and the PV that hold the cause
    assert "PersistentVolume/local-pv-redis" in pod.related
    assert "PersistentVolumeClaim/default/redis-data-redis-master-0" in pod.related
    claim = found["PersistentVolumeClaim/default/redis-data-redis-master-0"]
    assert "node affinity" in claim.what


def test_fixing_the_case_clears_every_finding() -> None:
    doc = dump("seed-case-mismatch")
    pv = next(i for i in doc["items"] if i["kind"] == "PersistentVolume")
    pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] = ["keludev05"]
    for item in doc["items"]:
        if item["kind"] == "Pod":
            item["status"]["conditions"] = []
    assert [f for f in analyze(doc) if f.severity != "ok"] == []


def test_pv_naming_an_unknown_node_lists_the_real_ones() -> None:
    doc = dump("seed-case-mismatch")
    pv = next(i for i in doc["items"] if i["kind"] == "PersistentVolume")
    pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] = ["keludev09"]
    f = by_object(analyze(doc))["PersistentVolume/local-pv-redis"]
    assert f.code == "pv-no-node" and "keludev05" in f.what and "case" not in f.what


def test_missing_storage_class() -> None:
    found = by_object(analyze(dump("missing-class")))
    claim = found["PersistentVolumeClaim/default/redis-data-redis-master-0"]
    assert claim.code == "pvc-class-missing" and claim.severity == "error"
    assert "'local-storage'" in claim.what and "local-storage-redis" in claim.fix
    pod = found["Pod/default/redis-master-0"]
    assert pod.code == "sched-unbound-immediate"
    assert "PersistentVolumeClaim/default/redis-data-redis-master-0" in pod.related


def test_size_mismatch_is_named() -> None:
    claim = by_object(analyze(dump("size-mismatch")))["PersistentVolumeClaim/default/redis-data-redis-master-0"]
    assert claim.code == "pvc-never-binds"
    assert "size: PV holds 5Gi, claim asks 8Gi" in claim.what
    assert "capacity >= 8Gi" in claim.fix


def test_access_mode_mismatch_is_named() -> None:
    claim = by_object(analyze(dump("access-mode-mismatch")))["PersistentVolumeClaim/default/redis-data-redis-master-0"]
    assert "access mode: claim asks ReadWriteMany, PV offers ReadWriteOnce" in claim.what
    assert "size" not in claim.what


def test_volume_mode_and_class_mismatches_are_named() -> None:
    doc = dump("size-mismatch")
    pv = next(i for i in doc["items"] if i["kind"] == "PersistentVolume")
    pv["spec"].update(capacity={"storage": "10Gi"}, volumeMode="Block")
    claim = by_object(analyze(doc))["PersistentVolumeClaim/default/redis-data-redis-master-0"]
    assert "volume mode: claim asks Filesystem, PV is Block" in claim.what
    pv["spec"].update(volumeMode="Filesystem", storageClassName="other")
    doc["items"].append(
        {
            "kind": "StorageClass",
            "metadata": {"name": "other"},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
        }
    )
    claim = by_object(analyze(doc))["PersistentVolumeClaim/default/redis-data-redis-master-0"]
    assert "no PV has storageClassName 'local-storage-redis'" in claim.what
    assert "class: PV has storageClassName 'other'" in claim.what


def test_affinity_conflict_message_is_explained() -> None:
    doc = dump("seed-case-mismatch")
    pod = next(i for i in doc["items"] if i["kind"] == "Pod")
    pod["status"]["conditions"][0]["message"] = "0/2 nodes are available: 2 node(s) had volume node affinity conflict."
    f = by_object(analyze(doc))["Pod/default/redis-master-0"]
    assert f.code == "sched-affinity-conflict" and "nodeAffinity" in f.why


def test_immediate_local_class_warns_and_unused_wffc_claim_is_a_note() -> None:
    doc = dump("healthy")
    sc = next(i for i in doc["items"] if i["kind"] == "StorageClass")
    sc["volumeBindingMode"] = "Immediate"
    found = analyze(doc)
    assert [f.code for f in found] == ["class-immediate-local"] and exit_code(found) == 1
    doc = dump("healthy")
    doc["items"] = [i for i in doc["items"] if i["kind"] != "Pod"]
    pvc = next(i for i in doc["items"] if i["kind"] == "PersistentVolumeClaim")
    pvc["status"]["phase"] = "Pending"
    pv = next(i for i in doc["items"] if i["kind"] == "PersistentVolume")
    del pv["spec"]["claimRef"]
    found = analyze(doc)
    assert [(f.severity, f.code) for f in found] == [("ok", "pvc-waiting-consumer")]
    assert exit_code(found) == 0


def test_healthy_cluster_has_no_findings() -> None:
    assert analyze(dump("healthy")) == []


def test_pool_usage_thresholds() -> None:
    found = by_object(analyze(dump("healthy"), json.loads((DATA / "usage.json").read_text())))
    assert found["Pool/flat-v4"].severity == "error"
    assert found["Pool/redis-sticky"].severity == "warn"
    assert "Pool/flat-v6" not in found
    with pytest.raises(DecodeError):
        analyze(dump("healthy"), {"pools": [{"name": "x"}]})


@pytest.mark.parametrize(
    "text,value",
    [
        ("8Gi", 8 * 2**30),
        ("500Mi", 500 * 2**20),
        ("1Ti", 2**40),
        ("10G", 10**10),
        ("1.5Ki", 1536),
        ("100k", 100_000),
        ("1e3", 1000),
        ("2M", 2_000_000),
        (5, 5),
    ],
)
def test_quantities(text: Any, value: int) -> None:
    assert parse_quantity(text) == Decimal(value)


def test_bad_quantity_names_the_forms() -> None:
    with pytest.raises(ConfigError, match="8GB") as info:
        parse_quantity("8GB")
    assert "Gi" in info.value.details


def test_cli_exit_codes_and_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "cluster", "--from", str(DATA / "healthy.json")]) == 0
    assert "no problems found" in capsys.readouterr().out
    assert main(["doctor", "cluster", "--from", str(DATA / "seed-case-mismatch.json"), "--json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["check"] == "cluster" and doc["status"] == "error" and doc["exitCode"] == 2
    assert doc["counts"]["error"] == len(doc["findings"]) == 3
    first = doc["findings"][0]
    assert set(first) == {"severity", "code", "object", "what", "why", "fix", "related"}
    assert isinstance(first["related"], list)
    assert (
        main(["doctor", "cluster", "--from", str(DATA / "healthy.json"), "--usage", str(DATA / "usage.json"), "--json"])
        == 2
    )


def test_human_output_fits_one_screen(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "cluster", "--from", str(DATA / "seed-case-mismatch.json")]) == 2
    out = capsys.readouterr().out
    words = " ".join(out.split())  # rich wraps at the terminal width
    assert "case mismatch" in words and 'values: ["keludev05"]' in words
    assert len(out.splitlines()) <= 50


def test_cli_bad_input_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    assert main(["doctor", "cluster", "--from", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "--from" in err and "Traceback" not in err
    bad.write_text('{"kind": "Pod"}')
    assert main(["doctor", "cluster", "--from", str(bad)]) == 1
    assert "kubectl get nodes,pv,pvc,storageclasses,pods -A -o json" in capsys.readouterr().err


def test_kubectl_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["doctor", "cluster"]) == 1
    err = capsys.readouterr().err
    assert "kubectl not found" in err and "--from" in err


def test_pool_usage_from_a_real_sqlite_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import ipaddress

    from flatnet.ipam import Ipam, Owner, PoolSpec, open_store

    db = tmp_path / "ipam.db"
    store = open_store({"type": "sqlite", "path": str(db)})
    pool = PoolSpec("tiny", ipaddress.ip_network("198.18.200.0/29"))  # 6 usable addresses
    ipam = Ipam(store)
    for n in range(5):
        ipam.allocate([pool], Owner(f"c{n}", "eth0", "flat"))
    store.close()
    rc = main(["doctor", "cluster", "--from", str(DATA / "healthy.json"), "--ipam-store", f"sqlite:{db}", "--json"])
    doc = json.loads(capsys.readouterr().out)
    finding = next(f for f in doc["findings"] if f["object"] == "Pool/tiny")
    assert rc == 1 and finding["severity"] == "warn"
    assert finding["what"].startswith("5 of 6 addresses")
    assert main(["doctor", "cluster", "--from", str(DATA / "healthy.json"), "--ipam-store", "bogus"]) == 1
    assert "--ipam-store" in capsys.readouterr().err


def test_quarantined_addresses_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import ipaddress

    from flatnet.ipam import Ipam, Owner, PoolSpec, open_store

    db = tmp_path / "ipam.db"
    store = open_store({"type": "sqlite", "path": str(db)})
    pool = PoolSpec("vlan100", ipaddress.ip_network("198.18.201.0/24"))
    ipam = Ipam(store)
    lease = ipam.allocate([pool], Owner("c1", "eth0", "flat"))[0]
    assert ipam.quarantine(lease, "answered on the VLAN", "02:00:00:00:00:99")
    store.close()
    main(["doctor", "cluster", "--from", str(DATA / "healthy.json"), "--ipam-store", f"sqlite:{db}", "--json"])
    doc = json.loads(capsys.readouterr().out)
    finding = next(f for f in doc["findings"] if f["code"] == "address-conflict")
    assert finding["object"] == "Pool/vlan100" and finding["severity"] == "warn"
    assert "198.18.201.1" in finding["what"] and "02:00:00:00:00:99" in finding["what"]
