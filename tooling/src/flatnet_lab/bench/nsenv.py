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

from flatnet_lab.launch import stop_proc
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
            stop_proc(proc, timeout=5.0, kill_wait=5.0)
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


def leftovers() -> list[str]:
    """Bench namespaces that exist now (an interrupted earlier run leaves none, normally)."""
    return labnet.list_namespaces(PREFIX)
