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
$FLATNET_AGENT_SOCKET or /run/flatnet/agent.sock; with no agent it works in-process.
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
        default=60.0,
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
        "node's address and port 9631; docs/OBSERVABILITY.md)",
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
    from flatnet.agent import AgentServer, Service, serve_until_signal

    if args.reconcile_every < 0:
        print("flatnet agent: --reconcile-every must be >= 0 (0 turns reconciliation off)", file=sys.stderr)
        return 2
    if args.heartbeat_ttl < 2 or args.dead_node_grace < 0:
        print(
            "flatnet agent: --heartbeat-ttl must be >= 2 and --dead-node-grace >= 0 (0 never reclaims)", file=sys.stderr
        )
        return 2
    from flatnet.obs.http import parse_address
    from flatnet.obs.logs import redact, remember_config_secrets, setup_logging
    from flatnet.obs.store import instrumented_factory

    setup_logging(args.log_format, logging.WARNING if args.quiet else logging.INFO)
    metrics_at = parse_address(args.metrics_address) if args.metrics_address else None
    default_store = parse_store_url(args.store) if args.store else None
    remember_config_secrets(default_store)
    metrics = None
    if metrics_at is not None:
        from flatnet.obs.metrics import AgentMetrics

        metrics = AgentMetrics()
    factory = instrumented_factory(metrics)
    service = Service(
        host_netns=args.netns,
        node=args.node,
        default_store=default_store,
        lock_dir=args.lock_dir,
        store_factory=factory,
    )
    from flatnet.agent import conflicts, storestate

    conflicts.keep_probe_sockets()

    state = storestate.state_path(args.socket)  # where `flatnet ipam ls` looks for our stores

    def record_stores(cfgs: list[dict]) -> None:
        try:
            storestate.record(state, cfgs, args.node)
        except OSError as exc:  # for tools only: serving comes first
            logging.getLogger("flatnet.agent").warning("cannot record the stores in %s: %s", state, exc)

    if default_store is not None:
        record_stores([default_store])
    from flatnet.agent.overlay import PeerSync

    service.peer_sync = PeerSync()  # learn overlay peers that join after our last ADD
    service.peer_sync.start()
    from flatnet.agent.reconcile import Reconciler

    reconciler = Reconciler(service, args.reconcile_every)
    reconciler.start()
    from flatnet.agent import claimwatch

    def conflict_seen(pool: str, address: str, pod_mac: str, other_mac: str) -> None:
        if metrics is not None:
            metrics.address_conflicts.labels(pool=pool).inc()

    claim_watch = claimwatch.ClaimWatch(service, conflict_seen, claimwatch.state_path(args.socket))
    claim_watch.start()  # ARP/ND claims of live pods' addresses from other MACs
    from flatnet.agent.heartbeats import Heartbeats

    beats = Heartbeats(service, args.heartbeat_ttl, args.dead_node_grace, args.state_dir)

    def store_opened(cfg: dict) -> None:
        beats.store_opened(cfg)
        record_stores(service.opened_stores())

    service.on_store_opened = store_opened
    beats.resume()  # the etcd stores served before a restart: beat before the first request
    if default_store is not None:
        try:
            service.open_store_config(default_store)
        except Exception as exc:  # noqa: BLE001 - the first request reports it as CNI error
            logging.getLogger("flatnet.agent").warning("store %s: %s", args.store, getattr(exc, "msg", exc))
    uids = frozenset({0, *(args.allow_uid or [])})
    server = AgentServer(args.socket, service, allowed_uids=uids, max_parallel=args.max_parallel)
    log = logging.getLogger("flatnet.agent")
    http = None
    if metrics is not None and metrics_at is not None:
        from flatnet.obs.agent import instrument, serve_metrics

        readiness = instrument(server, service, metrics, reconciler, default_store)
        try:
            http = serve_metrics(server, metrics, *metrics_at, args.netns, readiness)
        except OSError as exc:
            server.server_close()
            print(
                f"flatnet agent: cannot serve metrics on {args.metrics_address}: {exc} "
                "(is the address on this node, in --netns, and the port free?)",
                file=sys.stderr,
            )
            return 1
        log.info("metrics, /healthz and /readyz on http://%s/", args.metrics_address)
    log.info(
        "flatnet agent serving %s (node %s, netns %s, store %s)",
        args.socket,
        args.node,
        args.netns or "own",
        redact(args.store) if args.store else "per network config",
    )
    try:
        serve_until_signal(server)
    finally:
        if http is not None:
            http.stop()
    return 0
