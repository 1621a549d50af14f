"""Per-node address blocks of a cluster subnet, for the VXLAN overlay mode (flannel's model).

In overlay mode each node owns one block (e.g. a /24 of 198.19.0.0/17). Peers route a
whole block to the node's VTEP, so the routing state grows with nodes, never with pods.
A node keeps its block for life (its pods' addresses and every peer's route depend on
it); a new node takes the lowest free block.

Everything here is pure logic over the ``Store`` protocol: a block is claimed with one
compare-and-swap transaction that creates both the block key (block -> node) and the
node key (node -> block), so two nodes racing for the same block can never both win,
whatever store (memory, sqlite, etcd) sits underneath.

Keys, under ``/flatnet/overlay/<network>/``:
  ``blocks/<net>_<prefixlen>`` -> node name         (who owns this block)
  ``nodeblock/<node>``         -> block CIDR          (which block a node owns)
  ``nodes/<node>``             -> JSON NodeInfo       (VTEP address and MAC, for peers)
  ``peers-rev``                -> a random token, new whenever ``nodes/`` changes

``peers-rev`` lets an agent learn in one small read whether it must list the peers again
(``agent/overlay.PeerSync``): listing them is O(nodes), and every node looking every two
seconds would be O(nodes²) for the cluster.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from flatnet.errors import ConfigError, PoolExhausted, StoreUnavailable
from flatnet.ipam.api import Compare, IPNetwork, PoolSpec, Store

PREFIX = "/flatnet/overlay/"
# a CAS loser re-reads and retries; every retry means some other node made progress,
# so this bound is only hit by a store that keeps failing transactions for no reason
MAX_ATTEMPTS = 256
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class NodeInfo:
    """A node as its peers need it: where its VTEP is and which block it routes."""

    node: str
    vtep_ip: str
    vtep_mac: str
    block: IPNetwork

    def as_peer(self) -> dict[str, Any]:
        """The dict shape that ``VxlanDatapath`` expects in ``options["peers"]``."""
        return {"node": self.node, "vtep": self.vtep_ip, "mac": self.vtep_mac, "block": str(self.block)}


def _base(network: str) -> str:
    if not network or "/" in network:
        raise ConfigError(f"network name {network!r} is invalid: use a non-empty name without '/'")
    return f"{PREFIX}{network}/"


def _node_name(node: str) -> str:
    if not node or "/" in node:
        raise ConfigError(f"node name {node!r} is invalid: use a non-empty name without '/'")
    return node


def _block_key(network: str, block: IPNetwork) -> str:
    return f"{_base(network)}blocks/{block.network_address}_{block.prefixlen}"


def _nodeblock_key(network: str, node: str) -> str:
    return f"{_base(network)}nodeblock/{_node_name(node)}"


def _node_key(network: str, node: str) -> str:
    return f"{_base(network)}nodes/{_node_name(node)}"


def _rev_key(network: str) -> str:
    return f"{_base(network)}peers-rev"


def peers_rev(store: Store, network: str) -> str | None:
    """The token that changes whenever a node of ``network`` registers, changes or leaves."""
    entry = store.get(_rev_key(network))
    return entry.value if entry else None


def _check_layout(cluster_subnet: IPNetwork, prefixlen: int) -> None:
    """A block must fit in the cluster subnet and hold a gateway plus at least one pod."""
    maxlen = cluster_subnet.max_prefixlen
    if not cluster_subnet.prefixlen <= prefixlen <= maxlen - 2:
        raise ConfigError(
            f"block prefix length /{prefixlen} does not fit cluster subnet {cluster_subnet}: "
            f"choose a value between /{cluster_subnet.prefixlen} and /{maxlen - 2}"
        )


def ensure_block(store: Store, network: str, node: str, cluster_subnet: IPNetwork | str, prefixlen: int) -> IPNetwork:
    """Return ``node``'s block, claiming the lowest free one if it has none yet.

    Idempotent: a node that already owns a block (of this layout) gets it back. Raises
    PoolExhausted when every block is taken, ConfigError when the layout is impossible
    or the node's stored block no longer fits the configured cluster subnet.
    """
    cluster = ipaddress.ip_network(cluster_subnet, strict=True)
    _check_layout(cluster, prefixlen)
    nb_key = _nodeblock_key(network, node)
    blocks_prefix = f"{_base(network)}blocks/"
    for _ in range(MAX_ATTEMPTS):
        mine = store.get(nb_key)
        if mine is not None:
            block = ipaddress.ip_network(mine.value)
            if block.prefixlen != prefixlen or not block.subnet_of(cluster):  # type: ignore[arg-type]
                raise ConfigError(
                    f"node {node!r} already owns block {block}, which is not a /{prefixlen} of "
                    f"{cluster}: release it (release_block) before changing the cluster layout"
                )
            return block
        taken = {e.key for e in store.range(blocks_prefix)}
        free = next((b for b in cluster.subnets(new_prefix=prefixlen) if _block_key(network, b) not in taken), None)
        if free is None:
            raise PoolExhausted(
                f"no free /{prefixlen} block left in cluster subnet {cluster} for node {node!r}: "
                "release blocks of departed nodes or use a larger cluster subnet / longer block prefix"
            )
        key = _block_key(network, free)
        if store.txn([Compare(key, 0), Compare(nb_key, 0)], puts={key: node, nb_key: str(free)}):
            return free
    raise StoreUnavailable(f"could not claim a block for node {node!r} after {MAX_ATTEMPTS} attempts; try again")


def node_block(store: Store, network: str, node: str) -> IPNetwork | None:
    """The block ``node`` owns, or None."""
    entry = store.get(_nodeblock_key(network, node))
    return ipaddress.ip_network(entry.value) if entry else None


def register_node(
    store: Store, network: str, node: str, vtep_ip: str, vtep_mac: str, block: IPNetwork | str
) -> NodeInfo:
    """Publish (or update) the node's VTEP so peers can route its block to it.

    The block must be the one the node owns: publishing someone else's block would
    hijack their pods' traffic, so that is refused.
    """
    try:
        ip = ipaddress.ip_address(vtep_ip)
    except ValueError:
        raise ConfigError(
            f"vtep address {vtep_ip!r} of node {node!r} is not an IP address: pass the node's underlay IP"
        ) from None
    mac = vtep_mac.lower()
    if not _MAC_RE.match(mac):
        raise ConfigError(f"vtep MAC {vtep_mac!r} of node {node!r} is malformed: expected aa:bb:cc:dd:ee:ff")
    net = ipaddress.ip_network(block)
    owned = node_block(store, network, node)
    if owned != net:
        raise ConfigError(f"node {node!r} does not own block {net} (it owns {owned}): call ensure_block first")
    info = NodeInfo(node=node, vtep_ip=str(ip), vtep_mac=mac, block=net)
    value = json.dumps({"node": node, "vtep": info.vtep_ip, "mac": mac, "block": str(net)}, sort_keys=True)
    key = _node_key(network, node)
    for _ in range(MAX_ATTEMPTS):
        cur = store.get(key)
        if cur is not None and cur.value == value:
            return info
        puts = {key: value, _rev_key(network): uuid.uuid4().hex}
        if store.txn([Compare(key, cur.version, cur.value) if cur else Compare(key, 0)], puts=puts):
            return info
    raise StoreUnavailable(f"could not register node {node!r} after {MAX_ATTEMPTS} attempts; try again")


def nodes(store: Store, network: str) -> list[NodeInfo]:
    """Every registered node of ``network``, sorted by node name."""
    out = []
    for entry in store.range(f"{_base(network)}nodes/"):
        d = json.loads(entry.value)
        out.append(
            NodeInfo(node=d["node"], vtep_ip=d["vtep"], vtep_mac=d["mac"], block=ipaddress.ip_network(d["block"]))
        )
    return sorted(out, key=lambda n: n.node)


def release_block(store: Store, network: str, node: str) -> None:
    """Forget a departed node: its block becomes free, its VTEP unpublished. Idempotent."""
    nb_key, n_key = _nodeblock_key(network, node), _node_key(network, node)
    for _ in range(MAX_ATTEMPTS):
        mine, reg = store.get(nb_key), store.get(n_key)
        if mine is None and reg is None:
            return
        # compare values too: versions restart at 1 after a delete, so a version alone
        # cannot tell the record we read from a new one written since
        compares = [
            Compare(nb_key, mine.version, mine.value) if mine else Compare(nb_key, 0),
            Compare(n_key, reg.version, reg.value) if reg else Compare(n_key, 0),
        ]
        deletes = [k for k, e in ((nb_key, mine), (n_key, reg)) if e is not None]
        if mine is not None:
            bkey = _block_key(network, ipaddress.ip_network(mine.value))
            bentry = store.get(bkey)
            if bentry is not None and bentry.value == node:
                compares.append(Compare(bkey, bentry.version, node))
                deletes.append(bkey)
        puts = {_rev_key(network): uuid.uuid4().hex} if reg is not None else {}
        if store.txn(compares, puts=puts, deletes=deletes):
            return
    raise StoreUnavailable(f"could not release the block of node {node!r} after {MAX_ATTEMPTS} attempts; try again")


def block_pool(network: str, node: str, block: IPNetwork | str) -> PoolSpec:
    """The address pool of a node's block.

    The first host address is the gateway held by the node's overlay bridge; the
    network address sits on the VXLAN device (flannel style, as a /32) and is what
    peers route the block via; pods get everything from the second host on.
    """
    net = ipaddress.ip_network(block)
    if net.num_addresses < 4:
        raise ConfigError(f"block {net} is too small for a gateway and pods: use a block of at least 4 addresses")
    gateway = net.network_address + 1
    last = net.broadcast_address - (1 if net.version == 4 else 0)
    return PoolSpec(
        name=f"{network}/{node}",
        subnet=net,
        range_start=gateway + 1,
        range_end=last,
        gateway=gateway,
    )
