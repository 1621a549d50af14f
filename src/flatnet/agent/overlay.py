"""The agent's side of the vxlan overlay: node blocks, node registration, peer sync.

flannel's model: each node owns one block of the cluster subnet (claimed atomically in the
store), publishes its VTEP (underlay address + VXLAN MAC) there, and routes every other
node's block through the VXLAN device. ``OverlayHooks`` plugs this into the agent's ADD
and STATUS (named by the vxlan line of the mode registry, ``datapath/modes.py``). ``join``
is idempotent and cheap enough to run on every ADD and STATUS; the agent also runs it
periodically for the networks it has seen, so a node learns of peers that joined after
its last ADD.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from flatnet.agent.periodic import Periodic
from flatnet.datapath.modes import ModeHooks
from flatnet.errors import ConfigError
from flatnet.ipam.api import IPNetwork, PoolSpec, Store

if TYPE_CHECKING:
    from flatnet.cni.config import NetConf


def node_name(conf: NetConf, default: str) -> str:
    return (conf.overlay.node_name if conf.overlay else None) or default


def block_pools(store: Store, conf: NetConf, node: str) -> list[PoolSpec]:
    """The node's block of the overlay's cluster subnet as the pool pods allocate from."""
    from flatnet.ipam import blocks

    block = blocks.ensure_block(store, conf.name, node, *_layout(conf))
    return [blocks.block_pool(conf.name, node, block)]


def _layout(conf: NetConf) -> tuple[IPNetwork, int]:
    """(cluster subnet, node block prefix): the parser sets both in the overlay modes."""
    if conf.overlay is None:
        raise ConfigError(f"network {conf.name!r}: an overlay mode needs 'clusterSubnet' (e.g. \"198.18.0.0/16\")")
    return conf.overlay.cluster_subnet, conf.overlay.node_block_prefix


def join(store: Store, conf: NetConf, node: str, host_netns: str | None) -> dict[str, Any]:
    """Claim the block, prepare the node, publish its VTEP, route its peers; return options.

    The returned dict is the datapath's ``AttachSpec.options`` for this network on this node.
    """
    from flatnet.datapath import vxlan
    from flatnet.ipam import blocks

    vtep = conf.overlay.vtep_address if conf.overlay else None
    if vtep is None:
        raise ConfigError(
            "vxlan mode needs 'vtepAddress': the node's underlay address "
            '(the address other nodes reach it at), e.g. "198.18.100.11"'
        )
    block = blocks.ensure_block(store, conf.name, node, *_layout(conf))
    options = dict(conf.options or {})
    options.update({"network": conf.name, "node": node, "block": str(block), "vtep": str(vtep)})
    mac = vxlan.ensure_node(host_netns, options)
    blocks.register_node(store, conf.name, node, str(vtep), mac, block)
    options["peers"] = [n.as_peer() for n in blocks.nodes(store, conf.name) if n.node != node]
    vxlan.sync_peers(host_netns, options)
    return options


class OverlayHooks:
    """The vxlan mode's hooks (``datapath/modes.py``): the node block is the pool, and
    joining the overlay comes before plumbing and is what makes the node ready."""

    ready_by_prepare = True

    def pools(self, store: Store, conf: NetConf, node: str) -> list[PoolSpec]:
        return block_pools(store, conf, node_name(conf, node))

    def prepare(self, store: Store, conf: NetConf, node: str, host_netns: str | None) -> dict[str, Any]:
        return join(store, conf, node_name(conf, node), host_netns)


class PeerSync(Periodic):
    """Re-runs the ``prepare`` hook (for vxlan: ``join``) of every overlay network the agent
    has served, so a node learns of peers that joined after its last ADD.

    Every ``interval`` s it reads the network's ``peers-rev`` token (``ipam.blocks``; one
    small read) and runs the full ``join`` — which lists every peer, O(nodes) — only when
    the token changed, or ``full_every`` s after the last one (which also repairs the node's
    own overlay plumbing). What a node costs the store so stays the same however many
    nodes there are (docs/SCALE.md).
    """

    thread_name = "overlay-peer-sync"

    def __init__(self, interval: float = 2.0, full_every: float = 60.0) -> None:
        super().__init__(interval)
        self.full_every = full_every
        self._seen: dict[tuple[str, str | None], tuple[ModeHooks, Store, NetConf, str]] = {}
        self._last: dict[tuple[str, str | None], tuple[str | None, float]] = {}  # key -> (token, when)
        self._lock = threading.Lock()
        self.full_runs = 0

    def remember(self, hooks: ModeHooks, store: Store, conf: NetConf, node: str, host_netns: str | None) -> None:
        with self._lock:
            self._seen[(conf.name, host_netns)] = (hooks, store, conf, node)

    def tick(self) -> None:
        with self._lock:
            items = list(self._seen.items())
        from flatnet.ipam import blocks

        for key, (hooks, store, conf, node) in items:
            try:
                token = blocks.peers_rev(store, conf.name)
                last = self._last.get(key)
                now = time.monotonic()
                if last is not None and token is not None and last[0] == token and now - last[1] < self.full_every:
                    continue
                hooks.prepare(store, conf, node, key[1])
                self.full_runs += 1
                self._last[key] = (token, now)
            except Exception:  # noqa: BLE001 - store down or netns gone: retried next tick
                pass
