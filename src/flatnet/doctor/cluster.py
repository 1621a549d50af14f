"""``flatnet doctor cluster``: every cluster-level check over one kubectl dump.

Pure: ``analyze(dump, usage)`` takes parsed JSON and returns findings. Getting the dump
(a file or a kubectl run) lives in ``flatnet.cli.doctor`` so tests never need a cluster.
"""

from __future__ import annotations

from typing import Any

from flatnet.doctor.findings import Finding, ordered
from flatnet.doctor.kube import load
from flatnet.doctor.pools import check_pools, parse_usage
from flatnet.doctor.scheduler import check_pods
from flatnet.doctor.volumes import check_claims, check_classes, check_pv_affinity

KUBECTL_ARGS = ("get", "nodes,pv,pvc,storageclasses,pods", "-A", "-o", "json")


def analyze(dump: Any, usage: Any | None = None) -> list[Finding]:
    """All findings for a cluster dump (and optional pool usage), errors first."""
    cluster = load(dump)
    volume = check_pv_affinity(cluster) + check_claims(cluster) + check_classes(cluster)
    pods = check_pods(cluster, volume)
    pools = check_pools(parse_usage(usage)) if usage is not None else []
    return ordered(volume + pods + pools)
