"""Run a DaemonSet's pod through containerd's CRI the way kubelet would — test tooling only.

    pod = DaemonSetPod(node, docs, node_name="fnk-node")   # docs: the rendered chart's objects
    pod.start()                   # sandbox (host network), init containers in order, then the
                                  # containers; returns when they run
    pod.wait_ready(timeout)       # runs the readiness probe as kubelet does
    pod.sync()                    # one kubelet pass: liveness (restart after failureThreshold)
    pod.stop()                    # preStop hook, StopContainer with the grace period, remove

What is taken from the manifest, and nothing else: the pod template's hostNetwork,
labels/annotations, volumes (hostPath as is — the chart's node paths are values, so a test
points them at temp dirs; configMap and secret written out as files, ``defaultMode``
honoured), each container's image, command/args (``$(VAR)`` expanded), env (``value``,
``fieldRef`` spec.nodeName/status.hostIP/metadata.*, ``secretKeyRef``, ``configMapKeyRef``),
privileged, volumeMounts (readOnly, mountPropagation), exec and httpGet probes
(initialDelaySeconds, periodSeconds, timeoutSeconds, failureThreshold) and the lifecycle
exec hooks (postStart after every start, preStop before every kubelet-made stop, a
liveness restart included). ``period_scale`` shortens every probe period and delay by that factor (the
thresholds stay) so a test sees a liveness restart in seconds, not a minute.
Not a kubelet: no API server, no restart back-off, one pod.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flatnet_lab.testbed import net as labnet
from flatnet_lab.testbed.cri.client import CriError, PodSpec
from flatnet_lab.testbed.cri.node import CriNode

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class KubeletError(RuntimeError):
    pass


@dataclass
class Container:
    spec: dict[str, Any]
    id: str = ""
    restarts: int = 0
    live_failures: int = 0
    started: float = 0.0
    ready: bool = False


@dataclass
class DaemonSetPod:
    node: CriNode
    docs: list[dict[str, Any]]
    node_name: str
    period_scale: float = 1.0
    pod_id: str = ""
    containers: list[Container] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ds = next(d for d in self.docs if d["kind"] == "DaemonSet")
        self.template = self.ds["spec"]["template"]
        self.spec = self.template["spec"]
        self.namespace = self.ds["metadata"]["namespace"]
        self.volume_dir = self.node.work / f"kubelet-{self.ds['metadata']['name']}-{os.getpid()}"

    # --- objects the pod refers to -------------------------------------------------------------
    def _obj(self, kind: str, name: str) -> dict[str, Any]:
        for d in self.docs:
            if d["kind"] == kind and d["metadata"]["name"] == name:
                return d
        raise KubeletError(f"the pod refers to {kind} {name!r}, which the manifests do not have")

    def _secret_data(self, name: str) -> dict[str, bytes]:
        s = self._obj("Secret", name)
        out = {k: base64.b64decode(v) for k, v in (s.get("data") or {}).items()}
        out.update({k: str(v).encode() for k, v in (s.get("stringData") or {}).items()})
        return out

    def _env(self, c: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        fields = {
            "spec.nodeName": self.node_name,
            "status.hostIP": self.node.node_ip,
            "status.podIP": self.node.node_ip,
            "metadata.name": self.pod_name,
            "metadata.namespace": self.namespace,
        }
        for e in c.get("env") or ():
            src = e.get("valueFrom")
            if src is None:
                env[e["name"]] = _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), e.get("value", ""))
            elif "fieldRef" in src:
                env[e["name"]] = fields[src["fieldRef"]["fieldPath"]]
            elif "secretKeyRef" in src:
                ref = src["secretKeyRef"]
                env[e["name"]] = self._secret_data(ref["name"])[ref["key"]].decode()
            elif "configMapKeyRef" in src:
                ref = src["configMapKeyRef"]
                env[e["name"]] = self._obj("ConfigMap", ref["name"])["data"][ref["key"]]
            else:
                raise KubeletError(f"env {e['name']}: valueFrom {sorted(src)} is not supported")
        return env

    @property
    def pod_name(self) -> str:
        return f"{self.ds['metadata']['name']}-{self.node_name}"

    # --- volumes -------------------------------------------------------------------------------
    def _volumes(self) -> dict[str, str]:
        """Volume name -> the host path to bind (ConfigMaps/Secrets written out as files)."""
        paths: dict[str, str] = {}
        for v in self.spec.get("volumes") or ():
            if "hostPath" in v:
                path = Path(v["hostPath"]["path"])
                if v["hostPath"].get("type") == "DirectoryOrCreate":
                    path.mkdir(parents=True, exist_ok=True)
                paths[v["name"]] = str(path)
            elif "configMap" in v or "secret" in v:
                d = self.volume_dir / v["name"]
                shutil.rmtree(d, ignore_errors=True)
                d.mkdir(parents=True)
                if "configMap" in v:
                    items = {k: s.encode() for k, s in self._obj("ConfigMap", v["configMap"]["name"])["data"].items()}
                    mode = v["configMap"].get("defaultMode", 0o644)
                else:
                    items = self._secret_data(v["secret"]["secretName"])
                    mode = v["secret"].get("defaultMode", 0o644)
                for key, data in items.items():
                    (d / key).write_bytes(data)
                    os.chmod(d / key, mode)
                paths[v["name"]] = str(d)
            else:
                raise KubeletError(f"volume {v['name']}: only hostPath, configMap, secret are supported")
        return paths

    # --- pod lifecycle -------------------------------------------------------------------------
    def _sandbox(self) -> PodSpec:
        privileged = any(
            (c.get("securityContext") or {}).get("privileged")
            for c in [*self.spec.get("initContainers", []), *self.spec["containers"]]
        )
        return PodSpec(
            name=self.pod_name,
            namespace=self.namespace,
            uid=f"uid-{self.pod_name}",
            host_network=bool(self.spec.get("hostNetwork")),
            privileged=privileged,
            labels=self.template["metadata"].get("labels") or {},
            annotations=self.template["metadata"].get("annotations") or {},
        )

    def start(self, timeout: float = 120.0) -> None:
        """Sandbox, every init container to completion (in order), then the containers."""
        cri = self._cri()
        self.sandbox = self._sandbox()
        self.sandbox.log_directory = str(self.volume_dir / "logs")
        (self.volume_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.pod_id = cri.run_pod(self.sandbox)
        self.mounts = self._volumes()
        for c in self.spec.get("initContainers") or ():
            cid = self._create(c)
            cri.start_container(cid)
            code = self._wait_exit(cid, timeout)
            self.events.append(f"init container {c['name']} exited {code}")
            if code != 0:
                raise KubeletError(f"init container {c['name']} failed ({code}): {self.logs(cid)}")
        self.containers = [Container(c) for c in self.spec["containers"]]
        for c in self.containers:
            self._run(c)

    def _cri(self) -> Any:
        if self.node.cri is None:
            raise KubeletError("the node's CRI is not up")
        return self.node.cri

    def _create(self, c: dict[str, Any]) -> str:
        cri = self._cri()
        pb = cri.pb
        env = self._env(c)
        expand = lambda s: _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), s)  # noqa: E731
        props = {
            "HostToContainer": pb.PROPAGATION_HOST_TO_CONTAINER,
            "Bidirectional": pb.PROPAGATION_BIDIRECTIONAL,
            None: pb.PROPAGATION_PRIVATE,
        }
        mounts = [
            pb.Mount(
                host_path=self.mounts[m["name"]],
                container_path=m["mountPath"],
                readonly=bool(m.get("readOnly")),
                propagation=props[m.get("mountPropagation")],
            )
            for m in c.get("volumeMounts") or ()
        ]
        privileged = bool((c.get("securityContext") or {}).get("privileged"))
        cfg = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=c["name"]),
            image=pb.ImageSpec(image=c["image"]),
            command=[expand(a) for a in c.get("command") or ()],
            args=[expand(a) for a in c.get("args") or ()],
            envs=[pb.KeyValue(key=k, value=v) for k, v in env.items()],
            mounts=mounts,
            log_path=f"{c['name']}.log",
            linux=pb.LinuxContainerConfig(
                security_context=pb.LinuxContainerSecurityContext(
                    privileged=privileged,
                    namespace_options=pb.NamespaceOption(network=2 if self.sandbox.host_network else 0),
                )
            ),
        )
        req = pb.CreateContainerRequest(
            pod_sandbox_id=self.pod_id, config=cfg, sandbox_config=cri.sandbox_config(self.sandbox)
        )
        return str(cri.call("CreateContainer", req).container_id)

    def _hook(self, c: Container, which: str) -> None:
        """Run the container's postStart/preStop exec hook, as kubelet does."""
        hook = ((c.spec.get("lifecycle") or {}).get(which) or {}).get("exec")
        if hook:
            grace = int(self.spec.get("terminationGracePeriodSeconds", 30))
            code, out, err = self._cri().exec_sync(c.id, hook["command"], timeout=grace)
            self.events.append(f"{which} of {c.spec['name']} exited {code}")
            if code != 0 and which == "postStart":
                raise KubeletError(f"postStart of {c.spec['name']} failed ({code}): {err.decode()[-500:]}")

    def _run(self, c: Container) -> None:
        c.id = self._create(c.spec)
        self._cri().start_container(c.id)
        self._hook(c, "postStart")
        c.started, c.live_failures, c.ready = time.monotonic(), 0, False
        self.events.append(f"container {c.spec['name']} started ({c.restarts} restarts)")

    def _wait_exit(self, cid: str, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state, code = self._cri().container_state(cid)
            if state == "CONTAINER_EXITED":
                return code
            time.sleep(0.2)
        raise KubeletError(f"container {cid[:12]} did not finish within {timeout:.0f}s")

    def logs(self, _cid: str = "") -> str:
        """The tail of every container log of the pod (CRI log format)."""
        out = [
            f"{f.name}: {f.read_text(errors='replace')[-1500:]}"
            for f in sorted((self.volume_dir / "logs").glob("*.log"))
        ]
        return "\n".join(out) or "(no log)"

    # --- probes ----------------------------------------------------------------------------------
    def probe(self, c: Container, kind: str) -> bool:
        """Run ``kind`` (livenessProbe/readinessProbe) once; no probe counts as success."""
        p = c.spec.get(kind)
        if p is None:
            return True
        timeout = int(p.get("timeoutSeconds", 1))
        if "exec" in p:
            try:
                code, _, _ = self._cri().exec_sync(c.id, p["exec"]["command"], timeout=timeout)
            except CriError:
                return False
            return code == 0
        if "httpGet" in p:
            get = p["httpGet"]
            port = get["port"]
            if isinstance(port, str):
                port = next(q["containerPort"] for q in c.spec.get("ports") or () if q["name"] == port)
            host = self.node.node_ip if self.sandbox.host_network else self._cri().pod_status(self.pod_id).ip
            return bool(labnet.run_in(self.node.ns, _http_ok, host, int(port), get.get("path", "/"), timeout))
        raise KubeletError(f"{kind}: only exec and httpGet probes are supported")

    def _due(self, c: Container, p: dict[str, Any]) -> bool:
        return time.monotonic() - c.started >= p.get("initialDelaySeconds", 0) * self.period_scale

    def sync(self) -> None:
        """One kubelet pass: restart exited containers; liveness (restart at failureThreshold)."""
        for c in self.containers:
            state, code = self._cri().container_state(c.id)
            if state == "CONTAINER_EXITED":
                self.events.append(f"container {c.spec['name']} exited {code}: restarting")
                self._restart(c, running=False)
                continue
            live = c.spec.get("livenessProbe")
            if live and self._due(c, live):
                if self.probe(c, "livenessProbe"):
                    c.live_failures = 0
                else:
                    c.live_failures += 1
                    if c.live_failures >= live.get("failureThreshold", 3):
                        self.events.append(
                            f"container {c.spec['name']} failed liveness {c.live_failures} times: restarting"
                        )
                        self._restart(c)
                        continue
            ready = c.spec.get("readinessProbe")
            c.ready = self.probe(c, "readinessProbe") if ready is None or self._due(c, ready) else False

    def _restart(self, c: Container, running: bool = True) -> None:
        """Kill (preStop first, as kubelet does for a liveness failure) and start anew."""
        cri = self._cri()
        if running:
            self._hook(c, "preStop")
        try:
            cri.stop_container(c.id, timeout=0)
            cri.remove_container(c.id)
        except CriError:
            pass
        c.restarts += 1
        self._run(c)

    def period(self, kind: str = "livenessProbe") -> float:
        p = self.containers[0].spec.get(kind) or {}
        return max(0.2, p.get("periodSeconds", 10) * self.period_scale)

    def wait_ready(self, timeout: float) -> bool:
        """Sync every readiness period until every container is ready (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sync()
            if all(c.ready for c in self.containers):
                return True
            time.sleep(self.period("readinessProbe"))
        return False

    def container_pid(self, index: int = 0) -> int:
        cri = self._cri()
        r = cri.call(
            "ContainerStatus", cri.pb.ContainerStatusRequest(container_id=self.containers[index].id, verbose=True)
        )
        import json

        return int(json.loads(r.info["info"])["pid"])

    def stop(self) -> None:
        """What kubelet does when the pod goes: preStop, StopContainer(grace), remove, sandbox."""
        cri = self._cri()
        grace = int(self.spec.get("terminationGracePeriodSeconds", 30))
        for c in self.containers:
            self._hook(c, "preStop")
            cri.stop_container(c.id, timeout=grace)
            cri.remove_container(c.id)
        for cid, _name, _state in cri.list_containers(self.pod_id):
            cri.remove_container(cid)
        cri.stop_remove(self.pod_id)
        shutil.rmtree(self.volume_dir, ignore_errors=True)


def _http_ok(host: str, port: int, path: str, timeout: float) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return 200 <= conn.getresponse().status < 400
    except OSError:
        return False
    finally:
        conn.close()
