"""Node blocks of a cluster subnet (overlay mode) over real stores: memory and sqlite."""

from __future__ import annotations

import ipaddress
import threading

import pytest

from flatnet.errors import ConfigError, PoolExhausted
from flatnet.ipam import blocks
from flatnet.ipam.api import Store

CLUSTER = "198.19.0.0/22"  # four /24 blocks: small enough to exhaust in a test


def test_new_nodes_get_next_free_block_and_keep_it(store: Store) -> None:
    a = blocks.ensure_block(store, "ovl", "node-a", CLUSTER, 24)
    b = blocks.ensure_block(store, "ovl", "node-b", CLUSTER, 24)
    assert a == ipaddress.ip_network("198.19.0.0/24")
    assert b == ipaddress.ip_network("198.19.1.0/24")
    assert blocks.ensure_block(store, "ovl", "node-a", CLUSTER, 24) == a
    assert blocks.node_block(store, "ovl", "node-b") == b
    assert blocks.node_block(store, "ovl", "node-z") is None


def test_networks_are_independent(store: Store) -> None:
    a = blocks.ensure_block(store, "one", "n", CLUSTER, 24)
    b = blocks.ensure_block(store, "two", "n", CLUSTER, 24)
    assert a == b  # same first block, separate namespaces of keys


def test_exhaustion_names_the_fix(store: Store) -> None:
    for i in range(4):
        blocks.ensure_block(store, "ovl", f"n{i}", CLUSTER, 24)
    with pytest.raises(PoolExhausted, match="no free /24 block left in cluster subnet 198.19.0.0/22"):
        blocks.ensure_block(store, "ovl", "n4", CLUSTER, 24)


def test_release_frees_the_block_for_a_new_node(store: Store) -> None:
    for i in range(4):
        blocks.ensure_block(store, "ovl", f"n{i}", CLUSTER, 24)
    blocks.register_node(store, "ovl", "n1", "198.18.100.12", "0E:00:00:00:00:01", "198.19.1.0/24")
    blocks.release_block(store, "ovl", "n1")
    blocks.release_block(store, "ovl", "n1")  # idempotent
    assert [n.node for n in blocks.nodes(store, "ovl")] == []
    assert blocks.ensure_block(store, "ovl", "n9", CLUSTER, 24) == ipaddress.ip_network("198.19.1.0/24")


def test_register_and_list_nodes(store: Store) -> None:
    ba = blocks.ensure_block(store, "ovl", "node-b", CLUSTER, 24)
    bb = blocks.ensure_block(store, "ovl", "node-a", CLUSTER, 24)
    blocks.register_node(store, "ovl", "node-b", "198.18.100.12", "0e:00:00:00:00:02", ba)
    blocks.register_node(store, "ovl", "node-a", "198.18.100.11", "0e:00:00:00:00:01", bb)
    # re-registering with a new MAC (device recreated) updates in place
    blocks.register_node(store, "ovl", "node-a", "198.18.100.11", "0e:00:00:00:00:0a", bb)
    got = blocks.nodes(store, "ovl")
    assert [n.node for n in got] == ["node-a", "node-b"]
    assert got[0].vtep_mac == "0e:00:00:00:00:0a" and got[0].block == bb
    assert got[1].as_peer() == {"node": "node-b", "vtep": "198.18.100.12", "mac": "0e:00:00:00:00:02", "block": str(ba)}


def test_register_refuses_a_block_the_node_does_not_own(store: Store) -> None:
    blocks.ensure_block(store, "ovl", "a", CLUSTER, 24)
    other = blocks.ensure_block(store, "ovl", "b", CLUSTER, 24)
    with pytest.raises(ConfigError, match="does not own block"):
        blocks.register_node(store, "ovl", "a", "198.18.100.11", "0e:00:00:00:00:01", other)


@pytest.mark.parametrize(
    ("vtep", "mac", "match"),
    [("not-an-ip", "0e:00:00:00:00:01", "not an IP address"), ("198.18.100.11", "0e:00:00:00:01", "MAC")],
)
def test_register_rejects_bad_vtep(store: Store, vtep: str, mac: str, match: str) -> None:
    block = blocks.ensure_block(store, "ovl", "a", CLUSTER, 24)
    with pytest.raises(ConfigError, match=match):
        blocks.register_node(store, "ovl", "a", vtep, mac, block)


@pytest.mark.parametrize("prefixlen", [21, 31, 32])
def test_impossible_layout_is_a_config_error(store: Store, prefixlen: int) -> None:
    with pytest.raises(ConfigError, match="does not fit cluster subnet"):
        blocks.ensure_block(store, "ovl", "a", CLUSTER, prefixlen)


def test_changed_layout_is_reported_not_silently_reassigned(store: Store) -> None:
    blocks.ensure_block(store, "ovl", "a", CLUSTER, 24)
    with pytest.raises(ConfigError, match="release it"):
        blocks.ensure_block(store, "ovl", "a", CLUSTER, 25)


def test_concurrent_nodes_never_share_a_block(store: Store) -> None:
    """16 nodes race for 16 /26 blocks from 8 threads: every block exactly once."""
    names = [f"n{i:02d}" for i in range(16)]
    got: dict[str, ipaddress.IPv4Network] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)
    store.get("warm-up")  # creates the database file before the race (first-open is not under test)

    def worker(mine: list[str]) -> None:
        start.wait(timeout=10)
        for name in mine:
            try:
                b = blocks.ensure_block(store, "race", name, CLUSTER, 26)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
                continue
            with lock:
                got[name] = b  # type: ignore[assignment]

    threads = [threading.Thread(target=worker, args=(names[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sorted(got) == names
    assert len(set(got.values())) == 16
    assert set(got.values()) == set(ipaddress.ip_network(CLUSTER).subnets(new_prefix=26))
    # and the store agrees with what each node was told
    assert all(blocks.node_block(store, "race", n) == b for n, b in got.items())


def test_block_pool_gateway_first_host_pods_get_the_rest() -> None:
    pool = blocks.block_pool("ovl", "node-a", "198.19.3.0/24")
    assert pool.subnet == ipaddress.ip_network("198.19.3.0/24")
    assert pool.gateway == ipaddress.ip_address("198.19.3.1")
    assert pool.range_start == ipaddress.ip_address("198.19.3.2")
    assert pool.range_end == ipaddress.ip_address("198.19.3.254")
    assert pool.name == "ovl/node-a"


def test_block_pool_v6() -> None:
    pool = blocks.block_pool("ovl", "n", "2001:db8:1::/120")
    assert pool.gateway == ipaddress.ip_address("2001:db8:1::1")
    assert pool.range_end == ipaddress.ip_address("2001:db8:1::ff")


@pytest.mark.parametrize("name", ["", "a/b"])
def test_bad_names_are_config_errors(store: Store, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid"):
        blocks.ensure_block(store, name or "ovl", name if name else "", CLUSTER, 24)
