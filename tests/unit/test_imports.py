"""Every module of the package imports: a module moved or renamed leaves no stale import behind
(ruff and import-linter do not notice an import of a module that no longer exists)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import flatnet

MODULES = sorted(m.name for m in pkgutil.walk_packages(flatnet.__path__, "flatnet.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)
