"""The mode registry: one line per datapath mode, naming its datapath and its traits.

Everything that depends on the mode reads it from here: ``cni/config.py`` validates a
network config against a mode's traits (which keys it needs, whether it is an overlay,
where its pools come from), ``get_datapath`` builds its datapath and the agent runs the
mode's hooks around allocate → plumb → answer.

This module imports no kernel code (no pyroute2) and no mode module: datapaths and hooks
are named as ``"module:attribute"`` and imported on first use, so the CNI layer can
validate a config without loading netlink. Adding a mode is one module (its ``Datapath``)
plus one ``register(Mode(...))`` line below; see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from flatnet import defaults
from flatnet.errors import ConfigError

if TYPE_CHECKING:
    from flatnet.datapath.api import Datapath
    from flatnet.ipam.api import PoolSpec, Store

#: where a mode's pools come from
POOLS_FROM_CONFIG = "ipam.pools"  # the network config lists them
POOLS_FROM_NODE_BLOCK = "node block"  # the mode's hooks claim a block of clusterSubnet per node


class ModeHooks(Protocol):
    """The agent-side steps a mode adds around allocate → plumb → answer.

    ``pools``: the pools an ADD allocates from on this node. ``prepare``: run before
    plumbing an ADD and for STATUS; returns extra ``AttachSpec.options`` (or None).
    ``ready``: True when ``prepare`` is what tells whether the node can serve ADDs
    (an overlay is ready once it joined); False to ask the datapath's ``status``.
    """

    ready_by_prepare: bool

    def pools(self, store: Store, conf: Any, node: str) -> list[PoolSpec]: ...

    def prepare(self, store: Store, conf: Any, node: str, host_netns: str | None) -> dict[str, Any] | None: ...


class ConfigPools:
    """The hooks of a flat mode: pools come from ``ipam.pools``, nothing to prepare."""

    ready_by_prepare = False

    def pools(self, store: Store, conf: Any, node: str) -> list[PoolSpec]:
        if not conf.pools:
            raise ConfigError("ipam.pools is empty", 'add e.g. "ipam": {"pools": [{"subnet": "198.18.100.0/24"}]}')
        return list(conf.pools)

    def prepare(self, store: Store, conf: Any, node: str, host_netns: str | None) -> dict[str, Any] | None:
        return None


Factory = Callable[[], Any]


@dataclass(frozen=True)
class Mode:
    """A datapath mode and its traits.

    ``datapath`` / ``hooks``: ``"module:attribute"`` (imported lazily) or a callable
    returning the object. ``needs``: top-level config keys that must be set.
    ``keys``: mode-specific top-level keys it reads (others are ignored in this mode).
    ``defaults``: values for ``keys`` left out. ``overlay``: the config carries the
    overlay settings (vni, clusterSubnet, vtepAddress, ...) and the agent re-runs
    ``prepare`` periodically so the node learns of peers. ``pools``: POOLS_FROM_*.
    """

    name: str
    datapath: str | Factory
    needs: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    overlay: bool = False
    pools: str = POOLS_FROM_CONFIG
    hooks: str | Factory | None = None

    @property
    def pools_from_config(self) -> bool:
        return self.pools == POOLS_FROM_CONFIG

    def new_datapath(self) -> Datapath:
        return _build(self.datapath)  # type: ignore[no-any-return]

    def new_hooks(self) -> ModeHooks:
        return ConfigPools() if self.hooks is None else _build(self.hooks)


def _build(ref: str | Factory) -> Any:
    if callable(ref):
        return ref()
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)()


_REGISTRY: dict[str, Mode] = {}


def register(mode: Mode) -> Mode:
    """Add (or replace) a mode. Returns it, so a test can register and later ``unregister``."""
    _REGISTRY[mode.name] = mode
    return mode


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """Every registered mode, in registration order."""
    return tuple(_REGISTRY)


def find(name: str) -> Mode | None:
    return _REGISTRY.get(name)


def get(name: str) -> Mode:
    """The mode called ``name``; ConfigError naming the modes there are otherwise."""
    mode = _REGISTRY.get(name)
    if mode is None:
        raise ConfigError(f"mode {name!r} is not supported; use one of: {', '.join(_REGISTRY)}")
    return mode


# ---- the modes: one line each ----
register(Mode("macvlan", "flatnet.datapath.macvlan:MacvlanDatapath", needs=("master",)))
register(Mode("ipvlan", "flatnet.datapath.ipvlan:IpvlanDatapath", needs=("master",)))
register(
    Mode("bridge", "flatnet.datapath.bridge:BridgeDatapath", keys=("bridge",), defaults={"bridge": defaults.BRIDGE})
)
register(
    Mode(
        "vxlan",
        "flatnet.datapath.vxlan:VxlanDatapath",
        overlay=True,
        pools=POOLS_FROM_NODE_BLOCK,
        hooks="flatnet.agent.overlay:OverlayHooks",
    )
)
