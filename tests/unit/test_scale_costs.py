"""Background duties whose store cost must not grow per node with the cluster (docs/SCALE.md).

The vxlan peer sync lists the peers (O(nodes)) only when ``peers-rev`` says they changed;
the leak reconciler's full passes (every lease of the store) grow apart with what the
last one read, and the passes between them check only this node's known attachments.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from flatnet.agent.overlay import PeerSync
from flatnet.agent.reconcile import RECORDS_PER_SECOND, Reconciler
from flatnet.ipam import Ipam, Owner, PoolSpec, blocks
from flatnet.ipam.store import MemoryStore

NET = "fnsc-ovl"
SUBNET = ipaddress.ip_network("198.18.0.0/20")


def _join(store: MemoryStore, node: str, n: int) -> None:
    block = blocks.ensure_block(store, NET, node, SUBNET, 26)
    blocks.register_node(store, NET, node, f"198.19.0.{n}", f"02:00:00:00:00:{n:02x}", block)


def test_peers_rev_changes_when_the_peers_do_and_only_then() -> None:
    store = MemoryStore()
    assert blocks.peers_rev(store, NET) is None
    _join(store, "n1", 1)
    first = blocks.peers_rev(store, NET)
    assert first is not None
    _join(store, "n1", 1)  # the same registration again: nothing changed
    assert blocks.peers_rev(store, NET) == first
    _join(store, "n2", 2)
    second = blocks.peers_rev(store, NET)
    assert second not in (None, first)
    blocks.release_block(store, NET, "n2")
    assert blocks.peers_rev(store, NET) not in (None, first, second)


class _Hooks:
    """The vxlan hooks' store side (``overlay.join`` without the kernel), counting full joins."""

    ready_by_prepare = True

    def __init__(self, n: int) -> None:
        self.n, self.joins = n, 0

    def pools(self, store: Any, conf: Any, node: str) -> list[PoolSpec]:
        return []

    def prepare(self, store: Any, conf: Any, node: str, host_netns: str | None) -> dict[str, Any]:
        self.joins += 1
        _join(store, node, self.n)
        return {"peers": [p.as_peer() for p in blocks.nodes(store, NET) if p.node != node]}


class _Conf:
    name = NET


def test_peer_sync_lists_the_peers_only_after_they_changed() -> None:
    store = MemoryStore()
    hooks = _Hooks(1)
    sync = PeerSync(interval=2.0, full_every=3600)
    sync.remember(hooks, store, _Conf(), "n1", None)  # type: ignore[arg-type]
    sync.tick()
    sync.tick()  # our own registration changed the token once
    assert hooks.joins == 2
    for _ in range(5):
        sync.tick()
    assert hooks.joins == 2, "peers listed again with nothing changed"
    _join(store, "n2", 2)
    sync.tick()
    assert hooks.joins == 3
    sync.tick()
    assert hooks.joins == 3


def test_peer_sync_still_joins_in_full_every_so_often() -> None:
    store = MemoryStore()
    hooks = _Hooks(1)
    sync = PeerSync(interval=2.0, full_every=0.0)  # every tick is "long enough ago"
    sync.remember(hooks, store, _Conf(), "n1", None)  # type: ignore[arg-type]
    for _ in range(3):
        sync.tick()
    assert hooks.joins == 3


class _Service:
    node = "n1"

    def __init__(self, ipam: Ipam) -> None:
        self._ipam = ipam

    def served_networks(self) -> list[Any]:
        class C:
            name = "fnsc-net"

        return [C(), C()]  # two networks on one store: the leases are read once

    def ipam(self, conf: Any) -> Ipam:
        return self._ipam


def test_reconciler_full_passes_grow_apart_with_what_they_read() -> None:
    ipam = Ipam(MemoryStore())
    pool = PoolSpec(name="fnsc", subnet=ipaddress.ip_network("198.18.0.0/16"), conflict_probe=False)
    n = int(RECORDS_PER_SECOND * 60 * 3)
    for i in range(n):
        ipam.allocate([pool], Owner(f"c{i}", "eth0", "fnsc-net", node=f"n{i % 50}"))
    rec = Reconciler(_Service(ipam), interval=60.0)
    rec.run_once()
    assert rec.records_read == n, "each lease read once per pass, however many networks share the store"
    assert rec.full_every == n / RECORDS_PER_SECOND == 180.0
    assert not rec.full_due()
    rec.run_once()
    assert rec.records_read == 0, "a light pass read the store's leases"
