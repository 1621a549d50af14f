"""One finding = one thing checked: severity, what is wrong, why it matters, the fix.

The three texts are separate on purpose: an operator scanning a report reads ``what``,
someone deciding whether to care reads ``why``, and ``fix`` must be exact enough to
paste (a value, a command). ``ok`` findings are notes (a check that passed, or a state
that looks odd but is normal); they never raise the exit code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

SEVERITIES = ("ok", "warn", "error")
_RANK = {s: n for n, s in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class Finding:
    """A check's outcome. ``object`` is ``Kind/name`` or ``Kind/ns/name`` (or a node check)."""

    severity: str
    code: str
    object: str
    what: str
    why: str = ""
    fix: str = ""
    related: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.severity not in _RANK:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["related"] = list(self.related)
        return out


def worst(findings: Iterable[Finding]) -> str:
    """The most severe severity present ("ok" for none)."""
    return max((f.severity for f in findings), key=_RANK.__getitem__, default="ok")


def exit_code(findings: Iterable[Finding]) -> int:
    """0 all ok, 1 a warning, 2 an error: scripts and CI gate on this."""
    return _RANK[worst(findings)]


def ordered(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then warnings, then notes; stable within a severity."""
    return sorted(findings, key=lambda f: -_RANK[f.severity])


def report_json(kind: str, findings: Iterable[Finding], **extra: Any) -> dict[str, Any]:
    """The ``--json`` document: {"check", "status", "exitCode", "counts", "findings", ...}."""
    items = ordered(findings)
    counts = {s: sum(1 for f in items if f.severity == s) for s in SEVERITIES}
    return {
        "check": kind,
        "status": worst(items),
        "exitCode": exit_code(items),
        "counts": counts,
        "findings": [f.to_json() for f in items],
        **extra,
    }
