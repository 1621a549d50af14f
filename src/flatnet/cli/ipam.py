"""``flatnet ipam``: look at and repair the address store (ls, show, release)."""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from flatnet.cli.common import parse_store_url, store_arg
from flatnet.errors import ConfigError

EPILOG = """\
examples:
  flatnet ipam ls                                      every lease in the default SQLite store
  flatnet ipam ls --store etcd:http://127.0.0.1:2379 --pool flat-v4
  flatnet ipam show 198.18.100.33                      who holds this address
  flatnet ipam show flat-v4                            a pool: leases and sticky addresses
  flatnet ipam release --container 3f2a9c --ifname eth0
  flatnet ipam release --pool flat-v4 --ip 198.18.100.33 --forget-sticky default/redis-0
"""


def register(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser("ipam", help="inspect and repair address leases",
                              description="Inspect and repair flatnet's address store.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=None, _parser=p)
    sub = p.add_subparsers(dest="ipam_command", metavar="SUBCOMMAND")

    ls = sub.add_parser("ls", help="list leases: pool, address, container, ifname, pod, node")
    store_arg(ls)
    ls.add_argument("--pool", help="only this pool")
    ls.set_defaults(func=cmd_ls)

    show = sub.add_parser("show", help="one pool's leases or one address's holder")
    show.add_argument("target", metavar="POOL|IP")
    store_arg(show)
    show.set_defaults(func=cmd_show)

    rel = sub.add_parser("release", help="free addresses by hand (a leaked attachment)",
                         epilog="give --container with --ifname, or --pool with --ip")
    rel.add_argument("--container", metavar="ID")
    rel.add_argument("--ifname", metavar="IF")
    rel.add_argument("--pool", metavar="P")
    rel.add_argument("--ip", metavar="IP")
    rel.add_argument("--forget-sticky", metavar="NS/NAME",
                     help="also drop the pod's sticky address in that pool so others may get it")
    store_arg(rel)
    rel.set_defaults(func=cmd_release)


def _open(url: str) -> Any:
    cfg = parse_store_url(url)  # a typo in --store is reported before anything is imported
    from flatnet.ipam import Ipam
    from flatnet.ipam.store import open_store

    return Ipam(open_store(cfg))


def _table(title: str, leases: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("pool", "address", "container", "ifname", "pod", "node"):
        table.add_column(col)
    for lease in sorted(leases, key=lambda l: (l.pool, l.address.version, int(l.address.ip))):
        o = lease.owner
        pod = (o.pod or "-") + (" (sticky)" if lease.sticky else "")
        table.add_row(lease.pool, str(lease.address), o.container_id, o.ifname, pod, o.node or "-")
    Console().print(table)


def cmd_ls(args: argparse.Namespace) -> int:
    ipam = _open(args.store)
    leases = ipam.leases(args.pool) if args.pool else ipam.leases()
    _table(f"{len(leases)} lease(s)" + (f" in {args.pool}" if args.pool else ""), leases)
    return 0


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
        _table(f"{ip}", held)
        return 0
    leases = ipam.leases(args.target)
    sticky = ipam.sticky(args.target) if hasattr(ipam, "sticky") else {}
    if not leases and not sticky:
        print(f"pool {args.target!r} holds no leases (is the name right? see 'flatnet ipam ls')")
        return 1
    _table(f"pool {args.target}: {len(leases)} lease(s)", leases)
    for pod, addr in sorted(sticky.items()):
        print(f"sticky: {pod} -> {addr}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    by_owner = bool(args.container or args.ifname)
    by_addr = bool(args.ip)
    # every usage mistake is reported before the store is opened
    if by_owner and by_addr or not (by_owner or by_addr or (args.forget_sticky and args.pool)):
        raise ConfigError("say what to release", "give --container ID --ifname IF, or --pool P --ip IP")
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
        released = list(ipam.release(args.container, args.ifname))
    elif ip is not None:
        lease = ipam.release_address(args.pool, ip)
        released = [lease] if lease else []
    for lease in released:
        print(f"released {lease.address} ({lease.pool}) from {lease.owner.container_id}/{lease.owner.ifname}")
    if (by_owner or by_addr) and not released:
        print("nothing was held; nothing to release")
    if args.forget_sticky:
        pools = {args.pool} if args.pool else {l.pool for l in released}
        if not pools:
            raise ConfigError("--forget-sticky needs a pool", "add --pool P")
        for pool in sorted(pools):
            ipam.forget_sticky(pool, args.forget_sticky)
            print(f"forgot sticky address of {args.forget_sticky} in {pool}")
    return 0
