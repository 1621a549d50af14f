"""``flatnet doctor node``: judge one node's prerequisites from gathered facts.

Prerequisites are checked, not discovered by failure (the seed's Helm error
"unable to do port forwarding: socat not found" surfaced only when a user needed it).
Every check yields a finding, passing ones as ``ok``, so the report doubles as a
checklist. A missing feature is an error when a configured mode needs it, a warning
otherwise (the node works, but that mode would not).
"""

from __future__ import annotations

from typing import Any

from flatnet import defaults
from flatnet.datapath.kernel import FEATURES
from flatnet.doctor.findings import Finding
from flatnet.doctor.nodefacts import NodeFacts

#: feature -> (CONFIG option, module to load or None, who needs it): datapath/kernel.py's table
KERNEL: dict[str, tuple[str, str | None, str]] = {
    name: (f.config, f.module, f.user) for name, f in FEATURES.items() if f.probed
}
#: tool -> (Debian package, why it is needed, required)
TOOLS: dict[str, tuple[str, str, bool]] = {
    "socat": (
        "socat",
        "kubectl port-forward (and Helm 2's tunnel to Tiller) runs socat on the "
        "node: without it 'unable to do port forwarding: socat not found'",
        True,
    ),
    "nsenter": ("util-linux", "port-forward and debugging enter pod namespaces with it", True),
    "conntrack": ("conntrack", "kube-proxy clears stale UDP NAT entries with it", True),
    "ip": ("iproute2", "operators inspect pod links and routes with it", True),
    "iperf3": ("iperf3", "optional: 'flatnet bench' measures pod bandwidth with it", False),
}


def _needed(facts: NodeFacts) -> set[str]:
    """Features the configured networks use (the default mode if nothing is configured)."""
    cni = facts.cni
    modes = set(cni.modes) if cni and cni.modes else {defaults.MODE}
    need = {m for m in modes if m in KERNEL}
    if cni and cni.vlans:
        need.add("8021q")
        if "bridge" in modes:
            need.add("bridge_vlan_filtering")
    return need


def kernel_findings(facts: NodeFacts) -> list[Finding]:
    if facts.links is None:
        return [
            Finding(
                "warn",
                "kernel-probe-skipped",
                "node/kernel",
                f"kernel link types not probed ({facts.probe_error or 'disabled'})",
                "only creating a link proves the kernel supports it",
                "run 'flatnet doctor node' as root",
            )
        ]
    out, need = [], _needed(facts)
    for feature, res in facts.links.items():
        option, module, user = KERNEL[feature]
        obj = f"kernel/{feature}"
        if res.ok:
            out.append(Finding("ok", "kernel-feature", obj, f"{feature}: supported", user))
            continue
        conf = (facts.kconfig or {}).get(option)
        hint = {
            "n": f"kernel config: {option} is not set",
            "m": f"kernel config: {option}=m (a module)",
            "y": f"kernel config: {option}=y",
        }.get(conf or "", "no /proc/config.gz hint")
        if conf == "n" or module is None:
            fix = (
                f"use a kernel built with {option}="
                + ("y" if module is None else "m")
                + (f", then 'modprobe {module}'" if module else "")
            )
        else:
            fix = (
                f"modprobe {module} (and add it to /etc/modules-load.d/flatnet.conf); "
                f"if that fails, the kernel lacks {option}"
            )
        out.append(
            Finding(
                "error" if feature in need else "warn",
                "kernel-feature-missing",
                obj,
                f"{feature}: the kernel cannot create it ({res.detail}; {hint})",
                f"needed by {user}",
                fix,
            )
        )
    return out


def sysctl_findings(facts: NodeFacts) -> list[Finding]:
    out = []
    fwd = facts.sysctls.get("net.ipv4.ip_forward")
    overlay = "vxlan" in _needed(facts)
    if fwd != "1":
        out.append(
            Finding(
                "error" if overlay else "warn",
                "sysctl-ip-forward",
                "sysctl/net.ipv4.ip_forward",
                f"net.ipv4.ip_forward = {fwd}",
                "the vxlan overlay routes pod traffic through the node",
                "sysctl -w net.ipv4.ip_forward=1 and persist it in /etc/sysctl.d/90-flatnet.conf",
            )
        )
    else:
        out.append(Finding("ok", "sysctl-ip-forward", "sysctl/net.ipv4.ip_forward", "= 1"))
    for name in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"):
        value = facts.sysctls.get(name)
        if value == "1":
            out.append(
                Finding(
                    "warn",
                    "sysctl-rp-filter",
                    f"sysctl/{name}",
                    f"{name} = 1 (strict reverse-path filtering)",
                    "strict rp_filter drops packets that arrive on another interface "
                    "than the route back, e.g. overlay return paths or hosts with "
                    "several links on the pod VLAN",
                    f"sysctl -w {name}=2 (loose) and persist it in /etc/sysctl.d/90-flatnet.conf",
                )
            )
        else:
            out.append(Finding("ok", "sysctl-rp-filter", f"sysctl/{name}", f"= {value}"))
    out += _br_netfilter_findings(facts)
    return out


BR_NF = "net.bridge.bridge-nf-call-iptables"


def _br_netfilter_findings(facts: NodeFacts) -> list[Finding]:
    """Mode bridge: bridged pod frames through the IP netfilter hooks cost throughput."""
    value = facts.sysctls.get(BR_NF)
    if "bridge" not in _needed(facts) or value != "1":
        return [
            Finding(
                "ok",
                "sysctl-br-netfilter",
                f"sysctl/{BR_NF}",
                f"= {value}" if value is not None else "br_netfilter not loaded",
            )
        ]
    return [
        Finding(
            "warn",
            "sysctl-br-netfilter",
            f"sysctl/{BR_NF}",
            f"{BR_NF} = 1: every frame bridged between pods and the uplink passes the IP "
            "netfilter hooks (and conntrack)",
            "it is what keeps mode bridge below the wire: 'flatnet bench' measures 'flat bridge' "
            "and 'flat bridge (br_netfilter off)' side by side (docs/BENCHMARKS.md)",
            "if nothing filters bridged traffic with iptables on this node -- kube-proxy relies on "
            "it when a pod reaches a Service whose backend sits on the same bridge, unless "
            "--masquerade-all; Docker relies on it for icc=false -- run sysctl -w "
            f"{BR_NF}=0 net.bridge.bridge-nf-call-ip6tables=0 and persist it in "
            "/etc/sysctl.d/90-flatnet.conf; otherwise keep it, or use mode macvlan",
        )
    ]


def _nft_finding(facts: NodeFacts) -> list[Finding]:
    out = []
    if facts.nft is not None:
        out.append(
            Finding(
                "ok" if facts.nft.ok else "error",
                "nftables",
                "tool/nft",
                f"nftables: {facts.nft.detail}",
                "flatnet does SNAT and port mapping for the overlay with nftables",
                "" if facts.nft.ok else "apt-get install nftables (kernel: CONFIG_NF_TABLES)",
            )
        )
    if facts.egress is not None:
        flat = not facts.cni or not facts.cni.modes or any(m != "vxlan" for m in facts.cni.modes)
        out.append(
            Finding(
                "ok" if facts.egress.ok else ("error" if flat else "warn"),
                "first-hop-filter",
                "kernel/netdev-egress",
                f"nftables netdev egress hook: {facts.egress.detail}",
                "every flat-mode pod's first-hop filter (a pod sends only as itself) hangs on it; "
                "without it ADD fails with a missing-kernel-feature error",
                ""
                if facts.egress.ok
                else "use Linux >= 5.16 with CONFIG_NETFILTER_EGRESS=y and CONFIG_NF_TABLES_NETDEV, or set "
                '"firstHopSecurity": false in the network config (pods can then impersonate the gateway)',
            )
        )
    return out


def tool_findings(facts: NodeFacts) -> list[Finding]:
    out = []
    if facts.container and facts.host_root is None:
        return [
            *_nft_finding(facts),
            Finding(
                "ok",
                "tools-not-checked",
                "tool/*",
                f"the node's tools ({', '.join(TOOLS)}) were not checked: doctor runs in {facts.container}, "
                "whose PATH is the image's, not the node's",
                "kernel, sysctls (host network), agent, store and CNI files (host mounts) are the node's; "
                "the tools are not visible from here",
                "run 'flatnet doctor node' on the node itself, or mount the node's / into the container "
                "and pass --host-root DIR",
            ),
        ]
    out += _nft_finding(facts)
    for tool, (pkg, why, required) in TOOLS.items():
        path = facts.tools.get(tool)
        if path:
            out.append(Finding("ok", "tool", f"tool/{tool}", f"{tool}: {path}", why))
        else:
            out.append(
                Finding(
                    "warn" if required else "ok",
                    "tool-missing",
                    f"tool/{tool}",
                    f"{tool} not found " + (f"under {facts.host_root}" if facts.host_root else "in PATH"),
                    why,
                    f"apt-get install {pkg}",
                )
            )
    return out


def _agent_absent(facts: NodeFacts, socket_path: str, detail: str) -> Finding:
    """No agent: an error when a flatnet config has no in-process fallback (every call fails
    with code 11, as on Kubernetes: the chart names none), a warning when all of them have one."""
    cni = facts.cni
    stranded = cni.no_fallback if cni else []
    if stranded or cni is None or not cni.flatnet_files:
        why = (
            f"the plugin fails every ADD, DEL and CHECK with code 11 (try again): {', '.join(stranded)} "
            'names no in-process entry point ("inProcess"), so nothing serves the calls without the agent'
            if stranded
            else "the plugin fails every call with code 11 unless its config or the runtime's environment "
            "names an in-process entry point (inProcess / FLATNET_INPROCESS)"
        )
        return Finding(
            "error",
            "agent-absent",
            "agent",
            f"no agent listening on {socket_path} ({detail})",
            why,
            "start it: kubectl -n flatnet rollout status ds/flatnet-agent, or 'flatnet agent' "
            "(--socket if the path differs); single hosts without an agent: docs/PODMAN.md (inProcess)",
        )
    return Finding(
        "warn",
        "agent-absent",
        "agent",
        f"no agent listening on {socket_path} ({detail})",
        "every flatnet config names an in-process entry point (inProcess): each call runs the service "
        "itself; slower, and no leak reconciliation, dead-node heartbeat or metrics",
        "start it: 'flatnet agent' (--socket if the path differs)",
    )


def bridge_findings(facts: NodeFacts) -> list[Finding]:
    """Mode bridge moves the master's addresses onto the bridge: say so before it happens."""
    cni = facts.cni
    if not cni or "bridge" not in cni.modes:
        return []
    return [
        Finding(
            "ok",
            "bridge-moves-addresses",
            "node/addresses",
            "a bridge-mode network is configured: at the first pod ADD the master's global addresses and "
            f"routes move onto the bridge ({defaults.BRIDGE} unless the config names another)",
            "the node's own address then lives on the bridge, not on the NIC (same address and MAC: "
            "connections survive); firewall rules, monitoring and network configs that name the NIC must follow",
            "nothing to do if that is intended; macvlan and ipvlan leave the node's addresses alone",
        )
    ]


def conflict_list(socket_path: str) -> list[dict]:
    """What the local agent's claim watcher recorded (agent/claimwatch.py); [] when nothing."""
    from flatnet.agent import claimwatch

    return claimwatch.load(claimwatch.state_path(socket_path))


def service_findings(facts: NodeFacts, socket_path: str) -> list[Finding]:
    out = []
    state, detail = facts.agent
    if state == "ok":
        out.append(Finding("ok", "agent", "agent", f"agent answers on {socket_path}"))
    elif state == "absent":
        out.append(_agent_absent(facts, socket_path, detail))
    elif state == "broken":
        out.append(
            Finding(
                "error",
                "agent-broken",
                "agent",
                f"agent at {socket_path}: {detail}",
                "the plugin cannot complete ADDs through a broken agent",
                "check the agent's log (kubectl -n flatnet logs ds/flatnet-agent) and restart it",
            )
        )
    for c in conflict_list(socket_path):
        out.append(
            Finding(
                "warn",
                "address-conflict",
                f"address/{c.get('address')}",
                f"{c.get('address')} (pool {c.get('pool')}) of a live pod (MAC {c.get('pod_mac')}) is also claimed by "
                f"MAC {c.get('other_mac')} ({c.get('count')} time(s), on {c.get('link')})",
                "two hosts answer for one address: part of the VLAN reaches the wrong one",
                "find the host with that MAC (switch FDB) and give it another address, or exclude the address "
                "from the pool and move the pod",
            )
        )
    state, detail = facts.store
    if state == "skipped":
        out.append(
            Finding("ok", "store-skipped", "store", "store not checked: no --store and no flatnet CNI config names one")
        )
    else:
        sev = {"ok": "ok", "absent": "warn"}.get(state, "error")
        out.append(
            Finding(
                sev,
                f"store-{state}",
                "store",
                f"address store: {detail}",
                "every ADD allocates from the store; unreachable means no new pods",
                ""
                if sev == "ok"
                else "check --store / ipam.store in the CNI config; for etcd: etcdctl endpoint health",
            )
        )
    return out


def cni_findings(facts: NodeFacts) -> list[Finding]:
    cni = facts.cni
    if cni is None:
        return []
    out = [
        Finding(
            "error",
            "cni-bad-file",
            p.split(": ")[0],
            f"unreadable: {p}",
            "the runtime skips or fails on broken config files",
            "fix or remove it",
        )
        for p in cni.errors
    ]
    if not cni.flatnet_files:
        out.append(
            Finding(
                "error",
                "cni-no-flatnet",
                cni.conf_dir,
                f'no network config with a "type": "flatnet" plugin in {cni.conf_dir}',
                "the container runtime never calls flatnet for pods",
                "install the DaemonSet (deploy/) whose init container writes "
                "10-flatnet.conflist, or copy it there by hand",
            )
        )
    elif cni.files and cni.files[0] not in cni.flatnet_files:
        out.append(
            Finding(
                "warn",
                "cni-not-first",
                cni.conf_dir,
                f"{cni.files[0]} sorts before the flatnet config",
                "kubelet/containerd use the first file in name order",
                "rename the flatnet file to sort first (e.g. 00-flatnet.conflist)",
            )
        )
    else:
        out.append(Finding("ok", "cni-config", cni.conf_dir, f"flatnet config: {', '.join(cni.flatnet_files)}"))
    plugin = f"{cni.bin_dir}/flatnet"
    out.append(
        Finding("ok", "cni-plugin", plugin, f"{plugin} present")
        if cni.plugin_ok
        else Finding(
            "error",
            "cni-plugin-missing",
            plugin,
            f"{plugin} missing or not executable",
            "the runtime fails every ADD with 'failed to find plugin \"flatnet\"'",
            "install the DaemonSet (its init container copies the plugin) or "
            f"install -m 0755 the flatnet plugin as {plugin}",
        )
    )
    return out


def hostname_findings(facts: NodeFacts) -> list[Finding]:
    host, out = facts.hostname, []
    if host != host.lower():
        out.append(
            Finding(
                "error",
                "hostname-case",
                "node/hostname",
                f"hostname {host!r} is not lower case",
                "kubelet registers the node as the lower-case name; PVs and "
                "nodeSelectors written with this spelling match no node",
                f"use {host.lower()!r} in every kubernetes.io/hostname value "
                f"(or: hostnamectl set-hostname {host.lower()})",
            )
        )
    if facts.node is None:
        out.append(
            Finding(
                "ok",
                "hostname-label-skipped",
                "node/hostname",
                "kubernetes.io/hostname label not compared (no --node-json)",
            )
        )
        return out
    label = ((facts.node.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/hostname")
    if label != host.lower():
        out.append(
            Finding(
                "error",
                "hostname-label",
                "node/hostname",
                f"node label kubernetes.io/hostname={label!r}, hostname is {host!r}",
                "local PVs must name the label's value; a mismatch is the seed's Pending-pod trap",
                f'write PVs with values: ["{label}"] (python -m flatnet.doctor.pvgen takes names from the nodes)',
            )
        )
    else:
        out.append(Finding("ok", "hostname-label", "node/hostname", f"kubernetes.io/hostname={label!r} matches"))
    return out


def evaluate(facts: NodeFacts, socket_path: str) -> list[Finding]:
    """Every node finding, in checklist order (kernel, sysctls, tools, services, CNI, name)."""
    return (
        kernel_findings(facts)
        + sysctl_findings(facts)
        + tool_findings(facts)
        + service_findings(facts, socket_path)
        + cni_findings(facts)
        + bridge_findings(facts)
        + hostname_findings(facts)
    )


def pick_node(doc: Any, hostname: str) -> dict[str, Any] | None:
    """The Node object for this host from a Node, a List or ``kubectl get node X -o json``."""
    items = doc.get("items") if isinstance(doc, dict) and "items" in doc else [doc]
    nodes = [i for i in items if isinstance(i, dict) and i.get("kind") == "Node"]
    for n in nodes:
        if (n.get("metadata") or {}).get("name", "").lower() == hostname.lower():
            return n
    return nodes[0] if len(nodes) == 1 else None
