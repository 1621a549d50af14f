"""Charts of scale runs (``scale.py``'s JSON): what N nodes cost etcd, before and after a change.

``python -m flatnet_lab.bench.scalecharts OUT_DIR RUN.json [RUN.json ...]`` writes one PNG per
curve (matplotlib, Agg backend): each run is a line, labelled by its file name's suffix
(``scale-before.json`` -> "before").
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

from flatnet_lab.bench.charts import _plt

#: file name -> (title, y label, value of one size's result, log scale)
CURVES: dict[str, tuple[str, str, Callable[[dict[str, Any]], float | None], bool]] = {
    "scale-idle-requests.png": (
        "etcd requests per node per second, idle cluster",
        "requests / node / s",
        lambda r: r["idle"]["req_s"] / r["nodes"],
        False,
    ),
    "scale-idle-bytes.png": (
        "what etcd sends its clients, idle cluster",
        "KiB / s (all members)",
        lambda r: r["idle"].get("sent_Bps", 0) / 1024,
        True,
    ),
    "scale-cpu.png": (
        "etcd CPU, idle cluster (3 members together)",
        "cores",
        lambda r: r["idle"]["cpu_cores"],
        False,
    ),
    "scale-alloc.png": (
        "allocation latency under churn (p99)",
        "ms",
        lambda r: r["alloc_p99_ms"],
        False,
    ),
    "scale-reclaim.png": (
        "dead node reclaimed after (s since it died)",
        "s",
        lambda r: r["reclaim_s"],
        False,
    ),
}


def collapsed(r: dict[str, Any]) -> bool:
    """A size whose live nodes lost their leases (etcd or the harness could not keep up):
    its rates describe the collapse, not the steady state, and are marked so."""
    return bool(r["leases"] < 0.9 * (r["nodes"] - 1))


def label(path: str) -> str:
    base = os.path.basename(path).removesuffix(".json")
    return base.split("-", 1)[1] if "-" in base else base


def draw(out_dir: str, runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One PNG per curve in ``out_dir``; the paths written."""
    plt = _plt()
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, (title, ylabel, value, log) in CURVES.items():
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for run, results in runs.items():
            ok = [r for r in results if not collapsed(r)]
            pts = [(r["nodes"], value(r)) for r in ok if value(r) is not None]
            if pts:
                line = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=run)
                bad = [(r["nodes"], value(r)) for r in results if collapsed(r) and value(r) is not None]
                if bad:
                    ax.plot(
                        [p[0] for p in bad],
                        [p[1] for p in bad],
                        marker="x",
                        markersize=10,
                        linestyle="none",
                        color=line[0].get_color(),
                        label=f"{run}: collapsed (live nodes declared dead)",
                    )
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        if name == "scale-reclaim.png":
            bound = max((r["reclaim_bound_s"] for rs in runs.values() for r in rs), default=0)
            if bound:
                ax.axhline(bound, linestyle="--", color="grey", label="bound: TTL + grace + 2 sweeps")
        ax.set_xlabel("nodes")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    runs = {}
    for path in args[1:]:
        with open(path, encoding="utf-8") as fh:
            runs[label(path)] = json.load(fh)["results"]
    for path in draw(args[0], runs):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
