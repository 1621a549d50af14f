"""What a node holds, for leak checks: links, routes, neighbours, nft rules, leases, netns.

``take(node)`` reads the node namespace (links, main-table routes, permanent and proxy
neighbour entries, the nft ruleset without handles/counters) and the IPAM store (leases);
``leaks(before, after)`` names what ``after`` holds that ``before`` did not. Dynamic ARP
entries are left out: the kernel ages them, they are not plumbing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Iterable

from flatnet.datapath import netns
from flatnet_lab.testbed import net as labnet

if TYPE_CHECKING:
    from flatnet_lab.testbed.cri.node import CriNode

NUD_PERMANENT, NTF_PROXY = 0x80, 0x08
_VOLATILE = re.compile(r"\s*# handle \d+|counter packets \d+ bytes \d+\s*")


@dataclass(frozen=True)
class NodeState:
    links: frozenset[str]
    routes: frozenset[str]
    neighbours: frozenset[str]
    nft: frozenset[str]
    leases: frozenset[str]  # "ip namespace/name container-id"


def _links_routes_neigh(ns: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    with netns.iproute(ns) as ip:
        names = {int(m["index"]): m.get_attr("IFLA_IFNAME") for m in ip.link("dump")}
        routes = set()
        for m in ip.route("dump", table=254):
            fam_any = "0.0.0.0" if m["family"] == 2 else "::"
            routes.add(f"{m.get_attr('RTA_DST') or fam_any}/{m['dst_len']} dev {names.get(m.get_attr('RTA_OIF'), '?')}")
        neigh = set()
        for m in ip.neigh("dump"):
            if m["state"] & NUD_PERMANENT or m["flags"] & NTF_PROXY:
                neigh.add(
                    f"{m.get_attr('NDA_DST')} dev {names.get(m['ifindex'], '?')} "
                    f"{'proxy' if m['flags'] & NTF_PROXY else 'permanent'}"
                )
    return frozenset(names.values()), frozenset(routes), frozenset(neigh)


def nft_rules(ns: str) -> frozenset[str]:
    """The lines of ``nft list ruleset`` in ``ns``, handles and counters removed."""
    proc = labnet.run_cmd(ns, ["nft", "list", "ruleset"])
    if proc.returncode != 0:
        raise RuntimeError(f"nft list ruleset in {ns} failed: {proc.stderr.strip()}")
    return frozenset(
        _VOLATILE.sub("", ln).strip() for ln in proc.stdout.splitlines() if ln.strip() and ln.strip() != "}"
    )


def leases(db: str) -> frozenset[str]:
    """Every lease in the sqlite store ``db`` as "ip namespace/name container-id"."""
    if not os.path.exists(db):
        return frozenset()
    from flatnet.ipam import Ipam, open_store

    store = open_store({"type": "sqlite", "path": db})
    try:
        return frozenset(f"{le.address.ip} {le.owner.pod} {le.owner.container_id}" for le in Ipam(store).leases())
    finally:
        store.close()


def take(node: "CriNode") -> NodeState:
    links, routes, neigh = _links_routes_neigh(node.ns)
    return NodeState(links, routes, neigh, nft_rules(node.ns), leases(str(node.db)))


def leaks(before: NodeState, after: NodeState) -> dict[str, list[str]]:
    """What ``after`` holds beyond ``before``, per kind ({} when nothing leaked)."""
    out = {}
    for f in fields(NodeState):
        extra = sorted(getattr(after, f.name) - getattr(before, f.name))
        if extra:
            out[f.name] = extra
    return out


def netns_left(paths: Iterable[str]) -> list[str]:
    """Those of the sandboxes' netns paths that still exist."""
    return sorted(p for p in paths if p and os.path.exists(p))
