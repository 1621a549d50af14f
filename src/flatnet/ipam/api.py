"""IPAM data types and the Store protocol (the contract every store implements).

A Store is a small transactional key/value map with per-key versions, the model of
etcd v3: ``txn`` applies puts/deletes only if every compare holds, atomically. The
allocator (``flatnet.ipam.allocator``) is written once against this protocol, so
SQLite, memory and etcd stores behave the same and pass one contract suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

from flatnet import defaults
from flatnet.iptypes import IPAddress as IPAddress, IPInterface as IPInterface, IPNetwork as IPNetwork


@dataclass(frozen=True)
class Entry:
    """One stored key. ``version`` starts at 1 on create and grows on every put."""

    key: str
    value: str
    version: int


@dataclass(frozen=True)
class Compare:
    """Holds when the key's current version equals ``version`` (0 means: key absent).

    ``value``, when given, must also equal the key's current value. Versions restart
    at 1 when a key is deleted and created again (etcd semantics), so a read-then-delete
    compares the value too, to tell "the record I read" from "a new record, same version".
    ``version`` ``ANY_VERSION`` with a ``value`` compares the value alone: a delete guarded
    by "this key still names me" without reading the key first (saves a round trip).
    """

    key: str
    version: int
    value: str | None = None


#: ``Compare.version`` that matches any version (give a ``value``: the key must exist with it)
ANY_VERSION = -1


@runtime_checkable
class Store(Protocol):
    """Transactional KV. Raise ``flatnet.errors.StoreUnavailable`` when unreachable."""

    def get(self, key: str) -> Entry | None: ...

    def range(self, prefix: str, limit: int | None = None) -> list[Entry]:
        """Entries whose key starts with ``prefix``, sorted by key, at most ``limit``."""
        ...

    def txn(
        self,
        compares: Sequence[Compare],
        puts: dict[str, str] | None = None,
        deletes: Iterable[str] = (),
    ) -> bool:
        """Atomically: if all compares hold, apply puts and deletes and return True."""
        ...

    def close(self) -> None: ...


def txn_else_read(
    store: Store, compares: Sequence[Compare], puts: dict[str, str], reads: Sequence[str]
) -> tuple[bool, dict[str, Entry | None]]:
    """``store.txn(compares, puts)``; when it fails, also the current entries of ``reads``.

    A store with a ``txn_else_read`` of its own (etcd: the reads are the txn's failure
    branch) answers both in one request; any other gets the keys after the failed txn.
    """
    own = getattr(store, "txn_else_read", None)
    if own is not None:
        ok, seen = own(compares, puts, reads)
        return bool(ok), dict(seen)
    if store.txn(compares, puts):
        return True, {}
    return False, {key: store.get(key) for key in reads}


#: how long a sticky address stays reserved for its pod after the pod's DEL (seconds): a day,
#: long enough for a StatefulSet pod to come back after a node is drained or rebooted. A
#: reservation never costs an ADD: when a pool has no fresh or released address left, the
#: oldest reservation is taken over, held or not (flatnet.ipam._held).
DEFAULT_STICKY_HOLD = defaults.STICKY_HOLD


#: how long an address that answered a conflict probe on the VLAN stays out of use before it is
#: handed out (and probed) again (seconds)
DEFAULT_QUARANTINE = defaults.QUARANTINE


@dataclass(frozen=True)
class PoolSpec:
    """A pool of addresses: one subnet of one family, optionally narrowed to a range."""

    name: str
    subnet: IPNetwork
    range_start: IPAddress | None = None
    range_end: IPAddress | None = None
    gateway: IPAddress | None = None
    exclude: frozenset[IPAddress] = frozenset()
    vlan: int | None = None
    sticky: bool = False
    #: seconds a released sticky address stays reserved for its pod (``stickyHold``)
    sticky_hold: float = DEFAULT_STICKY_HOLD
    #: probe each address on the VLAN before it is handed out (flat modes; ``conflictProbe``)
    conflict_probe: bool = True
    # extra routes to install in the pod (destination, gateway-or-None)
    routes: tuple[tuple[IPNetwork, IPAddress | None], ...] = ()
    #: Kubernetes namespaces this pool serves only, and is the default of (``namespaces``;
    #: empty: every pod may use it). Read by ``flatnet.cni.poolrules``; not stored.
    namespaces: tuple[str, ...] = ()
    #: pods of this pool may send router advertisements and redirects (``allowRouterAdvertisements``)
    allow_router: bool = False
    #: pods of this pool may answer as DHCP/DHCPv6 servers (``allowDhcpServer``)
    allow_dhcp_server: bool = False

    @property
    def family(self) -> int:
        return self.subnet.version


@dataclass(frozen=True)
class Owner:
    """Who holds an address: the CNI attachment plus the pod identity when known."""

    container_id: str
    ifname: str
    network: str = ""
    pod_namespace: str | None = None
    pod_name: str | None = None
    node: str | None = None
    #: the container's netns path as the runtime gave it (CNI_NETNS); lets the node's agent
    #: reclaim the lease when the container vanished without a DEL (agent/reconcile.py)
    netns: str | None = None
    #: what that path showed the process that served ADD (``flatnet.agent.nsproof.record``):
    #: the reconciler decides "gone" only from a view proven to be that same one
    netns_id: str | None = None
    #: how each pool was chosen for this attachment, (pool, how) with how one of
    #: ``flatnet.cni.poolrules.HOW``: recorded with the lease, shown by ``flatnet ipam ls``.
    #: Not part of the identity (a record read back names only its own pool's choice).
    choices: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def pod(self) -> str | None:
        if self.pod_namespace and self.pod_name:
            return f"{self.pod_namespace}/{self.pod_name}"
        return None


@dataclass(frozen=True)
class Reservation:
    """A sticky address kept for a pod that is gone: since its DEL, until its hold ends."""

    pool: str
    ip: IPAddress
    pod: str
    since: float
    until: float


@dataclass(frozen=True)
class Lease:
    """An allocated address; ``address`` carries the pool's prefix length."""

    pool: str
    address: IPInterface
    gateway: IPAddress | None
    vlan: int | None
    owner: Owner
    sticky: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
