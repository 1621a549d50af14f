"""Cluster IPAM: pools, leases, sticky addresses, over interchangeable stores.

Public API: ``Ipam`` (allocate / release / lookup / leases / gc / usage / sticky /
forget_sticky), ``open_store`` and the data types of ``flatnet.ipam.api``.
"""

from flatnet.ipam.allocator import Ipam
from flatnet.ipam.api import Compare, Entry, Lease, Owner, PoolSpec, Store
from flatnet.ipam.pool import PoolRange
from flatnet.ipam.store import open_store

__all__ = ["Ipam", "open_store", "PoolRange", "Compare", "Entry", "Lease", "Owner", "PoolSpec", "Store"]
