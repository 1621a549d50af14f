"""In-process store: a dict guarded by a lock. For unit tests and single-process tools."""

from __future__ import annotations

import bisect
import threading
from typing import Any, Iterable, Sequence

from flatnet.ipam.api import Compare, Entry
from flatnet.ipam.store._common import check_txn, compare_holds, prefix_upper


class MemoryStore:
    """Same semantics as the etcd store (versions restart at 1 after delete), no I/O.

    A sorted key list is kept beside the dict so ``range`` is a bisect, not a sort:
    the allocator's "no scan" property should not be hidden by an O(n) store.
    """

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, int]] = {}
        self._keys: list[str] = []
        self._lock = threading.Lock()

    def get(self, key: str) -> Entry | None:
        with self._lock:
            cur = self._data.get(key)
        return Entry(key, cur[0], cur[1]) if cur else None

    def range(self, prefix: str, limit: int | None = None) -> list[Entry]:
        if limit is not None and limit <= 0:
            raise ValueError(f"range: limit must be positive or None, got {limit}")
        upper = prefix_upper(prefix)
        with self._lock:
            lo = bisect.bisect_left(self._keys, prefix)
            hi = len(self._keys) if upper is None else bisect.bisect_left(self._keys, upper)
            if limit is not None:
                hi = min(hi, lo + limit)
            return [Entry(k, *self._data[k]) for k in self._keys[lo:hi]]

    def txn(
        self,
        compares: Sequence[Compare],
        puts: dict[str, str] | None = None,
        deletes: Iterable[str] = (),
    ) -> bool:
        compares, puts, dels = check_txn(compares, puts, deletes)
        with self._lock:
            if not all(compare_holds(c, self._data.get(c.key)) for c in compares):
                return False
            for key, value in puts.items():
                cur = self._data.get(key)
                if cur is None:
                    bisect.insort(self._keys, key)
                self._data[key] = (value, cur[1] + 1 if cur else 1)
            for key in dels:
                if self._data.pop(key, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, key)]
            return True

    def close(self) -> None:
        """Nothing to release; present to satisfy the Store protocol."""


# ---- this store in the store registry (flatnet/ipam/store/__init__.py) ----
KEYS: tuple[str, ...] = ()
URL_EXAMPLE = "memory"


def from_config(d: dict[str, Any], where: str) -> dict[str, Any]:
    return {}


def from_url(rest: str) -> dict[str, Any] | None:
    """Just ``memory``: nothing follows the name."""
    return {} if rest == "" else None


def build(cfg: dict[str, Any]) -> MemoryStore:
    return MemoryStore()


def health(cfg: dict[str, Any], timeout: float) -> tuple[str, str]:
    return "ok", "memory store (tests only)"
