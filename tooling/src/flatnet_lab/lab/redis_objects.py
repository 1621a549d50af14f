"""The Kubernetes objects of the seed's Redis, from ``examples/redis``, for the CRI scenario.

``examples/redis`` is plain manifests plus values for the bitnami chart (which is not in
this tree and cannot be fetched here), so nothing is rendered by Helm: the manifests are
read with yaml and the values give the numbers. What comes from where:

- the StorageClass: ``manifests/storageclass.yaml`` as is (no-provisioner,
  WaitForFirstConsumer);
- one ``local`` PV per node: ``flatnet.doctor.pvgen`` (the README's step 4) with the path,
  class and size of ``manifests/pv-keludev05.yaml`` and ``redis-values.yaml``, pinned by
  ``nodeAffinity`` to each node's real ``kubernetes.io/hostname``;
- the StatefulSet's pods ``redis-0..N-1`` (``master.count`` + ``replica.replicaCount``), each
  with its claim ``redis-data-redis-K`` from the volumeClaimTemplate (class, size, access
  modes of ``master.persistence``); three Sentinel pods (``sentinel.quorum``,
  ``sentinel.masterSet``).

Left out of the values, on purpose: ``auth`` (the VM's client speaks plain RESP without a
password) and the Services (the VM uses what Sentinel announces: pod addresses).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from flatnet.doctor.kube import HOSTNAME
from flatnet.doctor.pvgen import generate
from flatnet.errors import ConfigError
from flatnet_lab.testbed.scheduler import Objects

NAMESPACE = "redis"
REDIS_IMAGE = "docker.io/flatnet/redis:bookworm"


def examples_dir() -> Path:
    """``examples/redis`` of this tree (the tooling runs from a checkout)."""
    path = Path(__file__).resolve().parents[4] / "examples" / "redis"
    if not (path / "redis-values.yaml").exists():
        raise ConfigError(f"{path} is missing", "run from a flatnet checkout (examples/redis holds the seed's setup)")
    return path


@dataclass(frozen=True)
class RedisSet:
    """What the example asks for: how many pods, the volume's class/size/path, Sentinel's numbers."""

    redis: int
    sentinels: int
    quorum: int
    master_set: str
    storage_class: str
    size: str
    access_modes: tuple[str, ...]
    path: str
    storage_class_obj: dict[str, Any]
    pv_example: dict[str, Any]


def load_example(path: Path | None = None) -> RedisSet:
    path = path or examples_dir()
    values = yaml.safe_load((path / "redis-values.yaml").read_text())
    sc = yaml.safe_load((path / "manifests" / "storageclass.yaml").read_text())
    pv = yaml.safe_load((path / "manifests" / "pv-keludev05.yaml").read_text())
    master, replica, sentinel = values["master"], values["replica"], values["sentinel"]
    redis = int(master.get("count", 1)) + int(replica.get("replicaCount", 0))
    return RedisSet(
        redis=redis,
        sentinels=redis,  # bitnami runs one Sentinel beside each Redis
        quorum=int(sentinel["quorum"]),
        master_set=str(sentinel["masterSet"]),
        storage_class=str(master["persistence"]["storageClass"]),
        size=str(master["persistence"]["size"]),
        access_modes=tuple(master["persistence"].get("accessModes") or ["ReadWriteOnce"]),
        path=str(pv["spec"]["local"]["path"]),
        storage_class_obj=sc,
        pv_example=pv,
    )


def node_obj(node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": {HOSTNAME: node}}}


def pvs(
    rs: RedisSet, nodes: Sequence[str], only: Sequence[str] = (), name: str = "local-pv-redis", path: str = ""
) -> list[dict[str, Any]]:
    """Local PVs written by pvgen from the node objects (never typed by hand): one per node
    (``name-<node>``), or of ``only`` (just ``name`` when that is one node)."""
    text = generate(
        {"kind": "List", "items": [node_obj(n) for n in nodes]},
        path or rs.path,
        rs.size,
        rs.storage_class,
        name,
        nodes=only,
    )
    return [d for d in yaml.safe_load_all(text) if d]


def hand_written_pv(rs: RedisSet, name: str, typed_host: str, path: str) -> dict[str, Any]:
    """The example PV as the seed wrote it by hand: the hostname as someone typed it."""
    pv: dict[str, Any] = json.loads(json.dumps(rs.pv_example))
    pv["metadata"] = {"name": name}
    pv["spec"]["local"]["path"] = path
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    terms[0]["matchExpressions"][0]["values"] = [typed_host]
    return pv


def claim(rs: RedisSet, pod: str) -> dict[str, Any]:
    """The claim the StatefulSet's volumeClaimTemplate ``redis-data`` makes for ``pod``."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"redis-data-{pod}", "namespace": NAMESPACE},
        "spec": {
            "storageClassName": rs.storage_class,
            "accessModes": list(rs.access_modes),
            "resources": {"requests": {"storage": rs.size}},
        },
        "status": {"phase": "Pending"},
    }


def redis_pod(pod: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod, "namespace": NAMESPACE, "labels": {"app": "redis"}},
        "spec": {
            "containers": [
                {
                    "name": "redis",
                    "image": REDIS_IMAGE,
                    "command": ["redis-server", "/data/redis.conf"],
                    "volumeMounts": [{"name": "redis-data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "redis-data", "persistentVolumeClaim": {"claimName": f"redis-data-{pod}"}}],
        },
        "status": {"phase": "Pending"},
    }


def sentinel_pod(pod: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod, "namespace": NAMESPACE, "labels": {"app": "sentinel"}},
        "spec": {
            "containers": [
                {
                    "name": "sentinel",
                    "image": REDIS_IMAGE,
                    "command": ["redis-server", "/etc/sentinel/sentinel.conf", "--sentinel"],
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/sentinel"}],
                }
            ],
            "volumes": [{"name": "config", "emptyDir": {}}],
        },
        "status": {"phase": "Pending"},
    }


def cluster_objects(rs: RedisSet, nodes: Sequence[str]) -> Objects:
    """Nodes, the class, the PVs and, for every pod of the set, its object (and claim)."""
    objs = Objects()
    objs.apply(*(node_obj(n) for n in nodes), json.loads(json.dumps(rs.storage_class_obj)), *pvs(rs, nodes))
    for k in range(rs.redis):
        objs.apply(claim(rs, f"redis-{k}"), redis_pod(f"redis-{k}"))
    for k in range(rs.sentinels):
        objs.apply(sentinel_pod(f"sentinel-{k}"))
    return objs
