"""Gather what ``flatnet doctor node`` judges: probes, files, sysctls, tools, endpoints.

Gathering is separate from judging (``flatnet.doctor.node``) so unit tests inject facts
and only one integration test pays for real probes. Kernel probes go through
``flatnet.datapath.kernelprobe`` (only the datapath talks to the kernel); everything here
only reads files, looks up binaries or opens client connections.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import shutil
import socket
from dataclasses import dataclass, field
from typing import Any

from flatnet import defaults
from flatnet.datapath.kernelprobe import ProbeResult

KCONFIG = "/proc/config.gz"
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.default.rp_filter",
    "net.bridge.bridge-nf-call-iptables",
)
TOOLS = ("socat", "nsenter", "conntrack", "ip", "iperf3")


@dataclass
class CniFacts:
    """What /etc/cni/net.d and /opt/cni/bin hold, as far as flatnet cares."""

    conf_dir: str
    bin_dir: str
    files: list[str] = field(default_factory=list)  # sorted: the first one wins for kubelet
    flatnet_files: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    vlans: bool = False
    store: dict[str, Any] | None = None
    plugin_ok: bool = False
    errors: list[str] = field(default_factory=list)
    #: flatnet configs that name no in-process entry point ("inProcess"): without an agent
    #: the plugin fails their every call with code 11 (unless the runtime's environment has
    #: FLATNET_INPROCESS, which doctor cannot see)
    no_fallback: list[str] = field(default_factory=list)


@dataclass
class NodeFacts:
    links: dict[str, ProbeResult] | None = None
    probe_error: str = ""
    kconfig: dict[str, str] | None = None
    sysctls: dict[str, str | None] = field(default_factory=dict)
    nft: ProbeResult | None = None
    egress: ProbeResult | None = None  # nftables netdev egress hook: the pods' first-hop filter
    tools: dict[str, str | None] = field(default_factory=dict)
    agent: tuple[str, str] = ("skipped", "")  # ok | absent | broken | skipped
    store: tuple[str, str] = ("skipped", "")
    cni: CniFacts | None = None
    hostname: str = ""
    node: dict[str, Any] | None = None  # the Node object for --node-json
    #: why doctor is looking at a container rather than the node (None: on the node itself);
    #: the host's tools are then looked up under ``host_root``, or not at all
    container: str | None = None
    host_root: str | None = None


def read_kconfig(path: str = KCONFIG) -> dict[str, str] | None:
    """CONFIG_X -> y|m|n ("n" for '# CONFIG_X is not set'); None when unreadable."""
    try:
        with gzip.open(path, "rt") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    out: dict[str, str] = {}
    for line in lines:
        if line.startswith("CONFIG_") and "=" in line:
            k, _, v = line.partition("=")
            out[k] = v
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2 : -len(" is not set")]] = "n"
    return out


def read_sysctl(name: str) -> str | None:
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as fh:
            return fh.read().strip()
    except OSError:
        return None


def scan_cni(conf_dir: str, bin_dir: str) -> CniFacts:
    """Parse every config file; note flatnet plugins, their modes, VLANs and store."""
    facts = CniFacts(conf_dir, bin_dir)
    for ext in ("*.conf", "*.conflist", "*.json"):
        facts.files.extend(glob.glob(os.path.join(conf_dir, ext)))
    facts.files.sort()
    for path in facts.files:
        try:
            with open(path) as fh:
                doc = json.load(fh)
        except (OSError, ValueError) as exc:
            facts.errors.append(f"{path}: {exc}")
            continue
        plugins = doc.get("plugins") if isinstance(doc.get("plugins"), list) else [doc]
        for plugin in plugins:
            if isinstance(plugin, dict) and plugin.get("type") == "flatnet":
                facts.flatnet_files.append(path)
                facts.modes.append(str(plugin.get("mode") or defaults.MODE))
                pools = (plugin.get("ipam") or {}).get("pools") or []
                facts.vlans |= bool(plugin.get("vlan")) or any(isinstance(p, dict) and p.get("vlan") for p in pools)
                facts.store = facts.store or (plugin.get("ipam") or {}).get("store")
                if not plugin.get("inProcess"):
                    facts.no_fallback.append(path)
    plugin = os.path.join(bin_dir, "flatnet")
    facts.plugin_ok = os.path.isfile(plugin) and os.access(plugin, os.X_OK)
    return facts


def in_container() -> str | None:
    """Why this process looks like it runs in a container (a pod, podman, docker), or None.

    The node's agent image runs doctor as ``kubectl exec ds/flatnet-agent -- flatnet doctor
    node``: host network and the CNI dirs are the node's, but PATH is the image's.
    """
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "a Kubernetes pod (KUBERNETES_SERVICE_HOST is set)"
    for marker in ("/run/.containerenv", "/.dockerenv"):
        if os.path.exists(marker):
            return f"a container ({marker} exists)"
    if os.environ.get("container"):
        return f"a container ($container={os.environ['container']})"
    return None


def find_tool(tool: str, host_root: str | None) -> str | None:
    """The tool's path on the node: this PATH (+ sbin), or the usual dirs under ``host_root``."""
    if host_root is None:
        return shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        path = os.path.join(host_root, d.lstrip("/"), tool)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return d + "/" + tool  # the path as the node sees it
    return None


def check_agent(path: str, timeout: float = 3.0) -> tuple[str, str]:
    """Ask the agent for its status over the unix socket."""
    from flatnet.agent.protocol import AgentReplyError, NoAgent, request, status_request

    try:
        reply = request(path, status_request(), timeout=timeout)
    except NoAgent as exc:
        return "absent", str(exc)
    except AgentReplyError as exc:
        return "broken", exc.msg
    return "ok", json.dumps(reply)[:200]


def check_store(cfg: dict[str, Any], timeout: float = 3.0) -> tuple[str, str]:
    """Reach the store read-only, through the store registry's health check."""
    from flatnet.ipam.store import store_health

    return store_health(cfg, timeout)


def gather(
    socket_path: str,
    store: dict[str, Any] | None,
    conf_dir: str,
    bin_dir: str,
    node: dict[str, Any] | None,
    probe: bool = True,
    host_root: str | None = None,
) -> NodeFacts:
    """Collect every fact; probe failures (not root) become ``probe_error``, not a crash."""
    from flatnet.datapath import kernelprobe as kprobe

    facts = NodeFacts(kconfig=read_kconfig(), hostname=socket.gethostname(), node=node)
    if probe:
        try:
            facts.links = kprobe.probe_links()
            facts.nft = kprobe.probe_nftables()
            facts.egress = kprobe.probe_netdev_egress()
        except (OSError, Exception) as exc:  # noqa: BLE001 - reported as a finding
            facts.probe_error = f"{type(exc).__name__}: {exc}"
    facts.sysctls = {n: read_sysctl(n) for n in SYSCTLS}
    facts.container, facts.host_root = in_container(), host_root
    if facts.container is None or host_root is not None:
        facts.tools = {t: find_tool(t, host_root) for t in TOOLS}
    facts.agent = check_agent(socket_path)
    facts.cni = scan_cni(conf_dir, bin_dir)
    cfg = store or facts.cni.store
    facts.store = check_store(cfg) if cfg else ("skipped", "")
    return facts
