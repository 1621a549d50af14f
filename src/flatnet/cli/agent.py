"""``flatnet agent``: run the node agent in the foreground (systemd, the lab, by hand)."""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from flatnet import defaults
from flatnet.cli.common import DEFAULT_SOCKET, parse_store_url, store_arg

EPILOG = """\
examples:
  flatnet agent
      serve /run/flatnet/agent.sock for this node; stores come from each network config
  flatnet agent --netns fnlab-node1 --node node1 --socket /run/flatnet/lab/node1.sock \\
                --store sqlite:/run/flatnet/lab/ipam.db
      serve a lab node's netns from outside it, with a shared SQLite store
  flatnet agent --store etcd:http://10.0.0.5:2379,http://10.0.0.6:2379
      cluster-wide IPAM in etcd (for configs that do not name a store)

The plugin (/opt/cni/bin/flatnet) finds the agent through the config's agentSocket,
$FLATNET_AGENT_SOCKET or /run/flatnet/agent.sock. With no agent listening, every call fails
with CNI code 11 (try again) -- unless the config's "inProcess" or the runtime's
$FLATNET_INPROCESS names flatnet-inprocess, the no-agent mode for single hosts
(docs/PODMAN.md). The Helm chart names neither: on Kubernetes its DaemonSet's agent must run.
Leases of containers that vanished without a DEL (their netns path is gone) are reclaimed
by the agent itself every --reconcile-every seconds; the CNI GC verb does the same on demand.
The stores the agent uses are recorded in stores.json beside the socket, so that
`flatnet ipam ls` on this node finds them without --store.
Stop with SIGTERM or Ctrl-C: the socket file is removed.
"""


def register(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "agent",
        help="run the node agent (CNI service on a unix socket)",
        description="Run the flatnet node agent in the foreground; one log line per request.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--socket", default=DEFAULT_SOCKET, metavar="PATH", help="unix socket to serve (default: %(default)s)"
    )
    p.add_argument(
        "--netns",
        default=None,
        metavar="NS",
        help="the node's network namespace (name or path) when a config has no hostNetns (default: the agent's own)",
    )
    p.add_argument(
        "--node",
        default=socket.gethostname(),
        metavar="NAME",
        help="node name recorded with every lease (default: %(default)s)",
    )
    store_arg(p, default=None)
    p.add_argument(
        "--lock-dir",
        default=defaults.LOCK_DIR,
        metavar="DIR",
        help="per-container lock files, shared with the plugin (default: %(default)s)",
    )
    p.add_argument(
        "--allow-uid",
        type=int,
        action="append",
        default=None,
        metavar="UID",
        help="also serve peers with this uid (default: root only)",
    )
    p.add_argument(
        "--reconcile-every",
        type=float,
        default=defaults.RECONCILE_EVERY,
        metavar="SECONDS",
        help="every SECONDS, reclaim this node's leases whose container netns is gone "
        "although no DEL came (seen gone twice in a row; 0 turns it off; "
        "default: %(default)s)",
    )
    p.add_argument(
        "--heartbeat-ttl",
        type=int,
        default=defaults.HEARTBEAT_TTL,
        metavar="SECONDS",
        help="etcd stores: this node's heartbeat is an etcd lease of SECONDS, kept "
        "alive every third of it (default: %(default)s)",
    )
    p.add_argument(
        "--dead-node-grace",
        type=float,
        default=defaults.DEAD_NODE_GRACE,
        metavar="SECONDS",
        help="etcd stores: reclaim the leases of a node whose heartbeat has been gone "
        "this long (sticky addresses stay reserved; 0 never reclaims; "
        "default: %(default)s)",
    )
    p.add_argument(
        "--state-dir",
        default=defaults.STATE_DIR,
        metavar="DIR",
        help="where the agent remembers its etcd stores and records that this node "
        "was reclaimed, for 'flatnet doctor node' (default: %(default)s)",
    )
    p.add_argument(
        "--metrics-address",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus /metrics, /healthz and /readyz on HOST:PORT, in the "
        "node's netns (--netns) when given (default: off; the chart uses the "
        f"node's address and port {defaults.METRICS_PORT}; docs/OBSERVABILITY.md)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text: date, time, level, message; json: one object per line with the "
        "request's fields (default: %(default)s)",
    )
    p.add_argument(
        "--max-parallel",
        type=_positive_int,
        default=defaults.AGENT_MAX_PARALLEL,
        metavar="N",
        help="CNI requests served at once; more wait their turn, asleep. A node starting "
        "100 pods at once is served fastest by a few at a time: 100 at once spent ~30%% "
        "more CPU fighting over locks (default: %(default)s)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="log errors only")
    p.set_defaults(func=run)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1 (e.g. 4)")
    return n


def run(args: argparse.Namespace) -> int:
    """Check the flags, build the agent (``agent/daemon.py``) and serve until a signal."""
    if args.reconcile_every < 0:
        print("flatnet agent: --reconcile-every must be >= 0 (0 turns reconciliation off)", file=sys.stderr)
        return 2
    if args.heartbeat_ttl < 2 or args.dead_node_grace < 0:
        print(
            "flatnet agent: --heartbeat-ttl must be >= 2 and --dead-node-grace >= 0 (0 never reclaims)", file=sys.stderr
        )
        return 2
    from flatnet.agent.daemon import AgentOptions, MetricsUnavailable, build
    from flatnet.obs.http import parse_address
    from flatnet.obs.logs import redact, remember_config_secrets, setup_logging

    setup_logging(args.log_format, logging.WARNING if args.quiet else logging.INFO)
    metrics_at = parse_address(args.metrics_address) if args.metrics_address else None
    default_store = parse_store_url(args.store) if args.store else None
    remember_config_secrets(default_store)
    options = AgentOptions(
        socket=args.socket,
        node=args.node,
        netns=args.netns,
        default_store=default_store,
        lock_dir=args.lock_dir,
        allowed_uids=frozenset({0, *(args.allow_uid or [])}),
        reconcile_every=args.reconcile_every,
        heartbeat_ttl=args.heartbeat_ttl,
        dead_node_grace=args.dead_node_grace,
        state_dir=args.state_dir,
        metrics_at=metrics_at,
        max_parallel=args.max_parallel,
    )
    try:
        daemon = build(options)
    except MetricsUnavailable as exc:
        print(
            f"flatnet agent: cannot serve metrics on {args.metrics_address}: {exc} "
            "(is the address on this node, in --netns, and the port free?)",
            file=sys.stderr,
        )
        return 1
    log = logging.getLogger("flatnet.agent")
    if metrics_at is not None:
        log.info("metrics, /healthz and /readyz on http://%s/", args.metrics_address)
    log.info(
        "flatnet agent serving %s (node %s, netns %s, store %s)",
        args.socket,
        args.node,
        args.netns or "own",
        redact(args.store) if args.store else "per network config",
    )
    daemon.serve()
    return 0
