"""The config fields a parser reads, recorded while it reads them: docs/CONFIG.md's source.

Every field reader (``flatnet.cni._fields``, the store's ``_conf``) and every parser that
reads a field by hand calls ``note`` with the field's dotted path, its type, default and
range; every strict section's key check calls ``note_keys``. Outside ``recording()`` this
costs one global lookup per field. ``flatnet.cni.reference`` runs the real parser over a
config per mode inside ``recording()`` and writes the reference from what it saw, so the
reference is the parser's own definitions, not a list kept beside them.

Standard library only: imported by the CNI layer and by the stores below it.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator


@dataclass(frozen=True)
class Field:
    """One field as a parser read it. ``where``: dotted path, list indices as ``[]``."""

    where: str
    type: str
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    required: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Keys:
    """A strict section's accepted keys (its unknown keys are refused)."""

    where: str
    known: tuple[str, ...]


_sink: list[Field | Keys] | None = None
_INDEX = re.compile(r"\[\d+\]")


def path(where: str) -> str:
    """``ipam.pools[3].subnet`` -> ``ipam.pools[].subnet``."""
    return _INDEX.sub("[]", where)


def note(
    where: str,
    type: str,
    default: Any = None,
    lo: float | None = None,
    hi: float | None = None,
    required: bool = False,
    choices: Iterable[str] = (),
) -> None:
    """Record that a parser read ``where`` (a no-op unless recording)."""
    if _sink is not None:
        _sink.append(Field(path(where), type, default, lo, hi, required, tuple(choices)))


def note_keys(where: str, known: Iterable[str]) -> None:
    """Record a strict section's accepted keys (a no-op unless recording)."""
    if _sink is not None:
        _sink.append(Keys(path(where), tuple(known)))


@contextmanager
def recording() -> Iterator[list[Field | Keys]]:
    """Collect every ``note``/``note_keys`` made inside the block (not thread-safe: tools only)."""
    global _sink
    saved, _sink = _sink, []
    try:
        yield _sink
    finally:
        _sink = saved
