"""Pending pods: the scheduler's volume messages, translated and linked to the claims.

The scheduler reports a symptom ("0/3 nodes are available: 3 node(s) didn't find
available persistent volumes to bind") and never the cause (a PV's hostname in the wrong
case). Here each known message gets its meaning and fix, and the pod is linked to the
claim and PV findings that hold the actual cause.
"""

from __future__ import annotations

import re
from typing import Any

from flatnet.doctor.findings import Finding
from flatnet.doctor.kube import Cluster

#: (code, message fragment, what it means, the fix)
MESSAGES: tuple[tuple[str, str, str, str], ...] = (
    (
        "sched-no-pv",
        "didn't find available persistent volumes to bind",
        "the pod's claim uses a WaitForFirstConsumer class; for every node the scheduler "
        "looked for an unbound PV of that class, big enough, with the access and volume "
        "modes, whose nodeAffinity allows the node, and found none",
        "fix the claim/PV findings linked here; most often the PV's kubernetes.io/hostname "
        "value is not the node's exact (lower-case) name, or no PV matches class/size/mode",
    ),
    (
        "sched-affinity-conflict",
        "had volume node affinity conflict",
        "the pod's claim is already bound to a PV whose nodeAffinity excludes every node the "
        "pod may run on (a PV pinned to a wrong or vanished node, often bound early by an "
        "Immediate class)",
        "recreate the PV with the right node in nodeAffinity (or free that node), or delete "
        "the claim so it rebinds; use volumeBindingMode WaitForFirstConsumer for local PVs",
    ),
    (
        "sched-unbound-immediate",
        "pod has unbound immediate PersistentVolumeClaims",
        "a claim of the pod uses an Immediate class and is not bound yet; the scheduler will "
        "not place the pod until the claim binds on its own",
        "fix the claim findings linked here (no fitting PV, missing class, provisioner down); "
        "for local volumes switch the class to WaitForFirstConsumer",
    ),
)
_NOT_FOUND = re.compile(r'persistentvolumeclaim "([^"]+)" not found')


def unschedulable_message(pod: dict[str, Any]) -> str | None:
    """The PodScheduled=False condition's message, if the pod has one."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return str(cond.get("message") or cond.get("reason") or "")
    return None


def check_pods(cluster: Cluster, volume_findings: list[Finding]) -> list[Finding]:
    """One finding per Pending pod that waits for a volume reason."""
    by_object = {f.object: f for f in volume_findings if f.severity != "ok"}
    out: list[Finding] = []
    for key, pod in sorted(cluster.pods.items()):
        if (pod.get("status") or {}).get("phase") != "Pending":
            continue
        msg = unschedulable_message(pod)
        claims = cluster.pod_claims(pod)
        related = _related(cluster, claims, by_object)
        obj = f"Pod/{key}"
        if msg:
            hit = _explain(obj, msg, related, cluster, claims)
            if hit:
                out.append(hit)
                continue
        unbound = [c for c in claims if (cluster.pvcs.get(c, {}).get("status") or {}).get("phase") != "Bound"]
        if unbound and related:
            out.append(
                Finding(
                    "error",
                    "pod-waits-volume",
                    obj,
                    f"Pending; its claim(s) {', '.join(unbound)} are not bound",
                    "a pod cannot start until every claim it mounts is bound",
                    "fix the linked findings: " + "; ".join(related),
                    tuple(related),
                )
            )
    return out


def _related(cluster: Cluster, claims: list[str], by_object: dict[str, Finding]) -> list[str]:
    """Findings about the pod's claims and the PVs those claims could use or are bound to."""
    out = []
    for c in claims:
        obj = f"PersistentVolumeClaim/{c}"
        if obj in by_object:
            out.append(obj)
            out.extend(r for r in by_object[obj].related if r in by_object and r not in out)
        vol = (cluster.pvcs.get(c, {}).get("spec") or {}).get("volumeName")
        pv_obj = f"PersistentVolume/{vol}"
        if vol and pv_obj in by_object and pv_obj not in out:
            out.append(pv_obj)
    return out


def _explain(obj: str, msg: str, related: list[str], cluster: Cluster, claims: list[str]) -> Finding | None:
    missing = _NOT_FOUND.search(msg)
    if missing:
        return Finding(
            "error",
            "sched-claim-missing",
            obj,
            f"Pending: the claim {missing.group(1)!r} it mounts does not exist",
            "the scheduler will not place a pod whose claim is missing",
            f"create PersistentVolumeClaim {missing.group(1)!r} in the pod's "
            "namespace, or fix claimName in the pod spec",
        )
    for code, fragment, meaning, fix in MESSAGES:
        if fragment in msg:
            links = ("; see " + ", ".join(related)) if related else ""
            if not related and claims:
                links = "; claims: " + ", ".join(claims)
            return Finding(
                "error", code, obj, f"Pending: scheduler says {msg.strip()!r}", meaning, fix + links, tuple(related)
            )
    return None
