"""One way for every test to run a command in a netns, ping, and wait: bounded in time.

Before this module the tests carried four ``sh()`` and seven ``ping()`` helpers with
different retry rules. Here: ``sh`` runs one command inside a namespace with a timeout;
``ping`` sends ``count`` probes, ``wait`` seconds each, up to ``tries`` times (the first
packets of a fresh link may wait for ARP/ND on a busy machine); ``wait_until`` polls a
condition until a deadline. Every call ends within a bound that can be read off its
arguments, and none of them asserts on timing.
"""

from __future__ import annotations

import subprocess

from flatnet_lab.launch import wait_until

__all__ = ["ping", "sh", "wait_until"]


def sh(ns: str, *cmd: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` inside netns ``ns`` (``ip netns exec``), output captured, bounded in time."""
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout)


def ping(
    ns: str, dst: str, *extra: str, tries: int = 3, count: int = 1, wait: int = 2, interval: float | None = None
) -> bool:
    """True when ``dst`` answers from ``ns``: up to ``tries`` runs of ``count`` probes, each
    waiting ``wait`` s (``extra``: more ping options, e.g. ``-s 1400 -M do``)."""
    args = ["ping", "-n", "-c", str(count), "-W", str(wait)]
    if interval is not None:
        args += ["-i", str(interval)]
    bound = count * (wait + (interval or 1)) + 5
    return any(sh(ns, *args, *extra, dst, timeout=bound).returncode == 0 for _ in range(tries))
