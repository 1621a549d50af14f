"""The scheduler's volume binding, reduced to local PVs: which node may run a pod (test tooling).

kube-scheduler places a pod whose claim uses a ``WaitForFirstConsumer`` class only on a node
where an unbound PV of that class fits the claim (size, access modes) and whose
``nodeAffinity`` allows the node; placing it binds the claim to that PV, and from then on
the pod can run only where that PV is (a bound claim whose PV excludes every node is a
"volume node affinity conflict"). That is what makes a StatefulSet pod with a ``local`` PV
come back on the same node. This module does exactly that over plain objects (dicts as
``kubectl get -o json`` shows them), using the doctor's own node-affinity evaluation
(``flatnet.doctor.kube``), and writes the outcome back as the API server would: the pod's
``spec.nodeName`` or its ``PodScheduled=False`` condition with the scheduler's message, the
claim's ``volumeName``/phase, the PV's ``claimRef``/phase. ``dump()`` is then what
``kubectl get nodes,pv,pvc,storageclasses,pods -A -o json`` would print, for
``flatnet doctor cluster``. Not a scheduler: no resources, taints or pod affinity; the only
spreading rule is "fewest pods with the same ``app`` label" (a soft anti-affinity).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flatnet.doctor.kube import Cluster, load, name, namespace, pv_nodes
from flatnet.doctor.quantity import parse_quantity

NO_PV = "didn't find available persistent volumes to bind"
CONFLICT = "had volume node affinity conflict"


@dataclass
class Objects:
    """The API server's store, reduced: every object by ``Kind/ns/name`` (ns empty if cluster-wide)."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)

    @staticmethod
    def key(obj: dict[str, Any]) -> str:
        ns = namespace(obj) if obj["kind"] in ("Pod", "PersistentVolumeClaim") else ""
        return f"{obj['kind']}/{ns}/{name(obj)}"

    def apply(self, *objs: dict[str, Any]) -> None:
        for obj in objs:
            self.items[self.key(obj)] = obj

    def delete(self, kind: str, obj_name: str, ns: str = "") -> None:
        self.items.pop(f"{kind}/{ns}/{obj_name}", None)

    def get(self, kind: str, obj_name: str, ns: str = "") -> dict[str, Any]:
        return self.items[f"{kind}/{ns}/{obj_name}"]

    def dump(self) -> dict[str, Any]:
        """``kubectl get nodes,pv,pvc,storageclasses,pods -A -o json``, as a ``List``."""
        return {"apiVersion": "v1", "kind": "List", "items": list(self.items.values())}

    def cluster(self) -> Cluster:
        return load(self.dump())


def _fits(pvc: dict[str, Any], pv: dict[str, Any], cls: str) -> bool:
    """An Available PV of the claim's class, big enough, offering every mode asked for."""
    spec, want = pv.get("spec", {}), pvc.get("spec", {})
    if (pv.get("status") or {}).get("phase", "Available") != "Available" or spec.get("claimRef"):
        return False
    if spec.get("storageClassName", "") != cls:
        return False
    need = parse_quantity(((want.get("resources") or {}).get("requests") or {}).get("storage", "0"))
    if parse_quantity((spec.get("capacity") or {}).get("storage", "0")) < need:
        return False
    return set(want.get("accessModes") or []) <= set(spec.get("accessModes") or [])


def _allows(cluster: Cluster, pv: dict[str, Any], node: str) -> bool:
    """The PV's nodeAffinity lets ``node`` use it (no affinity: any node)."""
    allowed = pv_nodes(cluster, pv)
    return allowed is None or node in allowed


def schedule(objs: Objects, pod_name: str, ns: str) -> str | None:
    """Place pod ``ns/pod_name``: its node (claims bound), or None (Pending, with the message)."""
    cluster = objs.cluster()
    pod = objs.get("Pod", pod_name, ns)
    claims = [objs.get("PersistentVolumeClaim", c.split("/", 1)[1], ns) for c in cluster.pod_claims(pod)]
    nodes = sorted(cluster.nodes)
    feasible: dict[str, dict[str, str]] = {}  # node -> claim name -> PV name
    no_pv = conflict = 0
    for node in nodes:
        chosen: dict[str, str] = {}
        ok = True
        for pvc in claims:
            bound = pvc.get("spec", {}).get("volumeName")
            if bound:
                if not _allows(cluster, cluster.pvs.get(bound, {}), node):
                    conflict, ok = conflict + 1, False
                    break
                continue
            cls = cluster.claim_class(pvc)
            fits = [
                pv
                for pvname, pv in sorted(cluster.pvs.items())
                if pvname not in chosen.values() and _fits(pvc, pv, cls) and _allows(cluster, pv, node)
            ]
            if not fits:
                no_pv, ok = no_pv + 1, False
                break
            smallest = min(fits, key=lambda pv: parse_quantity(pv["spec"]["capacity"]["storage"]))
            chosen[name(pvc)] = name(smallest)
        if ok:
            feasible[node] = chosen
    if not feasible:
        reasons = [f"{n} node(s) {why}" for n, why in ((conflict, CONFLICT), (no_pv, NO_PV)) if n]
        _pending(pod, f"0/{len(nodes)} nodes are available: {', '.join(reasons)}. preemption: not eligible.")
        return None
    app = (pod["metadata"].get("labels") or {}).get("app")
    load_of = {
        n: sum(
            1
            for p in cluster.pods.values()
            if p is not pod
            and p.get("spec", {}).get("nodeName") == n
            and (p["metadata"].get("labels") or {}).get("app") == app
        )
        for n in feasible
    }
    node = min(feasible, key=lambda n: (load_of[n], n))
    for pvc in claims:
        pv_name = feasible[node].get(name(pvc))
        if pv_name:
            _bind(pvc, objs.get("PersistentVolume", pv_name))
    pod["spec"]["nodeName"] = node
    pod["status"] = {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    return node


def _pending(pod: dict[str, Any], message: str) -> None:
    pod.setdefault("spec", {}).pop("nodeName", None)
    pod["status"] = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}],
    }


def _bind(pvc: dict[str, Any], pv: dict[str, Any]) -> None:
    pvc["spec"]["volumeName"] = name(pv)
    pvc["status"] = {"phase": "Bound"}
    pv["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": namespace(pvc), "name": name(pvc)}
    pv["status"] = {"phase": "Bound"}


def pending_message(pod: dict[str, Any]) -> str:
    """The PodScheduled=False message of a Pending pod ("" when it is placed)."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return str(cond.get("message", ""))
    return ""
