"""A pod's requests to flatnet, from its annotations: ``flatnet.io/pool`` and ``flatnet.io/ip``.

No API server is needed for them: containerd (1.5+) passes a pod's annotations to a plugin
whose conflist declares the capability ``io.kubernetes.cri.pod-annotations``, as
``runtimeConfig["io.kubernetes.cri.pod-annotations"]`` (an object of strings), on ADD and DEL.
Only ADD reads them (DEL releases whatever the attachment holds, whatever it asked for).

The values are typed by people into manifests, so every malformed one is refused with a
message that quotes the annotation and its value and says what a good value looks like;
``flatnet.cni.poolrules`` then checks them against the network's pools.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Mapping

from flatnet.errors import ConfigError
from flatnet.ipam.api import IPAddress

#: the runtimeConfig key (and conflist capability) containerd passes pod annotations under
CAPABILITY = "io.kubernetes.cri.pod-annotations"
POOL = "flatnet.io/pool"
IP = "flatnet.io/ip"
#: at most one pool / address per family: IPv4 and IPv6
MAX_ITEMS = 2


@dataclass(frozen=True)
class PodRequest:
    """What the pod's annotations ask for: pool names and fixed addresses, as written."""

    pools: tuple[str, ...] = ()
    ips: tuple[IPAddress, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.pools or self.ips)


def show(value: str) -> str:
    """A value for an error message: quoted, and cut short (an annotation may be long)."""
    return repr(value if len(value) <= 80 else value[:77] + "...")


def pod_annotations(runtime_config: Mapping[str, Any]) -> dict[str, str]:
    """The annotations containerd passed (empty when it passed none: no capability, podman)."""
    raw = runtime_config.get(CAPABILITY)
    if raw is None:
        return {}
    where = f"runtimeConfig[{CAPABILITY!r}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object of annotation names to strings, got {type(raw).__name__}")
    out: dict[str, str] = {}
    for key in (POOL, IP):  # only ours: other annotations are none of flatnet's business
        if key in raw:
            if not isinstance(raw[key], str):
                raise ConfigError(f"{where}[{key!r}] must be a string, got {type(raw[key]).__name__}")
            out[key] = raw[key]
    return out


def parse_request(annotations: Mapping[str, str]) -> PodRequest:
    """``PodRequest`` of the two annotations; ConfigError (code 7) for a malformed value.

    ``flatnet.cni.poolrules`` ends each message with the pools the pod may use, so the person
    reading the RunPodSandbox error sees what they could have written.
    """
    pools = _items(annotations.get(POOL), POOL, "NAME or NAME,NAME (one pool per address family)")
    if len(set(pools)) != len(pools):
        raise ConfigError(f"pod annotation {POOL} {show(annotations[POOL])} names a pool twice")
    ips: list[IPAddress] = []
    for item in _items(annotations.get(IP), IP, "ADDR or ADDR,ADDR (one address per family)"):
        ips.append(_address(item, annotations[IP]))
    families = [ip.version for ip in ips]
    if len(set(families)) != len(families):
        raise ConfigError(
            f"pod annotation {IP} {show(annotations[IP])} has two IPv{families[0]} addresses: "
            "a pod gets one address per family"
        )
    return PodRequest(tuple(pools), tuple(ips))


def _items(value: str | None, key: str, form: str) -> list[str]:
    """The comma-separated items of an annotation (spaces around them ignored)."""
    if value is None:
        return []
    items = [item.strip() for item in value.split(",")]
    bad = next((n for n, item in enumerate(items) if not item), None)
    if bad is not None:
        what = "is empty" if len(items) == 1 else f"has an empty item (number {bad + 1})"
        raise ConfigError(f"pod annotation {key} {show(value)} {what}: write {form}")
    if len(items) > MAX_ITEMS:
        raise ConfigError(f"pod annotation {key} {show(value)} has {len(items)} items: write {form}")
    for item in items:
        if any(c.isspace() or not c.isprintable() for c in item):
            raise ConfigError(
                f"pod annotation {key} {show(value)}: {show(item)} contains a space or a control character; "
                f"write {form}"
            )
    return items


def _address(item: str, value: str) -> IPAddress:
    hint = 'write ADDR or ADDR,ADDR such as "198.18.100.40" or "198.18.100.40,2001:db8:100::40"'
    if "/" in item:
        raise ConfigError(
            f"pod annotation {IP} {show(value)}: {show(item)} has a prefix length; the pool decides it: {hint}"
        )
    if "%" in item:
        raise ConfigError(f"pod annotation {IP} {show(value)}: {show(item)} has a zone index: {hint}")
    try:
        return ipaddress.ip_address(item)
    except ValueError:
        raise ConfigError(f"pod annotation {IP} {show(value)}: {show(item)} is not an IP address: {hint}") from None
