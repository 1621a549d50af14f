"""``flatnet doctor``: ``cluster`` (volumes, scheduling, pools) and ``node`` (prerequisites).

Both print a one-screen report (or ``--json``) and exit with the worst finding:
0 all fine, 1 warnings, 2 errors; a doctor that could not run at all exits 1 with one
error line (kubectl missing, unreadable file), like every flatnet command.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from flatnet import defaults
from flatnet.cli.common import DEFAULT_SOCKET, parse_store_url
from flatnet.errors import ConfigError

EPILOG = """\
examples:
  flatnet doctor cluster                         run kubectl and check volumes, pending pods
  kubectl get nodes,pv,pvc,storageclasses,pods -A -o json > dump.json
  flatnet doctor cluster --from dump.json --json
  flatnet doctor cluster --from dump.json --ipam-store etcd:http://10.0.0.1:2379
  flatnet doctor node                            kernel, sysctls, tools, agent, CNI files
  flatnet doctor node --node-json <(kubectl get node $(hostname) -o json)
exit code: 0 ok, 1 warnings, 2 errors
"""


def register(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check a cluster or a node and say how to fix it",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=None, _parser=p)
    sub = p.add_subparsers(dest="doctor_command", metavar="SUBCOMMAND")

    c = sub.add_parser(
        "cluster",
        help="PVs, claims, storage classes, pending pods, pools",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument(
        "--from",
        dest="source",
        metavar="FILE",
        help="JSON from 'kubectl get nodes,pv,pvc,storageclasses,pods -A -o json' (default: run that command)",
    )
    c.add_argument("--usage", metavar="FILE", help='pool usage JSON: {"pools": [{"name", "size", "used"}]}')
    c.add_argument("--ipam-store", metavar="URL", help="read pool usage from this store")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_cluster)

    n = sub.add_parser(
        "node",
        help="this node's kernel, sysctls, tools, agent, store, CNI files",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    n.add_argument("--socket", default=DEFAULT_SOCKET, metavar="PATH", help="agent socket")
    n.add_argument(
        "--store",
        metavar="URL",
        help="sqlite:/path | etcd:http://host:port (default: the store named in the flatnet CNI config)",
    )
    n.add_argument(
        "--node-json",
        metavar="FILE",
        help="this node's object (kubectl get node NAME -o json) to compare the hostname label",
    )
    n.add_argument("--cni-conf-dir", default=defaults.CNI_CONF_DIR, metavar="DIR")
    n.add_argument("--cni-bin-dir", default=defaults.CNI_BIN_DIR, metavar="DIR")
    n.add_argument(
        "--state-dir",
        default=defaults.STATE_DIR,
        metavar="DIR",
        help="the agent's --state-dir: was this node declared dead and reclaimed? (default: %(default)s)",
    )
    n.add_argument(
        "--host-root",
        metavar="DIR",
        help="the node's / mounted here (doctor in a container): look up the node's tools under it",
    )
    n.add_argument("--no-probe", action="store_true", help="skip the kernel probes (not root)")
    n.add_argument("--json", action="store_true", help="machine-readable output")
    n.set_defaults(func=cmd_node)


def _read_json(path: str, option: str) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except OSError as exc:
        raise ConfigError(f"{option} {path}: {exc.strerror}", "give a readable JSON file") from None
    except ValueError as exc:
        raise ConfigError(f"{option} {path} is not JSON: {exc}", "produce it with kubectl ... -o json") from None


def _emit(kind: str, title: str, findings: list, as_json: bool, show_ok: bool) -> int:
    from flatnet.doctor.findings import exit_code, report_json

    if as_json:
        print(json.dumps(report_json(kind, findings), indent=2))
    else:
        from flatnet.doctor.render import render

        render(title, findings, show_ok=show_ok)
    return exit_code(findings)


def cmd_cluster(args: argparse.Namespace) -> int:
    from flatnet.doctor.cluster import KUBECTL_ARGS, analyze
    from flatnet.doctor.findings import Finding
    from flatnet.doctor.pools import (
        check_pools,
        check_quarantined,
        quarantined_from_store,
        usage_from_store,
    )
    from flatnet.doctor.kubectl import kubectl_json
    from flatnet.doctor.segments import segments_from_store

    dump = _read_json(args.source, "--from") if args.source else kubectl_json(KUBECTL_ARGS)
    usage = _read_json(args.usage, "--usage") if args.usage else None
    findings = analyze(dump, usage)
    if args.ipam_store:
        from flatnet.ipam.store import store_from_url

        store = store_from_url(args.ipam_store, "--ipam-store")  # a typo is a usage error
        try:
            findings += check_pools(usage_from_store(store))
            findings += check_quarantined(quarantined_from_store(store))
            findings += segments_from_store(store)
        except Exception as exc:  # noqa: BLE001 - an unreachable store skips one check
            findings.append(
                Finding(
                    "warn",
                    "pools-skipped",
                    "Pool/*",
                    f"pool usage not checked: {type(exc).__name__}: {exc}",
                    "exhausted pools make new pods fail their CNI ADD",
                    "check --ipam-store, or pass --usage FILE",
                )
            )
    src = args.source or "kubectl"
    return _emit("cluster", f"flatnet doctor cluster ({src})", findings, args.json, show_ok=False)


def cmd_node(args: argparse.Namespace) -> int:
    import socket as _socket

    from flatnet.doctor.node import evaluate, pick_node
    from flatnet.doctor.nodefacts import gather

    store = parse_store_url(args.store) if args.store else None
    node = pick_node(_read_json(args.node_json, "--node-json"), _socket.gethostname()) if args.node_json else None
    if args.host_root and not os.path.isdir(args.host_root):
        raise ConfigError(f"--host-root {args.host_root} is not a directory", "give where the node's / is mounted")
    facts = gather(
        args.socket,
        store,
        args.cni_conf_dir,
        args.cni_bin_dir,
        node,
        probe=not args.no_probe,
        host_root=args.host_root,
    )
    findings = evaluate(facts, args.socket)
    from flatnet.doctor.reclaimed import reclaimed_findings

    findings += reclaimed_findings(args.state_dir)
    return _emit("node", f"flatnet doctor node ({facts.hostname})", findings, args.json, show_ok=True)
