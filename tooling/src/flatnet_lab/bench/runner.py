"""Run a whole bench: sections in order, progress on screen, report files at the end.

Cleanup is structural: every namespace and process the run makes is registered in one
``Scratch`` (or, for the lab, deleted by the data-plane section's own ``finally``), and
SIGTERM is turned into KeyboardInterrupt, so Ctrl-C and a killed CI job unwind through
the same ``finally`` blocks as an error does.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from flatnet_lab.bench import charts, etcdclients, etcdproc, machine, report, targets
from flatnet_lab.bench.control import ControlBench
from flatnet_lab.bench.cribench import CriBench
from flatnet_lab.bench.dataplane import DataPlaneBench
from flatnet_lab.bench.ipambench import IpamBench, store_configs
from flatnet_lab.bench.nsenv import Scratch
from flatnet_lab.bench.profile import Profile
from flatnet_lab.bench.results import Results

SECTIONS = ("control", "cri", "ipam", "dataplane")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    me = os.getpid()

    def raise_interrupt(_sig: int, _frame: object) -> None:
        if os.getpid() != me:
            # a forked helper (pyroute2 forks to create namespaces) must never unwind
            # our finally blocks: that would tear down the run from inside the child
            os._exit(128 + signal.SIGTERM)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def measure(profile: Profile, skip: tuple[str, ...] = (), tick: Callable[[str], None] = lambda _m: None) -> Results:
    """Run every section not in ``skip``; everything made is removed before returning."""
    results = Results()
    results.extra["profile"] = profile.name
    scratch = Scratch()
    tmp = tempfile.mkdtemp(prefix="fnb-")
    control: ControlBench | None = None
    try:
        with _sigterm_as_interrupt():
            if "control" not in skip:
                control = ControlBench(profile, results, scratch, tmp, tick)
                control.run()
                control.close()
                scratch.close()
            if "cri" not in skip:
                CriBench(profile, results, tick).run()
            if "ipam" not in skip:
                tick("ipam: starting a private etcd")
                endpoint = etcdproc.start(tmp, scratch)
                IpamBench(profile, results, tick, store_configs(tmp, endpoint)).run()
                for rep in range(profile.repeats):
                    tick(f"etcd client: per-call cost of each candidate (repeat {rep + 1})")
                    etcdclients.record(results, endpoint, max(300, profile.ipam_allocs))
                scratch.close()
            if "dataplane" not in skip:
                DataPlaneBench(profile, results, scratch, tmp, tick).run()
    finally:
        if control is not None:
            control.close()
        scratch.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def write_report(results: Results, out_dir: str, command: str) -> tuple[str, list[str]]:
    """Write BENCHMARKS.md, charts and raw results.json under ``out_dir``; return paths."""
    chart_dir = os.path.join(out_dir, "benchmarks")
    names = charts.write_all(results, chart_dir)
    with open(os.path.join(chart_dir, "results.json"), "w", encoding="utf-8") as fh:
        fh.write(results.to_json())
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = report.markdown(
        results, machine.describe(), command, date, targets.judge(results), names, str(results.extra.get("profile"))
    )
    md = os.path.join(out_dir, "BENCHMARKS.md")
    with open(md, "w", encoding="utf-8") as fh:
        fh.write(text)
    return md, [os.path.join(chart_dir, n) for n in names]


def run(
    profile: Profile, out_dir: str, command: str, skip: tuple[str, ...] = (), console: Console | None = None
) -> Results:
    """Measure with a live progress line, print the table and targets, write the report."""
    console = console or Console()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("step {task.completed}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("starting", total=None)

        def tick(msg: str) -> None:
            progress.update(task, description=msg, advance=1)

        results = measure(profile, skip, tick)
    for table in report.rich_tables(results):
        console.print(table)
    for t in targets.judge(results):
        mark = {True: "[green]holds[/green]", False: "[red]missed[/red]", None: "n/a"}[t.holds]
        console.print(f"target: {t.goal}: {t.measured} -> {mark}")
    for note in results.notes:
        console.print(f"[dim]note: {note}[/dim]")
    md, pngs = write_report(results, out_dir, command)
    console.print(f"wrote {md} and {len(pngs)} charts under {os.path.join(out_dir, 'benchmarks')}")
    return results
