"""Every segment test (one holder per address per VLAN across pools) and the store-level
migration tests, unchanged, on a real etcd."""

from __future__ import annotations

from typing import Iterator

import pytest

from flatnet.ipam.store import EtcdStore
from tests.helpers.etcd import EtcdServer
from tests.unit import test_ipam_migrate as mig
from tests.unit import test_ipam_segment as seg

pytestmark = pytest.mark.etcd

for _name in dir(seg):
    if _name.startswith("test_"):
        globals()[_name] = getattr(seg, _name)
for _name in dir(mig):
    if _name.startswith("test_") and "agent" not in _name:  # the agent/CLI one is SQLite's
        globals()[_name] = getattr(mig, _name)


@pytest.fixture
def store(etcd_shared: EtcdServer, etcd_prefix: str) -> Iterator[EtcdStore]:
    s = EtcdStore([etcd_shared.endpoint], prefix=etcd_prefix)
    try:
        yield s
    finally:
        s.close()
