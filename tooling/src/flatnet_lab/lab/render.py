"""Rich tables for the demo and ``flatnet check reach``: FLAT and OVERLAY side by side.

Only presentation lives here: every number and every cell comes in already measured
(``reach.Matrix``, ``AccessRow``, ``RouteSample``, ``PerfRow``), so tests can render fake
measurements and read the text back.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from flatnet_lab.lab.traffic import ProbeResult
from flatnet_lab.lab.reach import ROWS, Matrix


@dataclass(frozen=True)
class AccessRow:
    """How an outside host reached a pod in one network: the target dialled and the result."""

    network: str
    how: str  # "pod address" | "node:hostPort (DNAT)"
    target: str
    result: ProbeResult


@dataclass(frozen=True)
class RouteSample:
    """Routes counted in each node's netns with ``pods_per_node`` pods of ``network``."""

    network: str
    pods_per_node: int
    routes: dict[str, int] = field(default_factory=dict)  # node -> routes (v4+v6)
    host_routes: dict[str, int] = field(default_factory=dict)  # node -> /32 + /128 routes


@dataclass(frozen=True)
class PerfRow:
    """One measured path: throughput (iperf3) and request/response latency."""

    label: str
    gbps: float | None
    p50_us: float | None
    p99_us: float | None
    error: str = ""


def _verdict(ok: bool) -> str:
    return "[green]ok[/green]" if ok else "[bold red]MISMATCH[/bold red]"


def matrix_table(matrices: list[Matrix]) -> Table:
    """Rows = paths, and per network: what was measured, what the model expects, verdict."""
    table = Table(title="reachability (each cell one real TCP connection)")
    table.add_column("path")
    for m in matrices:
        table.add_column(f"{m.network.upper()} measured")
        table.add_column("expected")
        table.add_column("")
    for row in ROWS:
        cells: list[str] = [row.label]
        if not any(m.cell(row.key) for m in matrices):
            continue
        for m in matrices:
            c = m.cell(row.key)
            if c is None:
                cells += ["-", "-", ""]
                continue
            cells += [c.text(), c.expected.text(), _verdict(c.match)]
        table.add_row(*cells)
    return table


def _hostport(ip: str | None, port: int | None) -> str:
    return f"{ip}:{port}" if ip else "-"


def snat_table(matrices: list[Matrix]) -> Table:
    """The seed's SNAT table: the pod's own source vs the source the VM actually saw."""
    table = Table(title="pod -> VM: the source address the VM sees")
    table.add_column("network")
    table.add_column("pod sends from")
    table.add_column("VM sees")
    table.add_column("address")
    table.add_column("port")
    for m in matrices:
        c = m.cell("pod-vm")
        if c is None:
            continue
        r = c.result
        if not r.ok:
            table.add_row(m.network.upper(), "-", f"no connection ({r.error})", "-", "-")
            continue
        addr = {"own": "kept (the pod's own)", "node": "rewritten to the node (SNAT)"}.get(c.src_kind or "", "other")
        port = "kept" if r.seen_src_port == r.client_src_port else "rewritten"
        table.add_row(
            m.network.upper(),
            _hostport(r.client_src_ip, r.client_src_port),
            _hostport(r.seen_src_ip, r.seen_src_port),
            addr,
            port,
        )
    return table


def access_table(rows: list[AccessRow]) -> Table:
    """How the outside host reaches a pod: directly (flat) or only through node:hostPort."""
    table = Table(title="outside host -> pod")
    for col in ("network", "dialled", "target", "result", "pod saw source"):
        table.add_column(col)
    for a in rows:
        r = a.result
        table.add_row(
            a.network.upper(),
            a.how,
            a.target,
            "[green]connected[/green]" if r.ok else f"[red]no[/red] ({r.error})",
            _hostport(r.seen_src_ip, r.seen_src_port) if r.ok else "-",
        )
    return table


def routes_table(samples: list[RouteSample]) -> Table:
    """Routes per node netns as pods grow, and how many of them are per-host (/32, /128)."""
    nodes = sorted({n for s in samples for n in s.routes})
    table = Table(title="routes in each node's netns through this network's links (v4+v6)")
    table.add_column("network")
    table.add_column("pods/node", justify="right")
    for n in nodes:
        table.add_column(n, justify="right")
    table.add_column("of which host routes", justify="right")
    for s in samples:
        per_node = [str(s.routes.get(n, "-")) for n in nodes]
        table.add_row(
            s.network.upper(), str(s.pods_per_node), *per_node, "/".join(str(s.host_routes.get(n, "-")) for n in nodes)
        )
    return table


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def perf_table(rows: list[PerfRow]) -> Table:
    table = Table(title="pod -> pod across nodes (iperf3 one stream; 1-byte TCP round trips)")
    for col, just in (
        ("path", "left"),
        ("Gbit/s", "right"),
        ("p50 µs", "right"),
        ("p99 µs", "right"),
        ("note", "left"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for p in rows:
        table.add_row(p.label, _fmt(p.gbps, ".2f"), _fmt(p.p50_us, ".0f"), _fmt(p.p99_us, ".0f"), p.error)
    return table


def mismatch_lines(matrices: list[Matrix]) -> list[str]:
    """One line per cell that broke its model, naming the path and what was seen."""
    return [
        f"{m.network}: {c.label}: measured '{c.text()}', expected '{c.expected.text()}'"
        for m in matrices
        for c in m.mismatches
    ]


def to_text(*renderables: object, width: int = 200) -> str:
    """Render to plain text (tests, logs): no colour, fixed width."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False)
    for r in renderables:
        console.print(r)
    return buf.getvalue()
