"""A tiny container runtime for the lab: pods are network namespaces plumbed by the CNI plugin.

It does what podman or the kubelet would do for networking, and nothing more: create the
pod's netns, exec the plugin the way the CNI spec says (CNI_* environment, the node's
network config on stdin), keep the result, and run DEL (with ``prevResult``) before
removing the netns. Going through the real plugin executable, not an in-process call,
means the lab exercises exactly the path a runtime uses.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from flatnet_lab import forwarder
from flatnet_lab.testbed import net as labnet
from flatnet.errors import INTERNAL, ConfigError, FlatnetError
from flatnet_lab.lab import netconf, procs
from flatnet_lab.lab.topology import POD_NS_PREFIX, default_topology

CNI_PATH = "/opt/cni/bin:/usr/lib/cni"
PLUGIN_TIMEOUT = 60.0
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


@dataclass
class Pod:
    """A lab pod: where it runs, on which network, and the CNI result of its ADD."""

    name: str
    node: str
    network: str
    namespace: str
    netns: str
    container_id: str
    result: dict[str, Any] = field(default_factory=dict)
    #: CNI runtimeConfig.portMappings given at ADD (passed again on DEL, as runtimes do)
    port_mappings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ips(self) -> list[str]:
        """The pod's addresses (no prefix), in result order."""
        return [str(ipaddress.ip_interface(i["address"]).ip) for i in self.result.get("ips", [])]

    @property
    def ip(self) -> str:
        """The first IPv4 address (the one registries and tests use), else the first one."""
        v4 = [a for a in self.ips if ipaddress.ip_address(a).version == 4]
        if not (v4 or self.ips):
            raise FlatnetError(f"pod {self.name} has no address in its CNI result")
        return (v4 or self.ips)[0]


def _record_path(name: str) -> str:
    return procs.path("pods", f"{name}.json")


def get_pod(name: str) -> Pod:
    rec = procs.read_json(_record_path(name))
    if rec is None:
        raise ConfigError(f"no lab pod {name!r}", "list pods with 'flatnet lab status'")
    return Pod(**rec)


def list_pods() -> list[Pod]:
    try:
        names = sorted(n[:-5] for n in os.listdir(procs.path("pods")) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    return [get_pod(n) for n in names]


def _node_config(node: str, network: str) -> dict[str, Any]:
    st = procs.read_json(procs.path("state.json"))
    if st is None:
        raise FlatnetError("the lab is not up", "run 'flatnet lab up' first")
    topo = default_topology(int(st["nodes"]))
    topo.node(node)  # raises ConfigError naming the known nodes
    if network not in netconf.NETWORKS:
        raise ConfigError(f"network {network!r} is not a lab network", f"use one of: {', '.join(netconf.NETWORKS)}")
    conf = procs.read_json(netconf.config_path(node, network))
    if conf is None:
        raise FlatnetError(
            f"no config for network {network} on {node}", "run 'flatnet lab up' again to rewrite the configs"
        )
    return conf


def _run_forwarder(node: str, conf: dict[str, Any], cni_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Exec the plugin once for ``node`` with ``cni_env`` (CNI_COMMAND and friends) and ``conf``."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        **cni_env,
        "CNI_PATH": CNI_PATH,
        # used only when the node's agent is not running (the forwarder execs the in-process mode)
        "FLATNET_INPROCESS": forwarder.inprocess_entry(),
        "FLATNET_LOCK_DIR": procs.path("locks"),
        "FLATNET_NODE": node,
        "FLATNET_HOST_NETNS": conf.get("hostNetns", ""),
    }
    return subprocess.run(
        [forwarder.path()],
        input=json.dumps(conf),
        env=env,
        text=True,
        capture_output=True,
        timeout=PLUGIN_TIMEOUT,
        check=False,
    )


def _exec_plugin(command: str, pod: Pod, conf: dict[str, Any]) -> dict[str, Any]:
    """Exec the plugin once; the parsed stdout JSON, or FlatnetError with the plugin's code."""
    cni_env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": pod.container_id,
        "CNI_NETNS": f"/run/netns/{pod.netns}",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": f"K8S_POD_NAMESPACE={pod.namespace};K8S_POD_NAME={pod.name}",
    }
    try:
        proc = _run_forwarder(pod.node, conf, cni_env)
    except subprocess.TimeoutExpired:
        raise FlatnetError(
            f"CNI {command} of pod {pod.name} took over {PLUGIN_TIMEOUT:.0f}s",
            f"see the agent log {procs.path(pod.node + '.log')}",
        ) from None
    out: Any = None
    if proc.stdout.strip():
        try:
            out = json.loads(proc.stdout)
        except ValueError:
            out = None
    if proc.returncode != 0:
        if isinstance(out, dict) and "code" in out:
            raise FlatnetError(str(out.get("msg", "")), str(out.get("details", "")), code=int(out["code"]))
        raise FlatnetError(
            f"CNI {command} of pod {pod.name} failed (exit {proc.returncode})",
            (proc.stderr or proc.stdout).strip()[-500:],
            code=INTERNAL,
        )
    return out if isinstance(out, dict) else {}


def network_status(node: str, network: str) -> None:
    """CNI STATUS of ``network`` on ``node`` through the real plugin; FlatnetError if not ready.

    For the overlay this is also the node joining it (block claimed, VTEP published, peers
    routed), so the lab runs it on every node before the first pod is created.
    """
    conf = {**_node_config(node, network), "cniVersion": "1.1.0"}  # STATUS: 1.1.0 on
    proc = _run_forwarder(node, conf, {"CNI_COMMAND": "STATUS"})
    if proc.returncode != 0:
        try:
            out = json.loads(proc.stdout)
        except ValueError:
            out = {}
        raise FlatnetError(
            f"{network} on {node} is not ready: {out.get('msg', proc.stderr.strip()[-300:])}",
            str(out.get("details", "")),
            code=int(out.get("code", INTERNAL)),
        )


def _with_runtime(conf: dict[str, Any], pod: Pod) -> dict[str, Any]:
    if pod.port_mappings:
        conf = {**conf, "runtimeConfig": {"portMappings": pod.port_mappings}}
    return conf


def add_pod(
    node: str,
    name: str,
    network: str = "flat",
    namespace: str = "default",
    port_mappings: list[dict[str, Any]] | None = None,
) -> Pod:
    """Create pod ``name`` on ``node`` attached to ``network``; return it (``pod.ip``).

    ``port_mappings`` are CNI portMappings ({"hostPort", "containerPort", "protocol"}),
    honoured by the overlay (DNAT on the node), as a runtime's ``-p`` would ask.
    """
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"pod name {name!r} is invalid", "use lower-case letters, digits and '-', at most 40 characters"
        )
    conf = _node_config(node, network)
    if os.path.exists(_record_path(name)):
        raise ConfigError(f"pod {name!r} already exists", "delete it first (del_pod)")
    pod = Pod(
        name,
        node,
        network,
        namespace,
        f"{POD_NS_PREFIX}{name}",
        uuid.uuid4().hex,
        port_mappings=list(port_mappings or []),
    )
    labnet.ensure_netns(pod.netns)
    try:
        pod.result = _exec_plugin("ADD", pod, _with_runtime(conf, pod))
    except FlatnetError:
        labnet.remove_netns(pod.netns)  # the plugin failed: it rolled its own steps back
        raise
    except BaseException:
        # interrupted (Ctrl-C) while the plugin ran: the agent may have finished the ADD, so
        # DEL it as a runtime does an ADD it gave up on (DEL waits for the container's lock)
        try:
            _exec_plugin("DEL", pod, _with_runtime(conf, pod))
        except (FlatnetError, OSError):
            pass  # left to the agent's leak reconciliation, as for a runtime that crashed
        finally:
            labnet.remove_netns(pod.netns)
        raise
    procs.write_json(_record_path(name), asdict(pod))
    return pod


def del_pod(name: str) -> None:
    """CNI DEL (with prevResult) then remove the netns. A pod that is gone is fine."""
    try:
        pod = get_pod(name)
    except ConfigError:
        labnet.remove_netns(f"{POD_NS_PREFIX}{name}")
        return
    conf = _with_runtime(dict(_node_config(pod.node, pod.network)), pod)
    if pod.result:
        conf["prevResult"] = pod.result
    _exec_plugin("DEL", pod, conf)
    for pid in labnet.pids_in_netns(pod.netns):
        procs.stop_pid(pid, marker=None, timeout=2.0)
    labnet.remove_netns(pod.netns)
    os.unlink(_record_path(name))


def exec_in_pod(
    name: str, argv: Sequence[str], timeout: float = 30.0, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command inside the pod's netns and wait (bounded) for it."""
    return labnet.run_cmd(get_pod(name).netns, argv, timeout=timeout, input=input)


def spawn_in_pod(name: str, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen:
    """Start a server inside the pod (stopped by del_pod or ``lab down``)."""
    return labnet.spawn(get_pod(name).netns, argv, **popen_kwargs)
