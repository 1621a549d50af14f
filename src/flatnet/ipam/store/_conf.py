"""Small readers for a store's config section, shared by the store modules.

Messages name the field by its dotted path (``ipam.store.path``) and say what a valid
value looks like, like the CNI layer's readers (``flatnet.cni._fields``), which the
stores cannot import (the CNI layer sits above ipam).
"""

from __future__ import annotations

from typing import Any

from flatnet.errors import ConfigError
from flatnet.fieldref import note


def text(
    d: dict[str, Any],
    key: str,
    where: str,
    example: str = "",
    required: bool = False,
    default: str | None = None,
    choices: tuple[str, ...] = (),
) -> str | None:
    """``d[key]`` as a string; None when absent or "" (unless ``required``).

    ``default``/``choices``: what the caller does with an absent value and which values it
    takes, for the config reference only (the caller applies them)."""
    note(f"{where}.{key}", "string", default, required=required, choices=choices)
    value = d.get(key)
    hint = f" such as {example!r}" if example else ""
    if value is None or value == "":
        if required:
            raise ConfigError(f"{where}.{key} is required: set it to a string{hint}")
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be a string{hint}, got {type(value).__name__} {value!r}")
    return value


def seconds(d: dict[str, Any], key: str, where: str, use: str) -> float | None:
    """A number of seconds in (0, 600]; None when absent."""
    note(f"{where}.{key}", "number (seconds)", None, 0, 600)
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 600:
        raise ConfigError(f"{where}.{key} {value!r} must be a number of seconds in (0, 600], e.g. 2 ({use})")
    return float(value)
