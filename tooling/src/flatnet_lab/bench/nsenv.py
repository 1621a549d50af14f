"""Namespaces the bench creates for itself (prefix ``fnb-``), and their guaranteed removal.

The control-plane and ipvlan checks do not need the lab: they build one "node" netns with
a veth parent (its peer in a sink netns) and one netns per pod, the way a runtime would.
Everything is registered in a ``Scratch`` so ``close`` (called from ``finally``, also on
Ctrl-C) removes exactly what this run made and nothing else.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from typing import Callable

from flatnet_lab.testbed import net as labnet

PREFIX = "fnb-"


class Scratch:
    """Namespaces and processes of one bench run; ``close`` removes them all."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def name(self, suffix: str) -> str:
        return f"{PREFIX}{self.tag}-{suffix}"

    def netns(self, suffix: str) -> str:
        """Create (and remember) netns ``fnb-<tag>-<suffix>``; return its name."""
        ns = self.name(suffix)
        self.namespaces.append(ns)
        labnet.ensure_netns(ns)
        return ns

    def node_with_parent(self, node: str = "n", parent: str = "vp0") -> str:
        """A node netns whose ``parent`` veth leads to a sink netns (a stand-in uplink)."""
        ns = self.netns(node)
        sink = self.netns(f"{node}s")
        labnet.ensure_veth(ns, parent, sink, "vs0")
        return ns

    def drop(self, ns: str) -> None:
        """Remove one netns now (a pod deleted mid-run)."""
        labnet.remove_netns(ns)
        if ns in self.namespaces:
            self.namespaces.remove(ns)

    def track(self, proc: subprocess.Popen) -> subprocess.Popen:
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        """Stop our processes (TERM, then KILL), then remove our namespaces."""
        for proc in self.procs:
            stop(proc)
        self.procs.clear()
        for ns in reversed(self.namespaces):
            for pid in labnet.pids_in_netns(ns):
                if pid != os.getpid():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            labnet.remove_netns(ns)
        self.namespaces.clear()


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM the process (its session, when it leads one), wait bounded, then SIGKILL."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def leftovers() -> list[str]:
    """Bench namespaces that exist now (an interrupted earlier run leaves none, normally)."""
    return labnet.list_namespaces(PREFIX)


def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    """Poll ``pred`` until true or ``timeout`` seconds pass (bounded); return the last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())
