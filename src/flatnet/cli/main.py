"""The ``flatnet`` command: one entry point, subcommands found by module.

Each subcommand lives in ``flatnet.cli.<name>`` and exposes ``register(subparsers)``,
which adds its parser(s) and sets ``func`` (``func(args) -> int``). Every module is
imported; the only failure tolerated is a missing third-party package of an optional
part (the lab/bench extra): that command then says what to install, the others work.
Any other import error is a bug and surfaces as one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Callable

from flatnet import SUPPORTED_VERSIONS, __version__
from flatnet.cli.common import run_command

#: the distribution's name on PyPI (the import name is flatnet)
DIST_NAME = "flatnet-cni"
#: subcommand modules, in the order they appear in --help
SUBCOMMAND_MODULES = ("agent", "ipam", "lab", "check", "bench", "doctor", "cniinstall")

DESCRIPTION = """\
flatnet gives pods addresses on the same VLAN / L2 plane as the VMs and servers
around them (macvlan, ipvlan or bridge), with cluster-wide IPAM; a VXLAN overlay
is kept as the fallback and the measured contrast.
"""

EPILOG = """\
examples:
  flatnet version                                   versions of flatnet and of the CNI spec
  flatnet agent --node node1                        run the node agent (socket /run/flatnet/agent.sock)
  flatnet agent --netns fnlab-node1 --socket /run/flatnet/lab/node1.sock \\
                --store sqlite:/run/flatnet/lab/ipam.db   serve a lab node from outside its netns
  flatnet ipam ls --store etcd:http://127.0.0.1:2379      every address held, cluster-wide
  flatnet ipam show 198.18.100.33                   who holds this address
  flatnet ipam release --container 3f2a... --ifname eth0  free a leaked address by hand

Run 'flatnet COMMAND --help' for the options of one command.
"""


def _cmd_version(args: argparse.Namespace) -> int:
    """Print the versions: humans read the line form, scripts ask for --json."""
    if args.json:
        print(json.dumps({"version": __version__, "cniVersions": list(SUPPORTED_VERSIONS)}))
    else:
        print(f"flatnet {__version__}")
        print(f"CNI spec versions: {', '.join(SUPPORTED_VERSIONS)}")
    return 0


def _unavailable(name: str, missing: str) -> Callable[[argparse.Namespace], int]:
    """A command whose optional dependency is not installed: say what to install."""

    def func(_args: argparse.Namespace) -> int:
        print(
            f"flatnet: error: 'flatnet {name}' needs the Python package {missing!r}, which "
            f"is not installed: install flatnet with its extras, e.g. "
            f"pip install '{DIST_NAME}[lab]'",
            file=sys.stderr,
        )
        return 1

    return func


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every subcommand module that can be imported."""
    parser = argparse.ArgumentParser(
        prog="flatnet",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-V", "--version", action="version", version=f"flatnet {__version__} (CNI {', '.join(SUPPORTED_VERSIONS)})"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    ver = sub.add_parser("version", help="show flatnet's version and the CNI versions it speaks")
    ver.add_argument("--json", action="store_true", help="machine-readable output")
    ver.set_defaults(func=_cmd_version)
    for name in SUBCOMMAND_MODULES:
        modname = f"flatnet.cli.{name}"
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if not exc.name or exc.name.partition(".")[0] == "flatnet":
                raise  # our own module is missing: a packaging bug, not an option
            p = sub.add_parser(name, help=f"(needs {exc.name}: not installed)")
            p.set_defaults(func=_unavailable(name, exc.name))
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``flatnet``); returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        # a bare "flatnet" or "flatnet ipam": teach instead of failing silently
        target = getattr(args, "_parser", None) or parser
        target.print_help(sys.stderr)
        return 2
    return run_command(func, args)


if __name__ == "__main__":
    sys.exit(main())
