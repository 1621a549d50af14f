"""The Store contract and the IPAM subset against a real etcd (etcd v3 JSON gateway)."""

from __future__ import annotations

import ipaddress
import time
from typing import Iterator

import pytest

from flatnet.errors import StoreUnavailable
from flatnet.ipam import Ipam, Owner, PoolSpec
from flatnet.ipam.api import Store
from flatnet.ipam.store import EtcdStore, open_store
from tests.helpers.etcd import EtcdServer
from tests.unit import test_store_contract as contract

pytestmark = pytest.mark.etcd

# reuse every contract test unchanged; this module's ``store`` fixture feeds them etcd
for _name in dir(contract):
    if _name.startswith("test_"):
        globals()[_name] = getattr(contract, _name)


@pytest.fixture
def store(etcd_shared: EtcdServer, etcd_prefix: str) -> Iterator[Store]:
    s = open_store({"type": "etcd", "endpoints": [etcd_shared.endpoint], "prefix": etcd_prefix})
    try:
        yield s
    finally:
        s.close()


def test_prefix_isolates_clusters(etcd_shared: EtcdServer, etcd_prefix: str) -> None:
    a = EtcdStore([etcd_shared.endpoint], prefix=etcd_prefix + "a/")
    b = EtcdStore([etcd_shared.endpoint], prefix=etcd_prefix + "b/")
    a.txn([], {"k": "from-a"})
    assert b.get("k") is None and b.range("") == []
    assert [e.key for e in a.range("")] == ["k"]


def test_dead_endpoint_is_skipped(etcd_shared: EtcdServer, etcd_prefix: str) -> None:
    s = EtcdStore(["http://127.0.0.1:1", etcd_shared.endpoint], prefix=etcd_prefix, timeout=2.0)
    assert s.txn([], {"k": "v"})
    assert s.get("k").value == "v"


def _pools() -> list[PoolSpec]:
    return [
        PoolSpec("e4", ipaddress.ip_network("198.18.7.0/29"), gateway=ipaddress.ip_address("198.18.7.1"), sticky=True),
        PoolSpec("e6", ipaddress.ip_network("2001:db8:7::/125")),
    ]


def test_ipam_dual_stack_sticky_and_reuse_on_etcd(store: Store) -> None:
    ipam = Ipam(store)
    pools = _pools()
    redis = Owner("c-redis", "eth0", "n", "db", "redis-0")
    first = ipam.allocate(pools, redis)
    assert [lease.address.version for lease in first] == [4, 6]
    assert ipam.allocate(pools, redis) == first  # idempotent
    assert ipam.release("c-redis", "eth0") == first
    again = ipam.allocate(pools, Owner("c-redis-2", "eth0", "n", "db", "redis-0"))
    assert again[0].address == first[0].address  # sticky v4 comes back
    assert ipam.sticky("e4") == {"db/redis-0": first[0].address.ip}
    held = {lease.address.ip for lease in ipam.leases()}
    assert held == {again[0].address.ip, again[1].address.ip}


def test_etcd_down_fails_fast_and_recovers(etcd_server: EtcdServer) -> None:
    store = open_store({"type": "etcd", "endpoints": [etcd_server.endpoint], "timeout": 2.0})
    ipam = Ipam(store)
    pools = _pools()
    ipam.allocate(pools, Owner("before", "eth0", "n"))
    etcd_server.stop()
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        ipam.allocate(pools, Owner("during", "eth0", "n"))
    assert time.monotonic() - t0 < 10
    assert info.value.code == 11
    assert etcd_server.endpoint in info.value.msg
    etcd_server.start()
    assert ipam.lookup("during", "eth0") == []  # nothing half-allocated
    leases = ipam.allocate(pools, Owner("after", "eth0", "n"))
    assert len(leases) == 2
    assert len(ipam.leases()) == 4
    store.close()


def test_large_range_and_values_round_trip(store: Store) -> None:
    """Answers above a few kB come back chunked from etcd's gateway; read them whole."""
    value = "v" * 1000 + "✓"
    for i in range(0, 300, 50):
        assert store.txn([], {f"big/{j:04d}": value for j in range(i, i + 50)})
    got = store.range("big/")
    assert [e.key for e in got] == [f"big/{j:04d}" for j in range(300)]
    assert all(e.value == value for e in got)
