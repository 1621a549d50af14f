"""What a scenario measured, and the summary table (rich)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table


@dataclass
class ScenarioResult:
    """One scenario on one store. ``duplicates``/``lost``/``leaks`` must all be 0 to pass."""

    scenario: str
    store: str
    operations: int = 0
    failed: int = 0  # CNI calls that returned an error (the runtime retried them)
    kills: int = 0  # faults injected: agent/writer SIGKILLs, etcd stops, nodes lost
    duplicates: int = 0  # an address held by two live attachments (store or kernel)
    lost: int = 0  # a live attachment whose lease is gone (its address could be handed out again)
    leaks: int = 0  # a lease, link, host route or nft rule of a container that no longer exists
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.duplicates == 0 and self.lost == 0 and self.leaks == 0


def render(results: list[ScenarioResult], title: str = "flatnet chaos") -> Table:
    table = Table(title=title)
    for col in (
        "scenario",
        "store",
        "operations",
        "failed (retried)",
        "kills",
        "duplicates",
        "lost leases",
        "leaks",
        "seconds",
        "result",
    ):
        table.add_column(col, justify="left" if col in ("scenario", "store", "result") else "right")
    for r in results:
        table.add_row(
            r.scenario,
            r.store,
            str(r.operations),
            str(r.failed),
            str(r.kills),
            str(r.duplicates),
            str(r.lost),
            str(r.leaks),
            f"{r.seconds:.1f}",
            "[green]ok[/green]" if r.ok else "[red]FAIL[/red]",
        )
    return table
