"""The invariants checked after every scenario, from the store AND from the kernel.

1. every address is held by at most one attachment, whatever network or pool leased it
   (store records, the segment index, and the addresses actually configured in live pod
   namespaces) -> ``duplicates``
2. every live attachment still holds its lease, the one its pod really has -> ``lost``
3. nothing is held for a container that no longer exists: no lease, no host veth, no
   temporary link, no flatnet host route, no anti-spoofing chain in any node netns -> ``leaks``
The kernel is only read here (netlink dumps and ``nft -j list``), never changed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import unquote

from flatnet_lab.chaos.cluster import SUBNET, Cluster
from flatnet_lab.chaos.load import Pod
from flatnet.datapath import antispoof
from flatnet.datapath import netns as fnetns
from flatnet.datapath.common import RTPROT_FLATNET, host_veth_name
from flatnet.ipam import open_store
from flatnet.ipam import records as rec
from flatnet.ipam.api import Lease, Store

_HOST_VETH = re.compile(r"^fn[0-9a-f]{11}$")


@dataclass
class Findings:
    duplicates: int = 0
    lost: int = 0
    leaks: int = 0
    details: list[str] = field(default_factory=list)

    def add(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.details) < 40:
            self.details.append(f"{kind}: {text}")


def _pod_ips(ns: str) -> list[str]:
    if not os.path.exists(fnetns.ns_path(ns) or ""):
        return []
    with fnetns.iproute(ns) as ip:
        idx = ip.link_lookup(ifname="eth0")
        if not idx:
            return []
        return [a.get_attr("IFA_ADDRESS") for a in ip.get_addr(index=idx[0], family=2)]


def _node_state(ns: str) -> tuple[list[str], list[str]]:
    """(link names, flatnet host-route destinations) in a node netns."""
    subnet = ipaddress.ip_network(SUBNET)
    with fnetns.iproute(ns) as ip:
        names = [l.get_attr("IFLA_IFNAME") for l in ip.get_links()]
        dsts = [
            r.get_attr("RTA_DST")
            for r in ip.get_routes(family=2, table=254)
            if r["proto"] == RTPROT_FLATNET and r["dst_len"] == 32
        ]
    return names, [d for d in dsts if d and ipaddress.ip_address(d) in subnet]


def owner_leases(store: Store) -> list[Lease]:
    """Every lease as indexed by attachment (``owners/...``)."""
    return [rec.lease_from_record(e.value) for e in store.range("owners/")]


def _check_segments(f: Findings, ip_records: dict[str, str], segs: dict[str, str]) -> None:
    """The segment index agrees with the pools: every held address (lease, reservation,
    quarantine) has its ``seg/`` key naming its pool, and no key outlives its holder."""
    named: dict[str, str] = {}
    for key, value in ip_records.items():
        parts = key.split("/")
        pool, ip = parts[1], parts[3]
        vlan = json.loads(value).get("vlan")
        skey = rec.seg_key(vlan, ipaddress.ip_address(unquote(ip)))
        if skey in named:
            f.add("duplicates", f"{skey} held by pools {named[skey]} and {pool}")
        named[skey] = pool
        if segs.get(skey) != unquote(pool):
            f.add("duplicates", f"{key} held, but its segment key says {segs.get(skey)!r}")
    for skey, pool in segs.items():
        if skey not in named:
            f.add("leaks", f"segment key {skey} ({pool}) outlived its holder")


def check(cluster: Cluster, live: dict[str, Pod]) -> Findings:
    f = Findings()
    store = open_store(cluster.store_config())
    try:
        owners = owner_leases(store)
        ip_records = {e.key: e.value for name in cluster.networks for e in store.range(rec.pool_key(name, "ips/"))}
        segs = {e.key: e.value for e in store.range("seg/")}
    finally:
        store.close()
    _check_segments(f, ip_records, segs)
    by_ip: dict[str, list[str]] = defaultdict(list)
    for lease in owners:
        ip, cid = str(lease.address.ip), lease.owner.container_id
        by_ip[ip].append(cid)
        holder = ip_records.get(rec.ip_key(lease.pool, lease.address.ip))
        if holder is None or rec.lease_from_record(holder).owner.container_id != cid:
            f.add("duplicates", f"{ip}: owner record of {cid} but the address record says {holder!r:.80}")
        if cid not in live:
            f.add("leaks", f"lease {ip} still held by {cid} (node {lease.owner.node}), which no longer exists")
    owner_ips = {str(l.address.ip) for l in owners}
    for key, value in ip_records.items():
        if rec.is_lease(value) and str(rec.lease_from_record(value).address.ip) not in owner_ips:
            f.add("leaks", f"address record {key} has no owner record")
    for ip, cids in by_ip.items():
        if len(cids) > 1:
            f.add("duplicates", f"{ip} leased to {len(cids)} attachments: {cids}")
    kernel: dict[str, list[str]] = defaultdict(list)
    for pod in live.values():
        have = _pod_ips(pod.ns)
        for ip in have:
            kernel[ip].append(pod.cid)
        leased = [str(l.address.ip) for l in owners if l.owner.container_id == pod.cid]
        if pod.ip is not None and leased != [pod.ip]:
            f.add("lost", f"live pod {pod.cid} has {pod.ip} but holds leases {leased}")
        if pod.ip is not None and have != [pod.ip]:
            f.add("lost", f"live pod {pod.cid} should have {pod.ip}, its eth0 has {have}")
    for ip, cids in kernel.items():
        if len(cids) > 1:
            f.add("duplicates", f"{ip} configured in {len(cids)} live pods: {cids}")
    for node in cluster.nodes:
        if node.lost:
            continue
        mine = [p for p in live.values() if p.node is node]
        veths = {host_veth_name(p.cid, "eth0") for p in mine}
        names, dsts = _node_state(node.ns)
        for name in names:
            if (_HOST_VETH.match(name) and name not in veths) or name.startswith("fntmp"):
                f.add("leaks", f"link {name} left in {node.name}")
        for dst in dsts:
            if dst not in {p.ip for p in mine}:
                f.add("leaks", f"host route {dst}/32 left in {node.name}")
        for port in antispoof.ports(node.ns):
            if port not in veths:
                f.add("leaks", f"anti-spoofing chain port-{port} left in {node.name}")
    return f
