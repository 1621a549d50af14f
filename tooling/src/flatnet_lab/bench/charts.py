"""PNG charts of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os

from flatnet_lab.bench.results import Results


def _plt():  # noqa: ANN202 - matplotlib's pyplot module
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(r: Results, section: str, metrics: list[str], title: str, unit: str, path: str) -> bool:
    """Grouped bars: one group per subject, one bar per metric (median, min-max whiskers)."""
    subjects = [s for s in r.subjects(section) if any((m := r.get(section, s, x)) and m.summary for x in metrics)]
    if not subjects:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(metrics)
    for j, metric in enumerate(metrics):
        xs, ys, lo, hi = [], [], [], []
        for i, s in enumerate(subjects):
            m = r.get(section, s, metric)
            if m and m.summary:
                xs.append(i + j * width)
                ys.append(m.summary.median)
                lo.append(m.summary.median - m.summary.min)
                hi.append(m.summary.max - m.summary.median)
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=metric)
    ax.set_xticks([i + width * (len(metrics) - 1) / 2 for i in range(len(subjects))])
    ax.set_xticklabels(subjects, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _routes(r: Results, path: str) -> bool:
    subjects = [
        s
        for s in r.subjects("routes")
        if any(m.summary for m in r.measurements if m.section == "routes" and m.subject == s)
    ]
    if not subjects:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for s in subjects:
        pts = sorted(
            (int(m.metric.split()[0]), m.summary.median)
            for m in r.measurements
            if m.section == "routes" and m.subject == s and m.summary
        )
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=s)
    ax.set_xlabel("pods per node")
    ax.set_ylabel("routes on node1")
    ax.set_title("Routes per node as pods are added")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_all(r: Results, directory: str) -> list[str]:
    """Write every chart that has data; return the file names written."""
    os.makedirs(directory, exist_ok=True)
    cp = [m.metric for m in r.measurements if m.section == "control plane"]
    ipam = list(
        dict.fromkeys(m.metric for m in r.measurements if m.section == "ipam" and m.metric.startswith("alloc/s"))
    )
    plans = [
        (
            "throughput.png",
            lambda p: _bars(
                r, "data plane", ["TCP 1 stream", "TCP 8 streams", "UDP"], "Throughput, node1 -> node2", "Gbit/s", p
            ),
        ),
        (
            "latency.png",
            lambda p: _bars(r, "data plane", ["RR p50", "RR p99"], "TCP request/response latency", "µs", p),
        ),
        (
            "cni-latency.png",
            lambda p: _bars(
                r,
                "control plane",
                [x for x in dict.fromkeys(cp) if x.endswith(("p50", "p99"))],
                "CNI ADD/DEL latency",
                "ms",
                p,
            ),
        ),
        ("ipam-rate.png", lambda p: _bars(r, "ipam", ipam, "IPAM allocations per second", "allocations/s", p)),
        ("routes.png", lambda p: _routes(r, p)),
    ]
    return [name for name, fn in plans if fn(os.path.join(directory, name))]
