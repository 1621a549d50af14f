"""SIGTERM ends a test run the way Ctrl-C does: every fixture's teardown runs.

A CI job that runs over its time, a ``timeout`` wrapper or an operator's ``kill`` sends
SIGTERM; Python's default is to die on the spot, leaving what the running tests made behind
(network namespaces, etcd members, containers, lab nodes). Raised as ``KeyboardInterrupt``
in the main thread instead, pytest stops the run and tears its fixtures down before exiting
(``pytest_sessionfinish``), as it does on Ctrl-C. A handler someone else installed is kept;
a process a test forks dies of SIGTERM as before.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

import pytest


_RUNNER = os.getpid()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _RUNNER:
        # a process a test forked (multiprocessing's fork) inherited this handler: it dies
        # of SIGTERM as it would have without it
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise KeyboardInterrupt(f"signal {signum} (SIGTERM): stopping the run, tearing down fixtures")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
