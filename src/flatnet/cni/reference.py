"""docs/CONFIG.md, generated from the parser itself: ``python -m flatnet.cni.reference > docs/CONFIG.md``.

The real parser (``parse_conflist``, ``parse_netconf``) reads one sample config per mode and
per store type inside ``flatnet.fieldref.recording()``; every field it reads, with the type,
default and range its reader was given, and every key a strict section accepts, becomes a
row. A key is listed for the modes whose parse read it. Nothing here names a key except the
samples (which only need to reach every branch) and the prose in ``DESCRIPTIONS``: a key the
parser reads that this module has never heard of is still listed, with its type and
default (its description empty until one is written). tests/unit/test_config_reference.py
fails when docs/CONFIG.md is not this output, when a strict section accepts a key whose
definition the parser never recorded, and when a listed key is not checked by the parser.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from flatnet import defaults
from flatnet.datapath import modes
from flatnet.fieldref import Field, Keys, recording

#: keys the runtime fills in per call, not the operator: shown in their own table
RUNTIME_ROOTS = ("runtimeConfig", "args", "prevResult", "cni.dev/valid-attachments", "cni.dev/attachments")
#: the conflist's own keys (the file in /etc/cni/net.d), not a plugin's
CONFLIST_KEYS = ("plugins", "disableCheck", "disableGC")

POOL = {
    "subnet": "198.18.100.0/24",
    "routes": [{"dst": "198.18.200.0/24", "gw": "198.18.100.1"}],
    "exclude": ["198.18.100.5"],
}
STORES: dict[str, dict[str, Any]] = {
    "sqlite": {"type": "sqlite"},
    "etcd": {"type": "etcd", "endpoints": ["http://198.18.0.10:2379"]},
    "memory": {"type": "memory"},
}
RUNTIME = {
    "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}], "ips": ["198.18.100.9/24"]},
    "args": {"cni": {"ips": ["198.18.100.9"]}},
    "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
    "prevResult": {"cniVersion": "1.0.0", "ips": []},
}

DESCRIPTIONS: dict[str, str] = {
    "cniVersion": "CNI spec version of the config; the runtime's conflist version",
    "cniVersions": "the spec versions a conflist speaks (the highest this plugin supports is used when cniVersion is absent)",
    "name": "network name (letters, digits, `_ . -`); pool names default to `<name>-<subnet>`",
    "type": "`flatnet`: the plugin executable the runtime runs",
    "plugins": "the chain: flatnet first, e.g. portmap after it",
    "disableCheck": "the runtime skips CHECK",
    "disableGC": "the runtime skips GC",
    "mode": "datapath: how a pod is attached (see the mode table)",
    "master": "the node's parent link on the pod VLAN (same name on every node)",
    "bridge": "the Linux bridge holding `master`; the first ADD moves master's addresses and routes onto it",
    "mtu": "pod interface MTU (default: the parent's)",
    "vlan": "802.1Q VLAN of every pool of this network: pods hang off `<master>.<vlan>` (made on demand)",
    "hostNetns": "the node's network namespace (name or path) when it is not the agent's own (the lab)",
    "agentSocket": "the agent's unix socket the plugin forwards to",
    "inProcess": "no-agent mode: the forwarder execs this flatnet-inprocess when no agent listens "
    "(podman, single hosts); without it a missing agent fails every call with code 11",
    "mac": "MAC of the pod interface (a runtime's `mac` capability overrides it)",
    "dns": "DNS settings passed through in the result",
    "dns.nameservers": "DNS servers",
    "dns.domain": "local domain",
    "dns.search": "search domains",
    "dns.options": "resolver options",
    "serviceCidrs": "cluster Service ranges: pods route them via their node (kube-proxy DNATs there)",
    "serviceCidrs[]": "one Service range",
    "ipam": "flatnet's address management (strict: unknown keys are refused)",
    "ipam.type": "ignored (CNI convention); flatnet's IPAM is built in",
    "ipam.pools": "pools tried in order; at most one address per IP family per pod",
    "ipam.pools[]": "one pool",
    "ipam.pools[].name": "pool name in the store and in metrics; default `<network>-<subnet>` with `/` as `_`",
    "ipam.pools[].subnet": "the pool's subnet (never changes once used)",
    "ipam.pools[].rangeStart": "first address handed out (default: the subnet's first host)",
    "ipam.pools[].rangeEnd": "last address handed out (default: the subnet's last host)",
    "ipam.pools[].gateway": "the pods' default gateway on the VLAN (never handed out)",
    "ipam.pools[].exclude": "addresses never handed out",
    "ipam.pools[].exclude[]": "one excluded address",
    "ipam.pools[].vlan": "802.1Q VLAN of this pool (overrides the network's `vlan`)",
    "ipam.pools[].sticky": "a pod (namespace/name) gets its address back when recreated (StatefulSets)",
    "ipam.pools[].stickyHold": "seconds a deleted pod's sticky address stays reserved for it",
    "ipam.pools[].conflictProbe": "probe the VLAN (ARP / NDP DAD) before handing out an address",
    "ipam.pools[].routes": "extra routes in the pod",
    "ipam.pools[].routes[]": "one route",
    "ipam.pools[].routes[].dst": "destination (same family as the pool)",
    "ipam.pools[].routes[].gw": "next hop (default: the pool's gateway)",
    "ipam.store": "where leases live; default: SQLite on the node",
    "ipam.store.type": "store kind",
    "runtimeConfig": "capabilities the runtime passes (portMappings, ips, mac); other keys are kept for the chain",
    "runtimeConfig.portMappings": "hostPort -> containerPort (overlay mode)",
    "runtimeConfig.ips": "addresses asked for (the `ips` capability)",
    "runtimeConfig.mac": "MAC asked for (the `mac` capability)",
    "args": "the older convention for the same requests",
    "args.cni.ips": "addresses asked for",
    "args.cni.mac": "MAC asked for",
    "prevResult": "the previous plugin's result (CHECK, DEL, chains): the CNI spec's result format",
    "cni.dev/valid-attachments": "GC: the attachments the runtime still holds (others are released)",
    "cni.dev/attachments": "GC: the older name of cni.dev/valid-attachments",
    "ipam.store.path": "SQLite file (absolute)",
    "ipam.store.endpoints": "etcd v3 members' client URLs (one cluster; failover between them)",
    "ipam.store.prefix": "etcd key prefix: clusters sharing one etcd use different prefixes",
    "ipam.store.timeout": "how long a store call may wait (SQLite's lock, etcd's answer); default "
    f"{defaults.SQLITE_TIMEOUT:g} s (SQLite), {defaults.ETCD_TIMEOUT:g} s (etcd)",
    "ipam.store.caFile": "etcd: CA bundle that signed etcd's server certificate",
    "ipam.store.certFile": "etcd: client certificate (with keyFile)",
    "ipam.store.keyFile": "etcd: client key",
    "ipam.store.usernameFile": "etcd: file holding the etcd user name (with passwordFile)",
    "ipam.store.passwordFile": "etcd: file holding the password",
    "clusterSubnet": "the overlay's pod range; each node claims a block of it",
    "nodeBlockPrefix": "size of each node's block: longer than clusterSubnet's prefix, at most /30 (IPv4) or "
    "/126 (IPv6); default /26 (IPv4), /122 (IPv6)",
    "vni": "VXLAN network identifier",
    "vxlanPort": "VXLAN UDP port",
    "nodeName": "this node's name in the overlay (default: the agent's node name)",
    "vtepAddress": "the node's underlay address for VXLAN (default: the address of the default route)",
    "snat": "masquerade pod traffic leaving the cluster subnet",
}


@dataclass
class Row:
    """One key: everything the parser's readers said about it, merged over the samples."""

    where: str
    type: str = ""
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    required: set[str] = field(default_factory=set)  # the modes that require it
    choices: list[str] = field(default_factory=list)
    modes: set[str] = field(default_factory=set)
    stores: set[str] = field(default_factory=set)  # ipam.store keys: the store types that read it
    strict: bool = False  # listed by a strict section's key check

    def merge(self, f: Field, mode: str, store: str) -> None:
        generic = ("", "string")
        if self.type in generic and f.type not in generic or not self.type:
            self.type = f.type
        if self.default is None:
            self.default = f.default
        self.lo = f.lo if self.lo is None else self.lo
        self.hi = f.hi if self.hi is None else self.hi
        if f.required:
            self.required.add(mode)
        self.choices += [c for c in f.choices if c not in self.choices]
        self.modes.add(mode)
        self.stores.add(store)


def samples() -> list[tuple[str, str, dict[str, Any]]]:
    """(mode, store type, conflist) triples that reach every branch of the parser."""
    out = []
    for mode in modes.names():
        traits = modes.get(mode)
        for kind, store in STORES.items():
            plugin: dict[str, Any] = {"type": "flatnet", "mode": mode, "dns": {}, "serviceCidrs": ["10.96.0.0/12"]}
            if "master" in traits.needs:
                plugin["master"] = "eth1"
            ipam: dict[str, Any] = {"store": copy.deepcopy(store)}
            if traits.pools_from_config:
                ipam["pools"] = [copy.deepcopy(POOL)]
            if traits.overlay:
                plugin["clusterSubnet"] = "198.18.64.0/18"
            plugin["ipam"] = ipam
            out.append((mode, kind, {"cniVersion": "1.0.0", "name": "ref", "plugins": [{**plugin, **RUNTIME}]}))
    return out


def collect() -> dict[str, Row]:
    """Parse every sample under recording: path -> Row."""
    from flatnet.cni.config import parse_conflist, parse_netconf

    rows: dict[str, Row] = {}
    for mode, kind, conflist in samples():
        with recording() as seen:
            conf = parse_conflist(json.dumps(conflist).encode())
            parse_netconf(json.dumps(conf.plugin_config(0)).encode())
        for item in seen:
            if isinstance(item, Keys):
                for key in item.known:
                    where = f"{item.where}.{key}" if item.where else key
                    row = rows.setdefault(where, Row(where))
                    row.strict, row.modes = True, row.modes | {mode}
            elif not item.where.startswith("prevResult."):
                rows.setdefault(item.where, Row(item.where)).merge(item, mode, kind)
    return rows


def _section(where: str) -> tuple[str, str]:
    """``ipam.pools[].subnet`` -> (``ipam.pools[]``, ``subnet``); top level -> ("", key)."""
    for root in RUNTIME_ROOTS:  # keys with a dot in their name
        if where == root or where.startswith((root + ".", root + "[")):
            rest = where[len(root) :]
            if "." not in rest:
                return "", where
            parent, _, key = rest.rpartition(".")
            return root + parent, key
    parent, _, key = where.rpartition(".")
    return parent, key


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "`" + json.dumps(value) + "`"


def _range(row: Row) -> str:
    if row.choices:
        return ", ".join(f"`{c}`" for c in row.choices)
    if row.lo is not None or row.hi is not None:
        lo = "" if row.lo is None else _fmt(row.lo).strip("`")
        hi = "" if row.hi is None else _fmt(row.hi).strip("`")
        return f"{lo} … {hi}"
    return ""


def _modes(row: Row, every: set[str]) -> str:
    if row.where.startswith("ipam.store."):
        if not row.stores:
            return "?"
        return "store " + ("any" if row.stores >= set(STORES) else ", ".join(k for k in STORES if k in row.stores))
    return "all" if row.modes >= every else ", ".join(m for m in modes.names() if m in row.modes)


def _kind(row: Row) -> str:
    if not row.required:
        return row.type or "?"
    if row.required >= row.modes:
        return f"{row.type} (required)"
    return f"{row.type} (required in {', '.join(m for m in modes.names() if m in row.required)})"


HEADER = """# Network configuration reference

<!-- generated by `python -m flatnet.cni.reference > docs/CONFIG.md`: do not edit by hand.
tests/unit/test_config_reference.py fails when this file and the parser disagree. -->

Every key the network configuration parser (`flatnet/cni/config.py`, `cni/ipamconf.py`, the
store registry) reads, as its own field readers define it: where the key goes, its type, its
default when left out, the values or range it accepts, and the modes whose configs use it.
A key not listed for a mode is ignored in that mode. `ipam`, its pools, routes and store are
strict (an unknown key is refused with a did-you-mean); the plugin object's other keys follow
the CNI convention. Paths: `a.b` is key `b` inside object `a`; `[]` is each item of an array.

Modes: {modes}. Defaults that are not config keys (ports, intervals, paths of the agent)
live in `src/flatnet/defaults.py`.
"""


def render() -> str:
    rows = collect()
    every = set(modes.names())
    sections: dict[str, list[tuple[str, Row]]] = {}
    for where, row in rows.items():
        parent, key = _section(where)
        sections.setdefault(parent, []).append((key, row))
    mode_text = ", ".join(f"`{m}`" + (" (overlay)" if modes.get(m).overlay else "") for m in modes.names())
    out = [HEADER.format(modes=mode_text)]

    def title(parent: str) -> str:
        if parent == "":
            return "Top level (the plugin object in the conflist)"
        if parent.split(".")[0].split("[")[0] in RUNTIME_ROOTS:
            return f"`{parent}` (set by the runtime, per call)"
        return f"`{parent}`"

    def order(parent: str) -> tuple[int, str]:
        runtime = parent.split(".")[0].split("[")[0] in RUNTIME_ROOTS
        return (2 if runtime else 0 if parent == "" else 1, parent)

    for parent in sorted(sections, key=order):
        out.append(f"\n## {title(parent)}\n")
        out.append("| key | type | default | values | modes | meaning |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        for key, row in sorted(sections[parent], key=lambda kr: kr[0].lower()):
            full = f"{parent}.{key}" if parent else key
            kind = _kind(row)
            if parent == "" and key in CONFLIST_KEYS:
                kind += ", conflist level"
            desc = DESCRIPTIONS.get(full, "").replace("|", "\\|")
            out.append(f"| `{key}` | {kind} | {_fmt(row.default)} | {_range(row)} | {_modes(row, every)} | {desc} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
