"""The agent's CNI handler: ADD / DEL / CHECK / GC / STATUS over IPAM and a datapath.

The same ``Service`` runs inside the agent daemon and, when no agent answers, inside
``flatnet-inprocess`` (``agent.inprocess``, exec'd by the forwarder); per-container file locks (``agent.locks``) keep the two from
racing. ADD is allocate → plumb → answer, and any failure after allocation undoes every
step it did (newly allocated leases released, plumbing deleted) before the error leaves,
so a failed ADD leaves nothing half-done. DEL is idempotent and never needs the netns.
What differs between modes (where the pools come from, the overlay joining before it
plumbs) is the mode's hooks, looked up in the mode registry (``datapath/modes.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

from flatnet.agent import nsproof, overlay, podpools, probing
from flatnet.agent.events import ServiceEvents
from flatnet.agent.locks import DEFAULT_LOCK_DIR, ContainerLocks
from flatnet.agent.spec import build_result, build_spec
from flatnet.agent.spec import netconf as _conf
from flatnet.ipam.store import DEFAULT_STORE
from flatnet.datapath import modes, netns
from flatnet.datapath.api import AttachSpec, Datapath
from flatnet.errors import (
    NOT_AVAILABLE,
    STATE_MISMATCH,
    TRY_AGAIN_LATER,
    ConfigError,
    FlatnetError,
)
from flatnet.ipam.api import IPInterface, Lease, Owner, PoolSpec, Store

if TYPE_CHECKING:
    from flatnet.cni.config import NetConf
    from flatnet.cni.env import CmdArgs
    from flatnet.cni.types import Result
    from flatnet.ipam import Ipam

log = logging.getLogger("flatnet.agent")


F = TypeVar("F", bound=Callable[..., Any])


def _one_netlink_session(verb: F) -> F:
    """Run a verb inside ``netns.session()``: one netlink handle per netns for all its steps."""

    @functools.wraps(verb)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with netns.session():
            return verb(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _default_store_factory(cfg: dict[str, Any]) -> Store:
    from flatnet.ipam.store import open_store  # lazy: light importers of the agent need no store

    return open_store(cfg)


def _default_datapath_factory(mode: str) -> Datapath:
    from flatnet.datapath import get_datapath

    return get_datapath(mode)


class Service:
    """Implements the ``flatnet.cni.Handler`` protocol.

    ``host_netns``: the node netns used when a config has no ``hostNetns`` (None: own).
    ``node``: this node's name, recorded with every lease (default: the hostname).
    ``default_store``: a store config used when a network config does not name one
    explicitly (the agent's ``--store``); configs that set ``ipam.store`` win.
    ``datapath_factory`` / ``store_factory``: injectable for tests (FakeDatapath, memory).
    ``events``: where the service reports stores opened and GC reclaims (``agent/events.py``).
    ``peer_sync``: re-syncs overlay peers in the background (the daemon's; None: no re-sync).
    ``conflict_probe``: probes a new address on the pod's VLAN before it is plumbed (flat
    modes; pools with conflictProbe): ``agent/probing.py``; None turns probing off.
    Built whole by ``agent/daemon.py`` (the agent) or ``agent/inprocess.py`` (no agent).
    """

    def __init__(
        self,
        *,
        host_netns: str | None = None,
        node: str | None = None,
        default_store: dict[str, Any] | None = None,
        lock_dir: str = DEFAULT_LOCK_DIR,
        lock_timeout: float = 60.0,
        datapath_factory: Callable[[str], Datapath] | None = None,
        store_factory: Callable[[dict[str, Any]], Store] | None = None,
        events: ServiceEvents | None = None,
        peer_sync: overlay.PeerSync | None = None,
        conflict_probe: probing.Prober | None = probing.wire_probe,
    ) -> None:
        self.host_netns = host_netns
        self.node = node or socket.gethostname()
        self.default_store = default_store
        self.locks = ContainerLocks(lock_dir, lock_timeout)
        self._datapath_factory = datapath_factory or _default_datapath_factory
        self._store_factory = store_factory or _default_store_factory
        self._stores: dict[str, tuple[Store, Ipam]] = {}
        self._store_cfgs: list[dict[str, Any]] = []
        self.conflict_probe = conflict_probe
        self.events = events if events is not None else ServiceEvents()
        self._datapaths: dict[str, Datapath] = {}
        self._hooks: dict[str, modes.ModeHooks] = {}
        self._cache_lock = threading.Lock()
        self.peer_sync = peer_sync
        #: every network config this service has served, by (name, host netns): what the
        #: leak reconciler (agent/reconcile.py) walks
        self._served: dict[tuple[str, str | None], NetConf] = {}
        #: DEL leaves a shim its last pod left to the reconciler's next pass (``shim.KEEP_IDLE``);
        #: set by the agent, whose reconciler runs, never by a one-off in-process call
        self.keep_idle_shims = False

    # ---- resources, cached so a long-running agent opens each store once ----
    def store_config(self, conf: NetConf) -> dict[str, Any]:
        """The store for this network: explicit ``ipam.store`` > agent default > parser default."""
        if not conf.store_explicit and self.default_store is not None:
            return dict(self.default_store)
        return dict(conf.store or DEFAULT_STORE)

    def _open(self, conf: NetConf) -> tuple[Store, Ipam]:
        """(store, Ipam) for this config's store, opened once per distinct store config."""
        return self.open_store_config(self.store_config(conf))

    def open_store_config(self, cfg: dict[str, Any]) -> tuple[Store, Ipam]:
        """(store, Ipam) for a store config; ``events`` hears of each new one."""
        key = json.dumps(cfg, sort_keys=True, default=str)
        with self._cache_lock:
            pair = self._stores.get(key)
            if pair is not None:
                return pair
            from flatnet.ipam import Ipam

            store = self._store_factory(cfg)
            pair = (store, Ipam(store))
            self._stores[key] = pair
            self._store_cfgs.append(dict(cfg))
        self._migrate(store)
        self.events.store_opened(cfg)
        return pair

    @staticmethod
    def _migrate(store: Store) -> None:
        """Build the store's segment index if it predates it (``ipam.segments.migrate``):
        one read when done already. A store that cannot be reached now is not fatal here;
        its ADDs will say so."""
        from flatnet.ipam import segments

        try:
            segments.migrate(store)
        except FlatnetError as exc:
            log.warning("agent: could not check the store's segment index (retried at the next start): %s", exc)

    @staticmethod
    def _is_overlay(mode: str) -> bool:
        found = modes.find(mode)
        return found is not None and found.overlay

    def opened_stores(self) -> list[dict[str, Any]]:
        """Every store config opened so far (the agent records them: ``agent/storestate.py``)."""
        with self._cache_lock:
            return [dict(c) for c in self._store_cfgs]

    def ipam(self, conf: NetConf) -> Ipam:
        """The ``Ipam`` over this config's store."""
        return self._open(conf)[1]

    def _serve(self, conf: NetConf) -> None:
        with self._cache_lock:
            self._served[(conf.name, conf.host_netns or self.host_netns)] = conf

    def served_networks(self) -> list[NetConf]:
        with self._cache_lock:
            return list(self._served.values())

    def datapath(self, mode: str) -> Datapath:
        with self._cache_lock:
            dp = self._datapaths.get(mode)
            if dp is None:
                dp = self._datapath_factory(mode)
                self._datapaths[mode] = dp
            return dp

    def stores(self) -> list[Store]:
        """Every store this service has opened (health checks and metrics read them)."""
        with self._cache_lock:
            return [store for store, _ipam in self._stores.values()]

    def close(self) -> None:
        """Close every cached store and retire the shims DELs left idle (agent shutdown)."""
        if self.keep_idle_shims:
            from flatnet.datapath import shim

            try:
                shim.retire_idle()
            except Exception:  # noqa: BLE001 - best effort: the next agent's reconciler retires them
                pass
        with self._cache_lock:
            for store, _ipam in self._stores.values():
                try:
                    store.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
            self._stores.clear()

    def hooks(self, mode: str) -> modes.ModeHooks:
        """The mode's hooks (registry); a mode the registry lacks fails later, in the datapath."""
        with self._cache_lock:
            hooks = self._hooks.get(mode)
            if hooks is None:
                found = modes.find(mode)
                hooks = found.new_hooks() if found is not None else modes.ConfigPools()
                self._hooks[mode] = hooks
            return hooks

    # ---- helpers ----
    def pools(self, conf: NetConf) -> list[PoolSpec]:
        """The pools to allocate from: the mode's pool provider (ipam.pools, or vxlan's node
        block of the cluster subnet, claimed on first use)."""
        store, _ipam = self._open(conf)
        return self.hooks(conf.mode).pools(store, conf, self.node)

    def _prepare(self, conf: NetConf) -> dict[str, Any] | None:
        """The mode's step before plumbing (vxlan: register this node and route its peers);
        returns extra datapath options. Overlays are re-prepared by ``peer_sync``."""
        store, _ipam = self._open(conf)
        hooks = self.hooks(conf.mode)
        host_netns = conf.host_netns or self.host_netns
        options = hooks.prepare(store, conf, self.node, host_netns)
        found = modes.find(conf.mode)
        if self.peer_sync is not None and found is not None and found.overlay:
            self.peer_sync.remember(hooks, store, conf, self.node, host_netns)
        return options

    def owner(self, cmd: CmdArgs, choices: tuple[tuple[str, str], ...] = ()) -> Owner:
        args = cmd.args or {}
        return Owner(
            container_id=cmd.container_id,
            ifname=cmd.ifname,
            network=_conf(cmd).name,
            pod_namespace=args.get("K8S_POD_NAMESPACE") or None,
            pod_name=args.get("K8S_POD_NAME") or None,
            node=self.node,
            netns=cmd.netns or None,
            netns_id=nsproof.record(cmd.netns),
            choices=choices,
        )

    def _spec(
        self,
        cmd: CmdArgs,
        leases: Iterable[Lease],
        pools: list[PoolSpec] | None = None,
        options: dict[str, Any] | None = None,
    ) -> AttachSpec:
        spec = build_spec(cmd, list(leases), pools or [], self.host_netns, self.node)
        spec.options.setdefault("network", _conf(cmd).name)
        if options:
            spec.options.update(options)
        return spec

    # ---- verbs ----
    @_one_netlink_session
    def add(self, cmd: CmdArgs) -> Result:
        """Allocate → (the mode's prepare hook) → plumb → answer; undo it all on failure."""
        conf = _conf(cmd)
        self._serve(conf)
        with self.locks.hold(cmd.container_id):
            ipam = self.ipam(conf)
            # namespace rules and pod annotations: refused here, before anything is allocated
            pick = podpools.pick(cmd, self.pools(conf), ipam)
            pools = list(pick.pools)
            held_before = {(l.pool, l.address) for l in ipam.lookup(cmd.container_id, cmd.ifname)}
            prober = self.conflict_probe if not self._is_overlay(conf.mode) else None
            owner = self.owner(cmd, tuple(pick.how.items()))
            alloc = probing.ProbedAllocation(ipam, pools, owner, pick.requested, held_before, prober)
            with podpools.naming(pick):
                leases = alloc.allocate()
            while True:
                plumbed: AttachSpec | None = None
                try:
                    # the probes run while the pod is plumbed; the datapath awaits them
                    # (address_gate) before the pod's link goes up
                    spec = self._spec(cmd, leases, pools, self._prepare(conf))
                    gate = alloc.start(spec, leases)
                    if gate is not None:
                        spec = dataclasses.replace(spec, address_gate=gate.wait)
                    attachment = self.datapath(conf.mode).add(spec)  # undoes its own partial work
                    plumbed = spec
                    if gate is not None:
                        gate.wait()  # a mode without the gate step: before the answer, at least
                    return build_result(spec, attachment, leases)
                except probing.Answered as answered:
                    if plumbed is not None:
                        self._unplumb(conf.mode, plumbed)
                    with podpools.naming(pick):  # releases this ADD's leases if it gives up
                        leases = alloc.retry(answered, leases)
                except BaseException:
                    if plumbed is not None:
                        self._unplumb(conf.mode, plumbed)
                    self._release_new(ipam, cmd, leases, held_before)
                    raise

    def _unplumb(self, mode: str, spec: AttachSpec) -> None:
        try:
            self.datapath(mode).delete(spec)
        except Exception:  # noqa: BLE001 - the original error matters more
            pass

    @staticmethod
    def _release_new(ipam: Ipam, cmd: CmdArgs, leases: list[Lease], held_before: set[tuple[str, IPInterface]]) -> None:
        """Release only what this ADD allocated: a lease held before (ADD repeated on a
        live attachment) still belongs to that attachment. Best effort."""
        if not held_before:
            try:
                ipam.release(cmd.container_id, cmd.ifname)
            except Exception:  # noqa: BLE001
                pass
            return
        for lease in leases:
            if (lease.pool, lease.address) not in held_before:
                try:
                    ipam.release_address(lease.pool, lease.address.ip)
                except Exception:  # noqa: BLE001
                    pass

    @_one_netlink_session
    def delete(self, cmd: CmdArgs) -> None:
        conf = _conf(cmd)
        self._serve(conf)
        with self.locks.hold(cmd.container_id, remove=True):
            ipam = self.ipam(conf)
            leases = ipam.lookup(cmd.container_id, cmd.ifname)
            spec = self._spec(cmd, leases, options=self._del_options())
            # a failure here keeps the leases: freeing an address still on an interface
            # would hand it to a second pod; the runtime retries DEL
            self.datapath(conf.mode).delete(spec)
            ipam.release(cmd.container_id, cmd.ifname)

    @_one_netlink_session
    def check(self, cmd: CmdArgs) -> None:
        conf = _conf(cmd)
        prev = conf.prev_result
        if prev is None:
            raise ConfigError(
                "CHECK needs prevResult in the network config", "the runtime must pass the result of ADD as prevResult"
            )
        with self.locks.hold(cmd.container_id):
            leases = self.ipam(conf).lookup(cmd.container_id, cmd.ifname)
            held = {l.address for l in leases}
            want = {ipaddress.ip_interface(str(ip.address)) for ip in (prev.ips or [])}
            if held != want:
                raise FlatnetError(
                    f"IPAM holds {sorted(map(str, held)) or 'nothing'} for {cmd.container_id}/"
                    f"{cmd.ifname} but prevResult has {sorted(map(str, want)) or 'nothing'}",
                    "DEL and ADD the container again",
                    code=STATE_MISMATCH,
                )
            self.datapath(conf.mode).check(self._spec(cmd, leases))

    @_one_netlink_session
    def gc(self, cmd: CmdArgs) -> None:
        conf = _conf(cmd)
        valid = {(a.container_id, a.ifname) for a in (conf.valid_attachments or [])}
        ipam = self.ipam(conf)
        stale: dict[tuple[str, str], list[Lease]] = {}
        for lease in ipam.leases():
            key = (lease.owner.container_id, lease.owner.ifname)
            # the runtime's list names only THIS node's attachments: in a shared store
            # (etcd, or one SQLite file for several nodes) other nodes' leases are not ours
            mine = lease.owner.node in (None, self.node)
            if lease.owner.network == conf.name and mine and key not in valid:
                stale.setdefault(key, []).append(lease)
        errors: list[str] = []
        for (cid, ifname), leases in stale.items():
            with self.locks.hold(cid):
                try:
                    self._reclaim(conf, cid, ifname, leases)
                except FlatnetError as exc:
                    errors.append(f"{cid}/{ifname}: {exc.msg}")
                    continue
                self.events.gc_reclaimed()
        if errors:
            raise FlatnetError(
                f"GC could not clean {len(errors)} attachment(s): " + "; ".join(errors[:5]),
                "see the agent log; GC will retry next time",
            )

    def _reclaim(self, conf: NetConf, cid: str, ifname: str, leases: list[Lease]) -> None:
        """Remove an attachment whose container is gone (no netns): plumbing, then leases.

        Caller holds the container lock. A datapath failure keeps the leases (retried later).
        """
        spec = AttachSpec(
            container_id=cid,
            ifname=ifname,
            netns="",
            mode=conf.mode,
            master=conf.master,
            bridge=conf.bridge,
            vlan=conf.vlan,
            addresses=tuple(l.address for l in leases),
            host_netns=conf.host_netns or self.host_netns,
            options={**(conf.options or {}), "network": conf.name, **self._del_options()},
        )
        self.datapath(conf.mode).delete(spec)
        self.ipam(conf).release(cid, ifname)

    def _del_options(self) -> dict[str, Any]:
        from flatnet.datapath.shim import KEEP_IDLE

        return {KEEP_IDLE: True} if self.keep_idle_shims else {}

    @_one_netlink_session
    def reclaim_if_unchanged(
        self, conf: NetConf, cid: str, ifname: str, ident: str, ident_of: Callable[[list[Lease]], str]
    ) -> bool:
        """Reclaim (cid, ifname) if nobody holds its lock and its leases are still ``ident``.

        For the leak reconciler: never waits for a lock (an ADD or DEL in flight wins) and
        re-reads the leases under the lock, so a container that came back is left alone.
        """
        try:
            with self.locks.hold(cid, timeout=0):
                leases = [l for l in self.ipam(conf).lookup(cid, ifname) if l.owner.network == conf.name]
                if not leases or ident_of(leases) != ident:
                    return False
                self._reclaim(conf, cid, ifname, leases)
                return True
        except FlatnetError as exc:
            if exc.code == TRY_AGAIN_LATER:
                return False
            raise

    @_one_netlink_session
    def repair_first_hop(self, conf: NetConf, cid: str, ifname: str, leases: list[Lease]) -> bool:
        """Reinstall a live flat-mode pod's first-hop filter if it is missing or wrong
        (the reconciler's step). Never waits for the container's lock: an ADD/DEL in flight wins."""
        found = modes.find(conf.mode)
        if found is None or found.overlay:
            return False
        from flatnet.agent.spec import first_hop_policy
        from flatnet.datapath import pod as dpod

        try:
            with self.locks.hold(cid, timeout=0):
                spec = AttachSpec(
                    container_id=cid,
                    ifname=ifname,
                    netns=leases[0].owner.netns or "",
                    mode=conf.mode,
                    addresses=tuple(l.address for l in leases),
                    host_netns=conf.host_netns or self.host_netns,
                    options={"firstHop": first_hop_policy(conf, leases, [])},
                )
                return dpod.repair_filter(spec)
        except FlatnetError as exc:
            if exc.code == TRY_AGAIN_LATER:
                return False
            raise

    @_one_netlink_session
    def status(self, cmd: CmdArgs) -> None:
        conf = _conf(cmd)
        try:
            store, _ipam = self._open(conf)
            store.get("status/probe")  # a cheap read proves the store answers
            if self.hooks(conf.mode).ready_by_prepare:  # e.g. an overlay: joined = ready
                self._prepare(conf)
                return
            spec = AttachSpec(
                container_id="",
                ifname="",
                netns="",
                mode=conf.mode,
                master=conf.master,
                bridge=conf.bridge,
                vlan=conf.vlan,
                mtu=conf.mtu,
                host_netns=conf.host_netns or self.host_netns,
                options=dict(conf.options or {}),
            )
            self.datapath(conf.mode).status(spec)
        except FlatnetError as exc:
            raise FlatnetError(f"flatnet is not available: {exc.msg}", exc.details, code=NOT_AVAILABLE) from exc
        except OSError as exc:
            raise FlatnetError(f"flatnet is not available: {exc}", code=NOT_AVAILABLE) from exc
