"""Field readers shared by the config and env parsers.

Every reader takes the field's dotted path so the error names it, and says what a
valid value looks like: the person reading a CNI error has only the message to go on.
All raise ConfigError unless told otherwise (env parsing passes EnvError).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any, Iterable

from flatnet.errors import ConfigError, FlatnetError
from flatnet.fieldref import note, note_keys

from flatnet.iptypes import IPAddress as IPAddress, IPNetwork as IPNetwork

#: Spec charset for network names and container IDs: alnum first, then alnum _ . -
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
#: a Kubernetes namespace name: an RFC 1123 label (lower-case alnum and '-', alnum at both ends)
_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


def is_spec_id(value: str) -> bool:
    """True for a valid CNI network name / container ID."""
    return _ID_RE.fullmatch(value) is not None


def ifname_problem(value: str) -> str | None:
    """Why ``value`` is not a Linux interface name the spec allows, or None if it is."""
    if not value:
        return "must not be empty"
    if len(value) > 15:
        return f"is {len(value)} characters; the limit is 15"
    if value in (".", ".."):
        return "must not be '.' or '..'"
    bad = [c for c in value if c in "/:" or c.isspace() or not c.isprintable()]
    if bad:
        return f"must not contain {bad[0]!r} (no '/', ':', whitespace or control characters)"
    return None


def namespace_problem(value: str) -> str | None:
    """Why ``value`` is not a Kubernetes namespace name (an RFC 1123 label), or None if it is."""
    if not value:
        return "must not be empty"
    if len(value) > 63:
        return f"is {len(value)} characters; the limit is 63"
    if not _LABEL_RE.fullmatch(value):
        return "must be lower-case letters, digits and '-', starting and ending with a letter or digit"
    return None


def obj(d: object, where: str, error: type[FlatnetError] = ConfigError) -> dict[str, Any]:
    note(where, "object")
    if not isinstance(d, dict):
        raise error(f"{where} must be a JSON object, got {type(d).__name__}")
    return d


def string(
    d: object,
    where: str,
    required: bool = False,
    example: str = "",
    error: type[FlatnetError] = ConfigError,
    default: str | None = None,
) -> str | None:
    """A string field; ``default`` when absent (or "" and not required)."""
    note(where, "string", default, required=required)
    value = _string(d, where, required, example, error)
    return default if value is None else value


def _string(
    d: object, where: str, required: bool = False, example: str = "", error: type[FlatnetError] = ConfigError
) -> str | None:
    hint = f" such as {example!r}" if example else ""
    if d is None or d == "":
        if required:
            raise error(f"{where} is required: set it to a string{hint}")
        return None
    if not isinstance(d, str):
        raise error(f"{where} must be a string{hint}, got {type(d).__name__} {d!r}")
    return d


def integer(d: object, where: str, lo: int, hi: int, default: int | None = None) -> int | None:
    """An integer field within [lo, hi]; ``default`` when absent."""
    note(where, "integer", default, lo, hi)
    if d is None:
        return default
    if isinstance(d, bool) or not isinstance(d, int):
        raise ConfigError(f"{where} must be an integer between {lo} and {hi}, got {d!r}")
    if not lo <= d <= hi:
        raise ConfigError(f"{where} is {d}, out of range: it must be between {lo} and {hi}")
    return d


def boolean(d: object, where: str, default: bool) -> bool:
    note(where, "boolean", default)
    if d is None:
        return default
    if not isinstance(d, bool):
        raise ConfigError(f"{where} must be true or false (a JSON boolean), got {d!r}")
    return d


def array(d: object, where: str) -> list[Any]:
    """A JSON array field; [] when absent."""
    note(where, "array")
    if d is None:
        return []
    if not isinstance(d, list):
        raise ConfigError(f"{where} must be a JSON array, got {type(d).__name__} {d!r}")
    return d


def address(d: object, where: str) -> IPAddress | None:
    note(where, "IP address")
    text = _string(d, where, example="198.18.0.1")
    if text is None:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(f'{where} must be an IP address such as "198.18.0.1", got {text!r}') from None


def network(d: object, where: str, required: bool = False) -> IPNetwork | None:
    """A CIDR network; host bits set -> ConfigError giving the corrected value."""
    note(where, "CIDR network", required=required)
    text = _string(d, where, required=required, example="198.18.0.0/24")
    if text is None:
        return None
    if "/" not in text:
        raise ConfigError(
            f'{where} must be a network in CIDR form such as "198.18.0.0/24", got {text!r} (add the prefix length)'
        )
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        fixed = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(f'{where} must be a network in CIDR form such as "198.18.0.0/24", got {text!r}') from None
    raise ConfigError(f'{where} {text!r} has host bits set; did you mean "{fixed.with_prefixlen}"?')


def mac(d: object, where: str) -> str | None:
    """A unicast Ethernet address, normalised to lower case."""
    note(where, "MAC address")
    text = _string(d, where, example="02:00:c6:12:00:05")
    if text is None:
        return None
    if not _MAC_RE.fullmatch(text):
        raise ConfigError(f'{where} must be a MAC address such as "02:00:c6:12:00:05", got {text!r}')
    if int(text[:2], 16) & 1:
        raise ConfigError(
            f"{where} {text!r} is a multicast address; the first octet must "
            f"be even (e.g. 02:...) for an interface address"
        )
    return text.lower()


def ifname(d: object, where: str, required: bool = False) -> str | None:
    note(where, "interface name", required=required)
    text = _string(d, where, required=required, example="eth1")
    if text is None:
        return None
    problem = ifname_problem(text)
    if problem:
        raise ConfigError(f"{where} {text!r} is not a valid interface name: it {problem}")
    return text


def check_keys(d: dict[str, Any], known: Iterable[str], where: str, label: str | None = None) -> None:
    """Reject keys we do not know, suggesting the closest known one (typos are common).

    ``where`` is the section's dotted path ("" for the top level, as the reference records
    it); ``label`` what an error calls the section, when the path alone would not say it."""
    known = list(known)
    note_keys(where, known)
    where = label or where
    for key in d:
        if key in known:
            continue
        same_case = [k for k in known if k.lower() == key.lower()]  # "inprocess" -> "inProcess"
        near = same_case or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if near:
            raise ConfigError(f"{where} has unknown key {key!r}; did you mean {near[0]!r}?")
        raise ConfigError(f"{where} has unknown key {key!r}; valid keys: {', '.join(known)}")
