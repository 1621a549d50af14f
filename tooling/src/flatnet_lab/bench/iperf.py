"""iperf3 between two namespaces for the bench: TCP with 1 or N streams, and UDP.

The runner itself is ``flatnet_lab.lab.traffic.iperf3`` (shared with the lab demo's one-stream
``bandwidth``): one-off server killed in ``finally``, client with a hard timeout.
"""

from __future__ import annotations

import subprocess

from flatnet_lab.lab.traffic import IPERF3, iperf3


def version() -> str:
    try:
        out = subprocess.run([IPERF3, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError:
        return "not installed"
    return out.split()[1] if out.split() else "unknown"


def throughput(
    src_ns: str | None,
    dst_ns: str | None,
    ip: str,
    seconds: int = 2,
    streams: int = 1,
    udp: bool = False,
    port: int = 5201,
) -> float:
    """Gbit/s received at ``ip`` (in ``dst_ns``) from a client in ``src_ns``."""
    return iperf3(src_ns, dst_ns, ip, seconds, streams, udp, port)
