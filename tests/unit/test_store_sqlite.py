"""SQLite store specifics: many processes on one file, error mapping, open_store."""

from __future__ import annotations

import ipaddress
import multiprocessing
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from flatnet.errors import ConfigError, FlatnetError, StoreUnavailable
from flatnet.ipam import Ipam, Owner, PoolSpec, open_store
from flatnet.ipam.api import Compare, Entry
from flatnet.ipam.store import EtcdStore, MemoryStore, SqliteStore

POOL = PoolSpec("conc", ipaddress.ip_network("198.18.8.0/22"), gateway=ipaddress.ip_address("198.18.8.1"))


def _worker(path: str, worker: int, count: int) -> list[str]:
    """One 'CNI invocation process' allocating ``count`` addresses on the shared file."""
    store = SqliteStore(path)
    ipam = Ipam(store)
    out = [str(ipam.allocate([POOL], Owner(f"w{worker}-{i}", "eth0", "n"))[0].address.ip) for i in range(count)]
    store.close()
    return out


def test_four_processes_allocate_400_distinct_addresses(tmp_path: Path) -> None:
    db = str(tmp_path / "ipam.db")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap_async(_worker, [(db, w, 100) for w in range(4)]).get(timeout=120)
    flat = [a for part in results for a in part]
    assert len(flat) == 400 and len(set(flat)) == 400
    store = SqliteStore(db)
    try:
        leases = Ipam(store).leases("conc")
        assert len(leases) == 400
        assert {str(lease.address.ip) for lease in leases} == set(flat)
    finally:
        store.close()


def test_database_locked_too_long_is_try_again_later(tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    store = SqliteStore(db, timeout=0.2)
    store.txn([], {"k": "v"})
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable) as info:
            store.txn([], {"k": "w"})
        assert info.value.code == 11 and str(db) in info.value.msg
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.txn([], {"k": "w"})  # usable again once the lock is gone
    store.close()


def test_a_writer_waits_for_a_lock_held_briefly(tmp_path: Path) -> None:
    """The store's own wait (SQLite's busy handler is off): a txn that meets another
    process's write lock waits for it, and commits once it is released."""
    db = tmp_path / "ipam.db"
    store = SqliteStore(db, timeout=5.0)
    store.txn([], {"k": "v"})
    blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    blocker.execute("UPDATE kv SET value = 'b', version = version + 1 WHERE key = 'k'")
    release = threading.Timer(0.3, lambda: blocker.execute("COMMIT"))
    release.start()
    try:
        assert store.txn([Compare("k", 2, "b")], {"k": "w"})  # saw the blocker's commit
        assert store.get("k") == Entry("k", "w", 3)
    finally:
        release.join()
        blocker.close()
        store.close()


def test_threads_of_one_process_queue_for_the_write_lock_instead_of_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent serves each request on a thread: its writers wait on an in-process lock
    (asleep in C), never meet at SQLite's file lock and never poll for it. (Polling 100
    threads made a burst of 100 ADDs 5x slower.) Two store objects on one file share it."""
    import flatnet.ipam.store.sqlite as mod

    polls: list[float] = []
    real_sleep = mod.time.sleep
    monkeypatch.setattr(mod.time, "sleep", lambda s: (polls.append(s), real_sleep(s)))
    db = tmp_path / "ipam.db"
    stores = [SqliteStore(db), SqliteStore(db)]
    stores[0].txn([], {"n": "0"})
    errors: list[BaseException] = []

    def bump(store: SqliteStore) -> None:
        try:
            for _ in range(20):
                while True:
                    cur = store.get("n")
                    assert cur is not None
                    if store.txn([Compare("n", cur.version, cur.value)], {"n": str(int(cur.value) + 1)}):
                        break
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(stores[i % 2],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        got = stores[1].get("n")
        assert got is not None and got.value == str(16 * 20)  # no lost update
        assert polls == []  # nobody met the file lock
    finally:
        for store in stores:
            store.close()


def test_unreadable_file_is_io_error_naming_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "junk.db"
    bad.write_bytes(b"this is not a database" * 100)
    store = SqliteStore(bad)
    with pytest.raises(FlatnetError) as info:
        store.get("k")
    assert info.value.code == 5 and str(bad) in info.value.msg


def test_open_store_sqlite_creates_private_parent_dir(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "ipam.db"
    store = open_store({"type": "sqlite", "path": str(path)})
    assert isinstance(store, SqliteStore)
    assert not path.exists()  # opened lazily
    store.txn([], {"a": "b"})
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    store.close()


def test_open_store_types_and_errors() -> None:
    assert isinstance(open_store({"type": "memory"}), MemoryStore)
    etcd = open_store({"type": "etcd", "endpoints": ["http://127.0.0.1:2379"], "prefix": "/x/", "timeout": 1})
    assert isinstance(etcd, EtcdStore) and etcd.prefix == "/x/" and etcd.timeout == 1.0
    with pytest.raises(ConfigError, match="type 'redis' is not supported; use one of: sqlite, etcd, memory"):
        open_store({"type": "redis"})
    with pytest.raises(ConfigError, match="endpoints"):
        open_store({"type": "etcd", "endpoints": ["127.0.0.1:2379"]})
    with pytest.raises(ConfigError, match="timeout"):
        open_store({"type": "sqlite", "path": "/tmp/x.db", "timeout": -1})


def test_connections_are_pooled_not_one_per_thread(tmp_path) -> None:
    """An agent serves every request on a new thread: connections must not pile up."""
    import threading

    from flatnet.ipam.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "ipam.db")
    try:
        for i in range(40):
            t = threading.Thread(target=lambda i=i: store.txn([], {f"k{i}": "v"}))
            t.start()
            t.join()
        assert len(store.range("k")) == 40
        assert len(store._conns) == 1, "sequential requests on 40 threads reuse one connection"
    finally:
        store.close()
    assert store._conns == [] and store._idle == []


def test_many_threads_open_a_brand_new_database_at_once(tmp_path) -> None:
    """Switching a new file to WAL from several threads at once must not fail 'locked'."""
    import threading

    from flatnet.ipam.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "new.db")
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        try:
            store.txn([], {f"t{i}": "x"})
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert errors == []
