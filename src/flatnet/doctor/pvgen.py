"""Write local PersistentVolumes from the REAL node names (the seed's trap, avoided).

    python -m flatnet.doctor.pvgen --nodes-from nodes.json|kubectl \\
        --path /app/kelu/local-storage/redis --size 8Gi [--node keludev05] > pv.yaml

Hand-written PVs carry hostnames as someone typed them ("KeluDev05"); the scheduler
compares them with the node's kubernetes.io/hostname label, which is lower case. This
takes the label value from the node objects themselves, so the PV cannot be wrong.
Output is plain YAML text (no PyYAML needed at run time).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from flatnet.doctor.kube import HOSTNAME, Cluster, load
from flatnet.doctor.quantity import parse_quantity
from flatnet.errors import ConfigError, FlatnetError

MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")


def hostnames(cluster: Cluster) -> list[str]:
    return sorted({cluster.node_labels(n)[HOSTNAME] for n in cluster.nodes})


def choose(cluster: Cluster, wanted: Sequence[str]) -> list[str]:
    """The hostname label values to pin PVs to; a typo or wrong case is an error naming the fix."""
    known = hostnames(cluster)
    if not known:
        raise ConfigError(
            "the node list holds no nodes", "pass --nodes-from kubectl or a file from 'kubectl get nodes -o json'"
        )
    if not wanted:
        return known
    out = []
    for w in wanted:
        if w in known:
            out.append(w)
            continue
        case = [k for k in known if k.lower() == w.lower()]
        hint = (
            f"case mismatch: the node is {case[0]!r} (Kubernetes node names are lower case)"
            if case
            else f"known nodes: {', '.join(known)}"
        )
        raise ConfigError(f"--node {w!r} is not a node's {HOSTNAME}", hint)
    return out


def pv_yaml(name: str, host: str, path: str, size: str, storage_class: str, access_mode: str, reclaim: str) -> str:
    """One PV document; values are JSON-quoted, which YAML reads as the same strings."""
    q = json.dumps
    return f"""apiVersion: v1
kind: PersistentVolume
metadata:
  name: {q(name)}
  labels:
    app.kubernetes.io/managed-by: flatnet-pvgen
spec:
  capacity:
    storage: {q(size)}
  volumeMode: Filesystem
  accessModes: [{q(access_mode)}]
  persistentVolumeReclaimPolicy: {q(reclaim)}
  storageClassName: {q(storage_class)}
  local:
    path: {q(path)}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions:
            - key: {HOSTNAME}
              operator: In
              values: [{q(host)}]
"""


def _nodes_doc(source: str) -> Any:
    if source == "kubectl":
        from flatnet.doctor.kubectl import kubectl_json

        return kubectl_json(("get", "nodes", "-o", "json"))
    try:
        with open(source) as fh:
            return json.load(fh)
    except OSError as exc:
        raise ConfigError(
            f"--nodes-from {source}: {exc.strerror}", "give a file from 'kubectl get nodes -o json', or 'kubectl'"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"--nodes-from {source} is not JSON: {exc}") from None


def generate(
    doc: Any,
    path: str,
    size: str,
    storage_class: str,
    name: str,
    nodes: Sequence[str] = (),
    access_mode: str = "ReadWriteOnce",
    reclaim: str = "Retain",
) -> str:
    """Multi-document YAML: one PV per chosen node (``name`` alone if just one)."""
    parse_quantity(size)  # reject "8GB" and friends before writing anything
    if not path.startswith("/"):
        raise ConfigError(f"--path {path!r} must be absolute", "e.g. /app/kelu/local-storage/redis")
    chosen = choose(load(doc), nodes)
    docs = [
        pv_yaml(name if len(chosen) == 1 else f"{name}-{h}", h, path, size, storage_class, access_mode, reclaim)
        for h in chosen
    ]
    return "---\n".join(docs)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m flatnet.doctor.pvgen", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--nodes-from", required=True, metavar="FILE|kubectl")
    p.add_argument("--path", required=True, help="directory on the node (local.path)")
    p.add_argument("--size", required=True, help="capacity, e.g. 8Gi")
    p.add_argument("--storage-class", default="local-storage-redis")
    p.add_argument("--name", default="local-pv-redis", help="PV name (suffixed by node if many)")
    p.add_argument("--node", action="append", default=[], help="only this node (repeatable)")
    p.add_argument("--access-mode", default="ReadWriteOnce", choices=MODES)
    p.add_argument("--reclaim", default="Retain", choices=("Retain", "Delete", "Recycle"))
    a = p.parse_args(argv)
    try:
        sys.stdout.write(
            generate(
                _nodes_doc(a.nodes_from), a.path, a.size, a.storage_class, a.name, a.node, a.access_mode, a.reclaim
            )
        )
    except FlatnetError as exc:
        print(f"pvgen: error: {exc.msg}" + (f" ({exc.details})" if exc.details else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
