"""JSON for the plugin's hot path without importing ``json`` (and with it ``re`` and ``enum``).

A CNI plugin is exec'd for every pod ADD and DEL, so its start-up is on every pod's critical
path. ``import json`` pulls in ``re`` and ``enum``: about a third of the plugin's start-up on
this project's machines. CPython's own JSON accelerator, ``_json`` (what ``json`` itself
uses), parses and escapes without them. This module wraps it for exactly what the plugin
needs — parse a document, write a flat object of strings and ints — and falls back to
``json`` on an interpreter without ``_json``. Output and errors are those of ``json``:
``loads`` raises ``ValueError`` (like ``json.JSONDecodeError``) on bad input.
"""

from __future__ import annotations

try:
    import _json
except ImportError:  # pragma: no cover - non-CPython
    _json = None  # type: ignore[assignment]

_WS = " \t\n\r"


class _Context:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:  # NaN, Infinity, -Infinity, as json accepts them
        return float(name.replace("Infinity", "inf"))


_scan = _json.make_scanner(_Context()) if _json is not None else None


def loads(text: str) -> object:
    """Parse one JSON document (ValueError if it is not exactly one)."""
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(text)
    n, i = len(text), 0
    while i < n and text[i] in _WS:
        i += 1
    try:
        value, end = _scan(text, i)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    finally:
        _Context.memo.clear()
    while end < n and text[end] in _WS:
        end += 1
    if end != n:
        raise ValueError(f"Extra data: char {end}")
    return value


def dumps(value: object) -> str:
    """Serialize str / int / bool / None and dicts and lists of them (ASCII-escaped)."""
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(value)
    out: list[str] = []
    _write(value, out)
    return "".join(out)


def _write(value: object, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_json.encode_basestring_ascii(value))
    elif value is None or isinstance(value, bool):
        out.append({None: "null", True: "true", False: "false"}[value])
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, dict):
        out.append("{")
        for k, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            out.append(", " if k else "")
            out.append(_json.encode_basestring_ascii(key))
            out.append(": ")
            _write(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for k, item in enumerate(value):
            out.append(", " if k else "")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot serialize {type(value).__name__}")
