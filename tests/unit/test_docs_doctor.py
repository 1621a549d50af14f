"""docs/DOCTOR.md lists every check doctor can report, and only those.

The codes are read from the source (every ``Finding(severity, code, ...)`` call, the
scheduler's message table), the documented ones from the first column of DOCTOR.md's tables.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "DOCTOR.md"


def source_codes() -> tuple[set[str], set[str]]:
    """(literal codes, prefixes of codes built with an f-string such as f"store-{state}")."""
    from flatnet.doctor.scheduler import MESSAGES

    codes, prefixes = {m[0] for m in MESSAGES}, set()
    for path in [*sorted((ROOT / "src/flatnet/doctor").glob("*.py")), ROOT / "src/flatnet/cli/doctor.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Finding"):
                continue
            arg = node.args[1] if len(node.args) > 1 else next(k.value for k in node.keywords if k.arg == "code")
            if isinstance(arg, ast.Constant):
                codes.add(arg.value)
            elif isinstance(arg, ast.JoinedStr) and isinstance(arg.values[0], ast.Constant):
                prefixes.add(arg.values[0].value)
            else:
                assert isinstance(arg, ast.Name) and arg.id == "code", f"{path}: a code doctor cannot list: {arg}"
    return codes, prefixes


def documented_codes() -> set[str]:
    out: set[str] = set()
    for line in DOC.read_text().splitlines():
        if line.startswith("| `"):
            out |= set(re.findall(r"`([a-z0-9-]+)`", line.split("|")[1]))
    return out


def test_doctor_md_lists_every_check_and_only_real_ones() -> None:
    codes, prefixes = source_codes()
    documented = documented_codes()
    assert {"address-conflict", "pools-skipped", "node-reclaimed"} <= codes  # the three once missing
    missing = sorted(codes - documented)
    assert not missing, f"docs/DOCTOR.md does not list {missing}"
    for prefix in prefixes:
        assert any(d.startswith(prefix) for d in documented), f"docs/DOCTOR.md lists no {prefix}* code"
    unknown = sorted(d for d in documented - codes if not any(d.startswith(p) for p in prefixes))
    assert not unknown, f"docs/DOCTOR.md lists checks doctor does not have: {unknown}"
