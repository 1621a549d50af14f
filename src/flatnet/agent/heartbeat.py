"""Node heartbeats in etcd, and what happens to a node that stops beating.

A node that dies never sends DEL, so its leases would stay forever. Each agent therefore
keeps, per etcd store it serves, ``nodes/<node>/alive`` attached to an etcd lease of
``ttl`` seconds that it keeps alive; ``nodes/<node>/member`` (no lease) says the node
ever joined. One live agent, the *sweeper*, looks at the members now and then; a node
whose ``alive`` has been absent for longer than ``grace`` *as the sweeper saw it* (its own
monotonic clock; no clocks are compared across nodes) is reclaimed:

1. the *fence*: one txn that holds only if the dead node's ``alive`` is absent, no fence
   exists yet and the reclaimer's own ``alive`` is still its own — etcd picks exactly one
   live agent, and it puts ``nodes/<dead>/fence``;
2. each lease of the dead node is first copied to ``nodes/<dead>/lost/...`` and then
   released like a DEL would (a sticky address stays reserved for its pod). The next
   sweeper finishes a fenced node's release if the fencing one died midway (the steps are
   idempotent).

A node that comes back before the fence re-announces and keeps everything. One that
comes back after it cannot re-announce (its announce txn requires "no fence"): it logs
at error level, writes ``<state_dir>/reclaimed.<node>.json`` (``flatnet doctor node``
reports it), removes the reclaimed addresses' interfaces from the pods that still have
them (the address may belong to another pod by now; CHECK already fails for them, as IPAM
holds nothing for the attachment), deletes the fence and announces again.

What this costs etcd per node must not grow with the cluster (docs/SCALE.md measures it):
an idle agent sends one lease keepalive every ``ttl / 3`` seconds and one small read of the
``sweeper`` key every sweep period; it checks its ``alive`` key only every ``VERIFY_EVERY``
beats and its ``lost/`` records only after an announce (while any are left). Only the
sweeper reads the members, so the reading is O(nodes) once per period for the whole
cluster, not per node. The sweeper is elected by a create-only txn on ``sweeper``, put
with the winner's heartbeat lease: when it stops or dies, the key goes with its lease and
the next agent to look takes over (it then counts the grace from its own first sight).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Any, Callable
from urllib.parse import unquote

from flatnet import defaults
from flatnet.agent.periodic import Periodic
from flatnet.datapath.api import AttachSpec
from flatnet.errors import FlatnetError
from flatnet.ipam import records as r
from flatnet.ipam.api import Compare, Lease
from flatnet.ipam.nodes import node_key, reclaim_node

log = logging.getLogger("flatnet.agent")

DEFAULT_TTL = defaults.HEARTBEAT_TTL
DEFAULT_GRACE = defaults.DEAD_NODE_GRACE
#: the key (under the store's prefix) naming the one agent that sweeps; bound to its lease
SWEEPER_KEY = "sweeper"
#: the ``alive`` key is read back every this many beats (a keepalive proves the lease, not the key)
VERIFY_EVERY = 6


def state_file(state_dir: str, node: str) -> str:
    """Where an agent records that its node was reclaimed (read by ``flatnet doctor node``)."""
    return os.path.join(state_dir, f"reclaimed.{r.q(node)}.json")


class NodeHeartbeat(Periodic):
    """One node's heartbeat in one etcd store, plus the dead-node sweep of that store.

    ``service``: the agent's ``Service`` (store, Ipam, served networks, datapath);
    ``store_cfg``: the store's config dict; ``grace`` <= 0 turns reclaiming off (the
    heartbeat still runs, so other agents do not reclaim this node).
    """

    thread_name = "heartbeat"

    def __init__(
        self,
        service: Any,
        store_cfg: dict[str, Any],
        ttl: int = DEFAULT_TTL,
        grace: float = DEFAULT_GRACE,
        state_dir: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_announced: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(max(ttl / 3.0, 0.2))
        self.service, self.store_cfg = service, dict(store_cfg)
        self.store, self.ipam = service.open_store_config(self.store_cfg)
        self.node, self.ttl, self.grace = service.node, int(ttl), grace
        self.state_dir, self.clock = state_dir, clock
        self.session = uuid.uuid4().hex
        self.lease_id = 0
        self.alive_value = ""
        self.alive_version = 0
        self._missing: dict[str, float] = {}  # node -> when this agent first saw it missing
        self._last_sweep = -1e18
        self._beats = 0
        self._sweeper_lease = 0  # our lease when we won the sweeper key (0: not the sweeper)
        self._teardown_at: float | None = None  # when lost/ records are next looked at
        self.reclaimed_by_me: list[str] = []
        self._on_announced = on_announced

    # ---- our own heartbeat ----
    def announce(self) -> bool:
        """Grant a lease and put ``alive`` with it; False when a fence says we were reclaimed."""
        self.lease_id = self.store.grant_lease(self.ttl)
        self.alive_value = r.dumps({"node": self.node, "session": self.session, "since": round(time.time(), 3)})
        ok = self.store.txn(
            [Compare(node_key(self.node, "fence"), 0)],
            {node_key(self.node, "alive"): self.alive_value},
            lease=self.lease_id,
        )
        if ok:
            cur = self.store.get(node_key(self.node, "alive"))
            self.alive_version = cur.version if cur else 0
            member = node_key(self.node, "member")
            if self.store.get(member) is None:
                self.store.txn([Compare(member, 0)], {member: r.dumps({"node": self.node})})
            return True
        self.store.revoke_lease(self.lease_id)
        self.lease_id = 0
        return False

    def beat(self) -> None:
        """Keep the lease alive; re-announce after it expired; recover when fenced."""
        ttl = self._keepalive() if self.lease_id else 0
        self._beats += 1
        if ttl > 0:
            if self._beats % VERIFY_EVERY:
                self._teardown_if_due()
                return
            cur = self.store.get(node_key(self.node, "alive"))
            if cur is not None and cur.value == self.alive_value:
                self._teardown_if_due()
                return
        if not self.announce():
            self.recover()
            if not self.announce():
                raise FlatnetError(f"node {self.node}: fenced again while recovering; retrying")
        else:
            log.info("heartbeat: node %s announced in etcd (lease %x, ttl %ss)", self.node, self.lease_id, self.ttl)
            if self._on_announced is not None:
                self._on_announced()
                self._on_announced = None
        self._teardown_at = self.clock()
        self._teardown_if_due()

    def _teardown_if_due(self) -> None:
        """``teardown_pending`` after an announce, and again later while records are left."""
        if self._teardown_at is None or self.clock() < self._teardown_at:
            return
        left = self.teardown_pending()
        # records of networks this agent has not served yet wait for its first request
        self._teardown_at = self.clock() + max(3 * self.interval, 10.0) if left else None

    def _keepalive(self) -> int:
        try:
            ttl: int = self.store.keepalive(self.lease_id)
            return ttl
        except FlatnetError as exc:
            if "lease not found" in exc.msg:
                return 0
            raise

    def stop_beating(self) -> None:
        """Revoke our lease (a clean agent stop: peers see us gone at once, grace still holds)."""
        self.stop()
        if self.lease_id:
            try:
                self.store.revoke_lease(self.lease_id)
            except FlatnetError:
                pass

    # ---- coming back after being reclaimed ----
    def lost(self) -> list[Lease]:
        return [r.lease_from_record(e.value) for e in self.store.range(node_key(self.node, "lost/"))]

    def recover(self) -> None:
        """We were declared dead: say so loudly, record it, tear down, lift the fence."""
        fence = self.store.get(node_key(self.node, "fence"))
        info = json.loads(fence.value) if fence else {}
        lost = self.lost()
        log.error(
            "NODE %s WAS DECLARED DEAD by node %s at %s (its etcd heartbeat was gone longer than "
            "the grace) and its %d address(es) were reclaimed: %s. The pods holding them lose "
            "their interface now (CHECK fails for them); recreate them (kubectl delete pod).",
            self.node,
            info.get("by", "?"),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info.get("at", 0))),
            len(lost),
            ", ".join(f"{l.address.ip} ({l.owner.pod or l.owner.container_id[:12]})" for l in lost[:20]),
        )
        self._write_state(info, lost)
        if fence is not None:
            self.store.txn([Compare(fence.key, fence.version, fence.value)], {}, [fence.key])

    def _write_state(self, info: dict[str, Any], lost: list[Lease]) -> None:
        if not self.state_dir:
            return
        os.makedirs(self.state_dir, exist_ok=True)
        doc = {
            "node": self.node,
            "reclaimed_by": info.get("by"),
            "reclaimed_at": info.get("at"),
            "noticed_at": round(time.time(), 3),
            "attachments": [
                {
                    "container_id": l.owner.container_id,
                    "ifname": l.owner.ifname,
                    "pod": l.owner.pod,
                    "address": str(l.address),
                    "netns": l.owner.netns,
                    "network": l.owner.network,
                }
                for l in lost
            ],
        }
        path = state_file(self.state_dir, self.node)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
        os.replace(tmp, path)

    def teardown_pending(self) -> int:
        """Remove reclaimed addresses from pods still holding them (networks we know);
        how many records are left for later."""
        confs = {c.name: c for c in self.service.served_networks()}
        left = 0
        for entry in self.store.range(node_key(self.node, "lost/")):
            lease = r.lease_from_record(entry.value)
            conf = confs.get(lease.owner.network)
            if conf is None:
                left += 1
                continue  # learnt on this network's first request to the agent
            spec = AttachSpec(
                container_id=lease.owner.container_id,
                ifname=lease.owner.ifname,
                netns=lease.owner.netns or "",
                mode=conf.mode,
                master=conf.master,
                bridge=conf.bridge,
                vlan=conf.vlan,
                addresses=(lease.address,),
                host_netns=conf.host_netns or self.service.host_netns,
                options={**(conf.options or {}), "network": conf.name},
            )
            try:
                with self.service.locks.hold(lease.owner.container_id, timeout=5):
                    self.service.datapath(conf.mode).delete(spec)
            except Exception as exc:  # noqa: BLE001 - retried on the next beat
                left += 1
                log.error(
                    "heartbeat: could not remove reclaimed %s from %s/%s: %s",
                    lease.address.ip,
                    lease.owner.container_id[:12],
                    lease.owner.ifname,
                    exc,
                )
                continue
            log.error(
                "heartbeat: removed reclaimed address %s from container %s/%s (pod %s)",
                lease.address.ip,
                lease.owner.container_id[:12],
                lease.owner.ifname,
                lease.owner.pod or "-",
            )
            self.store.txn([Compare(entry.key, entry.version, entry.value)], {}, [entry.key])
        return left

    # ---- other nodes ----
    def is_sweeper(self) -> bool:
        """Whether this agent sweeps now: it holds ``sweeper`` with its current lease, or wins it.

        One read per call while another agent holds it (a create-only txn, a write, only when
        the key is absent); none while we hold it, since it lives exactly as long as our lease
        and a new lease (after expiry) makes us contend again.
        """
        if not self.lease_id:
            return False
        if self._sweeper_lease == self.lease_id:
            return True
        if self.store.get(SWEEPER_KEY) is not None:
            return False
        value = r.dumps({"node": self.node, "session": self.session, "since": round(time.time(), 3)})
        if self.store.txn([Compare(SWEEPER_KEY, 0)], {SWEEPER_KEY: value}, lease=self.lease_id):
            self._sweeper_lease = self.lease_id
            self._missing.clear()  # a new sweeper's grace starts at its own first sight
            log.info("heartbeat: node %s now sweeps for dead nodes", self.node)
            return True
        return False

    def sweep(self) -> list[str]:
        """Reclaim nodes whose heartbeat has been gone longer than ``grace``; their names."""
        if self.grace <= 0:
            return []
        now, done = self.clock(), []
        members: set[str] = set()
        alive: set[str] = set()
        fenced: set[str] = set()
        settled: set[str] = set()  # fenced and every lease released: nothing left to do
        for e in self.store.range("nodes/"):
            parts = e.key.split("/")
            if len(parts) < 3:
                continue
            node = unquote(parts[1])
            if parts[2] == "fence" and json.loads(e.value).get("done"):
                settled.add(node)
            {"member": members, "alive": alive, "fence": fenced}.get(parts[2], set()).add(node)
        for node in sorted(members - {self.node} - settled):
            if node in alive and node not in fenced:
                self._missing.pop(node, None)
                continue
            since = self._missing.setdefault(node, now)
            if node in fenced or now - since >= self.grace:
                if self.reclaim(node, fenced=node in fenced):
                    done.append(node)
        return done

    def reclaim(self, node: str, fenced: bool = False) -> bool:
        """Fence ``node`` (unless fenced already) and release its leases."""
        mine = Compare(node_key(self.node, "alive"), self.alive_version, self.alive_value)
        info = {"by": self.node, "session": self.session}
        released = reclaim_node(self.store, self.ipam, node, info, also=[mine], fenced=fenced)
        if released is None:
            return False
        n = released
        if n or not fenced:
            log.warning(
                "heartbeat: node %s's heartbeat was gone for more than %.0fs: reclaimed "
                "%d lease(s) (sticky addresses stay reserved for their pods)",
                node,
                self.grace,
                n,
            )
        self.reclaimed_by_me.append(node)
        self._missing.pop(node, None)
        return True

    def sweep_period(self) -> float:
        """How often the sweeper sweeps (and the others look whether a sweeper is there)."""
        return max(self.interval, min(self.grace / 4, 15.0))

    # ---- the loop ----
    def start(self) -> None:
        try:
            self.beat()
        except FlatnetError as exc:
            log.warning("heartbeat: first beat failed (retrying every %.1fs): %s", self.interval, exc.msg)
        super().start()

    def tick(self) -> None:
        try:
            self.beat()
            if self.grace > 0 and self.clock() - self._last_sweep >= self.sweep_period():
                self._last_sweep = self.clock()
                if self.is_sweeper():
                    self.sweep()
        except Exception as exc:  # noqa: BLE001 - store down: next tick retries
            log.warning("heartbeat: %s", getattr(exc, "msg", exc))
