"""``flatnet ipam``: look at and repair the address store (ls, show, release).

Container IDs are taken the way podman and docker take them: any unique prefix (the
12-character short ID ``podman ps`` shows, or fewer), so a user can paste what a runtime
printed; a prefix that fits several containers is an error listing them. The table shows
the 12-character short ID (``--no-trunc``: whole), never an ellipsis.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import time
from typing import Any

from flatnet.cli.common import (
    DEFAULT_SOCKET,
    DEFAULT_STORE_PATH,
    DEFAULT_STORE_URL,
    parse_store_url,
    store_arg,
)
from flatnet.errors import ConfigError

EPILOG = """\
Without --store, the commands use the stores the node's agent recorded in
/run/flatnet/stores.json (beside $FLATNET_AGENT_SOCKET when set), else the default SQLite
store. They never create a store: a --store that names none is an error.

examples:
  flatnet ipam ls                                      leases, reservations of the agent's store(s)
  flatnet ipam ls --json
  flatnet ipam ls --store etcd:http://127.0.0.1:2379 --pool flat-v4
  flatnet ipam show 198.18.100.33                      who holds this address
  flatnet ipam show flat-v4                            a pool: leases and sticky addresses
  flatnet ipam show 3f2a9c                             a container's leases (any unique ID prefix)
  flatnet ipam release --container 3f2a9c --ifname eth0  (any unique ID prefix)
  flatnet ipam release --pool flat-v4 --ip 198.18.100.33 --forget-sticky default/redis-0
"""


def register(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "ipam",
        help="inspect and repair address leases",
        description="Inspect and repair flatnet's address store.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=None, _parser=p)
    sub = p.add_subparsers(dest="ipam_command", metavar="SUBCOMMAND")

    ls = sub.add_parser(
        "ls",
        help="list leases (pool, address, container, ifname, pod, how its pool was chosen, node), "
        "sticky reservations and per-pool counters",
    )
    store_arg(ls, default=None)
    ls.add_argument("--pool", help="only this pool")
    ls.add_argument("--container", metavar="ID", help="only this container (a unique prefix of its ID will do)")
    ls.add_argument(
        "--no-trunc", action="store_true", help="show whole container IDs (default: the 12-character short ID)"
    )
    ls.add_argument("--json", action="store_true", help="machine-readable output (whole IDs)")
    ls.set_defaults(func=cmd_ls)

    show = sub.add_parser("show", help="one pool's leases, one address's holder or one container's leases")
    show.add_argument("target", metavar="POOL|IP|CONTAINER", help="a pool name, an address or a container ID (prefix)")
    show.add_argument("--no-trunc", action="store_true", help="show whole container IDs")
    store_arg(show, default=None)
    show.set_defaults(func=cmd_show)

    rel = sub.add_parser(
        "release",
        help="free addresses by hand (a leaked attachment, or every lease of a dead node)",
        epilog="give --container with --ifname, or --pool with --ip, or --node. --node releases every lease "
        "of a node that is down for good, from any machine, the way the agents reclaim a dead node "
        "(etcd): refused while the node's heartbeat is alive; the node is fenced first, so when it comes "
        "back it removes the released addresses from its pods; sticky addresses stay reserved for their pods",
    )
    rel.add_argument("--node", metavar="NAME", help="every lease of this dead node (refused while it is alive)")
    rel.add_argument("--container", metavar="ID", help="the container ID, or a unique prefix of it")
    rel.add_argument("--ifname", metavar="IF")
    rel.add_argument("--pool", metavar="P")
    rel.add_argument("--ip", metavar="IP")
    rel.add_argument(
        "--forget-sticky",
        metavar="NS/NAME",
        help="also drop the pod's sticky address in that pool so others may get it",
    )
    store_arg(rel, default=None)
    rel.set_defaults(func=cmd_release)


def _configs(url: str | None) -> list[dict]:
    """The store(s) to look at: --store, else the agent's record, else the default SQLite."""
    if url:
        return [parse_store_url(url)]  # a typo in --store is reported before anything is imported
    from flatnet.agent import storestate

    sock = os.environ.get("FLATNET_AGENT_SOCKET") or DEFAULT_SOCKET
    recorded = storestate.load(storestate.state_path(sock))
    return recorded or [parse_store_url(DEFAULT_STORE_URL)]


def describe(cfg: dict) -> str:
    if cfg.get("type") == "sqlite":
        return f"sqlite:{cfg.get('path', DEFAULT_STORE_PATH)}"
    if cfg.get("type") == "etcd":
        return (
            "etcd:" + ",".join(cfg.get("endpoints") or []) + (f" (prefix {cfg['prefix']})" if cfg.get("prefix") else "")
        )
    return str(cfg.get("type"))


def _open_existing(cfg: dict) -> Any:
    """An ``Ipam`` over an existing store; a read or repair never creates one."""
    if cfg.get("type") == "memory":
        raise ConfigError(
            "--store memory holds nothing outside the process that made it",
            "give the store the agent uses: sqlite:/path/to/ipam.db or etcd:http://host:2379",
        )
    if cfg.get("type") == "sqlite":
        path = cfg.get("path") or DEFAULT_STORE_PATH
        if not os.path.isfile(path):
            where = (
                "its directory does not exist either"
                if not os.path.isdir(os.path.dirname(path))
                else "the file does not exist"
            )
            raise ConfigError(
                f"no flatnet store exists at {path} ({where}); nothing was created",
                "check the path: the agent records its store in /run/flatnet/stores.json; "
                "give it as --store sqlite:/var/lib/flatnet/ipam.db or --store etcd:http://host:2379",
            )
    from flatnet.ipam import Ipam
    from flatnet.ipam.store import open_store

    return Ipam(open_store(cfg))


def _open(url: str | None) -> Any:
    """The one store a show/release works on (the first the agent recorded, without --store)."""
    return _open_existing(_configs(url)[0])


#: how many characters of a container ID the table shows (podman's and docker's short ID)
SHORT_ID = 12


def _table(title: str, leases: list[Any], no_trunc: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    from flatnet.cni.poolrules import HOW

    chosen = any(_choice(l) for l in leases)  # leases from before pool rules record no choice
    rows = []
    for lease in sorted(leases, key=lambda l: (l.pool, l.address.version, int(l.address.ip))):
        o = lease.owner
        pod = (o.pod or "-") + (" (sticky)" if lease.sticky else "")
        cid = o.container_id if no_trunc else o.container_id[:SHORT_ID]
        how = _choice(lease)
        by = (HOW.get(how, how or "-"),) if chosen else ()
        rows.append((lease.pool, str(lease.address), cid, o.ifname, pod, *by, o.node or "-"))
    table = Table(title=title)
    cols = ("pool", "address", "container", "ifname", "pod", *(("chosen by",) if chosen else ()), "node")
    for n, col in enumerate(cols):
        # addresses and IDs are pasted back into commands: never cut or wrapped (the other
        # columns give way on a narrow terminal)
        whole = col in ("address", "container")
        width = max([len(col), *(len(r[n]) for r in rows)]) if whole else None
        table.add_column(col, overflow="fold", no_wrap=whole, min_width=width)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _choice(lease: Any) -> str | None:
    """How the lease's pool was chosen (a key of ``poolrules.HOW``); None for older leases."""
    return dict(lease.owner.choices).get(lease.pool)


def resolve_container(leases: list[Any], given: str) -> str | None:
    """The one container ID among ``leases`` that is ``given`` or starts with it.

    None when no lease's container matches; ConfigError listing the candidates when
    several do (an exact ID wins over longer IDs it is a prefix of, as in podman).
    """
    ids = sorted({lease.owner.container_id for lease in leases})
    if given in ids:
        return given
    found = [cid for cid in ids if cid.startswith(given)]
    if len(found) > 1:
        shown = ", ".join(cid[: max(SHORT_ID, len(given) + 4)] for cid in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise ConfigError(
            f"container ID prefix {given!r} is ambiguous: it matches {len(found)} containers ({shown}{more})",
            "give more characters of the ID",
        )
    return found[0] if found else None


def cmd_ls(args: argparse.Namespace) -> int:
    cfgs = _configs(args.store)
    views = [(describe(cfg), _open_existing(cfg)) for cfg in cfgs]  # every store exists first
    out: dict[str, Any] = {"leases": [], "reservations": [], "quarantined": [], "pools": {}, "duplicates": []}
    for where, ipam in views:
        leases = ipam.leases(args.pool) if args.pool else ipam.leases()
        if args.container:
            cid = resolve_container(leases, args.container)
            leases = [l for l in leases if l.owner.container_id == cid]
        reservations = ipam.reservations(args.pool)
        quarantined = ipam.quarantined(args.pool) if hasattr(ipam, "quarantined") else []
        out["leases"] += [_lease_json(l, where) for l in leases]
        out["reservations"] += [
            {"store": where, "pool": x.pool, "address": str(x.ip), "pod": x.pod, "since": x.since, "until": x.until}
            for x in reservations
        ]
        out["quarantined"] += [{"store": where, **q} for q in quarantined]
        for name in [args.pool] if args.pool else ipam.pool_names():
            stats = ipam.stats(name)
            if stats:
                out["pools"][name] = stats
        dups = _duplicates(ipam, args.pool)
        out["duplicates"] += [{"store": where, **d} for d in dups]
        if not args.json:
            title = f"{len(leases)} lease(s)" + (f" in {args.pool}" if args.pool else "") + f" — {where}"
            _table(title, leases, args.no_trunc)
            _reservation_table(reservations, quarantined)
            for d in dups:
                vlan = d["vlan"] if d["vlan"] is not None else "untagged"
                print(
                    f"DUPLICATE: {d['address']} on VLAN {vlan} is held by {len(d['pools'])} pools at once "
                    f"(written before flatnet kept one holder per segment): {'; '.join(d['holders'])}. "
                    f"Delete all but one of those pods, or: flatnet ipam release --pool POOL --ip {d['address']}"
                )
    out["conflicts"] = _live_conflicts(args.pool)
    if not args.json:
        _conflict_table(out["conflicts"])
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    elif out["pools"]:
        for name, stats in sorted(out["pools"].items()):
            print(f"pool {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())))
    return 0


def _duplicates(ipam: Any, pool: str | None) -> list[dict[str, Any]]:
    """Addresses held by two pools of one segment or more (``ipam.segments.duplicates``)."""
    from flatnet.ipam import segments

    store = getattr(ipam, "store", None)
    if store is None:
        return []
    return [d for d in segments.duplicates(store) if pool is None or pool in d["pools"]]


def _live_conflicts(pool: str | None) -> list[dict[str, Any]]:
    """Claims of live pods' addresses from other MACs the local agent saw after ADD
    (agent/claimwatch.py writes them beside its socket)."""
    from flatnet.agent import claimwatch

    sock = os.environ.get("FLATNET_AGENT_SOCKET") or DEFAULT_SOCKET
    found = claimwatch.load(claimwatch.state_path(sock))
    return [c for c in found if pool is None or c.get("pool") == pool]


def _conflict_table(conflicts: list[dict[str, Any]]) -> None:
    if not conflicts:
        return
    from rich.console import Console
    from rich.table import Table

    now = time.time()
    table = Table(title=f"{len(conflicts)} address conflict(s) after ADD: another MAC claims a live pod's address")
    for col in ("pool", "address", "pod MAC", "claimed by MAC", "times", "last seen"):
        table.add_column(col)
    for c in conflicts:
        ago = max(0.0, now - float(c.get("last_seen", now)))
        table.add_row(
            str(c.get("pool")), str(c.get("address")), str(c.get("pod_mac")), str(c.get("other_mac")),
            str(c.get("count")), f"{_dur(ago)} ago",
        )  # fmt: skip
    Console().print(table)


def _lease_json(lease: Any, where: str) -> dict[str, Any]:
    o = lease.owner
    return {
        "store": where,
        "pool": lease.pool,
        "address": str(lease.address),
        "container": o.container_id,
        "ifname": o.ifname,
        "network": o.network,
        "pod": o.pod,
        "namespace": o.pod_namespace,
        "name": o.pod_name,
        "choice": _choice(lease),
        "node": o.node,
        "sticky": lease.sticky,
        "since": lease.extra.get("time"),
    }


def _reservation_table(reservations: list[Any], quarantined: list[dict]) -> None:
    if not reservations and not quarantined:
        return
    from rich.console import Console
    from rich.table import Table

    now = time.time()
    table = Table(title=f"{len(reservations)} reservation(s), {len(quarantined)} quarantined")
    for col in ("pool", "address", "held for", "why", "until"):
        table.add_column(col)
    for x in reservations:
        left = x.until - now
        table.add_row(
            x.pool,
            str(x.ip),
            x.pod,
            "sticky (pod gone)",
            f"in {_dur(left)}" if left > 0 else f"expired {_dur(-left)} ago (reusable)",
        )
    for q in quarantined:
        left = float(q.get("until", 0)) - now
        table.add_row(
            q["pool"],
            q["address"],
            "-",
            f"conflict: {q.get('why', '?')}",
            f"retry in {_dur(left)}" if left > 0 else "retry due",
        )
    Console().print(table)


def _dur(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def cmd_show(args: argparse.Namespace) -> int:
    ipam = _open(args.store)
    try:
        ip = ipaddress.ip_address(args.target)
    except ValueError:
        ip = None
    if ip is not None:
        held = [l for l in ipam.leases() if l.address.ip == ip]
        if not held:
            print(f"{ip} is not leased")
            return 1
        _table(f"{ip}", held, args.no_trunc)
        return 0
    leases = ipam.leases(args.target)
    sticky = ipam.sticky(args.target)
    if not leases and not sticky:
        every = ipam.leases()
        cid = resolve_container(every, args.target)
        if cid is not None:
            mine = [l for l in every if l.owner.container_id == cid]
            _table(f"container {cid}: {len(mine)} lease(s)", mine, args.no_trunc)
            return 0
        print(
            f"{args.target!r} is no pool with leases and no container holding an address "
            "(is the name or ID right? see 'flatnet ipam ls')"
        )
        return 1
    _table(f"pool {args.target}: {len(leases)} lease(s)", leases, args.no_trunc)
    for pod, addr in sorted(sticky.items()):
        print(f"sticky: {pod} -> {addr}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    if args.node:
        if args.container or args.ifname or args.ip or args.pool or args.forget_sticky:
            raise ConfigError("--node goes alone", "give --node NAME, or --container/--ifname, or --pool/--ip")
        return _release_node(args)
    by_owner = bool(args.container or args.ifname)
    by_addr = bool(args.ip)
    # every usage mistake is reported before the store is opened
    if by_owner and by_addr or not (by_owner or by_addr or (args.forget_sticky and args.pool)):
        raise ConfigError("say what to release", "give --container ID --ifname IF, or --pool P --ip IP, or --node NAME")
    if by_owner and not (args.container and args.ifname):
        raise ConfigError("--container and --ifname go together", "give both")
    ip = None
    if by_addr:
        if not args.pool:
            raise ConfigError("--ip needs --pool", "give the pool name (see 'flatnet ipam show IP')")
        try:
            ip = ipaddress.ip_address(args.ip)
        except ValueError:
            raise ConfigError(f"--ip {args.ip!r} is not an IP address", "e.g. --ip 198.18.100.33") from None
    if args.forget_sticky and "/" not in args.forget_sticky:
        raise ConfigError(f"--forget-sticky {args.forget_sticky!r} is not NAMESPACE/NAME", "e.g. default/redis-0")
    ipam = _open(args.store)
    released: list[Any] = []
    if by_owner:
        cid = args.container
        if not ipam.lookup(cid, args.ifname):  # not a whole ID: a prefix (lists every lease)
            cid = resolve_container(ipam.leases(), cid) or cid
        released = list(ipam.release(cid, args.ifname))
    elif ip is not None:
        lease = ipam.release_address(args.pool, ip)
        released = [lease] if lease else []
    for lease in released:
        print(f"released {lease.address} ({lease.pool}) from {lease.owner.container_id}/{lease.owner.ifname}")
    if by_owner and not released:
        print(
            f"container {args.container!r} holds no address on {args.ifname}; nothing to release (see 'flatnet ipam ls')"
        )
    elif by_addr and not released:
        print("nothing was held; nothing to release")
    if args.forget_sticky:
        pools = {args.pool} if args.pool else {l.pool for l in released}
        if not pools:
            raise ConfigError("--forget-sticky needs a pool", "add --pool P")
        for pool in sorted(pools):
            ipam.forget_sticky(pool, args.forget_sticky)
            print(f"forgot sticky address of {args.forget_sticky} in {pool}")
    return 0


def _release_node(args: argparse.Namespace) -> int:
    """``release --node``: a dead node's leases, through its fence (``flatnet.ipam.nodes``)."""
    import socket

    from flatnet.ipam.nodes import release_dead_node

    cfg = _configs(args.store)[0]
    if cfg.get("type") != "etcd":
        raise ConfigError(
            f"--node needs the etcd store the agents share (heartbeats live there); {describe(cfg)} has none",
            "give it as --store etcd:http://host:2379",
        )
    ipam = _open_existing(cfg)
    n, fence = release_dead_node(ipam.store, ipam, args.node, f"operator@{socket.gethostname()}")
    print(
        f"node {args.node}: fenced by {fence.get('by', '?')}; released {n} lease(s) in {describe(cfg)} "
        "(sticky addresses stay reserved for their pods). If the node comes back, its agent removes "
        "these addresses from its pods before it serves again."
    )
    return 0
