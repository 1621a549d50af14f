"""``flatnet lab metrics-report``: a burst of pods watched by a real Prometheus, drawn as a PNG.

With the lab up, it starts the lab's Prometheus (``flatnet_lab.lab.prometheus``) with the
chart's alerting rules, adds a burst of pods on ``flat`` through the real plugin and
agents, fills the 8-address pool of ``flat-small`` until ``FlatnetPoolNearlyFull`` fires,
then draws the ADD rate and the pools' usage over the run from ``query_range`` into a
PNG (docs/observability-lab.png). The pods it made are deleted at the end. The
integration test (tests/integration/test_lab_prometheus.py) uses the same pieces.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from flatnet_lab.lab import pods, procs
from flatnet_lab.lab.prometheus import LabPrometheus
from flatnet_lab.lab.topology import Topology

ADDS = 'sum(flatnet_cni_request_duration_seconds_count{verb="ADD",result="0"})'
RATE = 'sum(rate(flatnet_cni_request_duration_seconds_count{verb="ADD",result="0"}[5s]))'
USAGE = "max by (pool) (flatnet_ipam_pool_allocated_addresses / flatnet_ipam_pool_size_addresses)"
ALERT = "FlatnetPoolNearlyFull"


def burst(topo: Topology, names: list[str], network: str = "flat", workers: int = 6) -> list[pods.Pod]:
    """Add ``names`` as pods, round-robin over the nodes, ``workers`` ADDs in flight at once."""
    nodes = [n.name for n in topo.nodes]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(pods.add_pod, nodes[i % len(nodes)], name, network) for i, name in enumerate(names)]
        return [f.result() for f in futures]


def logged_durations(topo: Topology, container_ids: set[str], verb: str = "ADD") -> list[float]:
    """``duration_seconds`` of these containers' requests, from the agents' JSON logs."""
    out = []
    for node in topo.nodes:
        try:
            with open(procs.path(f"{node.name}.log"), encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if '"verb"' not in line:
                        continue
                    rec = json.loads(line)
                    if rec.get("verb") == verb and rec.get("container_id") in container_ids:
                        out.append(float(rec["duration_seconds"]))
        except FileNotFoundError:
            pass
    return out


def draw(prom: LabPrometheus, start: float, end: float, path: str, marks: dict[str, float] | None = None) -> None:
    """Two panels from ``query_range``: ADD rate (all agents) and each pool's usage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = max(prom.scrape_interval, (end - start) / 400)
    rate = prom.query_range(RATE, start, end, step)
    usage = prom.query_range(USAGE, start, end, step)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for series in rate:
        ax1.plot(
            [float(t) - start for t, _ in series["values"]], [float(v) for _, v in series["values"]], color="tab:blue"
        )
    ax1.set_ylabel("ADDs / s (5 s rate)")
    ax1.set_title("flatnet lab: CNI ADD rate and pool usage, from Prometheus query_range")
    for series in sorted(usage, key=lambda s: s["metric"].get("pool", "")):
        ax2.plot(
            [float(t) - start for t, _ in series["values"]],
            [100 * float(v) for _, v in series["values"]],
            label=series["metric"].get("pool", "?"),
        )
    ax2.axhline(90, color="tab:red", linestyle="--", linewidth=1, label=f"{ALERT} threshold (90%)")
    ax2.set_ylabel("allocated / size (%)")
    ax2.set_xlabel("seconds since the start of the run")
    ax2.set_ylim(0, 105)
    for label, t in (marks or {}).items():
        for ax in (ax1, ax2):
            ax.axvline(t - start, color="grey", linestyle=":", linewidth=1)
        ax1.annotate(label, (t - start, 0), rotation=90, fontsize=7, va="bottom", ha="right")
    ax2.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def firing(prom: LabPrometheus, pool: str) -> list[dict[str, Any]]:
    return [
        a
        for a in prom.alerts()
        if a["labels"].get("alertname") == ALERT and a["labels"].get("pool") == pool and a["state"] == "firing"
    ]


def run(out: str, count: int = 24, say: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole report on the running lab; returns the figures it printed."""
    from flatnet_lab.lab.alerts import rule_file
    from flatnet_lab.lab.manager import current_topology

    topo = current_topology()
    names = [f"mr-{i}" for i in range(count)]
    small = [f"mr-small-{i}" for i in range(8)]
    warm = [f"mr-warm-{n.index}" for n in topo.nodes]
    made: list[str] = []
    with LabPrometheus(topo).start(rule_file({"for": "2s"})) as prom:
        try:
            prom.wait_for("every agent scraped", lambda: prom.targets_up() == len(topo.nodes))
            start = time.time()
            made += warm  # one pod per node: every agent's ADD series exists before the burst
            burst(topo, warm)
            prom.wait_for("the warm-up ADDs scraped", lambda: (prom.value(ADDS) or 0) >= len(warm))
            before = prom.value(ADDS) or 0.0
            time.sleep(3 * prom.scrape_interval)
            marks = {"burst": time.time()}
            made += names
            burst(topo, names)
            prom.wait_for("the burst scraped", lambda: (prom.value(ADDS) or 0) >= before + count)
            time.sleep(5 * prom.scrape_interval)
            marks["fill small-v4"] = time.time()
            made += small
            burst(topo, small, network="flat-small", workers=4)
            alert = prom.wait_for(f"{ALERT} firing", lambda: firing(prom, "small-v4"))
            time.sleep(5 * prom.scrape_interval)
            end = time.time()
            draw(prom, start, end, out, marks)
            figures = {"adds": (prom.value(ADDS) or 0) - before, "alert": alert[0]}
            say(
                f"ADDs seen by Prometheus after the warm-up: {figures['adds']:.0f}; {ALERT} firing for pool small-v4; "
                f"chart written to {out}"
            )
            return figures
        finally:
            for name in made:
                try:
                    pods.del_pod(name)
                except Exception:  # noqa: BLE001 - best effort: 'lab down' removes the rest
                    pass
