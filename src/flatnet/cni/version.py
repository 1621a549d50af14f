"""CNI spec versions: parsing, comparison, and which verbs each version allows.

Why a module of its own: the version decides the result shape (``"version"`` keys in
0.3.x/0.4.0 ips, ``mtu`` on interfaces from 1.1.0) and which verbs exist (CHECK from
0.4.0, GC and STATUS from 1.1.0). Every such decision goes through here so that the
rules live in one place and error messages always list what we do support.
"""

from __future__ import annotations

from typing import Iterable

from flatnet import SUPPORTED_VERSIONS
from flatnet.errors import VersionError

#: CNI spec versions this plugin speaks, oldest first.
SUPPORTED: tuple[str, ...] = SUPPORTED_VERSIONS
#: What we answer with when nobody asked for a version (VERSION, early errors).
LATEST: str = SUPPORTED[-1]

#: The first spec version that defines each verb; verbs not listed exist in all.
VERB_MIN_VERSION: dict[str, str] = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}

_SUPPORTED_TEXT = ", ".join(SUPPORTED)


def parse_version(text: str) -> tuple[int, int, int]:
    """Parse "1", "1.0" or "1.0.0" into a (major, minor, patch) tuple.

    Raises VersionError for anything else (empty parts, signs, letters), because a
    version we cannot order is a version we cannot reason about.
    """
    if not isinstance(text, str) or not text:
        raise VersionError(f"malformed CNI version {text!r}: expected MAJOR.MINOR.PATCH, one of: {_SUPPORTED_TEXT}")
    parts = text.split(".")
    if len(parts) > 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise VersionError(f"malformed CNI version {text!r}: expected MAJOR.MINOR.PATCH, one of: {_SUPPORTED_TEXT}")
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return nums[0], nums[1], nums[2]


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as version ``a`` is older than, equal to or newer than ``b``."""
    pa, pb = parse_version(a), parse_version(b)
    return (pa > pb) - (pa < pb)


def at_least(version: str, minimum: str) -> bool:
    """True when ``version`` is ``minimum`` or newer."""
    return compare(version, minimum) >= 0


def check_supported(version: object, field: str = "cniVersion") -> str:
    """Return ``version`` if we speak it, else raise VersionError naming our list."""
    if not isinstance(version, str):
        raise VersionError(
            f'{field} must be a string such as "{LATEST}", got {type(version).__name__}; '
            f"supported versions: {_SUPPORTED_TEXT}"
        )
    parse_version(version)  # malformed -> its own message
    if version not in SUPPORTED:
        raise VersionError(
            f"incompatible CNI version: {field} is {version!r}; this plugin supports "
            f"{_SUPPORTED_TEXT} (set {field} to one of them)",
            details=f"config is {version!r}, plugin supports {list(SUPPORTED)}",
        )
    return version


def require_verb(verb: str, version: str) -> None:
    """Raise VersionError (code 1) if ``verb`` does not exist in spec ``version``.

    Mirrors the reference skel: "config version does not allow CHECK" etc.
    """
    minimum = VERB_MIN_VERSION.get(verb)
    if minimum is not None and not at_least(version, minimum):
        raise VersionError(
            f"config version does not allow {verb}: cniVersion is {version!r} but {verb} needs cniVersion >= {minimum}"
        )


def pick_conflist_version(versions: Iterable[object]) -> str:
    """The highest version we support among a conflist's ``cniVersions`` array.

    Unparseable entries are skipped (another runtime may know them); none left that we
    support -> VersionError listing ours.
    """
    ours = [v for v in versions if isinstance(v, str) and v in SUPPORTED]
    if not ours:
        raise VersionError(
            f"incompatible CNI versions: cniVersions lists none of the versions this "
            f"plugin supports ({_SUPPORTED_TEXT}); add one of them"
        )
    return max(ours, key=parse_version)
