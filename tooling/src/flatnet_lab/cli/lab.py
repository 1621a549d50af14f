"""``flatnet lab up|status|down``: the multi-node lab cluster on this machine.

Thin: parsing and display only; the work is in ``flatnet_lab.lab.manager``. ``lab demo`` and
``lab redis`` register their own actions (``register_demo`` / ``register_redis``) here.
"""

from __future__ import annotations

import argparse
import os
from typing import Callable

from flatnet.errors import FlatnetError

EPILOG = """\
examples:
  sudo flatnet lab up                      switch, 3 nodes, 2 VMs, router, outside host, agents
  sudo flatnet lab up --nodes 2 --store etcd   IPAM in a local etcd instead of SQLite
  sudo flatnet lab status                  namespaces, agents, pods
  sudo flatnet lab down                    remove every namespace, process and file of the lab
  sudo flatnet lab metrics-report          a real Prometheus watches a burst of pods; writes
                                           docs/observability-lab.png (lab must be up)
"""


def register(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "lab",
        help="a multi-node cluster on this machine (network namespaces)",
        description="Build, inspect and remove the flatnet lab: nodes, VMs on the same VLAN, "
        "a VLAN-200 host, a router and an outside host, each in a netns fnlab-*.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(_parser=p)
    sub = p.add_subparsers(dest="lab_command", metavar="ACTION")
    up = sub.add_parser("up", help="build (or complete) the lab; idempotent")
    up.add_argument("--nodes", type=int, default=3, help="number of nodes (default: 3)")
    up.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite", help="IPAM store (default: %(default)s)")
    up.set_defaults(func=cmd_up)
    st = sub.add_parser("status", help="namespaces, agents and pods of the lab")
    st.set_defaults(func=cmd_status)
    dn = sub.add_parser("down", help="remove everything the lab made")
    dn.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait this long for a running demo/test that holds the lab (default: %(default)s)",
    )
    dn.add_argument("--force", action="store_true", help="tear down at once, even under a demo/test that holds the lab")
    dn.set_defaults(func=cmd_down)
    mr = sub.add_parser(
        "metrics-report", help="Prometheus scrapes the agents during a pod burst; draw ADD rate and pool usage (PNG)"
    )
    mr.add_argument(
        "--out",
        default="docs/observability-lab.png",
        metavar="PNG",
        help="where to write the chart (default: %(default)s)",
    )
    mr.add_argument("--pods", type=int, default=24, help="pods in the burst (default: %(default)s)")
    mr.set_defaults(func=cmd_metrics_report)
    from flatnet_lab.lab.demo import register_demo
    from flatnet_lab.lab.redis import register_redis

    for hook in (register_demo, register_redis):
        hook(sub)


def _root() -> None:
    if os.geteuid() != 0:
        raise FlatnetError("'flatnet lab' needs root (it creates network namespaces)", "run it with sudo")


def _with_progress(title: str, work: Callable[[Callable[[str, int, int], None]], object]) -> object:
    from rich.progress import BarColumn, Progress, TextColumn

    with Progress(
        TextColumn("[bold]{task.fields[title]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.description}"),
        transient=True,
    ) as bar:
        task = bar.add_task("", total=1, title=title)

        def progress(msg: str, done: int, total: int) -> None:
            bar.update(task, description=msg, completed=done, total=total)

        return work(progress)


def cmd_up(args: argparse.Namespace) -> int:
    _root()
    from flatnet_lab.lab import manager

    topo = _with_progress("lab up", lambda cb: manager.up(args.nodes, args.store, progress=cb))
    nodes = ", ".join(f"{n.name} {n.ipv4}" for n in topo.nodes)  # type: ignore[attr-defined]
    print(f"lab is up ({args.store}): {nodes}")
    print(topo.describe())  # type: ignore[attr-defined]
    print("next: flatnet lab status | flatnet lab down")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    _root()
    from rich.console import Console
    from rich.table import Table

    from flatnet_lab.lab import manager

    st = manager.status()
    console = Console()
    if not st.up and not st.namespaces and not st.processes:
        console.print("lab is down (no fnlab- namespace, no lab process)")
        return 0
    console.print(
        f"lab: {'up' if st.up else 'PARTIAL (run lab up or lab down)'}"
        f"  store: {st.store or '?'}  switch: {st.shape or 'per-vlan'}"
        + (f"  etcd: {'alive' if st.etcd_alive else 'DEAD'}" if st.etcd_alive is not None else "")
    )
    nodes = Table("node", "netns", "agent pid", "agent", title="nodes")
    for n in st.nodes:
        state = "answers" if n.agent_answers else ("alive, no answer" if n.agent_alive else "[red]down[/red]")
        nodes.add_row(n.name, n.ns if n.ns_exists else f"[red]{n.ns} missing[/red]", str(n.agent_pid or "-"), state)
    console.print(nodes)
    console.print("namespaces: " + (" ".join(st.namespaces) or "none"))
    pods = Table("pod", "node", "network", "addresses", title="pods")
    for p in st.pods:
        ips = ", ".join(i.get("address", "?") for i in p.get("result", {}).get("ips", []))
        pods.add_row(p.get("name", "?"), p.get("node", "?"), p.get("network", "?"), ips)
    if st.pods:
        console.print(pods)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    _root()
    from flatnet_lab.lab import manager

    # wait for a demo/test that holds the lab instead of tearing it down under its feet
    if args.force:
        res = _with_progress("lab down", manager.down)
    else:
        with manager.exclusive(timeout=args.wait):
            res = _with_progress("lab down", manager.down)
    print(
        f"lab is down: removed {res['namespaces']} namespaces, "  # type: ignore[index]
        f"stopped {res['processes']} processes"
    )  # type: ignore[index]
    return 0


def cmd_metrics_report(args: argparse.Namespace) -> int:
    _root()
    from flatnet_lab.lab import manager, metrics_report

    if not 1 <= args.pods <= 120:
        raise FlatnetError(f"--pods {args.pods} is out of range", "give 1..120 (the flat pool has 160 addresses)")
    if not (manager.state() or {}).get("complete"):
        raise FlatnetError("the lab is not up", "run 'flatnet lab up' first")
    with manager.exclusive():
        metrics_report.run(args.out, args.pods)
    return 0
