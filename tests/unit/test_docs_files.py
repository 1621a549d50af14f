"""Every source file README.md and docs/ name exists (``plugin.py`` outlived its file once).

A name with a directory must be the end of a path in the tree (``agent/heartbeat.py``); a bare
name must be some file's name. Files that exist only at run time are listed here.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NAMED = re.compile(r"`([\w./-]+\.(?:py|md|sh|yaml|json|c|toml))[`\s:]")
#: written by flatnet at run time, not part of the tree
RUNTIME_FILES = {"stores.json", "reclaimed.json", "conflicts.json"}  # written by the agent at run time
SKIP_DIRS = {".venv", "build", ".git", "__pycache__", ".mypy_cache", ".ruff_cache", "node_modules"}


def tree() -> list[str]:
    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if path.is_file() and not SKIP_DIRS & set(rel.parts):
            out.append(rel.as_posix())
    return out


def test_every_file_the_docs_name_exists() -> None:
    files = tree()
    names = {f.rsplit("/", 1)[-1] for f in files}
    missing = []
    for doc in DOCS:
        for m in NAMED.finditer(doc.read_text()):
            name = m.group(1)
            if name.startswith("/") or name in RUNTIME_FILES or re.search(r"[A-Z]{3,}\.", name):
                continue  # an absolute path on a node, a run-time file, a placeholder (NAME.sh)
            found = any(f == name or f.endswith("/" + name) for f in files) if "/" in name else name in names
            if not found:
                missing.append(f"{doc.name}: {name}")
    assert not missing, missing
