"""The Store contract: every store (memory, sqlite here; etcd in tests/integration) passes it.

The test functions take a ``store`` fixture and nothing store-specific, so the etcd
module imports them unchanged and supplies its own ``store``.
"""

from __future__ import annotations

import threading

import pytest

from flatnet.ipam.api import Compare, Store, txn_else_read


def test_protocol_is_implemented(store: Store) -> None:
    assert isinstance(store, Store)


def test_get_absent_is_none(store: Store) -> None:
    assert store.get("nope") is None
    assert store.range("nope/") == []


def test_put_creates_at_version_one_and_each_put_bumps(store: Store) -> None:
    assert store.txn([], {"k": "v1"})
    e = store.get("k")
    assert (e.key, e.value, e.version) == ("k", "v1", 1)
    assert store.txn([], {"k": "v2"})
    assert store.txn([], {"k": "v3"})
    e = store.get("k")
    assert (e.value, e.version) == ("v3", 3)


def test_delete_then_recreate_restarts_version(store: Store) -> None:
    store.txn([], {"k": "a"})
    store.txn([], {"k": "b"})
    assert store.txn([], {}, ["k"])
    assert store.get("k") is None
    store.txn([], {"k": "c"})
    assert store.get("k").version == 1


def test_empty_and_unicode_values_round_trip(store: Store) -> None:
    store.txn([], {"empty": "", "uni": "Grüße ✓ 地址"})
    assert store.get("empty").value == ""
    assert store.get("uni").value == "Grüße ✓ 地址"


def test_compare_absent_is_version_zero(store: Store) -> None:
    assert store.txn([Compare("k", 0)], {"k": "first"})
    assert not store.txn([Compare("k", 0)], {"k": "second"})
    assert store.get("k").value == "first"


def test_failed_compare_applies_nothing(store: Store) -> None:
    store.txn([], {"a": "1", "gone": "x"})
    ok = store.txn([Compare("a", 1), Compare("b", 5)], {"a": "2", "c": "3"}, ["gone"])
    assert ok is False
    assert store.get("a").value == "1" and store.get("a").version == 1
    assert store.get("c") is None
    assert store.get("gone") is not None


def test_successful_txn_applies_all(store: Store) -> None:
    store.txn([], {"a": "1", "gone": "x"})
    assert store.txn([Compare("a", 1), Compare("new", 0)], {"a": "2", "new": "n"}, ["gone", "never-was"])
    assert store.get("a").value == "2"
    assert store.get("new").value == "n"
    assert store.get("gone") is None


def test_compare_on_value(store: Store) -> None:
    store.txn([], {"k": "mine"})
    assert not store.txn([Compare("k", 1, "theirs")], {"k": "x"})
    assert not store.txn([Compare("k", 2, "mine")], {"k": "x"})
    assert store.txn([Compare("k", 1, "mine")], {}, ["k"])
    assert store.get("k") is None
    # value compare on an absent key never holds
    assert not store.txn([Compare("k", 0, "mine")], {"k": "y"})


def test_stale_version_loses(store: Store) -> None:
    store.txn([], {"k": "a"})
    seen = store.get("k").version
    assert store.txn([Compare("k", seen)], {"k": "b"})
    assert not store.txn([Compare("k", seen)], {"k": "c"})
    assert store.get("k").value == "b"


def test_range_respects_prefix_boundaries_and_order(store: Store) -> None:
    keys = ["a", "a/", "a/c", "a/b", "a/b/deep", "a0", "a.", "ab", "b/x", "a/\u00ff", "a/\U0001f600"]
    store.txn([], {k: k.upper() for k in keys})
    got = [e.key for e in store.range("a/")]
    assert got == sorted(["a/", "a/b", "a/b/deep", "a/c", "a/\u00ff", "a/\U0001f600"])
    assert [e.key for e in store.range("a/b")] == ["a/b", "a/b/deep"]
    assert [e.value for e in store.range("b/")] == ["B/X"]
    assert [e.key for e in store.range("")] == sorted(keys)


def test_range_limit_gives_the_smallest_keys(store: Store) -> None:
    store.txn([], {f"q/{i:03d}": str(i) for i in (5, 1, 9, 3)})
    assert [e.value for e in store.range("q/", limit=1)] == ["1"]
    assert [e.value for e in store.range("q/", limit=3)] == ["1", "3", "5"]
    assert len(store.range("q/", limit=100)) == 4
    with pytest.raises(ValueError):
        store.range("q/", limit=0)


def test_range_entries_carry_versions(store: Store) -> None:
    store.txn([], {"r/a": "1", "r/b": "1"})
    store.txn([], {"r/b": "2"})
    assert [(e.key, e.version) for e in store.range("r/")] == [("r/a", 1), ("r/b", 2)]


def test_put_and_delete_same_key_is_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="both put and deleted"):
        store.txn([], {"k": "v"}, ["k"])


def test_cas_race_has_exactly_one_winner(store: Store) -> None:
    store.txn([], {"counter": "0"})
    wins: list[int] = []
    barrier = threading.Barrier(8)

    def racer(i: int) -> None:
        barrier.wait(timeout=10)
        if store.txn([Compare("counter", 1)], {"counter": str(i)}):
            wins.append(i)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert len(wins) == 1
    assert store.get("counter").value == str(wins[0])


def test_compare_any_version_checks_the_value_alone(store: Store) -> None:
    from flatnet.ipam.api import ANY_VERSION

    store.txn([], {"k": "mine"})
    store.txn([], {"k": "mine"})  # version 2 now: ANY_VERSION does not care
    assert not store.txn([Compare("k", ANY_VERSION, "theirs")], {}, ["k"])
    assert store.txn([Compare("k", ANY_VERSION, "mine")], {}, ["k"])
    assert store.get("k") is None
    # an absent key never matches, whatever the value
    assert not store.txn([Compare("k", ANY_VERSION, "mine")], {"k": "y"})
    assert not store.txn([Compare("k", ANY_VERSION, "")], {"k": "y"})
    assert store.get("k") is None
    with pytest.raises(ValueError, match="needs a value"):
        store.txn([Compare("k", ANY_VERSION)], {"k": "z"})


def test_txn_else_read_answers_the_reads_only_when_it_fails(store: Store) -> None:
    """``txn_else_read``: etcd reads in the failed txn's own request, the others after it;
    either way a lost compare comes back with the keys as they are now (absent: None)."""
    store.txn([], {"lane": "1", "chunk": "a"})
    ok, seen = txn_else_read(store, [Compare("lane", 1)], {"lane": "2", "chunk": "b"}, ["lane", "chunk", "gone"])
    assert ok and seen == {}
    assert (store.get("lane").value, store.get("chunk").value) == ("2", "b")
    ok, seen = txn_else_read(store, [Compare("lane", 1)], {"lane": "3"}, ["lane", "chunk", "gone"])
    assert not ok
    assert seen == {"lane": store.get("lane"), "chunk": store.get("chunk"), "gone": None}
    assert (seen["lane"].value, seen["lane"].version, seen["chunk"].value) == ("2", 2, "b")
