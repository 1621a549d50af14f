"""A node's records in an etcd store (heartbeat, fence, lost leases), and reclaiming a dead node.

Shared by the agents' own dead-node sweep (``flatnet.agent.heartbeat``) and the operator's
``flatnet ipam release --node NAME``, so both take the same steps in the same order:

1. the *fence*: one txn that holds only if the node's ``nodes/<node>/alive`` is absent and
   no fence exists yet (plus whatever else the caller requires — a reclaiming agent also
   requires its own heartbeat to be still its own);
2. each of the node's leases is copied to ``nodes/<node>/lost/...`` and then released like a
   DEL would (a sticky address stays reserved for its pod);
3. the fence is marked done.

A node that comes back after its fence finds it, tears the reclaimed addresses off its pods
and announces again (``NodeHeartbeat.recover``). That is why an operator's release goes
through the fence too: deleting a live node's leases behind its back would let two pods hold
one address.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import unquote

from flatnet import defaults
from flatnet.errors import ConfigError
from flatnet.ipam import records as r
from flatnet.ipam.api import Compare


def node_key(node: str, *rest: str) -> str:
    return "/".join(["nodes", r.q(node), *rest])


def reclaim_node(
    store: Any,
    ipam: Any,
    node: str,
    fence_info: dict[str, Any],
    also: list[Compare] | None = None,
    fenced: bool = False,
) -> int | None:
    """Fence ``node`` (unless ``fenced``) and release its leases: how many, or None if the fence failed.

    ``fence_info``: who reclaims (``by``, and the agent's ``session``), stored in the fence
    with the time; the returning node logs it.
    """
    fence = node_key(node, "fence")
    if not fenced:
        ok = store.txn(
            [Compare(node_key(node, "alive"), 0), Compare(fence, 0), *(also or [])],
            {fence: r.dumps({**fence_info, "at": round(time.time(), 3)})},
        )
        if not ok:
            return None
    attachments: set[tuple[str, str]] = set()
    for entry in store.range("owners/"):
        o = r.lease_from_record(entry.value).owner
        if o.node != node:
            continue
        lost = node_key(node, "lost", r.q(o.container_id), r.q(o.ifname), entry.key.rsplit("/", 1)[1])
        store.txn([], {lost: entry.value})  # recorded before it is released
        attachments.add((o.container_id, o.ifname))
    n = sum(len(ipam.release(cid, ifname)) for cid, ifname in sorted(attachments))
    cur = store.get(fence)
    if cur is not None:  # settled: later sweeps skip this node until it comes back
        store.txn([Compare(fence, cur.version, cur.value)], {fence: r.dumps({**json.loads(cur.value), "done": True})})
    return n


def release_dead_node(store: Any, ipam: Any, node: str, by: str) -> tuple[int, dict[str, Any]]:
    """The operator's reclaim: refused while ``node``'s heartbeat is alive; (released, fence)."""
    if store.get(node_key(node, "member")) is None:
        known = sorted({unquote(e.key.split("/")[1]) for e in store.range("nodes/") if e.key.count("/") >= 2})
        raise ConfigError(
            f"node {node!r} never announced a heartbeat in this store; nothing was released",
            "check the name (nodes in this store: " + (", ".join(known) or "none") + "); only an etcd store "
            "shared by agents keeps heartbeats; for one leaked attachment use --container ID --ifname IF",
        )
    alive = store.get(node_key(node, "alive"))
    if alive is not None:
        since = json.loads(alive.value).get("since")
        when = time.strftime(" since %Y-%m-%d %H:%M:%S UTC", time.gmtime(since)) if since else ""
        raise ConfigError(
            f"node {node!r} is alive: its agent's heartbeat (nodes/{node}/alive) is in the store{when}; "
            "nothing was released",
            f"release a node only once it is down for good: stop its agent (or power it off) and wait for its "
            f"heartbeat lease to expire (--heartbeat-ttl, {defaults.HEARTBEAT_TTL} s by default); the agents reclaim it by "
            "themselves after --dead-node-grace",
        )
    cur = store.get(node_key(node, "fence"))
    n = reclaim_node(store, ipam, node, {"by": by}, fenced=cur is not None)
    if n is None:  # the heartbeat came back (or a fence appeared) between the reads and the txn
        raise ConfigError(f"node {node!r} changed while releasing; nothing was released", "run the command again")
    fence = store.get(node_key(node, "fence"))
    return n, json.loads(fence.value) if fence else {}
