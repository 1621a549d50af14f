"""Kubernetes resource quantities ("8Gi", "500M", "1.5Ti", "1e9") as exact byte counts.

Capacity comparisons decide whether a claim can ever bind, so they must be exact:
Decimal, not float, and the two suffix families kept apart (Gi = 2**30, G = 10**9).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from flatnet.errors import ConfigError

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
_RE = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")


def parse_quantity(text: str | int | float) -> Decimal:
    """``"8Gi"`` -> Decimal(8589934592). Raises ConfigError naming the accepted forms."""
    if isinstance(text, (int, float)):
        return Decimal(str(text))
    m = _RE.match(str(text).strip())
    if not m:
        raise ConfigError(
            f"{text!r} is not a Kubernetes quantity",
            "write e.g. 8Gi, 500Mi, 10G or 1e9 (suffixes Ki Mi Gi Ti Pi Ei k M G T P E)",
        )
    try:
        number = Decimal(m.group(1))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only numbers
        raise ConfigError(f"{text!r} is not a Kubernetes quantity") from exc
    suffix = m.group(2) or ""
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return number * (Decimal(10) ** int(suffix[1:]))
    return number * Decimal(_BINARY.get(suffix) or _DECIMAL[suffix])


def human(n: Decimal) -> str:
    """Bytes back to the largest binary suffix that divides evenly (for messages)."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n.normalize()) if n != n.to_integral() else str(int(n))
