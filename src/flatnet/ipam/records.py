"""Key layout and JSON records of the IPAM data in a Store.

Layout (relative to the store's own prefix)::

    pools/<pool>/def              canonical JSON of the PoolSpec (subnet may never change)
    pools/<pool>/state            {"cursor": next never-used offset, "seq": next FIFO number}
    pools/<pool>/ips/<ip>         lease record, or {"reserved_for": pod, "until", "held"} for a
                                  sticky hold (a reservation)
    pools/<pool>/free/<seq:020d>  released address, oldest first (FIFO of reuse)
    pools/<pool>/freeidx/<ip>     seq of that address in the FIFO (so a request can take it out)
    pools/<pool>/sticky/<ns>/<n>  address remembered for a pod
    pools/<pool>/held/<us>/<ip>   pod: the reservations, in order of expiry (µs since the epoch)
    pools/<pool>/stats            {"takeovers", "expired"}: reservations ended early / after the hold
    pools/<pool>/quar/<us>/<ip>   reason: addresses quarantined after a conflict on the VLAN, in
                                  order of their retry time (ips/<ip> holds {"quarantined": ...})
    pools/<pool>/chunk/<node>     {"start", "end", "cursor"}: the node's current chunk of a large
                                  pool (offsets [start, end), next one to try at cursor)
    pools/<pool>/lane/<i>         {"cursor"}: lane i's cursor (i >= 1) in a pool whose chunks come
                                  from several lanes (``_chunks``); lane 0's cursor is ``state``'s
    pools/<pool>/laned            "1" once any lane >= 1 moved: ``state``'s cursor no longer says
                                  which addresses were never used (releases go to the FIFO)
    owners/<container>/<ifname>/<pool>   the same lease record, indexed by attachment
    seg/<vlan>/<ip>               the pool whose ips/<ip> holds the address: one holder per
                                  address per L2 segment (VLAN; "untagged" without one), whatever
                                  pool, network or node took it. Created in the txn that creates
                                  ips/<ip>, deleted in the txn that deletes it (``_txn``)
    meta/segments                 "1" once the seg/ index was built for a store written before it

Path components are percent-quoted so a name with "/" cannot reach another key.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import time
import uuid
from typing import Any
from urllib.parse import quote, unquote

from flatnet.ipam.api import DEFAULT_STICKY_HOLD, IPAddress, Lease, Owner, PoolSpec


#: what ``quote(part, safe=":")`` leaves as it is: names, addresses and ids almost always
_PLAIN = re.compile(r"[A-Za-z0-9_.~:-]*").fullmatch


def q(part: str) -> str:
    # quote() costs ~10 µs a call and an allocation builds ~9 keys: skip it when it has nothing to do
    return part if _PLAIN(part) else quote(part, safe=":")


def ip_text(ip: IPAddress) -> str:
    """``str(ip)``, remembered: an allocation formats its address ~3 times (IPv6: ~8 µs each)."""
    if type(ip) is ipaddress.IPv6Address or type(ip) is ipaddress.IPv4Address:
        return _addr_text(int(ip), ip.version)
    return str(ip)  # a subclass (an interface) prints differently: never from the cache


@functools.lru_cache(maxsize=1024)
def _addr_text(value: int, version: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def pool_key(pool: str, *rest: str) -> str:
    return "/".join(["pools", q(pool), *rest])


def ip_key(pool: str, ip: IPAddress) -> str:
    return pool_key(pool, "ips", q(ip_text(ip)))


def seg_key(vlan: int | None, ip: IPAddress) -> str:
    """The segment-wide key of ``ip``: keyed by address, so pools whose subnets or ranges
    only partly overlap still meet on the addresses they share."""
    return f"seg/{'untagged' if vlan is None else int(vlan)}/{q(ip_text(ip))}"


def seg_prefix(vlan: int | None) -> str:
    return f"seg/{'untagged' if vlan is None else int(vlan)}/"


def seg_parts(key: str) -> tuple[int | None, IPAddress]:
    """(vlan, address) of a ``seg/`` key."""
    _seg, vlan, ip = key.split("/", 2)
    return (None if vlan == "untagged" else int(vlan)), ipaddress.ip_address(unquote(ip))


SEG_MIGRATED = "meta/segments"


def free_key(pool: str, seq: int) -> str:
    return pool_key(pool, "free", f"{seq:020d}")


def freeidx_key(pool: str, ip: IPAddress) -> str:
    return pool_key(pool, "freeidx", q(ip_text(ip)))


def sticky_key(pool: str, pod: str) -> str:
    ns, _, name = pod.partition("/")
    return pool_key(pool, "sticky", q(ns), q(name))


def held_prefix(pool: str) -> str:
    return pool_key(pool, "held/")


def held_key(pool: str, until: float, ip: IPAddress) -> str:
    return pool_key(pool, "held", f"{max(0, int(until * 1_000_000)):017d}", q(ip_text(ip)))


def held_parts(key: str) -> tuple[float, IPAddress]:
    """(expiry time, address) of a ``held/`` key."""
    us, ip = key.rsplit("/", 2)[1:]
    return int(us) / 1_000_000, ipaddress.ip_address(unquote(ip))


def quar_prefix(pool: str) -> str:
    return pool_key(pool, "quar/")


def quar_key(pool: str, until: float, ip: IPAddress) -> str:
    return pool_key(pool, "quar", f"{max(0, int(until * 1_000_000)):017d}", q(ip_text(ip)))


def quarantine_record(
    pool: str, ip: IPAddress, why: str, mac: str | None, until: float, held: str, vlan: int | None = None
) -> str:
    return dumps(
        {
            "pool": pool,
            "ip": str(ip),
            "vlan": vlan,
            "quarantined": why,
            "mac": mac,
            "time": round(time.time(), 3),
            "until": round(until, 3),
            "held": held,
        }
    )


def quarantine_of(text: str) -> dict[str, Any] | None:
    d = json.loads(text)
    return d if "quarantined" in d else None


def chunk_key(pool: str, node: str) -> str:
    return pool_key(pool, "chunk", q(node))


def chunk_prefix(pool: str) -> str:
    return pool_key(pool, "chunk/")


def lane_key(pool: str, lane: int) -> str:
    """Lane ``lane``'s cursor (lane 0's is the pool's ``state`` key)."""
    return pool_key(pool, "lane", str(lane)) if lane else pool_key(pool, "state")


def laned_key(pool: str) -> str:
    return pool_key(pool, "laned")


def owner_prefix(container_id: str, ifname: str | None = None) -> str:
    if ifname is None:
        return f"owners/{q(container_id)}/"
    return f"owners/{q(container_id)}/{q(ifname)}/"


def owner_key(container_id: str, ifname: str, pool: str) -> str:
    return owner_prefix(container_id, ifname) + q(pool)


#: one encoder for every record (``json.dumps`` with options builds a new one per call)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def dumps(obj: Any) -> str:
    """Canonical JSON: equal data gives equal text, so specs compare as strings."""
    return _CANONICAL.encode(obj)


def spec_to_json(spec: PoolSpec) -> str:
    return dumps(
        {
            "name": spec.name,
            "subnet": str(spec.subnet),
            "rangeStart": str(spec.range_start) if spec.range_start else None,
            "rangeEnd": str(spec.range_end) if spec.range_end else None,
            "gateway": str(spec.gateway) if spec.gateway else None,
            "exclude": sorted(str(ip) for ip in spec.exclude),
            "vlan": spec.vlan,
            "sticky": spec.sticky,
            "routes": [[str(d), str(g) if g else None] for d, g in spec.routes],
            "stickyHold": spec.sticky_hold,
            "conflictProbe": spec.conflict_probe,
        }
    )


def spec_from_json(text: str) -> PoolSpec:
    d = json.loads(text)
    ip = ipaddress.ip_address
    return PoolSpec(
        name=d["name"],
        subnet=ipaddress.ip_network(d["subnet"]),
        range_start=ip(d["rangeStart"]) if d.get("rangeStart") else None,
        range_end=ip(d["rangeEnd"]) if d.get("rangeEnd") else None,
        gateway=ip(d["gateway"]) if d.get("gateway") else None,
        exclude=frozenset(ip(x) for x in d.get("exclude", ())),
        vlan=d.get("vlan"),
        sticky=bool(d.get("sticky")),
        sticky_hold=float(d.get("stickyHold", DEFAULT_STICKY_HOLD)),
        conflict_probe=bool(d.get("conflictProbe", True)),
        routes=tuple((ipaddress.ip_network(dst), ip(gw) if gw else None) for dst, gw in d.get("routes", ())),
    )


def new_lease(spec: PoolSpec, ip: IPAddress, owner: Owner, sticky: bool) -> tuple[str, Lease]:
    """The JSON kept under ips/<ip> and owners/... (enough to rebuild the Lease alone) and
    the Lease it stands for (what ``lease_from_record`` would give)."""
    rec = _lease_dict(spec, ip, owner, sticky)
    lease = Lease(
        pool=spec.name,
        address=(ipaddress.IPv4Interface if ip.version == 4 else ipaddress.IPv6Interface)(
            (int(ip), spec.subnet.prefixlen)
        ),
        gateway=spec.gateway,
        vlan=spec.vlan,
        owner=owner,
        sticky=sticky,
        extra={"time": rec["time"], "id": rec["id"]},
    )
    return dumps(rec), lease


def _lease_dict(spec: PoolSpec, ip: IPAddress, owner: Owner, sticky: bool) -> dict[str, Any]:
    d = {
        "id": uuid.uuid4().hex,  # makes every record unique, for value compares
        "pool": spec.name,
        "ip": ip_text(ip),
        "prefix": spec.subnet.prefixlen,
        "gateway": str(spec.gateway) if spec.gateway else None,
        "vlan": spec.vlan,
        "sticky": sticky,
        "container_id": owner.container_id,
        "ifname": owner.ifname,
        "network": owner.network,
        "pod_namespace": owner.pod_namespace,
        "pod_name": owner.pod_name,
        "node": owner.node,
        "netns": owner.netns,
        "netns_id": owner.netns_id,
        "time": round(time.time(), 3),
    }
    if sticky:  # how long the address stays reserved for the pod once released
        d["hold"] = spec.sticky_hold
    how = dict(owner.choices).get(spec.name)
    if how:  # how the pod's pool was chosen (namespace rule, annotation, fixed address, default)
        d["choice"] = how
    return d


def reserved_record(
    pool: str,
    ip: IPAddress,
    pod: str,
    until: float,
    held: str,
    since: float | None = None,
    vlan: int | None = None,
) -> str:
    """A sticky hold: ``ip`` kept for ``pod`` until ``until``; ``held`` is its queue key;
    ``vlan`` names its ``seg/`` key (records from before it have none: ``vlan_of``)."""
    return dumps(
        {
            "pool": pool,
            "ip": str(ip),
            "vlan": vlan,
            "reserved_for": pod,
            "time": round(time.time() if since is None else since, 3),
            "until": round(until, 3),
            "held": held,
        }
    )


def lease_from_record(text: str) -> Lease:
    d = json.loads(text)
    owner = Owner(
        container_id=d["container_id"],
        ifname=d["ifname"],
        network=d.get("network", ""),
        pod_namespace=d.get("pod_namespace"),
        pod_name=d.get("pod_name"),
        node=d.get("node"),
        netns=d.get("netns"),
        netns_id=d.get("netns_id"),
        choices=((d["pool"], d["choice"]),) if d.get("choice") else (),
    )
    return Lease(
        pool=d["pool"],
        address=ipaddress.ip_interface(f"{d['ip']}/{d['prefix']}"),
        gateway=ipaddress.ip_address(d["gateway"]) if d.get("gateway") else None,
        vlan=d.get("vlan"),
        owner=owner,
        sticky=bool(d.get("sticky")),
        extra={"time": d.get("time"), "id": d.get("id")},
    )


def is_reservation(text: str) -> bool:
    return "reserved_for" in json.loads(text)


def is_lease(text: str) -> bool:
    """True for a lease record; False for a reservation (or any other hold on the address)."""
    return "container_id" in json.loads(text)


def reservation_of(text: str) -> dict[str, Any] | None:
    """The reservation in an ``ips/<ip>`` record, or None when it is something else."""
    d = json.loads(text)
    return d if "reserved_for" in d else None


def describe_holder(text: str) -> str:
    """Human words for whoever holds an ips/<ip> record (used in error messages)."""
    d = json.loads(text)
    if "reserved_for" in d:
        return f"it is reserved (sticky) for pod {d['reserved_for']}"
    if "quarantined" in d:
        return f"it is quarantined: {d['quarantined']} (retried after {time.strftime('%H:%M:%S', time.localtime(d.get('until', 0)))})"
    who = f"container {d['container_id']} interface {d['ifname']}"
    if d.get("pod_namespace") and d.get("pod_name"):
        who += f" (pod {d['pod_namespace']}/{d['pod_name']})"
    if d.get("node"):
        who += f" on node {d['node']}"
    return f"it is held by {who}"


def state_of(text: str | None) -> dict[str, int]:
    return json.loads(text) if text else {"cursor": 0, "seq": 0}
