"""Run a scheduled Pod object on its node through containerd's CRI, as kubelet would (test tooling).

    pod = PodRunner(cluster, objs).start("redis-0", "redis", files={"redis-data": {"redis.conf": text}})
    pod.ip, pod.node, pod.container_id
    PodRunner(cluster, objs).crash(pod)    # SIGKILL the container and the sandbox's pause, then
                                          # StopPodSandbox + RemovePodSandbox (CNI DEL) as
                                          # kubelet does once it sees them dead

What is taken from the Pod: ``spec.nodeName`` (set by ``flatnet_lab.testbed.scheduler``),
metadata (name, namespace, uid, labels), one container's image/command/args and
volumeMounts, and two kinds of volume: ``persistentVolumeClaim`` (the claim's bound PV must
be ``local``; its ``path`` is resolved on the node's own disk, ``CriCluster.root(node)``, and
the PV's nodeAffinity must allow the node, as kubelet's volume manager checks) and
``emptyDir`` (a directory of the pod's on its node, gone with the pod). ``files`` seeds a
volume with files that are not there yet, the way a chart's init script writes a config
once and leaves what the server rewrote. Container logs go to the node's
``var/log/pods/<ns>_<name>_<uid>/<container>.log`` (CRI format).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from flatnet.doctor.kube import pv_nodes
from flatnet_lab.testbed.cri.client import PodSpec
from flatnet_lab.testbed.cri.cluster import ClusterNode, CriCluster
from flatnet_lab.testbed.scheduler import Objects


class PodError(RuntimeError):
    pass


@dataclass
class RunningPod:
    name: str
    namespace: str
    node: str
    uid: str
    pod_id: str
    spec: PodSpec
    container_id: str
    ip: str
    netns: str
    volumes: dict[str, Path]
    log_dir: Path


class PodRunner:
    def __init__(self, cluster: CriCluster, objs: Objects) -> None:
        self.cluster, self.objs = cluster, objs

    def _node(self, name: str) -> ClusterNode:
        node = self.cluster.nodes.get(name)
        if node is None or node.cri is None:
            raise PodError(f"node {name!r} is not in the cluster (nodes: {sorted(self.cluster.nodes)})")
        return node

    def _volumes(self, pod: dict[str, Any], node: str, pod_dir: Path) -> dict[str, Path]:
        out: dict[str, Path] = {}
        cluster = self.objs.cluster()
        ns = pod["metadata"]["namespace"]
        for vol in pod["spec"].get("volumes") or ():
            if "persistentVolumeClaim" in vol:
                claim = self.objs.get("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"], ns)
                pv_name = claim.get("spec", {}).get("volumeName")
                if not pv_name:
                    raise PodError(f"claim {ns}/{claim['metadata']['name']} is not bound")
                pv = cluster.pvs[pv_name]
                local = (pv["spec"].get("local") or {}).get("path")
                if not local:
                    raise PodError(f"PV {pv_name} is not a local volume")
                allowed = pv_nodes(cluster, pv)
                if allowed is not None and node not in allowed:
                    raise PodError(f"PV {pv_name}'s nodeAffinity does not allow node {node}")
                path = self.cluster.root(node) / local.lstrip("/")
                if not path.is_dir():  # a local PV's directory is made by the admin, never by kubelet
                    raise PodError(f"local PV {pv_name}: {local} does not exist on node {node}")
                out[vol["name"]] = path
            elif "emptyDir" in vol:
                path = pod_dir / "volumes" / "kubernetes.io~empty-dir" / vol["name"]
                path.mkdir(parents=True, exist_ok=True)
                out[vol["name"]] = path
            else:
                raise PodError(f"volume {vol['name']}: only persistentVolumeClaim and emptyDir are supported")
        return out

    def start(self, name: str, namespace: str, files: Mapping[str, Mapping[str, str]] | None = None) -> RunningPod:
        """Sandbox, volumes, the container started; returns once CRI reports it running."""
        pod = self.objs.get("Pod", name, namespace)
        node_name = pod["spec"].get("nodeName")
        if not node_name:
            raise PodError(f"pod {namespace}/{name} is not scheduled (Pending)")
        node = self._node(node_name)
        cri = node.cri
        assert cri is not None
        uid = pod["metadata"].setdefault("uid", os.urandom(8).hex())
        root = self.cluster.root(node_name)
        pod_dir = root / "var" / "lib" / "kubelet" / "pods" / uid
        log_dir = root / "var" / "log" / "pods" / f"{namespace}_{name}_{uid}"
        log_dir.mkdir(parents=True, exist_ok=True)
        volumes = self._volumes(pod, node_name, pod_dir)
        for vol, content in (files or {}).items():
            for fname, text in content.items():
                target = volumes[vol] / fname
                if not target.exists():
                    target.write_text(text)
        spec = PodSpec(
            name=name,
            namespace=namespace,
            uid=uid,
            labels=pod["metadata"].get("labels") or {},
            log_directory=str(log_dir),
        )
        pod_id = cri.run_pod(spec)
        c = pod["spec"]["containers"][0]
        mounts = [
            (str(volumes[m["name"]]), m["mountPath"], bool(m.get("readOnly"))) for m in c.get("volumeMounts") or ()
        ]
        cid = cri.create_container(
            pod_id,
            spec,
            c["name"],
            c["image"],
            command=c.get("command") or (),
            args=c.get("args") or (),
            mounts=mounts,
            log_path=f"{c['name']}.log",
        )
        cri.start_container(cid)
        st = cri.pod_status(pod_id)
        pod["status"] = {"phase": "Running", "podIP": st.ip, "conditions": [{"type": "PodScheduled", "status": "True"}]}
        return RunningPod(name, namespace, node_name, uid, pod_id, spec, cid, st.ip, st.netns, volumes, log_dir)

    def container_pid(self, p: RunningPod) -> int:
        cri = self._node(p.node).cri
        assert cri is not None
        r = cri.call("ContainerStatus", cri.pb.ContainerStatusRequest(container_id=p.container_id, verbose=True))
        return int(json.loads(r.info["info"])["pid"])

    def sandbox_pid(self, p: RunningPod) -> int:
        cri = self._node(p.node).cri
        assert cri is not None
        r = cri.call("PodSandboxStatus", cri.pb.PodSandboxStatusRequest(pod_sandbox_id=p.pod_id, verbose=True))
        return int(json.loads(r.info["info"])["pid"])

    def crash(self, p: RunningPod) -> None:
        """The container and the sandbox die (SIGKILL), then kubelet cleans up: Stop + Remove."""
        cri = self._node(p.node).cri
        assert cri is not None
        for pid in (self.container_pid(p), self.sandbox_pid(p)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while cri.container_state(p.container_id)[0] != "CONTAINER_EXITED" and time.monotonic() < deadline:
            time.sleep(0.05)
        self.remove(p)

    def remove(self, p: RunningPod) -> None:
        """What kubelet does when the pod object is gone: containers, sandbox, emptyDirs."""
        cri = self._node(p.node).cri
        assert cri is not None
        for cid, _name, _state in cri.list_containers(p.pod_id):
            cri.stop_container(cid, timeout=0)
            cri.remove_container(cid)
        cri.stop_remove(p.pod_id)
        shutil.rmtree(self.cluster.root(p.node) / "var" / "lib" / "kubelet" / "pods" / p.uid, ignore_errors=True)

    def log(self, p: RunningPod, tail: int = 2000) -> str:
        return "\n".join(f.read_text(errors="replace")[-tail:] for f in sorted(p.log_dir.glob("*.log")))
