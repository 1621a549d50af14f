"""The ``flatnet`` command: one entry point, subcommands found by module.

Each runtime subcommand lives in ``flatnet.cli.<name>`` and exposes ``register(subparsers)``,
which adds its parser(s) and sets ``func`` (``func(args) -> int``). The tooling's commands
(``lab``, ``check``, ``bench``) live in the separate ``flatnet-lab`` distribution and arrive
through the ``flatnet.commands`` entry-point group; when it is not installed (a node's image)
those names still parse and say how to install it. Any import error of a runtime module is a
bug and surfaces as one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from importlib.metadata import entry_points
from typing import Callable

from flatnet import SUPPORTED_VERSIONS, __version__
from flatnet.cli.common import run_command

#: the distribution's name on PyPI (the import name is flatnet)
DIST_NAME = "flatnet-cni"
#: the tooling's distribution (tooling/): the lab, bench and chaos, never needed on a node
LAB_DIST = "flatnet-lab"
#: runtime subcommand modules, in the order they appear in --help
SUBCOMMAND_MODULES = ("agent", "ipam", "network", "doctor", "cniinstall")
#: the tooling's commands, registered by flatnet-lab's ``flatnet.commands`` entry points
TOOLING_COMMANDS = {
    "lab": "build and run the multi-node lab (needs flatnet-lab)",
    "check": "measured reachability checks in the lab (needs flatnet-lab)",
    "bench": "data plane and control plane benchmarks (needs flatnet-lab)",
}

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
  flatnet network check /etc/cni/net.d/flat100.conflist  validate a network config offline
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


def _unavailable(name: str, why: str) -> Callable[[argparse.Namespace], int]:
    """A tooling command that cannot load here: say what to install."""

    def func(_args: argparse.Namespace) -> int:
        print(
            f"flatnet: error: 'flatnet {name}' is part of the tooling ({LAB_DIST}), {why}: "
            f"install it beside flatnet (from a source tree: pip install ./tooling, or make setup); "
            f"a node needs only the runtime",
            file=sys.stderr,
        )
        return 1

    return func


def _register_tooling(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add flatnet-lab's commands, or stand-ins that say how to get them."""
    found = {ep.name: ep for ep in entry_points(group="flatnet.commands")}
    for name, help_text in TOOLING_COMMANDS.items():
        ep = found.pop(name, None)
        why = "which is not installed"
        if ep is not None:
            try:
                register = ep.load()
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.partition(".")[0] in ("flatnet", "flatnet_lab"):
                    raise  # our own module is missing: a packaging bug, not an option
                why = f"whose dependency {exc.name!r} is not installed"
            else:
                register(sub)
                continue
        # every argument is taken as a word (no option prefix), so `flatnet bench --quick` reaches
        # the message instead of an argparse error about an option it cannot know
        p = sub.add_parser(name, help=f"({LAB_DIST} not installed) {help_text}", add_help=False, prefix_chars="\0")
        p.set_defaults(func=_unavailable(name, why))
        p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)


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
        importlib.import_module(f"flatnet.cli.{name}").register(sub)
    _register_tooling(sub)
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
