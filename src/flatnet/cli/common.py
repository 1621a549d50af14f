"""Helpers shared by the ``flatnet`` subcommands: store URLs, output, error handling.

Every subcommand module exposes ``register(subparsers)`` and sets ``func=`` on its parser
with a callable ``func(args) -> int``; ``flatnet.cli.main`` finds the modules and runs the
chosen function through :func:`run_command`, which turns any error into one clear line on
stderr and a non-zero exit (never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from flatnet import defaults
from flatnet.errors import FlatnetError

DEFAULT_STORE_PATH = defaults.SQLITE_PATH
DEFAULT_STORE_URL = f"sqlite:{DEFAULT_STORE_PATH}"
DEFAULT_SOCKET = defaults.AGENT_SOCKET

STORE_HELP = (
    "address store: sqlite:/path/to/ipam.db | etcd:http://host:port[,http://host2:port] "
    "| memory | the JSON of an ipam.store section (etcd TLS: caFile, certFile, keyFile, "
    "usernameFile, passwordFile) (default: %(default)s)"
)


def parse_store_url(url: str) -> dict:
    """Turn ``sqlite:/p`` / ``etcd:http://h:p[,..]`` / ``memory`` / the JSON of an ipam.store
    section into an ``open_store`` config (the store registry's ``store_from_url``, imported
    lazily: it loads every store)."""
    from flatnet.ipam.store import store_from_url

    return store_from_url(url)


def store_arg(parser: argparse.ArgumentParser, default: str | None = DEFAULT_STORE_URL) -> None:
    """Add the common ``--store`` option."""
    parser.add_argument("--store", default=default, metavar="URL", help=STORE_HELP)


def error_line(exc: BaseException) -> str:
    """One human line for an error: message, then the fix; never a secret (masked)."""
    from flatnet.obs.logs import redact

    return redact(_error_text(exc))


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, FlatnetError):
        line = f"error {exc.code}: {exc.msg}"
        if exc.details:
            line += f" ({exc.details})"
        return line
    if isinstance(exc, PermissionError):
        return f"error: permission denied: {exc.filename or exc} (run as root)"
    if isinstance(exc, OSError):
        return f"error: {exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}"
    return f"error: {type(exc).__name__}: {exc}"


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a subcommand: errors become one line on stderr and exit code 1 (2 for usage)."""
    try:
        rc = func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except FlatnetError as exc:
        print(f"flatnet: {error_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the CLI promises no tracebacks
        print(f"flatnet: {error_line(exc)}", file=sys.stderr)
        return 1
    return int(rc or 0)
