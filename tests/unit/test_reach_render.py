"""Rendering of the demo's other tables (access, routes, performance) from fake measurements."""

from __future__ import annotations

import argparse

from flatnet_lab.lab import demo, render
from flatnet_lab.lab.traffic import ProbeResult, _percentile


def test_access_table_shows_direct_and_dnat_paths() -> None:
    rows = [
        render.AccessRow(
            "flat",
            "pod address",
            "198.18.100.40:18080",
            ProbeResult(True, "198.19.200.10", 50000, "198.19.200.10", 50000, 0.001),
        ),
        render.AccessRow("overlay", "pod address", "198.19.1.2:18080", ProbeResult(False, error="No route to host")),
        render.AccessRow(
            "overlay",
            "node:hostPort (DNAT)",
            "198.18.100.11:30080",
            ProbeResult(True, "198.19.200.10", 50001, "198.19.200.10", 50001, 0.001),
        ),
    ]
    lines = render.to_text(render.access_table(rows)).splitlines()
    flat = next(ln for ln in lines if "FLAT" in ln)
    direct = next(ln for ln in lines if "OVERLAY" in ln and "pod address" in ln)
    dnat = next(ln for ln in lines if "hostPort" in ln)
    assert "connected" in flat and "198.19.200.10:50000" in flat
    assert "no (No route to host)" in direct
    assert "connected" in dnat and "198.18.100.11:30080" in dnat


def test_routes_table_one_column_per_node() -> None:
    samples = [
        render.RouteSample("flat", 1, {"node1": 3, "node2": 3}, {"node1": 1, "node2": 1}),
        render.RouteSample("overlay", 4, {"node1": 9, "node2": 8}, {"node1": 4, "node2": 4}),
    ]
    text = render.to_text(render.routes_table(samples))
    assert "node1" in text and "node2" in text
    over = next(ln for ln in text.splitlines() if "OVERLAY" in ln).split()
    assert [t for t in over if t.isdigit()] == ["4", "9", "8"]
    assert "4/4" in over


def test_perf_table_formats_and_notes_errors() -> None:
    rows = [
        render.PerfRow("FLAT pod -> pod", 12.3456, 41.2, 180.9),
        render.PerfRow("OVERLAY pod -> pod", None, None, None, "iperf3 failed"),
    ]
    text = render.to_text(render.perf_table(rows))
    flat = next(ln for ln in text.splitlines() if "FLAT" in ln)
    assert "12.35" in flat and "41" in flat and "181" in flat
    assert "iperf3 failed" in text


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert _percentile(values, 50) == 50.0
    assert _percentile(values, 99) == 99.0
    assert _percentile([5.0], 99) == 5.0


def test_demo_parser_and_pod_names() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    demo.register_demo(sub)
    args = parser.parse_args(["demo", "--keep", "--seconds", "1.5"])
    assert args.keep is True and args.seconds == 1.5 and args.func is demo.cmd_demo
    names = {demo.pod_name(n, node, k) for n in demo.NETWORKS for node in ("node1", "node2") for k in demo.GROWTH}
    assert len(names) == len(demo.NETWORKS) * 2 * len(demo.GROWTH)  # no collisions
