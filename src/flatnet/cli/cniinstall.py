"""``flatnet install-cni`` / ``flatnet uninstall-cni``: the DaemonSet's node-side file work.

The init container installs the CNI forwarder and the conflist on the node; with
``cni.uninstall`` the agent's preStop hook removes them again (charts/flatnet). Both write
through temp file + rename, so the runtime never reads half a file, and the conflist is
validated with flatnet's own parser *before* it lands: a broken value or Secret fails the
init container (the agent pod does not start, ``kubectl describe`` says why) instead of
every pod on the node.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from flatnet.errors import ConfigError

FORWARDER = "/opt/flatnet/bin/flatnet"


def register(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "install-cni",
        help="install the CNI plugin and conflist on this node (init container)",
        description="Copy the CNI forwarder into BIN_DIR and the conflist into CONF_DIR/NAME, "
        "each by temp file + rename; --substitute tokens are filled from the "
        "environment first, and the result must parse as a flatnet network config.",
    )
    p.add_argument(
        "--conflist",
        required=True,
        type=Path,
        metavar="FILE",
        help="the conflist template (the chart's ConfigMap, mounted)",
    )
    p.add_argument(
        "--conf-dir",
        required=True,
        type=Path,
        metavar="DIR",
        help="the node's CNI config dir, mounted (e.g. /host/etc/cni/net.d)",
    )
    p.add_argument("--name", required=True, metavar="NAME", help="file name in CONF_DIR, e.g. 00-flatnet.conflist")
    p.add_argument(
        "--bin-dir",
        required=True,
        type=Path,
        metavar="DIR",
        help="the node's CNI bin dir, mounted (e.g. /host/opt/cni/bin)",
    )
    p.add_argument(
        "--plugin",
        default=FORWARDER,
        type=Path,
        metavar="FILE",
        help="the forwarder to install as BIN_DIR/flatnet (default: %(default)s)",
    )
    p.add_argument(
        "--substitute",
        action="append",
        default=[],
        metavar="TOKEN=ENVVAR",
        help="replace TOKEN in the conflist with $ENVVAR (e.g. __ETCD_ENDPOINTS__=ETCD_ENDPOINTS); repeatable",
    )
    p.set_defaults(func=run_install)
    u = subparsers.add_parser(
        "uninstall-cni",
        help="remove the CNI plugin and conflist from this node (preStop)",
        description="Remove CONF_DIR/NAME first (the runtime stops calling flatnet), then "
        "BIN_DIR/flatnet. Missing files are fine.",
    )
    u.add_argument("--conf-dir", required=True, type=Path, metavar="DIR")
    u.add_argument("--name", required=True, metavar="NAME")
    u.add_argument("--bin-dir", required=True, type=Path, metavar="DIR")
    u.set_defaults(func=run_uninstall)


def _atomic_write(dest: Path, data: bytes, mode: int) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, dest)


def render_conflist(template: str, substitutes: list[str], env: dict[str, str]) -> str:
    """The template with every TOKEN replaced by its variable, checked by flatnet's parser."""
    from flatnet.cni.config import parse_netconf

    text = template
    for item in substitutes:
        token, sep, var = item.partition("=")
        if not sep or not token or not var:
            raise ConfigError(
                f"--substitute {item!r} is not TOKEN=ENVVAR", "e.g. --substitute __ETCD_ENDPOINTS__=ETCD_ENDPOINTS"
            )
        if var not in env:
            raise ConfigError(
                f"${var} is not set (it fills {token} in the conflist)",
                "check the init container's env (the Secret flatnet-etcd)",
            )
        text = text.replace(token, env[var])
    try:
        conflist = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"the conflist is not JSON after substitution: {exc}",
            "check the chart values and the Secret's endpoints (a JSON array)",
        ) from None
    plugins = conflist.get("plugins") if isinstance(conflist, dict) else None
    mine = [p for p in plugins or () if isinstance(p, dict) and p.get("type") == "flatnet"]
    if len(mine) != 1:
        raise ConfigError(
            "the conflist must hold exactly one plugin of type flatnet", "check the chart's cni-config template"
        )
    parse_netconf(
        json.dumps({"cniVersion": conflist.get("cniVersion"), "name": conflist.get("name"), **mine[0]}).encode()
    )
    return text


def run_install(args: argparse.Namespace) -> int:
    text = render_conflist(args.conflist.read_text(), args.substitute, dict(os.environ))
    for d in (args.bin_dir, args.conf_dir):
        if not d.is_dir():
            raise ConfigError(f"{d} is not a directory", "mount the node's CNI dirs (hostPath)")
    _atomic_write(args.bin_dir / "flatnet", args.plugin.read_bytes(), 0o755)
    _atomic_write(args.conf_dir / args.name, text.encode(), 0o644)
    # an older release's conflist under another name would shadow or follow ours
    for old in args.conf_dir.glob("*flatnet.conflist"):
        if old.name != args.name:
            old.unlink(missing_ok=True)
            print(f"removed {old} (an older flatnet conflist)", file=sys.stderr)
    print(f"installed {args.bin_dir / 'flatnet'} and {args.conf_dir / args.name}", file=sys.stderr)
    return 0


def run_uninstall(args: argparse.Namespace) -> int:
    (args.conf_dir / args.name).unlink(missing_ok=True)
    (args.bin_dir / "flatnet").unlink(missing_ok=True)
    print(f"removed {args.conf_dir / args.name} and {args.bin_dir / 'flatnet'}", file=sys.stderr)
    return 0
