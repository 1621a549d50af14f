"""Volume checks: PVs pinned to no node, claims that can never bind, missing classes.

The seed's failure is the model: a local PV whose nodeAffinity says ``KeluDev05`` while
the node is ``keludev05``. Kubernetes node names are lower case, label values compare
exactly, so the PV fits no node and the pod waits forever with a message that does not
mention the hostname. These checks name the exact field and value to change.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flatnet.doctor.findings import Finding
from flatnet.doctor.kube import HOSTNAME, NO_PROVISIONER, Cluster, expr_matches, labels, name, pv_nodes, pv_terms
from flatnet.doctor.quantity import human, parse_quantity

PVGEN = "python -m flatnet.doctor.pvgen --nodes-from kubectl --storage-class {cls} --size {size} --path /PATH/ON/NODE"
BINDING_WHY = (
    "WaitForFirstConsumer delays binding until a pod using the claim is scheduled, so the "
    "scheduler picks a node and a PV together (needed for local volumes); Immediate binds "
    "at once, before anyone knows where the pod will run."
)


def _hostname_values(pv: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for term in pv_terms(pv) or []:
        for e in term.get("matchExpressions") or []:
            if e.get("key") == HOSTNAME and e.get("operator") == "In":
                out.extend(str(v) for v in e.get("values") or [])
    return out


def check_pv_affinity(cluster: Cluster) -> list[Finding]:
    """Every PV whose required nodeAffinity matches no node in the cluster."""
    out: list[Finding] = []
    if not cluster.nodes:
        return out
    hostnames = {cluster.node_labels(n)[HOSTNAME]: n for n in cluster.nodes}
    for pvname, pv in sorted(cluster.pvs.items()):
        if pv_nodes(cluster, pv) != []:
            continue
        values = _hostname_values(pv)
        case = [(v, h) for v in values for h in hostnames if v != h and v.lower() == h.lower()]
        obj = f"PersistentVolume/{pvname}"
        why = (
            "the scheduler can place a pod using this volume only on a node that matches "
            "its nodeAffinity; none does, so such pods stay Pending "
            '("didn\'t find available persistent volumes to bind" or '
            '"had volume node affinity conflict")'
        )
        recreate = (
            f"nodeAffinity of a PV cannot be changed in place: kubectl delete pv {pvname}, then apply it again with "
        )
        if case:
            wrong, right = case[0]
            out.append(
                Finding(
                    "error",
                    "pv-hostname-case",
                    obj,
                    f"nodeAffinity names node {wrong!r}, but the node is {right!r}: a case "
                    "mismatch (Kubernetes shows node names in lower case; "
                    "kubectl get nodes -o wide)",
                    why + "; label values compare exactly, so case matters",
                    recreate + f'values: ["{right}"] under key {HOSTNAME} (reclaim policy '
                    "Retain keeps the data on the node)",
                )
            )
            continue
        known = ", ".join(sorted(hostnames)) or "(none)"
        shown = ", ".join(values) if values else "its nodeSelectorTerms"
        out.append(
            Finding(
                "error",
                "pv-no-node",
                obj,
                f"nodeAffinity ({shown}) matches no existing node; nodes are: {known}",
                why,
                recreate + f"a {HOSTNAME} value that is one of: {known}",
            )
        )
    return out


def check_classes(cluster: Cluster) -> list[Finding]:
    """Static (no-provisioner) classes with Immediate binding: local PVs bind blind."""
    out = []
    for cname, sc in sorted(cluster.classes.items()):
        mode = sc.get("volumeBindingMode") or "Immediate"
        if sc.get("provisioner") == NO_PROVISIONER and mode == "Immediate":
            out.append(
                Finding(
                    "warn",
                    "class-immediate-local",
                    f"StorageClass/{cname}",
                    "static class (kubernetes.io/no-provisioner) with volumeBindingMode Immediate",
                    BINDING_WHY + " With local PVs, Immediate can bind a claim to a PV on a node "
                    'the pod can never run on ("had volume node affinity conflict").',
                    "StorageClass fields are immutable: recreate it with volumeBindingMode: WaitForFirstConsumer",
                )
            )
    return out


def _request(pvc: dict[str, Any]) -> Decimal:
    req = (pvc.get("spec", {}).get("resources") or {}).get("requests") or {}
    return parse_quantity(req.get("storage", "0"))


def _selector_ok(pvc: dict[str, Any], pv: dict[str, Any]) -> bool:
    sel = pvc.get("spec", {}).get("selector") or {}
    lab = labels(pv)
    if any(lab.get(k) != v for k, v in (sel.get("matchLabels") or {}).items()):
        return False
    return all(expr_matches(e, lab) for e in sel.get("matchExpressions") or [])


def mismatches(cluster: Cluster, key: str, pvc: dict[str, Any], pv: dict[str, Any], cls: str) -> list[str]:
    """Why ``pv`` cannot serve ``pvc``, each reason naming the field; [] means it fits."""
    spec, pvspec = pvc.get("spec", {}), pv.get("spec", {})
    why: list[str] = []
    pv_cls = pvspec.get("storageClassName") or ""
    if pv_cls != cls:
        why.append(f"class: PV has storageClassName {pv_cls!r}, claim asks {cls!r}")
    need = _request(pvc)
    have = parse_quantity((pvspec.get("capacity") or {}).get("storage", "0"))
    if have < need:
        why.append(f"size: PV holds {human(have)}, claim asks {human(need)}")
    missing = [m for m in spec.get("accessModes") or [] if m not in (pvspec.get("accessModes") or [])]
    if missing:
        why.append(
            f"access mode: claim asks {', '.join(missing)}, PV offers "
            f"{', '.join(pvspec.get('accessModes') or ['none'])}"
        )
    want_mode, pv_mode = spec.get("volumeMode") or "Filesystem", pvspec.get("volumeMode") or "Filesystem"
    if want_mode != pv_mode:
        why.append(f"volume mode: claim asks {want_mode}, PV is {pv_mode}")
    ref = pvspec.get("claimRef") or {}
    if ref.get("name") and f"{ref.get('namespace') or 'default'}/{ref['name']}" != key:
        why.append(f"taken: PV is bound to claim {ref.get('namespace')}/{ref['name']}")
    if spec.get("volumeName") and spec["volumeName"] != name(pv):
        why.append(f"claim names volumeName {spec['volumeName']!r}")
    if not _selector_ok(pvc, pv):
        why.append("selector: PV labels do not match the claim's selector")
    if pv_nodes(cluster, pv) == [] and cluster.nodes:
        why.append("node affinity: PV is pinned to no existing node")
    return why


def check_claims(cluster: Cluster) -> list[Finding]:
    """Unbound claims: missing class, or no PV that could ever satisfy them."""
    out: list[Finding] = []
    for key, pvc in sorted(cluster.pvcs.items()):
        if (pvc.get("status") or {}).get("phase") == "Bound":
            continue
        obj, cls = f"PersistentVolumeClaim/{key}", cluster.claim_class(pvc)
        sc = cluster.classes.get(cls)
        if cls and sc is None:
            have = ", ".join(sorted(cluster.classes)) or "(none)"
            out.append(
                Finding(
                    "error",
                    "pvc-class-missing",
                    obj,
                    f"claim asks for StorageClass {cls!r}, which does not exist (classes: {have})",
                    "nothing will provision or bind this claim until the class exists; pods using it stay Pending",
                    f"create StorageClass {cls!r} (for local volumes: provisioner "
                    f"{NO_PROVISIONER}, volumeBindingMode WaitForFirstConsumer), or recreate the "
                    f"claim with storageClassName set to one of: {have}",
                )
            )
            continue
        if sc is not None and sc.get("provisioner") != NO_PROVISIONER:
            continue  # a dynamic provisioner makes the PV; nothing static to match
        out.extend(_static_claim(cluster, key, pvc, cls, sc))
    return out


def _static_claim(
    cluster: Cluster, key: str, pvc: dict[str, Any], cls: str, sc: dict[str, Any] | None
) -> list[Finding]:
    obj = f"PersistentVolumeClaim/{key}"
    reasons = {pvn: mismatches(cluster, key, pvc, pv, cls) for pvn, pv in sorted(cluster.pvs.items())}
    if any(not r for r in reasons.values()):
        mode = (sc or {}).get("volumeBindingMode") or "Immediate"
        users = [p for p, pod in cluster.pods.items() if key in cluster.pod_claims(pod)]
        if mode == "WaitForFirstConsumer" and not users:
            return [
                Finding(
                    "ok",
                    "pvc-waiting-consumer",
                    obj,
                    "Pending, and that is normal: no pod uses it yet",
                    BINDING_WHY,
                    "nothing to fix; it binds when a pod using it is scheduled",
                )
            ]
        return []
    same = {p: r for p, r in reasons.items() if not r[0].startswith("class:")}
    near = {p: r for p, r in reasons.items() if r[0].startswith("class:") and len(r) == 1}
    lines = [f"{p}: " + "; ".join(r) for p, r in (same or near).items()]
    if not same:
        lines.insert(0, f"no PV has storageClassName {cls!r}")
    spec = pvc.get("spec", {})
    size = human(_request(pvc))
    example = PVGEN.format(cls=cls or '""', size=size)
    only_affinity = bool(same) and all(r == ["node affinity: PV is pinned to no existing node"] for r in same.values())
    fix = "fix the nodeAffinity of the PV(s) named here (see their findings); or " if only_affinity else ""
    fix += (
        f"create a PV with storageClassName {cls!r}, capacity >= {size}, accessModes "
        f"{spec.get('accessModes') or []}, volumeMode {spec.get('volumeMode') or 'Filesystem'} "
        f"and a nodeAffinity naming a real node, e.g. {example}"
    )
    related = tuple(f"PersistentVolume/{p}" for p in (same or near))
    return [
        Finding(
            "error",
            "pvc-never-binds",
            obj,
            "claim can never bind: " + " | ".join(lines),
            "a claim binds only to a PV of the same class with enough capacity, every "
            "requested access mode and the same volume mode; pods using it stay Pending",
            fix,
            related,
        )
    ]
