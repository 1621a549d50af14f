"""``flatnet lab demo``: the seed's argument against flannel, replayed with real packets.

Brings the lab up if needed, puts pods on every node in the flat network and in the
overlay, and prints FLAT and OVERLAY side by side: (a) who reaches whom, (b) the source
address a VM sees for a pod's connection (SNAT or not), (c) how an outside host gets to a
pod, (d) the routes each node carries as pods grow, (e) bandwidth and latency against the
wire. Every figure is measured while the command runs; nothing is canned. Pods are always
removed; the lab is brought down again if the demo brought it up (unless --keep).
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any

from rich.console import Console

from flatnet.errors import FlatnetError
from flatnet_lab.lab import reach, render, traffic
from flatnet_lab.lab.topology import Topology

NETWORKS = ("flat", "overlay")
GROWTH = (1, 2, 4)  # pods per node at which routes are counted
HOST_PORT = 30080  # the overlay pod's node:hostPort -> pod:PROBE_PORT mapping


def pod_name(network: str, node: str, k: int) -> str:
    return f"demo-{network}-{node}-{k}"


class Demo:
    """One run: the pods it made (always removed) and what it measured."""

    def __init__(self, console: Console, topo: Topology, seconds: float) -> None:
        self.console, self.topo, self.seconds = console, topo, seconds
        self.made: list[str] = []
        self.port_mapped: str | None = None  # overlay pod name with a hostPort, if any

    def say(self, msg: str) -> None:
        self.console.print(f"[dim]… {msg}[/dim]")

    def add(self, network: str, node: str, k: int) -> Any:
        from flatnet_lab.lab import pods

        name = pod_name(network, node, k)
        pods.del_pod(name)  # leftover of an interrupted demo
        kwargs: dict[str, Any] = {}
        if (
            network == "overlay"
            and k == 1
            and node == self.topo.nodes[0].name
            and "port_mappings" in inspect.signature(pods.add_pod).parameters
        ):
            kwargs["port_mappings"] = [{"hostPort": HOST_PORT, "containerPort": reach.PROBE_PORT, "protocol": "tcp"}]
            self.port_mapped = name
        self.made.append(name)
        return pods.add_pod(node, name, network, **kwargs)

    def grow(self, network: str, per_node: int) -> render.RouteSample:
        """Bring every node to ``per_node`` pods of ``network``; count routes per node."""
        from flatnet_lab.lab import pods

        have = {p.name for p in pods.list_pods()}
        for node in self.topo.nodes:
            for k in range(1, per_node + 1):
                if pod_name(network, node.name, k) not in have:
                    self.add(network, node.name, k)
        counts = {n.name: traffic.count_routes(n.ns, route_devices(network, n)) for n in self.topo.nodes}
        return render.RouteSample(
            network,
            per_node,
            {n: c["v4"] + c["v6"] for n, c in counts.items()},
            {n: c["host"] for n, c in counts.items()},
        )

    def cleanup(self) -> list[str]:
        """Delete every pod this run made; return the errors instead of raising them."""
        from flatnet_lab.lab import pods

        errors = []
        for name in reversed(self.made):
            try:
                pods.del_pod(name)
            except FlatnetError as exc:
                errors.append(f"{name}: {exc.msg}")
        self.made.clear()
        return errors

    def access(self, network: str, pod: Any) -> list[render.AccessRow]:
        """Outside host -> pod: at its own address; for the overlay also node:hostPort."""
        out = next(h for h in self.topo.hosts if h.role == "outside").ns
        rows = [
            render.AccessRow(
                network,
                "pod address",
                f"{pod.ip}:{reach.PROBE_PORT}",
                traffic.tcp_probe(out, pod.netns, pod.ip, reach.PROBE_PORT),
            )
        ]
        if network == "overlay":
            node_ip = self.topo.node(pod.node).ipv4
            target = f"{node_ip}:{HOST_PORT}"
            if self.port_mapped == pod.name:
                res = traffic.tcp_probe(out, pod.netns, node_ip, HOST_PORT, listen_port=reach.PROBE_PORT)
            else:
                res = traffic.ProbeResult(False, error="lab pods cannot take portMappings yet")
            rows.append(render.AccessRow(network, "node:hostPort (DNAT)", target, res))
        return rows

    def perf(self, label: str, src_ns: str, dst_ns: str, ip: str) -> render.PerfRow:
        try:
            gbps = traffic.bandwidth(src_ns, dst_ns, ip, seconds=self.seconds)
            lat = traffic.rr_latency(src_ns, dst_ns, ip, n=200)
        except FlatnetError as exc:
            return render.PerfRow(label, None, None, None, exc.msg)
        return render.PerfRow(label, gbps, lat.p50_us, lat.p99_us)


def wide_console() -> Console:
    """A console wide enough for the side-by-side tables, also when piped to a file or CI log."""
    import shutil

    return Console(width=max(120, shutil.get_terminal_size((120, 40)).columns))


def route_devices(network: str, node: Any) -> tuple[str, ...]:
    """The node links that carry ``network``'s routes (its share of the node's table)."""
    if network == "overlay":
        return ("fnvx", "fnovl")
    if network == "flat-bridge":
        return ("fnbr",)
    return (node.flat_master, "fns-")  # the parent (subnet route) and the node->pod shim


def run(console: Console, keep: bool = False, seconds: float = 2.0, networks: tuple[str, ...] = NETWORKS) -> int:
    """The whole demo; exit code 0 when every measured cell matched its model."""
    from flatnet_lab.lab import manager

    with manager.exclusive():
        return _run_locked(console, keep, seconds, networks)


def _run_locked(console: Console, keep: bool, seconds: float, networks: tuple[str, ...]) -> int:
    """The demo while holding the lab lock (no test or other demo can tear the lab down)."""
    from flatnet_lab.lab import manager

    brought_up = manager.state() is None
    if brought_up:
        console.print(
            "[bold]bringing the lab up[/bold] (it will go down again at the end"
            + (", --keep: it stays" if keep else "")
            + ")"
        )
        manager.up(progress=lambda msg, done, total: console.print(f"[dim]  [{done}/{total}] {msg}[/dim]"))
    try:
        topo = reach.require_lab()
        demo = Demo(console, topo, seconds)
        try:
            return _measure_and_show(demo, networks)
        finally:
            demo.say("removing the demo's pods")
            for err in demo.cleanup():
                console.print(f"[red]cleanup: {err}[/red]")
    finally:
        if brought_up and not keep:
            console.print("[dim]… bringing the lab down[/dim]")
            manager.down()


def _measure_and_show(demo: Demo, networks: tuple[str, ...]) -> int:
    c, topo = demo.console, demo.topo
    n1, n2 = topo.nodes[0], topo.nodes[1]
    samples: list[render.RouteSample] = []
    matrices: list[reach.Matrix] = []
    access: list[render.AccessRow] = []
    perf: list[render.PerfRow] = []
    from flatnet_lab.lab import pods

    failed: dict[str, str] = {}
    for net in networks:
        demo.say(f"{net}: one pod per node")
        try:
            samples.append(demo.grow(net, GROWTH[0]))
        except FlatnetError as exc:  # show the other network anyway, fail at the end
            failed[net] = f"{exc.msg} {exc.details}".strip()
            c.print(f"[red]  {net}: cannot create pods: {failed[net]}[/red]")
            continue
        a, b = (pods.get_pod(pod_name(net, n.name, 1)) for n in (n1, n2))
        c.print(f"  {net}: pods {a.name} {a.ip} ({a.node}), {b.name} {b.ip} ({b.node})")
        demo.say(f"{net}: reachability matrix")
        matrices.append(reach.measure(topo, net, a, b))
        demo.say(f"{net}: outside host -> pod")
        access += demo.access(net, a)
        demo.say(f"{net}: iperf3 {demo.seconds:g}s and 200 round trips, {a.node} -> {b.node}")
        perf.append(demo.perf(f"{net.upper()} pod -> pod", a.netns, b.netns, b.ip))
    networks = tuple(n for n in networks if n not in failed)
    demo.say(f"the wire: {n1.name} -> {n2.name}")
    perf.append(demo.perf(f"wire {n1.name} -> {n2.name} (the limit)", n1.ns, n2.ns, n2.ipv4))
    for per_node in GROWTH[1:]:
        for net in networks:
            demo.say(f"{net}: {per_node} pods per node")
            samples.append(demo.grow(net, per_node))
    samples.sort(key=lambda s: (networks.index(s.network), s.pods_per_node))
    _show(c, matrices, access, samples, perf)
    for net, why in failed.items():
        c.print(f"[bold red]{net.upper()} could not be measured:[/bold red] {why}")
    return 1 if failed or any(m.mismatches for m in matrices) else 0


NOTES = {
    "a": "flat: pods sit on the VMs' VLAN, so VMs, the outside world and other pods reach "
    "them directly; only VLAN 200 (same subnet, other L2) must fail.",
    "b": "the seed's flannel table: with the overlay the VM sees the node, not the pod; "
    "a registry entry with the pod address is useless to it.",
    "c": "overlay: the only way in is a DNAT port on a node (NodePort / hostPort).",
    "d": "flat: the subnet route plus one host route per address of each *local* pod (the "
    "node->pod shim); nothing for pods on other nodes. overlay: one route per peer node "
    "block plus the local block, constant as pods grow. A per-pod route model (Calico "
    "BGP) would carry one route per pod in the whole cluster.",
}


def _show(
    c: Console,
    matrices: list[reach.Matrix],
    access: list[render.AccessRow],
    samples: list[render.RouteSample],
    perf: list[render.PerfRow],
) -> None:
    c.rule("(a) reachability")
    c.print(render.matrix_table(matrices))
    c.print(NOTES["a"])
    c.rule("(b) source address seen by the VM")
    c.print(render.snat_table(matrices))
    c.print(NOTES["b"])
    c.rule("(c) outside host -> pod")
    c.print(render.access_table(access))
    c.print(NOTES["c"])
    c.rule("(d) routes per node as pods grow")
    c.print(render.routes_table(samples))
    c.print(NOTES["d"])
    c.rule("(e) bandwidth and latency")
    c.print(render.perf_table(perf))
    bad = render.mismatch_lines(matrices)
    if bad:
        c.print("[bold red]MISMATCHES against the model:[/bold red]")
        for line in bad:
            c.print(f"  {line}")
    else:
        c.print("[bold green]every reachability cell matched its model[/bold green]")


def cmd_demo(args: argparse.Namespace) -> int:
    from flatnet_lab.lab import manager

    manager.require_root()
    return run(wide_console(), keep=args.keep, seconds=args.seconds)


def register_demo(lab_subparsers: "argparse._SubParsersAction") -> None:
    """Add ``flatnet lab demo`` to the ``lab`` command's sub-parsers."""
    p = lab_subparsers.add_parser(
        "demo",
        help="flat vs overlay, measured: reachability, SNAT, routes, speed",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--keep", action="store_true", help="leave the lab up at the end (pods are removed either way)")
    p.add_argument("--seconds", type=float, default=2.0, help="iperf3 duration per path (default: %(default)s)")
    p.set_defaults(func=cmd_demo)
