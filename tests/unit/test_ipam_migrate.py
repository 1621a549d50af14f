"""Stores written before the segment index: migrated once, nothing lost or doubled; an
address already held twice is reported (``ipam ls``, ``doctor cluster``), never rewritten.

The old-format store is what the allocator before the index wrote: pools that share a subnet
each kept their own keys, so each pool's allocator runs here against its own empty store and
the keys are merged, without ``seg/`` keys, and with reservations in their old shape (no
"vlan"). tests/integration/test_etcd_segment.py runs the store-level tests on etcd.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from flatnet.errors import AddressUnavailable
from flatnet.ipam import Ipam, Owner, PoolSpec, segments
from flatnet.ipam import records as r
from flatnet.ipam.api import Store
from flatnet.ipam.store import MemoryStore, open_store

ip = ipaddress.ip_address
NET = ipaddress.ip_network("198.18.86.0/24")


def pool(name: str, sticky: bool = False) -> PoolSpec:
    return PoolSpec(name, NET, range_start=ip("198.18.86.50"), range_end=ip("198.18.86.60"), vlan=86, sticky=sticky)


def old_format_store(store: Store) -> None:
    """neta: .50 .51 and a sticky reservation .52; netb: .50 (a duplicate); netc: .50 .51
    (duplicates) released .50 (FIFO); untagged pool 'solo' .50 (another segment)."""
    plans = {
        "neta": (pool("neta", sticky=True), ["a0", "a1", "a2"], ["a2"]),
        "netb": (pool("netb"), ["b0"], []),
        "netc": (pool("netc"), ["c0", "c1"], ["c0"]),
        "solo": (PoolSpec("solo", NET, range_start=ip("198.18.86.50"), range_end=ip("198.18.86.60")), ["s0"], []),
    }
    for name, (spec, cids, released) in plans.items():
        alone = MemoryStore()
        ipam = Ipam(alone)
        for cid in cids:
            ipam.allocate([spec], Owner(cid, "eth0", name, "ns", f"pod-{cid}", node="n1"))
        for cid in released:
            ipam.release(cid, "eth0")
        puts = {}
        for e in alone.range(""):
            if e.key.startswith("seg/"):
                continue
            d = json.loads(e.value) if e.value.startswith("{") else None
            if d is not None and "reserved_for" in d:
                d.pop("vlan")  # reservations had no vlan before
                puts[e.key] = r.dumps(d)
            else:
                puts[e.key] = e.value
        assert store.txn([], puts)


def snapshot(store: Store) -> dict[str, str]:
    return {e.key: e.value for e in store.range("") if not e.key.startswith(("seg/", "meta/"))}


def test_migration_indexes_every_held_address_and_reports_duplicates(store: Store) -> None:
    old_format_store(store)
    before = snapshot(store)
    report = segments.migrate(store)
    print("\nmigration:", json.dumps({"written": report.written, "duplicates": report.duplicates}, indent=1))
    assert snapshot(store) == before  # nothing rewritten
    seg = {e.key: e.value for e in store.range("seg/")}
    print("segment index:", json.dumps(seg, indent=1))
    # the first pool (in key order) keeps a duplicated address's key; the reservation counts
    assert seg == {
        "seg/86/198.18.86.50": "neta",
        "seg/86/198.18.86.51": "neta",
        "seg/86/198.18.86.52": "neta",
        "seg/untagged/198.18.86.50": "solo",
    }
    assert report.written == 4
    assert [(d["address"], d["vlan"], d["pools"]) for d in report.duplicates] == [
        ("198.18.86.50", 86, ["neta", "netb"]),
        ("198.18.86.51", 86, ["neta", "netc"]),
    ]
    # once: a second run reads one key
    again = segments.migrate(store)
    assert again.done_before and again.written == 0


def test_after_migration_no_new_duplicate_and_releases_keep_the_other_holder(store: Store) -> None:
    old_format_store(store)
    segments.migrate(store)
    ipam = Ipam(store)
    # netc's cursor is at .52 (reserved by neta): steps over it, gets .53
    got = ipam.allocate([pool("netc")], Owner("c9", "eth0", "netc"))[0]
    assert str(got.address.ip) == "198.18.86.53"
    with pytest.raises(AddressUnavailable, match="pool 'neta'"):
        ipam.allocate([pool("netb")], Owner("b9", "eth0", "netb"), [ip("198.18.86.51")])
    # netb's duplicate goes: neta still holds .50, so its key stays
    ipam.release("b0", "eth0")
    assert store.get("seg/86/198.18.86.50").value == "neta"
    with pytest.raises(AddressUnavailable):
        ipam.allocate([pool("netb")], Owner("b8", "eth0", "netb"), [ip("198.18.86.50")])
    # neta's goes too (a sticky pool: reserved for its pod until forgotten): now the
    # address is free for anyone of the segment
    ipam.release("a0", "eth0")
    assert store.get("seg/86/198.18.86.50").value == "neta"
    assert ipam.forget_sticky("neta", "ns/pod-a0") == ip("198.18.86.50")
    assert store.get("seg/86/198.18.86.50") is None
    assert str(ipam.allocate([pool("netb")], Owner("b8", "eth0", "netb"), [ip("198.18.86.50")])[0].address.ip) == (
        "198.18.86.50"
    )
    # the old reservation (no "vlan" in its record) ends with its key: found from the pool
    assert ipam.forget_sticky("neta", "ns/pod-a2") == ip("198.18.86.52")
    assert store.get("seg/86/198.18.86.52") is None
    assert segments.duplicates(store) == [
        {
            "vlan": 86,
            "address": "198.18.86.51",
            "pools": ["neta", "netc"],
            "holders": [
                "pool neta: it is held by container a1 interface eth0 (pod ns/pod-a1) on node n1",
                "pool netc: it is held by container c1 interface eth0 (pod ns/pod-c1) on node n1",
            ],
        }
    ]


def test_agent_migrates_on_first_open_and_ls_and_doctor_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flatnet.agent.service import Service
    from flatnet.cli.main import main

    db = tmp_path / "ipam.db"
    store = open_store({"type": "sqlite", "path": str(db)})
    old_format_store(store)
    store.close()
    svc = Service(default_store={"type": "sqlite", "path": str(db)})
    try:
        svc.open_store_config({"type": "sqlite", "path": str(db)})
    finally:
        svc.close()
    store = open_store({"type": "sqlite", "path": str(db)})
    assert store.get(r.SEG_MIGRATED) is not None and len(store.range("seg/")) == 4
    store.close()
    assert main(["ipam", "ls", "--store", f"sqlite:{db}", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(d["address"], d["pools"]) for d in doc["duplicates"]] == [
        ("198.18.86.50", ["neta", "netb"]),
        ("198.18.86.51", ["neta", "netc"]),
    ]
    assert main(["ipam", "ls", "--store", f"sqlite:{db}"]) == 0
    text = capsys.readouterr().out
    with capsys.disabled():
        print(text)
    assert "DUPLICATE: 198.18.86.50 on VLAN 86 is held by 2 pools" in text
    healthy = str(Path(__file__).resolve().parents[1] / "data" / "doctor" / "healthy.json")
    rc = main(["doctor", "cluster", "--from", healthy, "--ipam-store", f"sqlite:{db}"])
    text = capsys.readouterr().out
    with capsys.disabled():
        print(text)
    assert rc == 2
    main(["doctor", "cluster", "--from", healthy, "--ipam-store", f"sqlite:{db}", "--json"])
    found = {(f["code"], f["what"]) for f in json.loads(capsys.readouterr().out)["findings"]}
    held_twice = {what.split(":")[0] for code, what in found if code == "address-held-twice"}
    assert held_twice == {
        "198.18.86.50 on VLAN 86 is held by 2 pools at once",
        "198.18.86.51 on VLAN 86 is held by 2 pools at once",
    }
    shared = sorted(what.split(";")[0] for code, what in found if code == "pools-share-segment")
    # the untagged pool 'solo' is another segment: no overlap listed with it
    assert shared == [
        f"pools {a} and {b} share 11 address(es) 198.18.86.50-198.18.86.60 on VLAN 86"
        for a, b in (("neta", "netb"), ("neta", "netc"), ("netb", "netc"))
    ]
