"""Several node agents (separate processes, own Ipam + EtcdStore) share one etcd pool."""

from __future__ import annotations

import ipaddress
import multiprocessing

import pytest

from flatnet.ipam import Ipam, Owner, PoolSpec
from flatnet.ipam.store import EtcdStore
from tests.helpers.etcd import EtcdServer

pytestmark = pytest.mark.etcd

POOL = PoolSpec("shared", ipaddress.ip_network("198.18.12.0/24"), gateway=ipaddress.ip_address("198.18.12.1"))


def _agent(endpoint: str, prefix: str, node: int, count: int) -> list[str]:
    """One node agent: allocate ``count``, release every third, allocate again."""
    store = EtcdStore([endpoint], prefix=prefix, timeout=5.0)
    ipam = Ipam(store)
    held = []
    for i in range(count):
        held.append(ipam.allocate([POOL], Owner(f"n{node}-{i}", "eth0", "n", node=f"node{node}"))[0])
    for lease in held[::3]:
        ipam.release(lease.owner.container_id, "eth0")
    for i in range(count, count + count // 3):
        ipam.allocate([POOL], Owner(f"n{node}-{i}", "eth0", "n", node=f"node{node}"))
    store.close()
    return [str(lease.address.ip) for lease in ipam.lookup(f"n{node}-0", "eth0")]


def test_three_agents_never_hand_out_the_same_address(etcd_shared: EtcdServer, etcd_prefix: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        pool.starmap_async(_agent, [(etcd_shared.endpoint, etcd_prefix, n, 30) for n in range(3)]).get(timeout=180)
    store = EtcdStore([etcd_shared.endpoint], prefix=etcd_prefix)
    try:
        leases = Ipam(store).leases()
        addrs = [str(lease.address.ip) for lease in leases]
        assert len(addrs) == 3 * (30 - 10 + 10)
        assert len(set(addrs)) == len(addrs)
        by_pool = Ipam(store).leases("shared")
        assert sorted(str(lease.address.ip) for lease in by_pool) == sorted(addrs)
        assert {lease.owner.node for lease in leases} == {"node0", "node1", "node2"}
    finally:
        store.close()


BIG = PoolSpec(
    "big",
    ipaddress.ip_network("2001:db8:c::/112"),
    range_start=ipaddress.ip_address("2001:db8:c::1"),
    range_end=ipaddress.ip_address("2001:db8:c::1000"),
)  # 4096 addresses: node-chunked


def _chunk_client(endpoint: str, prefix: str, wid: int, count: int, nodes: int) -> list[str]:
    """Allocate ``count`` for pods spread over ``nodes`` (every client serves every node)."""
    store = EtcdStore([endpoint], prefix=prefix, timeout=5.0)
    ipam = Ipam(store, chunk_size=8)
    got = []
    for i in range(count):
        owner = Owner(f"w{wid}-{i}", "eth0", "n", node=f"node{i % nodes}")
        got.append(str(ipam.allocate([BIG], owner)[0].address.ip))
    store.close()
    return got


def test_node_chunks_never_duplicate_across_processes(etcd_shared: EtcdServer, etcd_prefix: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        runs = pool.starmap_async(
            _chunk_client, [(etcd_shared.endpoint, etcd_prefix, w, 120, 5) for w in range(4)]
        ).get(timeout=180)
    got = [a for run in runs for a in run]
    assert len(got) == len(set(got)) == 480
    store = EtcdStore([etcd_shared.endpoint], prefix=etcd_prefix)
    try:
        held = [str(lease.address.ip) for lease in Ipam(store).leases("big")]
        assert sorted(held) == sorted(got)
        assert len(store.range("pools/big/chunk/")) == 5
    finally:
        store.close()
