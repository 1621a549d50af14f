"""An index over a ``kubectl get nodes,pv,pvc,storageclasses,pods -A -o json`` dump.

Pure data: no client, no network. The doctor works on the dump so that the same logic
runs on a live cluster (``kubectl`` piped in) and on stored dumps in tests, and so a
user can send a dump from a cluster the doctor cannot reach.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flatnet.errors import DecodeError

HOSTNAME = "kubernetes.io/hostname"
DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)
NO_PROVISIONER = "kubernetes.io/no-provisioner"


def name(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def namespace(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("namespace", "") or "default")


def labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


@dataclass
class Cluster:
    """Objects by kind; claims and pods keyed ``ns/name``."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pvs: dict[str, dict[str, Any]] = field(default_factory=dict)
    pvcs: dict[str, dict[str, Any]] = field(default_factory=dict)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)

    def node_labels(self, node: str) -> dict[str, str]:
        """A node's labels, with the hostname label filled in from the name if absent."""
        lab = labels(self.nodes[node])
        lab.setdefault(HOSTNAME, node)
        return lab

    def default_class(self) -> str | None:
        for cname, sc in self.classes.items():
            ann = sc.get("metadata", {}).get("annotations") or {}
            if any(str(ann.get(a, "")).lower() == "true" for a in DEFAULT_CLASS_ANNOTATIONS):
                return cname
        return None

    def claim_class(self, pvc: dict[str, Any]) -> str:
        """The class a claim asks for: explicit, "" (static only), or the default class."""
        spec = pvc.get("spec", {})
        if "storageClassName" in spec and spec["storageClassName"] is not None:
            return str(spec["storageClassName"])
        return self.default_class() or ""

    def pod_claims(self, pod: dict[str, Any]) -> list[str]:
        """``ns/claim`` for every PVC volume the pod mounts."""
        ns = namespace(pod)
        out = []
        for vol in pod.get("spec", {}).get("volumes") or []:
            ref = vol.get("persistentVolumeClaim")
            if ref and ref.get("claimName"):
                out.append(f"{ns}/{ref['claimName']}")
        return out


_KINDS = {
    "Node": "nodes",
    "PersistentVolume": "pvs",
    "PersistentVolumeClaim": "pvcs",
    "StorageClass": "classes",
    "Pod": "pods",
}
_NAMESPACED = {"PersistentVolumeClaim", "Pod"}


def load(doc: Any) -> Cluster:
    """Index a ``List`` (or a bare list of objects, or several Lists) by kind."""
    items: list[Any]
    if isinstance(doc, dict) and isinstance(doc.get("items"), list):
        items = doc["items"]
    elif isinstance(doc, list):
        items = []
        for part in doc:
            items.extend(part["items"] if isinstance(part, dict) and "items" in part else [part])
    else:
        raise DecodeError(
            "the cluster dump is not a Kubernetes List",
            "produce it with: kubectl get nodes,pv,pvc,storageclasses,pods -A -o json",
        )
    cluster = Cluster()
    for obj in items:
        if not isinstance(obj, dict):
            continue
        kind = obj.get("kind", "")
        attr = _KINDS.get(kind)
        if attr is None:
            continue
        key = f"{namespace(obj)}/{name(obj)}" if kind in _NAMESPACED else name(obj)
        getattr(cluster, attr)[key] = obj
    return cluster


def expr_matches(expr: dict[str, Any], lab: dict[str, str]) -> bool:
    """One nodeSelectorRequirement against a node's labels (In/NotIn/Exists/...)."""
    key, op = expr.get("key", ""), expr.get("operator", "")
    values = [str(v) for v in expr.get("values") or []]
    have = lab.get(key)
    if op == "In":
        return have is not None and have in values
    if op == "NotIn":
        return have is None or have not in values
    if op == "Exists":
        return have is not None
    if op == "DoesNotExist":
        return have is None
    if op in ("Gt", "Lt") and have is not None and values:
        try:
            a, b = int(have), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def term_matches(term: dict[str, Any], node: str, lab: dict[str, str]) -> bool:
    """A nodeSelectorTerm: every expression and field requirement must hold (AND)."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False  # an empty term matches nothing (Kubernetes semantics)
    if not all(expr_matches(e, lab) for e in exprs):
        return False
    return all(expr_matches({**f, "key": "metadata.name"}, {"metadata.name": node}) for f in fields)


def pv_terms(pv: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The PV's required nodeSelectorTerms, or None when it has no node affinity."""
    req = (pv.get("spec", {}).get("nodeAffinity") or {}).get("required") or {}
    terms = req.get("nodeSelectorTerms")
    return list(terms) if terms else None


def pv_nodes(cluster: Cluster, pv: dict[str, Any]) -> list[str] | None:
    """Nodes the PV may be used on; None means any node (no affinity)."""
    terms = pv_terms(pv)
    if terms is None:
        return None
    return [n for n in cluster.nodes if any(term_matches(t, n, cluster.node_labels(n)) for t in terms)]
