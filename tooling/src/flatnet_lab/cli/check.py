"""``flatnet check reach``: the reachability matrix against the running lab.

For each network it makes two fresh pods (on the first two nodes), measures every path
with a real TCP connection, compares with the network's model, removes the pods, and
exits non-zero when any cell broke its model, so it can gate CI or a change.
"""

from __future__ import annotations

import argparse
import json

CHOICES = ("flat", "flat-bridge", "overlay", "all")
ALL = ("flat", "overlay")

EPILOG = """\
examples:
  sudo flatnet lab up && sudo flatnet check reach       flat and overlay, as tables
  sudo flatnet check reach --network flat --json        one network, machine-readable
exit code: 0 every cell as expected, 1 a mismatch (or an error)
"""


def register(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "check",
        help="check the lab against the network models (reach)",
        description="Checks that measure the running lab.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(_parser=p)
    sub = p.add_subparsers(dest="check_command", metavar="CHECK")
    r = sub.add_parser(
        "reach",
        help="who reaches whom, and with which source address",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    r.add_argument(
        "--network",
        choices=CHOICES,
        default="all",
        help="lab network to check (default: %(default)s = flat and overlay)",
    )
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.set_defaults(func=cmd_reach)


def cmd_reach(args: argparse.Namespace) -> int:
    from flatnet_lab.lab import manager, reach, render

    manager.require_root()
    networks = list(ALL) if args.network == "all" else [args.network]
    matrices = reach.check_lab(networks)
    bad = render.mismatch_lines(matrices)
    if args.json:
        print(json.dumps({"ok": not bad, "networks": [m.to_json() for m in matrices]}, indent=2))
    else:
        from rich.console import Console

        console = Console()
        console.print(render.matrix_table(matrices))
        for line in bad:
            console.print(f"[bold red]mismatch[/bold red] {line}")
        console.print("[green]every cell as expected[/green]" if not bad else f"[red]{len(bad)} mismatch(es)[/red]")
    return 1 if bad else 0


__all__ = ["register", "cmd_reach"]
