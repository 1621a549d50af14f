"""Interrupt handling of the bench: SIGTERM unwinds the run, but never inside a forked child.

pyroute2 forks helpers (to create namespaces); if such a child turned SIGTERM into
KeyboardInterrupt it would run the parent's ``finally`` blocks and tear the run down from
inside the child. The guard makes a child exit at once instead.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from flatnet_lab.bench.runner import _sigterm_as_interrupt


def test_sigterm_becomes_keyboardinterrupt_in_the_bench_process() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with _sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal arrives long before this ends
    assert signal.getsignal(signal.SIGTERM) == before  # the old handler is back


def test_a_forked_child_exits_instead_of_unwinding_the_parents_finally() -> None:
    r, w = os.pipe()
    with _sigterm_as_interrupt():
        pid = os.fork()
        if pid == 0:  # child: wait to be terminated; a finally that runs would write to the pipe
            os.close(r)
            try:
                time.sleep(10)
            finally:
                os.write(w, b"unwound")
            os._exit(0)
        os.close(w)
        time.sleep(0.2)
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
    leaked = os.read(r, 100)
    os.close(r)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGTERM
    assert leaked == b""
