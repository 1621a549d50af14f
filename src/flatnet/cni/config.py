"""Parse and validate a flatnet network configuration (the JSON on the plugin's stdin).

Everything is checked before the agent touches IPAM or the kernel, so a bad config
fails with code 7 and a message naming the field and the fix, never half-way through
an ADD. Every key is checked, the plugin's own included: a typo ("mastr", "inprocess")
would otherwise be ignored and the call fail later with a message about something else.
The keys a runtime adds (``SPEC_KEYS``) and domain-qualified ones (``"cni.dev/..."``,
any key with a "/") are accepted; the rest must be flatnet's (``FLATNET_KEYS``, a mode's
``keys``, ``OVERLAY_KEYS`` for an overlay mode) and an unknown one is refused with the
closest known key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flatnet import defaults
from flatnet.cni import _fields as f
from flatnet.cni import version as _v
from flatnet.cni.ipamconf import parse_ipam
from flatnet.cni.runtimeconf import (
    VALID_ATTACHMENTS_KEYS,
    RequestedIP,
    RuntimeConfig,
    ValidAttachment,
    parse_args_cni,
    parse_runtime_config,
    parse_valid_attachments,
)
from flatnet.cni.types import DNS, Result
from flatnet.datapath import modes
from flatnet.errors import ConfigError, DecodeError
from flatnet.fieldref import note
from flatnet.ipam.api import IPAddress, IPNetwork, PoolSpec

DEFAULT_AGENT_SOCKET = defaults.AGENT_SOCKET
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path minus the terminating NUL

#: keys the CNI spec defines for every plugin's config, or runtimes add to it (libcni:
#: name, cniVersion, prevResult, runtimeConfig from ``capabilities``, the GC list)
SPEC_KEYS: tuple[str, ...] = (
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "ipam",
    "dns",
    "args",
    "runtimeConfig",
    "prevResult",
    "capabilities",
    *VALID_ATTACHMENTS_KEYS,
)
#: flatnet's own keys in every mode. THE list: a key read in ``parse_netconf`` and not
#: named here (or in a mode's ``keys``, or OVERLAY_KEYS) is refused as a typo.
FLATNET_KEYS = (
    "mode",
    "master",
    "mtu",
    "vlan",
    "hostNetns",
    "agentSocket",
    "inProcess",
    "mac",
    "serviceCidrs",
    "firstHopSecurity",
)
#: the overlay's keys, read in a mode whose traits say ``overlay`` (vxlan)
OVERLAY_KEYS = ("vni", "vxlanPort", "clusterSubnet", "nodeBlockPrefix", "nodeName", "vtepAddress", "snat")
#: the keys of a network configuration list (a .conflist), around its plugins
CONFLIST_KEYS = ("cniVersion", "cniVersions", "name", "plugins", "disableCheck", "disableGC")


@dataclass
class OverlayConf:
    """The overlay (vxlan) keys of a network config, parsed only in an overlay mode."""

    cluster_subnet: IPNetwork
    node_block_prefix: int
    vni: int = defaults.VNI
    vxlan_port: int = defaults.VXLAN_PORT
    node_name: str | None = None
    vtep_address: IPAddress | None = None
    snat: bool = True


@dataclass
class NetConf:
    """A validated network configuration. ``raw`` is the decoded JSON, untouched."""

    cni_version: str
    name: str
    type: str
    mode: str = defaults.MODE
    master: str | None = None
    bridge: str | None = None
    mtu: int | None = None
    vlan: int | None = None
    host_netns: str | None = None
    agent_socket: str = DEFAULT_AGENT_SOCKET
    mac: str | None = None
    pools: list[PoolSpec] = field(default_factory=list)
    store: dict[str, Any] = field(default_factory=dict)
    #: ``ipam.store`` was written in the config (it then wins over the agent's ``--store``)
    store_explicit: bool = False
    dns: DNS = field(default_factory=DNS)
    runtime_config: RuntimeConfig = field(default_factory=RuntimeConfig)
    args_ips: list[RequestedIP] = field(default_factory=list)  # args.cni.ips
    args_mac: str | None = None  # args.cni.mac
    prev_result: Result | None = None
    valid_attachments: list[ValidAttachment] | None = None  # GC only
    #: the overlay's settings, in a mode whose traits say ``overlay`` (vxlan); None elsewhere
    overlay: OverlayConf | None = None
    #: flat modes: each pod's first-hop filter (datapath/firsthop.py); False only by the
    #: explicit ``"firstHopSecurity": false`` (e.g. a kernel without nftables' egress hook)
    first_hop_security: bool = True
    #: mode options for AttachSpec.options: vxlan settings and portMappings
    options: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def requested_ips(self) -> list[RequestedIP]:
        """Addresses asked for by runtimeConfig ``ips`` then ``args.cni.ips``, no repeats."""
        out: list[RequestedIP] = []
        for ip in [*self.runtime_config.ips, *self.args_ips]:
            if ip not in out:
                out.append(ip)
        return out

    @property
    def requested_mac(self) -> str | None:
        """runtimeConfig ``mac`` over ``args.cni.mac`` over the config's ``mac``."""
        return self.runtime_config.mac or self.args_mac or self.mac


def decode_json(data: bytes, what: str = "network configuration") -> Any:
    """bytes -> JSON value, or DecodeError (code 6) with line and column."""
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{what} is not valid UTF-8 (bad byte at offset {exc.start})") from None
    if not text.strip():
        raise DecodeError(f"{what} is empty: the runtime must pass it as JSON on stdin")

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(text, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc}"[:300]) from None


def config_version(conf: dict[str, Any]) -> str:
    """The spec version a config speaks: ``cniVersion``, else best of ``cniVersions``."""
    note("cniVersion", "string", required=True, choices=_v.SUPPORTED)
    versions = f.array(conf.get("cniVersions"), "cniVersions")  # a list or absent, even beside cniVersion
    if "cniVersion" in conf and conf["cniVersion"] not in (None, ""):
        return _v.check_supported(conf["cniVersion"])
    if versions:
        return _v.pick_conflist_version(versions)
    raise ConfigError(f'cniVersion is required: set it to one of {", ".join(_v.SUPPORTED)} (e.g. "{_v.LATEST}")')


def parse_netconf(stdin: bytes, decoded: Any = None) -> NetConf:
    """Decode and validate one plugin configuration (see module doc).

    ``decoded``: ``stdin`` already decoded (the dispatcher decodes once per request);
    None decodes ``stdin`` here.
    """
    raw = decode_json(stdin) if decoded is None else decoded
    if not isinstance(raw, dict):
        raise DecodeError(f"network configuration must be a JSON object, got a JSON {type(raw).__name__}")
    version = config_version(raw)
    name = f.string(raw.get("name"), "name", required=True, example="flat100")
    assert name is not None
    if not f.is_spec_id(name):
        raise ConfigError(
            f"name {name!r} is not a valid network name: it must start with a "
            f"letter or digit, followed by letters, digits, '_', '.' or '-'"
        )
    ptype = f.string(raw.get("type"), "type", required=True, example="flatnet")
    # read by the forwarder (/opt/cni/bin/flatnet) when no agent listens: checked here too
    f.string(raw.get("inProcess"), "inProcess", example="/usr/local/bin/flatnet-inprocess")
    mode = f.string(raw.get("mode"), "mode", example="macvlan", default=defaults.MODE) or defaults.MODE
    note("mode", "string", defaults.MODE, choices=modes.names())
    traits = modes.get(mode)  # the registry says what this mode needs
    check_plugin_keys(raw, traits)
    master = f.ifname(raw.get("master"), "master", required="master" in traits.needs)
    bridge = None
    if "bridge" in traits.keys:
        note("bridge", "interface name", traits.defaults.get("bridge"))
        bridge = f.ifname(raw.get("bridge"), "bridge") or traits.defaults.get("bridge")
    pools, store = parse_ipam(raw.get("ipam"), name, mode, traits.pools_from_config)
    args_ips, args_mac = parse_args_cni(raw.get("args"))
    prev = raw.get("prevResult")
    conf = NetConf(
        cni_version=version,
        name=name,
        type=str(ptype),
        mode=mode,
        master=master,
        bridge=bridge,
        mtu=f.integer(raw.get("mtu"), "mtu", 68, 65535),
        vlan=f.integer(raw.get("vlan"), "vlan", 1, 4094),
        host_netns=_netns(raw.get("hostNetns")),
        agent_socket=_socket(raw.get("agentSocket")),
        mac=f.mac(raw.get("mac"), "mac"),
        pools=pools,
        store=store,
        store_explicit=isinstance(raw.get("ipam"), dict) and "store" in raw["ipam"],
        dns=DNS() if raw.get("dns") is None else DNS.from_json(raw["dns"], "dns", ConfigError),
        runtime_config=parse_runtime_config(raw.get("runtimeConfig")),
        args_ips=args_ips,
        args_mac=args_mac,
        prev_result=None if prev is None else Result.from_json(prev, version, "prevResult", ConfigError),
        valid_attachments=parse_valid_attachments(raw),
        first_hop_security=bool(f.boolean(raw.get("firstHopSecurity"), "firstHopSecurity", True)),
        raw=raw,
    )
    if traits.overlay:
        _overlay(conf, raw)
    conf.options["serviceCidrs"] = _service_cidrs(raw.get("serviceCidrs"))
    conf.options["portMappings"] = [p.to_json() for p in conf.runtime_config.port_mappings]
    return conf


def mode_keys(traits: modes.Mode) -> tuple[str, ...]:
    """Every top-level key a config of this mode may carry."""
    return (*FLATNET_KEYS, *traits.keys, *(OVERLAY_KEYS if traits.overlay else ()), *SPEC_KEYS)


def check_plugin_keys(raw: dict[str, Any], traits: modes.Mode, where: str = "the flatnet plugin config") -> None:
    """Refuse a key this mode does not read: a typo gets the closest key, another mode's key
    says which mode reads it (it would be ignored here), and keys with a "/" pass."""
    known = mode_keys(traits)
    for key in raw:
        if key in known or "/" in key:
            continue
        readers = [m for m in modes.names() if key in mode_keys(modes.get(m))]
        if readers:
            raise ConfigError(
                f"{where} has key {key!r}, which only mode {' or '.join(readers)} reads; this network's mode "
                f'is {traits.name!r}: remove the key or set "mode"'
            )
        f.check_keys({key: None}, known, where)


def _service_cidrs(raw: object) -> list[str]:
    """Kubernetes Service ranges (ClusterIPs) a flat pod reaches through its own node.

    A flat pod's default route goes to the VLAN's router, which knows nothing of ClusterIPs;
    kube-proxy's DNAT runs on the node. So these ranges get a pod route via the node's own
    address on the pod's segment (what Spiderpool's coordinator does for macvlan).
    """
    out = []
    for i, item in enumerate(f.array(raw, "serviceCidrs")):
        net = f.network(item, f"serviceCidrs[{i}]", required=True)
        assert net is not None
        out.append(net.with_prefixlen)
    return out


def _netns(raw: object) -> str | None:
    text = f.string(raw, "hostNetns", example="fn-node1")
    if text is None:
        return None
    if "/" in text:
        if not text.startswith("/") or "\0" in text:
            raise ConfigError(
                f'hostNetns {text!r} must be a netns name such as "fn-node1" '
                f'or an absolute path such as "/run/netns/fn-node1"'
            )
    elif text in (".", "..") or any(c.isspace() or not c.isprintable() for c in text):
        raise ConfigError(
            f'hostNetns {text!r} is not a valid netns name; use a name such as "fn-node1" or a path under /run/netns'
        )
    return text


def _socket(raw: object) -> str:
    text = (
        f.string(raw, "agentSocket", example=DEFAULT_AGENT_SOCKET, default=DEFAULT_AGENT_SOCKET) or DEFAULT_AGENT_SOCKET
    )
    if not text.startswith("/"):
        raise ConfigError(f"agentSocket {text!r} must be an absolute path, e.g. {DEFAULT_AGENT_SOCKET!r}")
    if len(text.encode()) > _SUN_PATH_MAX:
        raise ConfigError(
            f"agentSocket is {len(text.encode())} bytes long; a unix socket "
            f"path must be at most {_SUN_PATH_MAX} bytes: use a shorter path"
        )
    return text


def _overlay(conf: NetConf, raw: dict[str, Any]) -> None:
    """Parse the overlay (vxlan) keys into ``conf.overlay`` and mirror them into ``conf.options``
    for the datapath."""
    vni = f.integer(raw.get("vni"), "vni", 1, 16777215, default=defaults.VNI) or defaults.VNI
    port = f.integer(raw.get("vxlanPort"), "vxlanPort", 1, 65535, defaults.VXLAN_PORT) or defaults.VXLAN_PORT
    subnet = f.network(raw.get("clusterSubnet"), "clusterSubnet", required=True)
    assert subnet is not None
    ov = OverlayConf(
        cluster_subnet=subnet,
        node_block_prefix=_block_prefix(raw.get("nodeBlockPrefix"), subnet),
        vni=vni,
        vxlan_port=port,
        node_name=f.string(raw.get("nodeName"), "nodeName", example="node1"),
        vtep_address=f.address(raw.get("vtepAddress"), "vtepAddress"),
        snat=f.boolean(raw.get("snat"), "snat", True),
    )
    conf.overlay = ov
    conf.options.update(
        {
            "vni": ov.vni,
            "port": ov.vxlan_port,
            "vtep": str(ov.vtep_address) if ov.vtep_address else None,
            "clusterSubnet": subnet.with_prefixlen,
            "nodeBlockPrefix": ov.node_block_prefix,
            "nodeName": ov.node_name,
            "snat": ov.snat,
        }
    )


def _block_prefix(raw: object, subnet: IPNetwork) -> int:
    """Node block prefix: default /26 (v4) or /122 (v6); inside the cluster subnet."""
    if isinstance(raw, str) and raw.lstrip("/").isdigit():
        raw = int(raw.lstrip("/"))
    top = subnet.max_prefixlen - 2  # a block needs room for a gateway and a pod
    default = 26 if subnet.version == 4 else 122
    value = f.integer(raw, "nodeBlockPrefix", 1, top, default)
    assert value is not None
    if value <= subnet.prefixlen:
        raise ConfigError(
            f"nodeBlockPrefix /{value} must be longer than clusterSubnet "
            f"{subnet} so each node gets a block of it (e.g. "
            f"/{min(top, max(subnet.prefixlen + 1, default))})"
        )
    return value


@dataclass
class ConfList:
    """A network configuration list, for tooling and tests that run a chain."""

    name: str
    cni_version: str
    plugins: list[dict[str, Any]]
    disable_check: bool = False
    disable_gc: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def plugin_config(self, index: int, prev_result: dict[str, Any] | None = None) -> dict[str, Any]:
        """What a runtime feeds plugin ``index``: its object plus name/cniVersion/prevResult."""
        conf = dict(self.plugins[index])
        conf["name"] = self.name
        conf["cniVersion"] = self.cni_version
        if prev_result is not None:
            conf["prevResult"] = prev_result
        return conf


def parse_conflist(data: bytes) -> ConfList:
    raw = decode_json(data, "network configuration list")
    if not isinstance(raw, dict):
        raise DecodeError("network configuration list must be a JSON object")
    version = config_version(raw)
    name = f.string(raw.get("name"), "name", required=True, example="flat100")
    assert name is not None
    if not f.is_spec_id(name):
        raise ConfigError(
            f"name {name!r} is not a valid network name: it must start with a "
            f"letter or digit, followed by letters, digits, '_', '.' or '-'"
        )
    f.check_keys(raw, (*CONFLIST_KEYS, *(k for k in raw if "/" in k)), "", label="the network configuration list")
    plugins = f.array(raw.get("plugins"), "plugins")
    if not plugins:
        raise ConfigError('plugins is required: a non-empty array such as [{"type": "flatnet"}]')
    for n, plugin in enumerate(plugins):
        f.string(f.obj(plugin, f"plugins[{n}]").get("type"), f"plugins[{n}].type", required=True, example="flatnet")
    return ConfList(
        name,
        version,
        [dict(p) for p in plugins],
        f.boolean(raw.get("disableCheck"), "disableCheck", False),
        f.boolean(raw.get("disableGC"), "disableGC", False),
        raw,
    )
