"""A subset of the allocator tests, every chunk and sticky-reservation test, unchanged, on a real etcd."""

from __future__ import annotations

from typing import Iterator

import pytest

from flatnet.ipam import Ipam
from flatnet.ipam.store import EtcdStore
from tests.helpers.etcd import EtcdServer
from tests.unit import test_ipam_allocator as alloc
from tests.unit import test_ipam_chunks as chunks
from tests.unit import test_ipam_sticky as sticky

pytestmark = pytest.mark.etcd

SUBSET = [
    "test_hands_out_addresses_in_order_skipping_gateway_and_exclude",
    "test_exhaustion_names_pool_and_size",
    "test_fresh_addresses_first_then_fifo_oldest_released",
    "test_requested_address_ok_and_taken",
    "test_requesting_a_released_address_takes_it_out_of_the_fifo",
    "test_v6_failure_rolls_back_the_v4_lease",
    "test_sticky_address_survives_release_and_readd",
    "test_forget_sticky_makes_the_address_reusable",
    "test_gc_releases_only_stale_leases_of_that_network",
    "test_release_address_frees_it_for_reuse",
    "test_pool_subnet_cannot_change_under_the_same_name",
]
for _name in SUBSET:
    globals()[_name] = getattr(alloc, _name)
# every node-chunk test, unchanged: this module's ``store`` fixture feeds them etcd
for _name in dir(chunks):
    if _name.startswith("test_"):
        globals()[_name] = getattr(chunks, _name)
make = chunks.make
# every sticky-reservation test, unchanged, on etcd too
for _name in dir(sticky):
    if _name.startswith("test_"):
        globals()[_name] = getattr(sticky, _name)


@pytest.fixture
def store(etcd_shared: EtcdServer, etcd_prefix: str) -> Iterator[EtcdStore]:
    s = EtcdStore([etcd_shared.endpoint], prefix=etcd_prefix)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def ipam(etcd_shared: EtcdServer, etcd_prefix: str) -> Iterator[Ipam]:
    store = EtcdStore([etcd_shared.endpoint], prefix=etcd_prefix)
    try:
        yield Ipam(store)
    finally:
        store.close()
