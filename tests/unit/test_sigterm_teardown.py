"""SIGTERM to a test run tears its fixtures down (tests/helpers/sigterm.py).

A real pytest run in a subprocess: its fixture makes a file and removes it in teardown; the
run is sent SIGTERM while its test is running. With the plugin the file is gone and pytest
exits as interrupted; the control (the same run without the plugin) dies with the file left
behind, which is what the plugin is for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

VICTIM = textwrap.dedent(
    """
    import os, time
    import pytest

    @pytest.fixture
    def made():
        path = os.environ["FN_MADE"]
        open(path, "w").close()
        yield path
        os.unlink(path)

    def test_runs_until_terminated(made):
        open(os.environ["FN_READY"], "w").close()
        time.sleep(30)
    """
)


def run_and_terminate(tmp_path: Path, plugin: bool) -> tuple[int, bool]:
    """(pytest's exit status, whether the fixture's file is still there)."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_victim.py").write_text(VICTIM)
    made, ready = tmp_path / "made", tmp_path / "ready"
    env = {**os.environ, "FN_MADE": str(made), "FN_READY": str(ready), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(tmp_path / "pytest.ini")]
    if plugin:
        cmd += ["-p", "tests.helpers.sigterm"]
    proc = subprocess.Popen(
        [*cmd, str(tmp_path / "test_victim.py")], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"the victim run never started its test: {out[-800:]}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, made.exists()


def test_sigterm_runs_the_fixtures_teardown(tmp_path: Path) -> None:
    rc, left = run_and_terminate(tmp_path, plugin=True)
    assert not left
    assert rc == pytest.ExitCode.INTERRUPTED


def test_control_without_the_plugin_sigterm_leaves_it_behind(tmp_path: Path) -> None:
    rc, left = run_and_terminate(tmp_path, plugin=False)
    assert left and rc == -signal.SIGTERM


def test_a_forked_child_still_dies_of_sigterm() -> None:
    """This run has the plugin (tests/conftest.py): a child forked from it, as multiprocessing
    forks bench clients, inherits the handler and must still die of the signal."""
    from tests.helpers import sigterm

    assert signal.getsignal(signal.SIGTERM) is sigterm._interrupt
    pid = os.fork()
    if pid == 0:  # the child: wait to be terminated (bounded)
        try:
            time.sleep(20)
        finally:
            os._exit(3)
    time.sleep(0.2)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
