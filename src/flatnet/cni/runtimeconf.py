"""Per-invocation inputs the runtime adds to the config: runtimeConfig, args, GC list.

These differ from the static network configuration: the runtime fills them from
capabilities (``portMappings``, ``ips``, ``mac``), from ``args.cni`` (the older
convention for the same data) and, for GC, with the attachments it still holds.
Unknown runtimeConfig keys are kept (the runtime may pass capabilities meant for
other plugins in the chain).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from flatnet.cni import _fields as f
from flatnet.cni.ipamconf import parse_ip_list
from flatnet.errors import ConfigError
from flatnet.fieldref import note

PROTOCOLS = ("tcp", "udp", "sctp")
#: Key the spec defines for GC, and the name libcni also sends for older plugins.
VALID_ATTACHMENTS_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")

RequestedIP = ipaddress.IPv4Interface | ipaddress.IPv6Interface | ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class PortMapping:
    """hostPort on the node forwards to containerPort in the pod (overlay mode)."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol,
        }
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out


@dataclass(frozen=True)
class ValidAttachment:
    """One (containerID, ifname) the runtime still holds; GC spares these."""

    container_id: str
    ifname: str


@dataclass
class RuntimeConfig:
    """The parsed ``runtimeConfig`` object; ``raw`` keeps everything it had."""

    ips: list[RequestedIP] = field(default_factory=list)
    port_mappings: list[PortMapping] = field(default_factory=list)
    mac: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def parse_runtime_config(raw: object) -> RuntimeConfig:
    if raw is None:
        return RuntimeConfig()
    d = f.obj(raw, "runtimeConfig")
    return RuntimeConfig(
        ips=parse_ip_list(f.array(d.get("ips"), "runtimeConfig.ips"), "runtimeConfig.ips"),
        port_mappings=[
            _port_mapping(x, f"runtimeConfig.portMappings[{n}]")
            for n, x in enumerate(f.array(d.get("portMappings"), "runtimeConfig.portMappings"))
        ],
        mac=f.mac(d.get("mac"), "runtimeConfig.mac"),
        raw=dict(d),
    )


def parse_args_cni(raw: object) -> tuple[list[RequestedIP], str | None]:
    """``args.cni.ips`` and ``args.cni.mac`` (the pre-capabilities convention)."""
    if raw is None:
        return [], None
    args = f.obj(raw, "args")
    cni = args.get("cni")
    if cni is None:
        return [], None
    d = f.obj(cni, "args.cni")
    ips = parse_ip_list(f.array(d.get("ips"), "args.cni.ips"), "args.cni.ips")
    return ips, f.mac(d.get("mac"), "args.cni.mac")


def parse_valid_attachments(conf: dict[str, Any]) -> list[ValidAttachment] | None:
    """The GC list; None when the runtime sent none (not the same as an empty list)."""
    for name in VALID_ATTACHMENTS_KEYS:
        note(name, "array of {containerID, ifname}")
    key = next((k for k in VALID_ATTACHMENTS_KEYS if k in conf), None)
    if key is None:
        return None
    out = []
    for n, item in enumerate(f.array(conf[key], key)):
        where = f"{key}[{n}]"
        d = f.obj(item, where)
        cid = f.string(d.get("containerID"), f"{where}.containerID", required=True, example="3f6940ab5ab4")
        ifname = f.string(d.get("ifname"), f"{where}.ifname", required=True, example="eth0")
        out.append(ValidAttachment(str(cid), str(ifname)))
    return out


def _port_mapping(raw: object, where: str) -> PortMapping:
    d = f.obj(raw, where)
    host = f.integer(d.get("hostPort"), f"{where}.hostPort", 1, 65535)
    cont = f.integer(d.get("containerPort"), f"{where}.containerPort", 1, 65535)
    if host is None or cont is None:
        missing = "hostPort" if host is None else "containerPort"
        raise ConfigError(f"{where}.{missing} is required: a port number between 1 and 65535")
    note(f"{where}.protocol", "string", "tcp", choices=PROTOCOLS)
    proto = (f.string(d.get("protocol"), f"{where}.protocol", example="tcp") or "tcp").lower()
    if proto not in PROTOCOLS:
        raise ConfigError(f"{where}.protocol {proto!r} is not supported; use one of: {', '.join(PROTOCOLS)}")
    host_ip = f.address(d.get("hostIP"), f"{where}.hostIP")
    return PortMapping(host, cont, proto, str(host_ip) if host_ip is not None else None)
