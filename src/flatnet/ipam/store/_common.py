"""Helpers shared by every store: argument checks and prefix arithmetic.

Kept in one place so the three stores reject the same malformed transactions the
same way (the contract suite checks that), instead of each failing differently.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from flatnet.ipam.api import ANY_VERSION, Compare

_MAX_CHAR = chr(0x10FFFF)


def check_txn(
    compares: Sequence[Compare], puts: dict[str, str] | None, deletes: Iterable[str]
) -> tuple[list[Compare], dict[str, str], list[str]]:
    """Normalise txn arguments; a key both put and deleted is a caller bug (etcd refuses it too)."""
    puts = dict(puts or {})
    dels = list(dict.fromkeys(deletes))
    both = set(puts) & set(dels)
    if both:
        raise ValueError(f"txn: key(s) {sorted(both)} both put and deleted; choose one")
    for key in list(puts) + dels + [c.key for c in compares]:
        if not isinstance(key, str) or not key:
            raise ValueError(f"txn: keys must be non-empty strings, got {key!r}")
    for c in compares:
        if c.version == ANY_VERSION and c.value is None:
            raise ValueError(f"txn: compare on {c.key!r} with ANY_VERSION needs a value")
    for value in puts.values():
        if not isinstance(value, str):
            raise ValueError(f"txn: values must be strings, got {type(value).__name__}")
    return list(compares), puts, dels


def prefix_upper(prefix: str) -> str | None:
    """Smallest string greater than every string starting with ``prefix`` (None: unbounded).

    Code-point order equals UTF-8 byte order, so the same bound works for Python
    string comparison, SQLite's BINARY collation and etcd's byte keys.
    """
    p = prefix.rstrip(_MAX_CHAR)
    if not p:
        return None
    return p[:-1] + chr(ord(p[-1]) + 1)


def compare_holds(c: Compare, current: tuple[str, int] | None) -> bool:
    """Evaluate one Compare against a (value, version) pair or None when absent."""
    version = current[1] if current else 0
    if c.version == ANY_VERSION:
        return current is not None and c.value is not None and current[0] == c.value
    if version != c.version:
        return False
    if c.value is not None:
        return current is not None and current[0] == c.value
    return True
