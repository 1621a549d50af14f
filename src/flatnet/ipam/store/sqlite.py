"""Embedded store: one SQLite file shared by every process on a node.

Several CNI invocations and the agent may allocate at once, each in its own process,
so this relies on SQLite's file locking rather than on in-process locks: WAL mode
(readers never block the writer), ``BEGIN IMMEDIATE`` (take the write lock before
reading the compares, so check-and-apply is atomic across processes) and a busy
timeout (wait for a concurrent writer instead of failing at once).

The wait is ours, not SQLite's busy handler: that one sleeps 1, 2, 5, 10, 15, 20, 25 ...
100 ms between tries, so with 8 processes writing, a waiter often slept on long after the
lock was free. 10k allocations by 8 processes on 2 cores: p99 47-58 ms with SQLite's
handler, 20-22 ms with short random sleeps of at most 1.6 ms (and a few % less wall time).
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from flatnet import defaults
from flatnet.errors import IO_FAILURE, ConfigError, FlatnetError, StoreUnavailable
from flatnet.ipam.api import Compare, Entry
from flatnet.ipam.store import _conf
from flatnet.ipam.store._common import check_txn, compare_holds, prefix_upper

DEFAULT_PATH = defaults.SQLITE_PATH

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv ( key TEXT PRIMARY KEY, value TEXT NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID"
)

T = TypeVar("T")

#: the first wait between tries of a busy database (s); it doubles up to 8 times this
BUSY_STEP = 0.0002

#: one writer at a time per database file in this process. Threads of one process (the
#: agent serves each request on its own thread) queue here, asleep in C, instead of meeting
#: at SQLite's file lock, where each would poll with short sleeps (``_patiently``) and a
#: burst of 100 ADDs became 100 threads waking every millisecond for the GIL (burst of 100
#: ADD through the agent: 8.2 s with polling threads, see the commit). Other processes are
#: still met at the file lock.
_writers: dict[str, threading.Lock] = {}
_writers_guard = threading.Lock()


def _writer_lock(path: Path) -> threading.Lock:
    key = os.path.realpath(path) if str(path) != ":memory:" else f":memory:{id(path)}"
    with _writers_guard:
        return _writers.setdefault(key, threading.Lock())


_UPSERT = (
    "INSERT INTO kv(key, value, version) VALUES (?, ?, 1) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = kv.version + 1"
)


class SqliteStore:
    """Store over a SQLite file; opened lazily, with a small pool of connections.

    A connection is taken for one operation and given back, so a long-running agent that
    serves each request on a new thread keeps as many connections as requests ever ran
    *at once*, not one per thread it ever started (that leaked a file descriptor each).
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, timeout: float = defaults.SQLITE_TIMEOUT) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._idle: list[sqlite3.Connection] = []
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._pid = os.getpid()
        self._writer = _writer_lock(self.path)

    # -- connection handling -------------------------------------------------
    @contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        """A connection for one operation (from the pool, or newly opened), returned after."""
        with self._lock:
            if self._pid != os.getpid():
                # forked child: inherited connections belong to the parent, never reuse them
                self._idle, self._conns, self._pid = [], [], os.getpid()
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._open()
            with self._lock:
                self._conns.append(conn)
        try:
            yield conn
        finally:
            with self._lock:
                if conn in self._conns:  # not closed meanwhile
                    self._idle.append(conn)

    def _open(self) -> sqlite3.Connection:
        # one opener at a time in this process: switching a brand-new file to WAL from
        # several threads at once fails with "database is locked" without waiting.
        # Other processes writing hard can make the setup statements fail "locked" without
        # the busy handler being called, so those are retried here until the timeout.
        deadline = time.monotonic() + self.timeout
        with self._open_lock:
            while True:
                try:
                    return self._open_once()
                except sqlite3.OperationalError as exc:
                    text = str(exc)
                    if ("locked" in text or "busy" in text) and time.monotonic() < deadline:
                        time.sleep(random.uniform(0.001, 0.01))
                        continue
                    raise self._translate(exc) from exc
                except (sqlite3.Error, OSError) as exc:
                    raise self._translate(exc) from exc

    def _open_once(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")  # needs the file to itself: only once
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_SCHEMA)
            conn.execute("PRAGMA busy_timeout = 0")  # from here on: _patiently
        except BaseException:
            conn.close()
            raise
        return conn

    def _patiently(self, fn: Callable[[], T]) -> T:
        """``fn()``, tried again after a short random sleep while the database is busy,
        until ``timeout``; then the busy error goes up (``_translate``: try again later)."""
        deadline = 0.0
        tries = 0
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                text = str(exc)
                if "locked" not in text and "busy" not in text:
                    raise
                now = time.monotonic()
                if not deadline:
                    deadline = now + self.timeout
                elif now >= deadline:
                    raise
            time.sleep(random.uniform(0, BUSY_STEP * (1 << min(tries, 3))))
            tries += 1

    def _translate(self, exc: Exception) -> FlatnetError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return StoreUnavailable(
                f"IPAM database {self.path} stayed locked for more than {self.timeout:g}s "
                "(another process is writing); retry later",
                details=text,
            )
        return FlatnetError(
            f"IPAM database {self.path} cannot be used: {text}; check that the file is a "
            "flatnet SQLite database and that its directory is writable by root",
            details=type(exc).__name__,
            code=IO_FAILURE,
        )

    # -- Store protocol ------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        try:
            with self._use() as conn:
                row = self._patiently(
                    lambda: conn.execute("SELECT value, version FROM kv WHERE key = ?", (key,)).fetchone()
                )
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        return Entry(key, row[0], row[1]) if row else None

    def range(self, prefix: str, limit: int | None = None) -> list[Entry]:
        if limit is not None and limit <= 0:
            raise ValueError(f"range: limit must be positive or None, got {limit}")
        upper = prefix_upper(prefix)
        sql = "SELECT key, value, version FROM kv WHERE key >= ?"
        args: list[object] = [prefix]
        if upper is not None:
            sql += " AND key < ?"
            args.append(upper)
        sql += " ORDER BY key"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        try:
            with self._use() as conn:
                rows = self._patiently(lambda: conn.execute(sql, args).fetchall())
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        return [Entry(k, v, ver) for k, v, ver in rows]

    def txn(
        self,
        compares: Sequence[Compare],
        puts: dict[str, str] | None = None,
        deletes: Iterable[str] = (),
    ) -> bool:
        compares, puts, dels = check_txn(compares, puts, deletes)
        if not self._writer.acquire(timeout=self.timeout):
            raise StoreUnavailable(
                f"IPAM database {self.path} stayed locked for more than {self.timeout:g}s "
                "(another request of this process is writing); retry later"
            )
        try:
            with self._use() as conn:
                return self._txn(conn, compares, puts, dels)
        finally:
            self._writer.release()

    def _txn(
        self, conn: sqlite3.Connection, compares: Sequence[Compare], puts: dict[str, str], dels: Sequence[str]
    ) -> bool:
        try:
            self._patiently(lambda: conn.execute("BEGIN IMMEDIATE"))
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        try:
            if compares:  # one statement for all of them (an allocation compares three keys)
                keys = list({c.key: None for c in compares})
                sql = f"SELECT key, value, version FROM kv WHERE key IN ({','.join('?' * len(keys))})"
                rows = {k: (v, ver) for k, v, ver in conn.execute(sql, keys)}
                if not all(compare_holds(c, rows.get(c.key)) for c in compares):
                    conn.execute("ROLLBACK")
                    return False
            if puts:
                conn.executemany(_UPSERT, list(puts.items()))
            if dels:
                conn.executemany("DELETE FROM kv WHERE key = ?", [(k,) for k in dels])
            conn.execute("COMMIT")
            return True
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise self._translate(exc) from exc

    def close(self) -> None:
        """Close every connection this object opened (in this process)."""
        with self._lock:
            conns, self._conns, self._idle = self._conns, [], []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass


# ---- this store in the store registry (flatnet/ipam/store/__init__.py) ----
KEYS = ("path",)
URL_EXAMPLE = f"sqlite:{DEFAULT_PATH}"


def from_config(d: dict[str, Any], where: str) -> dict[str, Any]:
    """The checked settings of an ``ipam.store`` section of type sqlite."""
    path = _conf.text(d, "path", where, example=DEFAULT_PATH, default=DEFAULT_PATH) or DEFAULT_PATH
    if not path.startswith("/") and path != ":memory:":
        raise ConfigError(f"{where}.path {path!r} must be an absolute path, e.g. {DEFAULT_PATH!r}")
    return {"path": path}


def from_url(rest: str) -> dict[str, Any] | None:
    """``sqlite:<path>`` (relative paths are made absolute); None when malformed."""
    return {"path": os.path.abspath(rest)} if rest else None


def build(cfg: dict[str, Any]) -> SqliteStore:
    return SqliteStore(cfg["path"], timeout=cfg.get("timeout", defaults.SQLITE_TIMEOUT))


def health(cfg: dict[str, Any], timeout: float) -> tuple[str, str]:
    """Open the file read-only and read its schema: ok | absent | broken, and what was seen."""
    path = str(cfg.get("path") or DEFAULT_PATH)
    if not os.path.exists(path):
        return "absent", f"{path} does not exist yet"
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
        try:
            con.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        return "broken", f"{path}: {exc}"
    return "ok", path
