"""``flatnet lab redis``: Redis + Sentinel with node-local volumes, used from a VM.

A master, two replicas and three sentinels run as pods spread over the lab's nodes, each
Redis with its data (AOF, fsync always) on a node-local directory. A VM on the VLAN asks
Sentinel for the master, writes keys, reads them from the replicas; the master is killed,
Sentinel fails over and the VM follows; the old master comes back on its node with the same
address and its data, and rejoins as a replica. On the overlay the same Sentinel hands the
VM addresses it cannot reach. Pods, processes and volumes are always removed; the lab goes
down again at the end if this command brought it up (unless --keep). With --runtime cri the
same story runs as containers through containerd's CRI on three nodes of its own, with
local PersistentVolumes and the seed's PV failure (``redis_cri``).
"""

from __future__ import annotations

import argparse
import ipaddress
from typing import Callable

from rich.console import Console
from rich.table import Table

from flatnet_lab.lab.redis_scenario import Outcome, Scenario
from flatnet_lab.lab.topology import Topology

NETWORKS = ("flat", "overlay")
DEFAULT_KEYS = 1000
DEFAULT_CRI_KEYS = 300


def run_network(topo: Topology, network: str, keys: int, console: Console | None = None) -> Outcome:
    """One network's scenario (the lab must be up and held: ``manager.exclusive()``)."""
    say = (lambda m: console.print(f"[dim]… {m}[/dim]")) if console else (lambda m: None)
    return Scenario(topo, network, keys, say).run()


def problems(out: Outcome, keys: int) -> list[str]:
    """What did not match the model of this network (empty: the scenario showed its point)."""
    if not out.available:  # the overlay may be absent; the flat network may not
        return [f"not available: {out.reason}"] if out.network == "flat" else []
    bad = [out.error] if out.error else []
    rows = {r.step[:1]: r for r in out.rows}
    if out.network == "flat":
        expect = {
            "1": (keys, {"redis-0": keys, "redis-1": keys, "redis-2": keys}),
            "2": (2 * keys, {"redis-1": 2 * keys, "redis-2": 2 * keys}),
            "3": (2 * keys, {"redis-0": keys}),
            "4": (3 * keys, {"redis-0": 3 * keys, "redis-1": 3 * keys, "redis-2": 3 * keys}),
        }
        for step, (written, found) in expect.items():
            row = rows.get(step)
            if row is None:
                bad.append(f"step {step} did not run")
                continue
            if row.written != written:
                bad.append(f"step {step}: {row.written} keys written, expected {written}")
            for pod, n in found.items():
                if row.found.get(pod) != n:
                    bad.append(f"step {step}: {pod} has {row.found.get(pod)}, expected {n}")
        if out.aof_keys != keys:
            bad.append(f"redis-0 loaded {out.aof_keys} keys from its AOF, expected {keys}")
        if out.redis0_ip_after != out.redis0_ip_before:
            bad.append(f"redis-0 came back at {out.redis0_ip_after}, not {out.redis0_ip_before}")
        if len(set(out.masters[:2])) != 2:
            bad.append("the VM did not see a new master after the failover")
    else:
        first = out.rows[0] if out.rows else None
        if first is None or first.vm_reach == "ok":
            bad.append("the VM reached the overlay master (expected: unreachable)")
        elif ipaddress.ip_address(first.master.rsplit(":", 1)[0]) not in ipaddress.ip_network("198.19.0.0/16"):
            bad.append(f"Sentinel announced {first.master}, not an overlay address")
    return bad


def steps_table(out: Outcome) -> Table:
    t = Table(
        title=f"{out.network.upper()}: the VM asks Sentinel at {out.sentinels_how} "
        f"{out.sentinels_at}; keys found are read from the VM",
        title_justify="left",
    )
    for col in ("step", "master (Sentinel)", "VM->master", "written", "redis-0", "redis-1", "redis-2"):
        t.add_column(col, no_wrap=col != "VM->master")
    t.add_column("note")
    for r in out.rows:
        reach = r.vm_reach if r.vm_reach in ("ok", "-") else f"[red]{r.vm_reach}[/red]"
        t.add_row(
            r.step, r.master, reach, str(r.written), *(str(r.found.get(f"redis-{k}", "-")) for k in range(3)), r.note
        )
    return t


def side_by_side(outs: list[Outcome]) -> Table:
    t = Table("", *(o.network.upper() for o in outs), title="side by side", title_justify="left")

    def cell(o: Outcome, fn: Callable[[Outcome], object]) -> str:
        if not o.available:
            return "not available" if fn is lines[0][1] else "-"
        try:
            return str(fn(o))
        except (IndexError, KeyError):
            return "-"

    lines = [
        ("VM asks Sentinel at", lambda o: o.sentinels_how),
        ("master announced", lambda o: o.rows[0].master),
        ("VM -> announced master", lambda o: o.rows[0].vm_reach),
        ("master after failover", lambda o: o.rows[1].master),
        ("VM -> new master", lambda o: o.rows[1].vm_reach),
        ("redis-0 address before / after", lambda o: f"{o.redis0_ip_before} / {o.redis0_ip_after}"),
        ("redis-0 after its restart", lambda o: o.rows[-1].note),
        ("keys the VM wrote", lambda o: o.rows[-1].written),
    ]
    for label, fn in lines:
        t.add_row(label, *(cell(o, fn) for o in outs))
    return t


def run(console: Console, networks: tuple[str, ...] = NETWORKS, keys: int = DEFAULT_KEYS, keep: bool = False) -> int:
    """The whole command; 0 when every available network behaved as its model says."""
    from flatnet_lab.lab import manager, reach

    outs: list[Outcome] = []
    bad: list[str] = []
    with manager.exclusive():
        brought_up = manager.state() is None
        if brought_up:
            console.print("[bold]bringing the lab up[/bold]")
            manager.up(progress=lambda msg, d, n: console.print(f"[dim]  [{d}/{n}] {msg}[/dim]"))
        try:
            topo = reach.require_lab()
            for net in networks:
                outs.append(run_network(topo, net, keys, console))
                bad += show(console, outs[-1], keys)
        finally:
            if brought_up and not keep:
                console.print("[dim]… bringing the lab down[/dim]")
                manager.down()
    if len(outs) > 1:
        console.print(side_by_side(outs))
    return 1 if bad else 0


def show(console: Console, out: Outcome, keys: int) -> list[str]:
    """Print one network's table (or why it is not available); return its problems."""
    if not out.available:
        console.print(f"[yellow]{out.network}: not available ({out.reason})[/yellow]")
        return []
    console.print(steps_table(out))
    bad = problems(out, keys)
    for line in bad:
        console.print(f"[bold red]{out.network}: {line}[/bold red]")
    return bad


def cmd_redis(args: argparse.Namespace) -> int:
    from flatnet.errors import ConfigError
    from flatnet_lab.lab import manager

    manager.require_root()
    if args.runtime == "cri":
        if args.network not in (None, "flat"):
            raise ConfigError(
                f"--network {args.network} is not available with --runtime cri",
                "the CRI scenario runs the flat network (drop --network, or use --runtime lab for the overlay)",
            )
        keys = DEFAULT_CRI_KEYS if args.keys is None else args.keys
        if keys < 1 or keys > 100_000:
            raise ConfigError(f"--keys {keys} is out of range", "use 1..100000")
        return run_cri(Console(), keys)
    keys = DEFAULT_KEYS if args.keys is None else args.keys
    if keys < 1 or keys > 100_000:
        raise ConfigError(f"--keys {keys} is out of range", "use 1..100000")
    network = args.network or "both"
    networks = NETWORKS if network == "both" else (network,)
    return run(Console(), networks, keys, args.keep)


def run_cri(console: Console, keys: int) -> int:
    """``--runtime cri``: the scenario through containerd's CRI (``redis_cri``); 0 when it held."""
    from flatnet_lab.lab.redis_cri import run_cri as scenario
    from flatnet_lab.lab.redis_cri_report import show

    out = scenario(keys, say=lambda m: console.print(f"[dim]… {m}[/dim]"))
    return 1 if show(console, out) else 0


def register_redis(lab_subparsers: "argparse._SubParsersAction") -> None:
    """Add ``flatnet lab redis`` to the ``lab`` command's sub-parsers."""
    p = lab_subparsers.add_parser(
        "redis",
        help="Redis + Sentinel on node-local volumes, used and failed over from a VM",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument(
        "--runtime",
        choices=("lab", "cri"),
        default="lab",
        help="lab: redis-server processes in the lab's pod namespaces; cri: containers from a Debian "
        "Redis image through containerd's CRI on 3 nodes of their own, local PVs, the seed's PV "
        "failure and the doctor (default: %(default)s)",
    )
    p.add_argument(
        "--network",
        choices=("flat", "overlay", "both"),
        default=None,
        help="which network the pods use (default: both; --runtime cri: flat only)",
    )
    p.add_argument(
        "--keys",
        type=int,
        default=None,
        help=f"keys written per step (default: {DEFAULT_KEYS}; --runtime cri: writes before the kill "
        f"and after each step, default {DEFAULT_CRI_KEYS})",
    )
    p.add_argument("--keep", action="store_true", help="leave the lab up at the end (pods are removed either way)")
    p.set_defaults(func=cmd_redis)
