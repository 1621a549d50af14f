"""``flatnet bench``: measure flatnet against the wire, the overlay and the reference plugins."""

from __future__ import annotations

import argparse
import os

from flatnet.errors import FlatnetError

EPILOG = """\
examples:
  flatnet bench                 full run (several minutes); writes docs/BENCHMARKS.md and
                                docs/benchmarks/*.png
  flatnet bench --quick --out /tmp/b   smoke profile (< 2 minutes), report under /tmp/b
  flatnet bench --skip dataplane       control plane and IPAM only (no lab needed)
  flatnet bench --skip control --skip cri --skip ipam --skip dataplane --scale 10,100,1000
                                what N nodes cost etcd (docs/SCALE.md; minutes per size)

Needs root: it creates network namespaces (prefix fnb-) and uses the lab (fnlab-, held
exclusively while measuring; brought up and down again if it was not up). Everything it
creates is removed at the end, also on Ctrl-C.
"""


def register(subparsers: "argparse._SubParsersAction") -> None:
    from flatnet_lab.bench.runner import SECTIONS

    p = subparsers.add_parser(
        "bench",
        help="benchmark control plane, IPAM and data plane side by side",
        description="Measure every subject in one run and report ratios to the baselines "
        "measured in that run (min/median/max over repeats).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="smoke profile: fewer repeats, shorter iperf3, smaller pools")
    p.add_argument(
        "--out",
        default="docs",
        metavar="DIR",
        help="where BENCHMARKS.md and benchmarks/*.png go (default: %(default)s)",
    )
    p.add_argument("--skip", action="append", choices=SECTIONS, default=[], help="leave a section out (repeatable)")
    p.add_argument(
        "--scale",
        metavar="N,N,..",
        default="",
        help="also run the scale section (off by default): N nodes' agents against a 3-member etcd "
        "(flatnet_lab.bench.scale); writes <out>/scale/scale.json and charts",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flatnet_lab.bench.profile import FULL, QUICK
    from flatnet_lab.bench.runner import SECTIONS
    from flatnet_lab.bench.runner import run as run_bench

    if os.geteuid() != 0:
        raise FlatnetError("flatnet bench needs root (it creates network namespaces)", "run it with sudo")
    command = (
        "flatnet bench"
        + (" --quick" if args.quick else "")
        + (f" --out {args.out}" if args.out != "docs" else "")
        + "".join(f" --skip {x}" for x in args.skip)
    )
    if set(SECTIONS) - set(args.skip):  # every section skipped: only --scale runs
        run_bench(QUICK if args.quick else FULL, args.out, command, tuple(args.skip))
    if args.scale:
        from flatnet_lab.bench import scale, scalecharts

        out = os.path.join(args.out, "scale")
        scale.main(["--nodes", args.scale, "--out", out])
        scalecharts.main([out, os.path.join(out, "scale.json")])
    return 0
