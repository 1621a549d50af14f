"""CNI_* environment variables -> ``CmdArgs``.

The runtime passes the verb and the attachment's identity in the environment. Each
verb needs a different subset (DEL may come after the netns is gone; GC, STATUS and
VERSION concern no container). Everything is validated against the spec's charsets
here, so later code can use the values as keys and link names; they are data and are
never handed to a shell.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from flatnet.cni._fields import ifname_problem, is_spec_id
from flatnet.errors import EnvError

if TYPE_CHECKING:
    from flatnet.cni.config import NetConf
    from flatnet.cni.runtimeconf import RequestedIP

COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
#: Which variables each verb cannot do without (CNI_COMMAND is always required).
REQUIRED: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": (),
    "STATUS": (),
    "VERSION": (),
}
#: CNI_ARGS keys we understand; others need IgnoreUnknown=1 (as in the reference libs).
KNOWN_ARGS = (
    "IgnoreUnknown",
    "IP",
    "MAC",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
)
_TRUE = ("1", "true", "True")
_FALSE = ("0", "false", "False")


@dataclass
class CmdArgs:
    """One invocation: the verb, who it is for, and (after parsing) its config."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = field(default_factory=dict)
    path: str = ""
    conf: NetConf | None = None
    stdin: bytes = b""

    @property
    def pod_namespace(self) -> str | None:
        return self.args.get("K8S_POD_NAMESPACE") or None

    @property
    def pod_name(self) -> str | None:
        return self.args.get("K8S_POD_NAME") or None

    @property
    def path_dirs(self) -> list[str]:
        return [p for p in self.path.split(":") if p]

    def env_ips(
        self,
    ) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface | ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """The CNI_ARGS ``IP=`` addresses (validated by parse_env)."""
        return [_ip(p) for p in self.args.get("IP", "").split(",") if p.strip()]

    def requested_ips(self) -> list[RequestedIP]:
        """All addresses the runtime asked for: CNI_ARGS IP, runtimeConfig ips, args.cni.ips."""
        out = list(self.env_ips())
        for ip in self.conf.requested_ips() if self.conf is not None else []:
            if ip not in out:
                out.append(ip)
        return out


def _ip(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | ipaddress.IPv4Address | ipaddress.IPv6Address:
    text = text.strip()
    return ipaddress.ip_interface(text) if "/" in text else ipaddress.ip_address(text)


def parse_env(env: Mapping[str, str]) -> CmdArgs:
    """Validate the CNI_* variables for the verb; EnvError (code 4) names the variable."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise EnvError(f"CNI_COMMAND is not set: set it to one of {', '.join(COMMANDS)}")
    if command not in COMMANDS:
        raise EnvError(f"unknown CNI_COMMAND {command!r}: use one of {', '.join(COMMANDS)}")
    required = REQUIRED[command]
    missing = [name for name in required if not env.get(name)]
    if missing:
        raise EnvError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required for {command} but not set"
        )
    cmd = CmdArgs(command=command, args=parse_cni_args(env.get("CNI_ARGS", "")), path=env.get("CNI_PATH", ""))
    if command in ("ADD", "DEL", "CHECK"):
        cmd.container_id = _container_id(env["CNI_CONTAINERID"])
        cmd.ifname = _ifname(env["CNI_IFNAME"])
        cmd.netns = env.get("CNI_NETNS", "")
        if "\0" in cmd.netns:
            raise EnvError("CNI_NETNS contains a NUL byte; it must be a netns path")
    return cmd


def _container_id(value: str) -> str:
    if not is_spec_id(value):
        raise EnvError(
            f"CNI_CONTAINERID {value[:80]!r} is invalid: it must start with a "
            f"letter or digit, followed by letters, digits, '_', '.' or '-'"
        )
    return value


def _ifname(value: str) -> str:
    problem = ifname_problem(value)
    if problem:
        raise EnvError(f"CNI_IFNAME {value[:80]!r} is not a valid interface name: it {problem}")
    return value


def parse_cni_args(text: str) -> dict[str, str]:
    """``K=V;K=V`` -> dict. Unknown keys need IgnoreUnknown=1; IP values must be IPs."""
    out: dict[str, str] = {}
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key or "=" in value:
            raise EnvError(f"CNI_ARGS has a malformed pair {pair[:80]!r}: expected KEY=VALUE pairs separated by ';'")
        out[key] = value
    ignore = out.get("IgnoreUnknown", "0")
    if ignore not in _TRUE + _FALSE:
        raise EnvError(f"CNI_ARGS IgnoreUnknown={ignore[:40]!r} must be 1, true, 0 or false")
    if ignore not in _TRUE:
        unknown = [k for k in out if k not in KNOWN_ARGS]
        if unknown:
            raise EnvError(
                f"CNI_ARGS key {unknown[0][:40]!r} is unknown (known: "
                f"{', '.join(KNOWN_ARGS)}); add IgnoreUnknown=1 to pass others"
            )
    for part in out.get("IP", "").split(","):
        if not part.strip():
            continue
        try:
            _ip(part)
        except ValueError:
            raise EnvError(
                f"CNI_ARGS IP has {part[:60]!r}, which is not an IP address; "
                f"use IP=198.18.100.40 (comma-separate several)"
            ) from None
    return out
