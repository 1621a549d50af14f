"""Cluster IPAM: leases of pool addresses to CNI attachments, over any ``Store``.

``Ipam`` is what the agent calls on ADD / DEL / GC. It hands out one address per
address family (dual stack), tries pools of a family in order, honours requested and
sticky addresses, and never leaves half an allocation behind. The store-level steps
live in ``flatnet.ipam._ops``; the key layout in ``flatnet.ipam.records``.
"""

from __future__ import annotations

import ipaddress
import json
import random
from typing import Any, Sequence
from urllib.parse import unquote

from flatnet.errors import (
    AddressUnavailable,
    ConfigError,
    EnvError,
    FlatnetError,
    PoolExhausted,
    StoreUnavailable,
)
from flatnet.ipam import records as r
from flatnet.ipam._batch import MAX_BATCH, Combiner
from flatnet.ipam._chunks import CHUNK_MIN_POOL, CHUNK_SIZE, MAX_LANES
from flatnet.ipam._ops import HeldInSegment, OwnerHolds, PoolOps
from flatnet.ipam._txn import Outcome
from flatnet.ipam.api import (
    DEFAULT_QUARANTINE,
    Compare,
    IPAddress,
    Lease,
    Owner,
    PoolSpec,
    Reservation,
    Store,
)
from flatnet.ipam.pool import PoolRange


class Ipam:
    """Allocate, look up and release leases; safe to use from many processes and nodes at once."""

    def __init__(
        self,
        store: Store,
        attempts: int = 100,
        rng: random.Random | None = None,
        chunk_min_pool: int = CHUNK_MIN_POOL,
        chunk_size: int = CHUNK_SIZE,
        max_lanes: int = MAX_LANES,
    ) -> None:
        """``chunk_min_pool``/``chunk_size``/``max_lanes``: see ``flatnet.ipam._chunks`` (tests
        make them small)."""
        self.store = store
        self._ops = PoolOps(
            store, attempts=attempts, rng=rng, chunk_min_pool=chunk_min_pool, chunk_size=chunk_size, max_lanes=max_lanes
        )
        self._ranges: dict[str, tuple[str, PoolRange]] = {}
        #: concurrent allocations of one pool and node share a txn (``_batch``)
        self._batches: Combiner[tuple[PoolRange, Owner], list[Lease] | BaseException] = Combiner(self._allocate_batch)

    # -- pool definitions ----------------------------------------------------
    def _pool(self, spec: PoolSpec) -> PoolRange:
        """Validate ``spec`` and make sure the store's definition agrees (once per process)."""
        cached = self._ranges.get(spec.name)
        if cached and cached[1].spec == spec:  # cheaper than the JSON: IPv6 str() is slow
            return cached[1]
        text = r.spec_to_json(spec)
        if cached and cached[0] == text:
            return cached[1]
        if not spec.name or not isinstance(spec.name, str):
            raise ConfigError("ipam pool: 'name' must be a non-empty string; give every pool a name")
        pr = PoolRange(spec)
        key = r.pool_key(spec.name, "def")
        for attempt in range(self._ops.txns.attempts):
            cur = self.store.get(key)
            if cur is not None:
                old = r.spec_from_json(cur.value)
                if old.subnet != spec.subnet:
                    raise ConfigError(
                        f"ipam pool {spec.name!r}: subnet {spec.subnet} differs from the stored "
                        f"subnet {old.subnet} of that pool; keep the subnet or use a new pool name",
                    )
                if cur.value == text or self.store.txn([Compare(key, cur.version)], {key: text}):
                    break
            elif self.store.txn([Compare(key, 0)], {key: text}):
                break
            self._ops.txns.backoff(attempt)
        self._ranges[spec.name] = (text, pr)
        return pr

    # -- allocate ------------------------------------------------------------
    def allocate(self, pools: Sequence[PoolSpec], owner: Owner, requested: Sequence[IPAddress] = ()) -> list[Lease]:
        """One lease per family in ``pools``; all or nothing; repeat calls return the same leases."""
        if not owner.container_id or not owner.ifname:
            raise EnvError("ipam: container id and interface name are required (CNI_CONTAINERID, CNI_IFNAME)")
        if not pools:
            raise ConfigError("ipam: no pools configured; add at least one entry to 'pools'")
        names = [p.name for p in pools]
        if len(set(names)) != len(names):
            raise ConfigError(f"ipam: pool names must be unique, got {names}; rename the duplicates")
        ranges = [self._pool(p) for p in pools]
        families = list(dict.fromkeys(p.family for p in pools))
        wanted: dict[int, IPAddress] = {}
        for ip in requested:
            ip = ipaddress.ip_address(ip)
            if ip.version in wanted:
                raise ConfigError(
                    f"ipam: two requested IPv{ip.version} addresses ({wanted[ip.version]}, {ip}); "
                    "request at most one per family"
                )
            if ip.version not in families:
                raise AddressUnavailable(
                    f"requested address {ip} is not available: no IPv{ip.version} pool is configured"
                )
            wanted[ip.version] = ip
        if not wanted and len(ranges) == len(families) and not (owner.pod and any(p.sticky for p in pools)):
            if len(ranges) == 1 and self._ops.chunks.serves(ranges[0], owner):
                batched = self._batches.submit((ranges[0].spec.name, owner.node), (ranges[0], owner))
                if isinstance(batched, BaseException):
                    raise batched
                return batched
            got = self._allocate_unlooked(ranges, owner)
            if got is not None:
                return got
        return self._allocate_looked(ranges, families, owner, wanted)

    def _allocate_looked(
        self, ranges: list[PoolRange], families: list[int], owner: Owner, wanted: dict[int, IPAddress]
    ) -> list[Lease]:
        """The full path: look up what the attachment holds, then each family in turn."""
        for _ in range(3):
            held = {lease.pool: lease for lease in self.lookup(owner.container_id, owner.ifname)}
            out: list[Lease] = []
            fresh: list[Lease] = []
            try:
                for fam in families:
                    fam_ranges = [pr for pr in ranges if pr.spec.family == fam]
                    lease, new = self._allocate_family(fam_ranges, owner, wanted.get(fam), held)
                    out.append(lease)
                    if new:
                        fresh.append(lease)
            except OwnerHolds:  # a concurrent ADD of the same attachment: look again
                self._rollback(fresh)
                continue
            except BaseException:
                self._rollback(fresh)
                raise
            return out
        raise StoreUnavailable(
            f"ipam: concurrent ADDs of container {owner.container_id} {owner.ifname} keep racing; retry later",
        )

    def _allocate_batch(self, items: list[tuple[PoolRange, Owner]]) -> list[list[Lease] | BaseException]:
        """Concurrent callers' allocations from one pool and node (``_batch``): as many as the
        node's chunk has left in one txn, the others (and all, if that txn fails) one by one."""
        out: list[list[Lease] | BaseException | None] = [None] * len(items)
        seen: set[tuple[str, str]] = set()
        firsts = []  # one call per attachment in the txn; a repeat goes the single way after it
        for i in range(len(items)):
            who = (items[i][1].container_id, items[i][1].ifname)
            if who not in seen and items[i][0].spec == items[0][0].spec:
                seen.add(who)
                firsts.append(i)
        pr, misses = items[0][0], 0
        node = items[0][1].node or ""
        while len(firsts) > 1 and misses < 3:
            got, used_up = self._ops.chunks.take_many(pr, [items[i][1] for i in firsts])
            for i, lease in zip(firsts, got, strict=False):  # got: the first ones
                out[i] = [lease]
            firsts, misses = firsts[len(got) :], 0 if got else misses + 1
            if len(firsts) > 1 and used_up:
                # a chunk big enough for the rest of the batch: one claim, then one txn again
                outcome = self._ops.chunks.refill(pr, node, min(len(firsts), MAX_BATCH))
                if outcome is Outcome.EMPTY:
                    break  # every lane used up: the single way takes released and parked ones
                misses += outcome is Outcome.LOST
        for i, item in enumerate(items):
            if out[i] is None:
                out[i] = self._allocate_one(*item)
        return [x for x in out if x is not None]

    def _allocate_one(self, pr: PoolRange, owner: Owner) -> list[Lease] | BaseException:
        """One caller of a batch the single way; its error is handed to it (``_batch``)."""
        try:
            return self._allocate_unlooked([pr], owner) or self._allocate_looked([pr], [pr.spec.family], owner, {})
        except Exception as exc:  # noqa: BLE001 - raised in that caller's thread
            return exc

    def _allocate_unlooked(self, ranges: list[PoolRange], owner: Owner) -> list[Lease] | None:
        """The common case in one txn per family: no lookup of the attachment's leases first.

        Only for one pool per family, no requested address and no sticky pool for a pod:
        then the claim txn's create-only compare on the attachment's key is the lookup (a
        held lease makes it fail, ``OwnerHolds``). None sends the caller to the full path
        (held lease, exhausted pool), after undoing what this call took.
        """
        fresh: list[Lease] = []
        try:
            for pr in ranges:
                lease = self._ops.take_next(pr, owner, False)
                if lease is None:
                    break
                fresh.append(lease)
            else:
                return fresh
        except OwnerHolds:
            pass
        except BaseException:
            self._rollback(fresh)
            raise
        self._rollback(fresh)
        return None

    def _rollback(self, leases: list[Lease]) -> None:
        """Undo this call's new leases; best effort (GC reclaims them if the store is down)."""
        for lease in leases:
            try:
                self.release_address(lease.pool, lease.address.ip)
            except FlatnetError:
                pass

    def _allocate_family(
        self, ranges: list[PoolRange], owner: Owner, want: IPAddress | None, held: dict[str, Lease]
    ) -> tuple[Lease, bool]:
        for pr in ranges:
            have = held.get(pr.spec.name)
            if have is not None:
                if want is not None and have.address.ip != want:
                    raise AddressUnavailable(
                        f"requested address {want} is not available: container "
                        f"{owner.container_id} {owner.ifname} already holds {have.address.ip} "
                        f"in pool {pr.spec.name!r}; DEL it first"
                    )
                return have, False
        if want is not None:
            for pr in ranges:
                if pr.why_unusable(want) is None:
                    return self._ops.claim(pr, want, owner, "requested address"), True
            reasons = [why for pr in ranges if want in pr.spec.subnet if (why := pr.why_unusable(want)) is not None]
            raise AddressUnavailable(
                f"requested address {want} is not available: "
                + (
                    reasons[0]
                    if reasons
                    else "it is outside every pool ("
                    + ", ".join(f"{pr.spec.name}={pr.spec.subnet}" for pr in ranges)
                    + ")"
                )
            )
        sticky_absent: set[str] = set()
        if owner.pod:
            for pr in ranges:
                if not pr.spec.sticky:
                    continue
                rec = self.store.get(r.sticky_key(pr.spec.name, owner.pod))
                if rec is None:
                    sticky_absent.add(pr.spec.name)
                elif pr.usable(pr.offset(ipaddress.ip_address(rec.value))):
                    try:
                        return self._ops.claim(pr, ipaddress.ip_address(rec.value), owner, "sticky address"), True
                    except HeldInSegment:
                        # another pool of the segment holds it (it was free when recorded):
                        # the pod gets a new address, and keeps that one from now on
                        if self.store.txn([Compare(rec.key, rec.version, rec.value)], {}, [rec.key]):
                            sticky_absent.add(pr.spec.name)
        # fresh and released addresses of every pool first, then gaps other pools of the
        # segment left; only then the oldest reservation
        for take in (self._ops.take_next, self._ops.take_gap, self._ops.take_over):
            for pr in ranges:
                lease = take(pr, owner, pr.spec.name in sticky_absent)
                if lease is not None:
                    return lease, True
        raise PoolExhausted(
            "no free address: "
            + "; ".join(
                f"pool {pr.spec.name!r} ({pr.spec.subnet}) has all {pr.total} usable addresses in use by live pods"
                for pr in ranges
            ),
            details="delete unused pods, run GC, or widen rangeStart/rangeEnd or add a pool",
        )

    # -- release and queries -------------------------------------------------
    def release(self, container_id: str, ifname: str) -> list[Lease]:
        """Release every lease of the attachment; nothing held is not an error (DEL is idempotent)."""
        out = []
        for entry in self.store.range(r.owner_prefix(container_id, ifname)):
            lease = self._ops.release_record(entry.value)
            if lease is not None:
                out.append(lease)
        return out

    def release_address(self, pool: str, ip: IPAddress) -> Lease | None:
        """Release whoever holds ``ip`` in ``pool`` (admin tool); None if nobody does."""
        entry = self.store.get(r.ip_key(pool, ipaddress.ip_address(ip)))
        if entry is None or not r.is_lease(entry.value):
            return None
        return self._ops.release_record(entry.value)

    def reserved_for(self, pool: str, ip: IPAddress) -> str | None:
        """The pod ("namespace/name") ``ip`` is reserved for in ``pool`` (a sticky pod gone, its
        hold running), or None: lets a caller refuse what ``allocate`` would take over."""
        entry = self.store.get(r.ip_key(pool, ipaddress.ip_address(ip)))
        res = r.reservation_of(entry.value) if entry is not None else None
        return str(res["reserved_for"]) if res is not None else None

    def lookup(self, container_id: str, ifname: str) -> list[Lease]:
        return [r.lease_from_record(e.value) for e in self.store.range(r.owner_prefix(container_id, ifname))]

    def leases(self, pool: str | None = None) -> list[Lease]:
        """Live leases (sticky reservations excluded), of one pool or of all."""
        if pool is None:
            entries = self.store.range("owners/")
        else:
            entries = [e for e in self.store.range(r.pool_key(pool, "ips/")) if r.is_lease(e.value)]
        return [r.lease_from_record(e.value) for e in entries]

    def gc(self, network: str, valid: set[tuple[str, str]]) -> list[Lease]:
        """Release leases of ``network`` whose (container_id, ifname) the runtime no longer has."""
        out = []
        for entry in self.store.range("owners/"):
            lease = r.lease_from_record(entry.value)
            if lease.owner.network != network or (lease.owner.container_id, lease.owner.ifname) in valid:
                continue
            done = self._ops.release_record(entry.value)
            if done is not None:
                out.append(done)
        return out

    def pools(self) -> list[PoolSpec]:
        """Every pool the store knows: each records its definition at first use."""
        return [r.spec_from_json(e.value) for e in self.store.range("pools/") if e.key.endswith("/def")]

    def usage(self, pool: PoolSpec) -> tuple[int, int]:
        """(addresses in use or reserved, usable addresses) of the pool as configured now."""
        pr = PoolRange(pool)
        used = 0
        for e in self.store.range(r.pool_key(pool.name, "ips/")):
            ip = ipaddress.ip_address(unquote(e.key.rsplit("/", 1)[1]))
            used += ip.version == pool.family and pr.usable(pr.offset(ip))
        return used, pr.total

    def sticky(self, pool: str | PoolSpec) -> dict[str, IPAddress]:
        """Pod ("namespace/name") -> remembered address, for a sticky pool."""
        name = pool.name if isinstance(pool, PoolSpec) else pool
        prefix = r.pool_key(name, "sticky/")
        out = {}
        for e in self.store.range(prefix):
            ns, pod = e.key[len(prefix) :].split("/", 1)
            out[f"{unquote(ns)}/{unquote(pod)}"] = ipaddress.ip_address(e.value)
        return out

    def reservations(self, pool: str | PoolSpec | None = None) -> list[Reservation]:
        """Sticky addresses kept for pods that are gone, oldest expiry first (per pool)."""
        if pool is None:
            names = self.pool_names()
        else:
            names = [pool.name if isinstance(pool, PoolSpec) else pool]
        out = []
        for name in names:
            for e in self.store.range(r.held_prefix(name)):
                _until, ip = r.held_parts(e.key)
                ie = self.store.get(r.ip_key(name, ip))
                res = r.reservation_of(ie.value) if ie else None
                if res is not None and res.get("held") == e.key:
                    out.append(Reservation(name, ip, res["reserved_for"], float(res["time"]), float(res["until"])))
        return out

    def quarantine(self, lease: Lease, why: str, mac: str | None = None, hold: float = DEFAULT_QUARANTINE) -> bool:
        """Take ``lease``'s address out of use for ``hold`` seconds (it answered a conflict
        probe on the VLAN); the attachment no longer holds it. False if the lease changed."""
        entry = self.store.get(r.ip_key(lease.pool, lease.address.ip))
        if entry is None or not r.is_lease(entry.value):
            return False
        if r.lease_from_record(entry.value).owner != lease.owner:
            return False
        return self._ops.quarantine.put(entry.value, why, mac, hold)

    def quarantined(self, pool: str | PoolSpec | None = None) -> list[dict[str, Any]]:
        """Addresses out of use after a conflict on the VLAN: pool, address, why, mac, until."""
        if pool is None:
            names = self.pool_names()
        else:
            names = [pool.name if isinstance(pool, PoolSpec) else pool]
        return [q for name in names for q in self._ops.quarantine.entries(name)]

    def pool_names(self) -> list[str]:
        """Every pool the store knows (admin tools; reads the whole ``pools/`` range)."""
        return sorted(p.name for p in self.pools())

    def stats(self, pool: str | PoolSpec) -> dict[str, int]:
        """Counters of the pool: reservations taken over within their hold, and expired."""
        name = pool.name if isinstance(pool, PoolSpec) else pool
        e = self.store.get(r.pool_key(name, "stats"))
        return json.loads(e.value) if e else {}

    def forget_sticky(self, pool: str | PoolSpec, pod: str) -> IPAddress | None:
        """Stop keeping ``pod``'s address; a reserved one becomes reusable. Returns it, if any."""
        name = pool.name if isinstance(pool, PoolSpec) else pool

        def network_int() -> int:
            d = self.store.get(r.pool_key(name, "def"))
            if d is None:
                raise ConfigError(f"ipam: pool {name!r} is unknown to the store; check the name")
            return int(r.spec_from_json(d.value).subnet.network_address)

        return self._ops.forget_sticky(name, pod, network_int)
