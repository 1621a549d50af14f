"""Smoke test of ``flatnet bench --quick``: it runs end to end and writes a complete report.

No timing assertions: only that every subject has a row with numbers (or, for ipvlan on
a kernel without it, the reason), the charts are PNGs, and nothing is left behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.netns,
    pytest.mark.etcd,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
]

SUBJECTS = {
    "Control plane": ["flatnet (agent)", "flatnet (in-process)", "bridge+host-local"],
    "CRI (containerd)": ["flatnet (agent)", "bridge+host-local"],
    "IPAM": ["sqlite", "etcd"],
    "etcd client (per call)": ["flatnet _http (kept)", "http.client", "httpx", "etcd3gw", "aetcd (gRPC)"],
    "Data plane": [
        "wire",
        "flat macvlan",
        "flat bridge",
        "flat ipvlan",
        "vxlan overlay",
        "udp tunnel (userspace)",
        "VM -> pod (flat)",
        "VM -> node:port -> pod (overlay)",
    ],
    "Routes per node": ["flat macvlan", "flat bridge", "vxlan overlay"],
}
# a difference row ("conflict probe cost", on - off) is negative when the cost is below the
# run's noise
NUMBER = r"-?\d[\d,]*(\.\d+)?"


def _namespaces(prefix: str) -> set[str]:
    try:
        return {n for n in os.listdir("/run/netns") if n.startswith(prefix)}
    except FileNotFoundError:
        return set()


@pytest.mark.timeout(900)  # the lab may be held by another test for a while (manager.exclusive)
def test_quick_bench_writes_a_full_report(tmp_path: Path) -> None:
    before = _namespaces("fnb-")
    proc = subprocess.run(
        [sys.executable, "-m", "flatnet.cli.main", "bench", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=880,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    md = (tmp_path / "BENCHMARKS.md").read_text()
    sections = re.split(r"^## ", md, flags=re.M)
    for title, subjects in SUBJECTS.items():
        body = next((s for s in sections if s.startswith(title + "\n")), None)
        assert body is not None, f"no section {title!r} in the report"
        for subject in subjects:
            rows = [l for l in body.splitlines() if l.startswith(f"| {subject} |")]
            assert rows, f"{title}: no row for {subject!r}"
            for row in rows:
                cells = [c.strip() for c in row.strip("|").split("|")]
                if subject == "flat ipvlan" and "not available" in row:
                    continue  # measured as unavailable, with the reason
                assert re.fullmatch(NUMBER, cells[3]), f"{title}/{subject}: no median in {row}"
    for key in ("CPU", "kernel", "Python", "etcd", "iperf3", "podman"):
        assert f"| {key} |" in md
    assert "## Targets" in md and "flatnet bench --quick" in md
    pngs = sorted((tmp_path / "benchmarks").glob("*.png"))
    assert {p.name for p in pngs} >= {"throughput.png", "latency.png", "cni-latency.png", "ipam-rate.png", "routes.png"}
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "vs baseline" in md
    assert _namespaces("fnb-") == before, "the bench left namespaces behind"
    assert "fnlab-pod-bench-" not in " ".join(_namespaces("fnlab-pod-"))
