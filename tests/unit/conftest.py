"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from flatnet.ipam.api import Store
from flatnet.ipam.store import MemoryStore, SqliteStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each embedded store in turn (a module may override this, e.g. with etcd)."""
    s: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "kv.db")
    try:
        yield s
    finally:
        s.close()
