"""The facts that make a benchmark readable later: machine, kernel and tool versions."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

from flatnet import __version__


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _containerd() -> str:
    """ "containerd github.com/containerd/containerd 1.6.20~ds1 <rev>" -> "1.6.20~ds1"."""
    words = _first_line(["containerd", "--version"]).split()
    return words[2] if len(words) >= 3 and words[0] == "containerd" else " ".join(words)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib() -> str:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            kib = int(fh.readline().split()[1])
        return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown"


def describe() -> dict[str, str]:
    """Name -> value, in the order the report prints them."""
    from flatnet_lab.bench import etcdproc, iperf

    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count() or "?"),
        "memory": _mem_gib(),
        "kernel": platform.release(),
        "Python": sys.version.split()[0],
        "flatnet": __version__,
        "etcd": etcdproc.version(),
        "iperf3": iperf.version(),
        "podman": _first_line(["podman", "--version"]).replace("podman version ", ""),
        "containerd": _containerd(),
    }
