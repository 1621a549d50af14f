"""Human output for doctor reports (rich): problems in full, passing checks one line each.

Sized for one screen in the common case: each problem is a header line plus why/fix,
and the summary line repeats the exit code so a reader knows what a script will see.
"""

from __future__ import annotations

from typing import Iterable

from rich.console import Console
from rich.markup import escape

from flatnet.doctor.findings import Finding, exit_code, ordered

_STYLE = {"error": "bold red", "warn": "yellow", "ok": "green"}
_LABEL = {"error": "ERROR", "warn": "WARN ", "ok": "ok   "}


def render(title: str, findings: Iterable[Finding], console: Console | None = None, show_ok: bool = True) -> None:
    """Print a report; ``show_ok`` False hides passing checks (the cluster view)."""
    con = console or Console()
    items = ordered(findings)
    con.print(f"[bold]{escape(title)}[/bold]")
    problems = [f for f in items if f.severity != "ok"]
    notes = [f for f in items if f.severity == "ok"]
    for f in problems:
        con.print(
            f"[{_STYLE[f.severity]}]{_LABEL[f.severity]}[/] [bold]{escape(f.object)}[/bold] [dim]({f.code})[/dim]"
        )
        con.print(f"  {escape(f.what)}", highlight=False)
        if f.why:
            con.print(f"  [dim]why:[/dim] {escape(f.why)}", highlight=False)
        if f.fix:
            con.print(f"  [cyan]fix:[/cyan] {escape(f.fix)}", highlight=False)
    if show_ok or not problems:
        for f in notes:
            con.print(f"[green]{_LABEL['ok']}[/] {escape(f.object)}: {escape(f.what)}", highlight=False)
    errors = sum(f.severity == "error" for f in items)
    warns = sum(f.severity == "warn" for f in items)
    verdict = "no problems found" if not problems else f"{errors} error(s), {warns} warning(s)"
    con.print(f"[bold]{verdict}[/bold] (exit {exit_code(items)})")
