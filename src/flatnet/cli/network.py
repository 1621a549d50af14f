"""``flatnet network check FILE``: validate a network config offline, before a runtime uses it.

podman's ``network ls`` lists a conflist without running the plugin, so a mistake shows
only at ``podman run`` (and leaves the container in state Created). This runs the parser
the plugin runs (``flatnet.cni``) on the file: no agent, no store, no kernel, nothing
changed. It also says how the plugin will be served (agent socket or no-agent mode) and
warns of what parses but will not work with a runtime (cniVersion 1.1.0 with podman 4).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from flatnet.errors import ConfigError, FlatnetError

EPILOG = """\
A .conflist is checked plugin by plugin (flatnet's; other plugins' configs are theirs), a
single-plugin .conf as it is. Exit 0 when every flatnet plugin config is valid, else 1
with the error the plugin itself would give (the field and the fix).

examples:
  flatnet network check /etc/cni/net.d/flat100.conflist
  flatnet network check --json flat100.conflist
  cat flat100.conflist | flatnet network check -
"""


def register(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "network",
        help="check a network config file offline",
        description="Check flatnet network configs offline.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=None, _parser=p)
    sub = p.add_subparsers(dest="network_command", metavar="SUBCOMMAND")
    check = sub.add_parser(
        "check",
        help="validate a .conflist/.conf with the plugin's own parser (nothing is changed)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("file", metavar="FILE", help="the config file, or - for stdin")
    check.add_argument("--json", action="store_true", help="machine-readable summary")
    check.set_defaults(func=cmd_check)


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror or exc}", "give the path of a .conflist or .conf") from None


def check_bytes(data: bytes) -> list[dict[str, Any]]:
    """A summary per flatnet plugin config in ``data``; FlatnetError naming the plugin if one is bad."""
    from flatnet.cni import parse_conflist, parse_netconf
    from flatnet.cni.config import decode_json

    raw = decode_json(data)
    if isinstance(raw, dict) and "plugins" in raw:
        conflist = parse_conflist(data)
        configs = [(f"plugins[{n}]", conflist.plugin_config(n)) for n in range(len(conflist.plugins))]
    else:
        configs = [("", raw)]
    out = []
    for where, plugin in configs:
        if plugin.get("type") != "flatnet":
            out.append({"where": where, "type": plugin.get("type"), "checked": False})
            continue
        try:
            conf = parse_netconf(json.dumps(plugin).encode())
        except FlatnetError as exc:
            if where:
                exc.msg = f"{where}: {exc.msg}"
            raise
        out.append(_summary(where, conf))
    if not any(item.get("checked") for item in out):
        raise ConfigError("no plugin of type flatnet in this config", 'add {"type": "flatnet", ...} to its plugins')
    return out


def _summary(where: str, conf: Any) -> dict[str, Any]:
    entry = conf.raw.get("inProcess")
    served = {"agentSocket": conf.agent_socket, "agentListening": _listening(conf.agent_socket)}
    if entry:
        served["inProcess"] = entry
        served["inProcessRunnable"] = os.access(entry, os.X_OK)
    warnings = []
    if conf.cni_version == "1.1.0":
        warnings.append(
            'cniVersion "1.1.0": podman 4 (libcni 1.1) cannot convert 1.1.0 results and fails every '
            'teardown; use "1.0.0" for podman'
        )
    if entry and not served["inProcessRunnable"]:
        warnings.append(f"inProcess {entry!r} is not an executable file here: install flatnet there or fix the path")
    if not entry and not served["agentListening"]:
        warnings.append(
            f"no agent listens on {conf.agent_socket} and no inProcess is set: calls fail with code 11 "
            'until the agent runs or "inProcess" names flatnet-inprocess'
        )
    return {
        "where": where,
        "type": "flatnet",
        "checked": True,
        "network": conf.name,
        "cniVersion": conf.cni_version,
        "mode": conf.mode,
        "master": conf.master,
        "hostNetns": conf.host_netns,
        "pools": [_pool(p) for p in conf.pools],
        "store": conf.store,
        "served": served,
        "warnings": warnings,
    }


def _pool(pool: Any) -> str:
    first, last = pool.range_start or "", pool.range_end or ""
    span = f" {first}-{last}" if first or last else ""
    return f"{pool.name} ({pool.subnet.with_prefixlen}{span})"


def _listening(path: str) -> bool:
    """Whether something accepts on the agent's socket (a connect, nothing sent)."""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        sock.connect(path)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def cmd_check(args: argparse.Namespace) -> int:
    name = "stdin" if args.file == "-" else args.file
    try:
        summaries = check_bytes(_read(args.file))
    except FlatnetError as exc:
        exc.msg = f"{name}: {exc.msg}"
        raise
    if args.json:
        print(json.dumps({"file": name, "valid": True, "plugins": summaries}, indent=2, sort_keys=True))
        return 0
    for s in summaries:
        if not s["checked"]:
            print(f"{name} {s['where']}: type {s['type']!r} is not flatnet's; not checked")
            continue
        where = f" {s['where']}" if s["where"] else ""
        on = f" on {s['master']}" if s["master"] else ""
        ns = f" in netns {s['hostNetns']}" if s["hostNetns"] else ""
        print(f"{name}{where}: valid — network {s['network']}, cniVersion {s['cniVersion']}, {s['mode']}{on}{ns}")
        print(f"  pools: {', '.join(s['pools']) or '(from the mode)'}; store: {_store(s['store'])}")
        served = s["served"]
        if served.get("agentListening"):
            print(f"  served by the agent on {served['agentSocket']}")
        elif served.get("inProcess"):
            print(f"  no agent on {served['agentSocket']}: served in-process by {served['inProcess']}")
        for warning in s["warnings"]:
            print(f"  warning: {warning}")
    return 0


def _store(cfg: dict[str, Any]) -> str:
    if cfg.get("type") == "sqlite":
        return f"sqlite:{cfg.get('path')}"
    if cfg.get("type") == "etcd":
        return "etcd:" + ",".join(cfg.get("endpoints") or [])
    return str(cfg.get("type"))
