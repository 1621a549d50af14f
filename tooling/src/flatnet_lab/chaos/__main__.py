"""``python -m flatnet_lab.chaos [--smoke] [--store sqlite|etcd|both]``: run, print the table."""

from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console

from flatnet_lab.chaos.report import render
from flatnet_lab.chaos.scenarios import PROFILES, SCENARIOS, run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m flatnet_lab.chaos", description="CNI load with faults injected, then invariant checks."
    )
    p.add_argument("--smoke", action="store_true", help="small profile (300 calls, 5 agent kills)")
    p.add_argument("--store", choices=("sqlite", "etcd", "both"), default="both")
    p.add_argument(
        "--scenario",
        action="append",
        default=[],
        choices=sorted({s for v in SCENARIOS.values() for s in v}),
        help="run only these",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="print each scenario's findings")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("flatnet chaos needs root (it creates network namespaces); run it with sudo", file=sys.stderr)
        return 2
    console = Console(width=140)
    profile = PROFILES["smoke" if args.smoke else "full"]
    stores = ["sqlite", "etcd"] if args.store == "both" else [args.store]
    results = run(profile, stores, log=lambda m: console.print(f"[dim]{m}[/dim]"), only=tuple(args.scenario))
    console.print(render(results, f"flatnet chaos ({profile.name}: {profile.concurrency} at a time)"))
    for r in results:
        if args.verbose or not r.ok:
            for note in r.notes:
                console.print(f"  {r.scenario}/{r.store}: {note}", markup=False)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
