"""The agent's composition root: every part of ``flatnet agent`` built once, in one place.

``build`` makes the metrics, the service's events, the ``Service`` with all its
collaborators (store factory, peer sync, probe, events), the leak reconciler, the
heartbeats, the store record, the socket server (with its request observer and metrics)
and, when asked, the metrics endpoint; nothing is attached to a built object afterwards.
The listeners of the service's events (heartbeats, the store record, the GC counter) are
subscribed here too, before anything is served. ``cli/agent.py`` only reads the flags.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from flatnet import defaults
from flatnet.agent import claimwatch, probing, storestate
from flatnet.agent.events import ServiceEvents
from flatnet.agent.storebeats import Heartbeats
from flatnet.agent.claimwatch import ClaimWatch
from flatnet.agent.overlay import PeerSync
from flatnet.agent.reconcile import Reconciler
from flatnet.agent.server import AgentServer, serve_until_signal
from flatnet.agent.service import Service
from flatnet.obs.metrics import AgentMetrics
from flatnet.obs.store import instrumented_factory

if TYPE_CHECKING:
    from flatnet.datapath.api import Datapath
    from flatnet.obs.http import MetricsServer

log = logging.getLogger("flatnet.agent")


@dataclass(frozen=True)
class AgentOptions:
    """What ``flatnet agent``'s flags say (see its --help for each)."""

    socket: str
    node: str
    netns: str | None = None
    #: the --store config (None: each network config names its store)
    default_store: dict[str, Any] | None = None
    lock_dir: str = defaults.LOCK_DIR
    allowed_uids: frozenset[int] = frozenset({0})
    reconcile_every: float = defaults.RECONCILE_EVERY
    heartbeat_ttl: int = defaults.HEARTBEAT_TTL
    dead_node_grace: float = defaults.DEAD_NODE_GRACE
    state_dir: str = defaults.STATE_DIR
    #: (host, port) of /metrics, /healthz and /readyz; None: not served
    metrics_at: tuple[str, int] | None = None
    max_parallel: int = defaults.AGENT_MAX_PARALLEL


class MetricsUnavailable(Exception):
    """The metrics endpoint could not be served (address not on the node, port taken)."""


@dataclass
class Daemon:
    """A built agent: ``serve`` runs it until SIGTERM/SIGINT."""

    options: AgentOptions
    metrics: AgentMetrics
    service: Service
    server: AgentServer
    reconciler: Reconciler
    heartbeats: Heartbeats
    peer_sync: PeerSync
    claim_watch: ClaimWatch
    http: MetricsServer | None = None

    def serve(self) -> None:
        try:
            serve_until_signal(self.server)
        finally:
            if self.http is not None:
                self.http.stop()

    def close(self) -> None:
        """Stop what ``build`` started, without serving (tests; a failed start)."""
        if self.http is not None:
            self.http.stop()
        self.server.server_close()
        for part in (self.reconciler, self.peer_sync, self.heartbeats, self.claim_watch):
            part.stop()
        self.service.close()


def build(opts: AgentOptions, datapath_factory: Callable[[str], Datapath] | None = None) -> Daemon:
    """Build and start the agent's parts (background threads included); the socket is bound.

    Raises ``MetricsUnavailable`` (the socket closed again) when ``metrics_at`` cannot be
    served. ``datapath_factory``: the service's (tests: FakeDatapath; None: the real one).
    """
    metrics = AgentMetrics()
    events = ServiceEvents()
    peer_sync = PeerSync()  # learn overlay peers that join after our last ADD
    service = Service(
        host_netns=opts.netns,
        node=opts.node,
        default_store=opts.default_store,
        lock_dir=opts.lock_dir,
        # store calls are timed only where someone can scrape them
        store_factory=instrumented_factory(metrics if opts.metrics_at is not None else None),
        events=events,
        peer_sync=peer_sync,
        datapath_factory=datapath_factory,
    )
    probing.keep_probe_sockets()
    record_stores = _store_recorder(storestate.state_path(opts.socket), opts.node)
    if opts.default_store is not None:
        record_stores([opts.default_store])
    peer_sync.start()
    reconciler = Reconciler(service, opts.reconcile_every)
    reconciler.start()
    # DELs leave a shim its last pod left to the reconciler's pass (and to shutdown)
    service.keep_idle_shims = opts.reconcile_every > 0

    def conflict_seen(pool: str, _address: str, _pod_mac: str, _other_mac: str) -> None:
        metrics.address_conflicts.labels(pool=pool).inc()

    # ARP/ND claims of live pods' addresses from other MACs, after ADD
    claim_watch = ClaimWatch(service, conflict_seen, claimwatch.state_path(opts.socket))
    claim_watch.start()
    beats = Heartbeats(service, opts.heartbeat_ttl, opts.dead_node_grace, opts.state_dir)
    events.on_store_opened(beats.store_opened)
    events.on_store_opened(lambda _cfg: record_stores(service.opened_stores()))
    beats.resume()  # the etcd stores served before a restart: beat before the first request
    if opts.default_store is not None:
        try:
            service.open_store_config(opts.default_store)
        except Exception as exc:  # noqa: BLE001 - the first request reports it as CNI error
            log.warning("store %s: %s", opts.default_store.get("type", "?"), getattr(exc, "msg", exc))
    server = AgentServer(
        opts.socket, service, allowed_uids=opts.allowed_uids, max_parallel=opts.max_parallel, metrics=metrics
    )
    daemon = Daemon(opts, metrics, service, server, reconciler, beats, peer_sync, claim_watch)
    if opts.metrics_at is not None:
        from flatnet.obs.agent import instrument, serve_metrics

        readiness = instrument(server, service, reconciler, opts.default_store)
        try:
            daemon.http = serve_metrics(server, metrics, *opts.metrics_at, opts.netns, readiness)
        except OSError as exc:
            daemon.close()
            raise MetricsUnavailable(str(exc)) from exc
    return daemon


def _store_recorder(path: str, node: str) -> Callable[[list[dict[str, Any]]], None]:
    """Records the stores the agent uses (for `flatnet ipam ls` on this node); a failure is
    only logged: serving comes first."""

    def record(cfgs: list[dict[str, Any]]) -> None:
        try:
            storestate.record(path, cfgs, node)
        except OSError as exc:
            log.warning("cannot record the stores in %s: %s", path, exc)

    return record
