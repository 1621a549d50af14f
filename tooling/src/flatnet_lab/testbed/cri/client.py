"""A small synchronous CRI v1 client (the calls kubelet makes), over containerd's unix socket.

Each method is one RPC with a deadline; a failed RPC raises ``CriError`` carrying the gRPC
status code and containerd's message (which, for a failed network setup, quotes the CNI
plugin's error). Requests are built from plain Python values so callers never touch
protobuf classes; ``pb`` is there for anything this wrapper does not cover.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import grpc

from flatnet_lab.testbed.cri import _proto

NODE = 2  # NamespaceMode.NODE: host network (a DaemonSet pod)


class CriError(RuntimeError):
    """A CRI call failed: ``code`` is the grpc.StatusCode, ``details`` the runtime's message."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"CRI {method} failed: {code.name}: {details}")
        self.method, self.code, self.details = method, code, details


@dataclass(frozen=True)
class PortMap:
    """One CRI port mapping (hostPort -> containerPort)."""

    container_port: int
    host_port: int
    protocol: str = "tcp"  # tcp | udp | sctp
    host_ip: str = ""


@dataclass
class PodSpec:
    """What kubelet puts into a PodSandboxConfig, reduced to what the test-bed varies."""

    name: str
    namespace: str = "default"
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempt: int = 0
    port_mappings: Sequence[PortMap] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    host_network: bool = False
    privileged: bool = False
    log_directory: str = ""


@dataclass(frozen=True)
class PodStatus:
    id: str
    name: str
    namespace: str
    ready: bool
    ip: str
    additional_ips: tuple[str, ...]
    netns: str  # the sandbox's network namespace path ("" for host network or unknown)


class CriClient:
    """``CriClient("/path/containerd.sock")``; close() (or ``with``) releases the channel."""

    def __init__(self, socket_path: str, timeout: float = 60.0) -> None:
        self.pb, services = _proto.load()
        self.socket_path = socket_path
        self.timeout = timeout
        self._channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._stub = services.RuntimeServiceStub(self._channel)

    def __enter__(self) -> "CriClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        """One RPC ``method`` of RuntimeService; raises CriError on any gRPC failure."""
        try:
            return getattr(self._stub, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise CriError(method, exc.code(), exc.details() or "") from None

    # --- runtime ------------------------------------------------------------------------------
    def version(self) -> tuple[str, str]:
        """(runtime name, runtime version), e.g. ("containerd", "1.6.20~ds1")."""
        r = self.call("Version", self.pb.VersionRequest(version="v1"))
        return r.runtime_name, r.runtime_version

    def conditions(self) -> dict[str, tuple[bool, str]]:
        """Runtime conditions: {"RuntimeReady": (True, ""), "NetworkReady": (ok, message)}."""
        r = self.call("Status", self.pb.StatusRequest(verbose=False))
        return {c.type: (c.status, c.message) for c in r.status.conditions}

    # --- pod sandboxes ------------------------------------------------------------------------
    def sandbox_config(self, spec: PodSpec) -> Any:
        pb = self.pb
        protos = {"tcp": pb.TCP, "udp": pb.UDP, "sctp": pb.SCTP}
        linux = pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=NODE if spec.host_network else 0),
                privileged=spec.privileged,
            )
        )
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(
                name=spec.name, uid=spec.uid, namespace=spec.namespace, attempt=spec.attempt
            ),
            hostname="" if spec.host_network else spec.name[:63],
            log_directory=spec.log_directory,
            port_mappings=[
                pb.PortMapping(
                    protocol=protos[p.protocol],
                    container_port=p.container_port,
                    host_port=p.host_port,
                    host_ip=p.host_ip,
                )
                for p in spec.port_mappings
            ],
            labels=dict(spec.labels),
            annotations=dict(spec.annotations),
            linux=linux,
        )

    def run_pod(self, spec: PodSpec, timeout: float | None = None) -> str:
        """RunPodSandbox; the sandbox id (the network is set up when this returns)."""
        req = self.pb.RunPodSandboxRequest(config=self.sandbox_config(spec))
        return str(self.call("RunPodSandbox", req, timeout).pod_sandbox_id)

    def stop_pod(self, pod_id: str) -> None:
        """StopPodSandbox (tears the network down: CNI DEL). Idempotent."""
        self.call("StopPodSandbox", self.pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))

    def remove_pod(self, pod_id: str) -> None:
        """RemovePodSandbox. Idempotent."""
        self.call("RemovePodSandbox", self.pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))

    def stop_remove(self, pod_id: str) -> None:
        """What kubelet does when a pod goes: StopPodSandbox then RemovePodSandbox."""
        self.stop_pod(pod_id)
        self.remove_pod(pod_id)

    def pod_status(self, pod_id: str) -> PodStatus:
        """PodSandboxStatus (verbose, for the netns path)."""
        r = self.call("PodSandboxStatus", self.pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True))
        s = r.status
        netns = ""
        try:
            info = json.loads(r.info.get("info", "{}"))
            for ns in info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", []):
                if ns.get("type") == "network":
                    netns = ns.get("path", "")
        except (ValueError, AttributeError):
            pass
        return PodStatus(
            s.id,
            s.metadata.name,
            s.metadata.namespace,
            s.state == self.pb.SANDBOX_READY,
            s.network.ip,
            tuple(p.ip for p in s.network.additional_ips),
            netns,
        )

    def list_pods(self, ready_only: bool = False) -> list[tuple[str, str, str, bool]]:
        """ListPodSandbox: (id, namespace, name, ready) of every sandbox."""
        flt = self.pb.PodSandboxFilter()
        if ready_only:
            flt.state.state = self.pb.SANDBOX_READY
        r = self.call("ListPodSandbox", self.pb.ListPodSandboxRequest(filter=flt))
        return [(p.id, p.metadata.namespace, p.metadata.name, p.state == self.pb.SANDBOX_READY) for p in r.items]

    # --- containers ---------------------------------------------------------------------------
    def create_container(
        self,
        pod_id: str,
        spec: PodSpec,
        name: str,
        image: str,
        command: Sequence[str] = (),
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        mounts: Sequence[tuple[str, str, bool]] = (),
        privileged: bool = False,
        log_path: str = "",
    ) -> str:
        """CreateContainer in ``pod_id`` (``spec`` is the sandbox's PodSpec); the container id.

        ``mounts`` are (host path, container path, read-only) bind mounts; ``log_path`` is
        relative to the sandbox's ``log_directory``.
        """
        pb = self.pb
        cfg = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name),
            image=pb.ImageSpec(image=image),
            command=list(command),
            args=list(args),
            envs=[pb.KeyValue(key=k, value=v) for k, v in (env or {}).items()],
            mounts=[pb.Mount(host_path=h, container_path=c, readonly=ro) for h, c, ro in mounts],
            log_path=log_path,
            linux=pb.LinuxContainerConfig(
                security_context=pb.LinuxContainerSecurityContext(
                    privileged=privileged,
                    namespace_options=pb.NamespaceOption(network=NODE if spec.host_network else 0),
                )
            ),
        )
        req = pb.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg, sandbox_config=self.sandbox_config(spec))
        return str(self.call("CreateContainer", req).container_id)

    def start_container(self, container_id: str) -> None:
        self.call("StartContainer", self.pb.StartContainerRequest(container_id=container_id))

    def stop_container(self, container_id: str, timeout: int = 0) -> None:
        self.call("StopContainer", self.pb.StopContainerRequest(container_id=container_id, timeout=timeout))

    def remove_container(self, container_id: str) -> None:
        self.call("RemoveContainer", self.pb.RemoveContainerRequest(container_id=container_id))

    def container_state(self, container_id: str) -> tuple[str, int]:
        """(state name, exit code): CONTAINER_CREATED|RUNNING|EXITED|UNKNOWN."""
        r = self.call("ContainerStatus", self.pb.ContainerStatusRequest(container_id=container_id))
        return self.pb.ContainerState.Name(r.status.state), int(r.status.exit_code)

    def list_containers(self, pod_id: str = "") -> list[tuple[str, str, str]]:
        """(container id, name, state name) of every container (of ``pod_id`` if given)."""
        flt = self.pb.ContainerFilter(pod_sandbox_id=pod_id)
        r = self.call("ListContainers", self.pb.ListContainersRequest(filter=flt))
        return [(c.id, c.metadata.name, self.pb.ContainerState.Name(c.state)) for c in r.containers]

    def exec_sync(self, container_id: str, cmd: Sequence[str], timeout: int = 10) -> tuple[int, bytes, bytes]:
        """ExecSync: (exit code, stdout, stderr) of ``cmd`` run in the container."""
        r = self.call(
            "ExecSync", self.pb.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=timeout), timeout + 15
        )
        return int(r.exit_code), bytes(r.stdout), bytes(r.stderr)
