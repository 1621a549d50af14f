"""What the agent asks of the datapath, and what it gets back.

The datapath is the only part of flatnet that talks to the kernel. Each mode
(macvlan, ipvlan, bridge, vxlan: the registry in ``modes.py``) implements the ``Datapath``
protocol; the agent picks one by name through ``flatnet.datapath.get_datapath(mode)``.
``FakeDatapath`` (flatnet.datapath.fake) implements it in memory for unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from flatnet.iptypes import IPAddress as IPAddress, IPInterface as IPInterface, IPNetwork as IPNetwork


@dataclass(frozen=True)
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None
    # the gateway is reachable on the link although outside its subnets (``ip route ... onlink``)
    onlink: bool = False


@dataclass(frozen=True)
class AttachSpec:
    """Everything needed to plumb (or unplumb, or check) one pod interface.

    ``host_netns`` is the node's network namespace (name under /run/netns or a path);
    None means the caller's own. ``netns`` is the container's netns path from CNI_NETNS
    (may be "" or gone on DEL). ``master`` is the parent link in the host netns;
    with ``vlan`` set, the parent is the 802.1Q sub-interface ``<master>.<vlan>``
    created on demand.
    """

    container_id: str
    ifname: str
    netns: str
    mode: str
    master: str | None = None
    vlan: int | None = None
    bridge: str | None = None
    mtu: int | None = None
    mac: str | None = None
    addresses: tuple[IPInterface, ...] = ()
    routes: tuple[Route, ...] = ()  # default routes via gateways included
    host_netns: str | None = None
    # mode-specific options from the network config (e.g. vxlan vni/port, node block)
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # called once the pod's addresses are set on its link and before the link goes up (so
    # before anything is announced); raising aborts ADD, which undoes its work. The agent's
    # VLAN conflict probe waits for its answer here (agent/probing.py)
    address_gate: Callable[[], None] | None = field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class Attachment:
    """What ADD plumbed: reported back in the CNI result's ``interfaces``."""

    ifname: str
    mac: str
    sandbox: str
    mtu: int
    host_ifname: str | None = None  # host-side peer (bridge/vxlan veth), if any
    host_mac: str | None = None


class Datapath(Protocol):
    def add(self, spec: AttachSpec) -> Attachment:
        """Plumb the interface. On any failure, undo every step and raise DatapathError.

        Raise InterfaceExists if ``spec.ifname`` already exists in the container netns,
        ParentMissing if the master link is missing, KernelFeatureMissing when the
        kernel lacks the needed link type (naming the CONFIG_ option / module).
        """
        ...

    def delete(self, spec: AttachSpec) -> None:
        """Remove everything ADD made. Idempotent: missing netns or links are fine."""
        ...

    def check(self, spec: AttachSpec) -> None:
        """Raise DatapathError (code STATE_MISMATCH) if the plumbing differs from spec."""
        ...

    def status(self, spec: AttachSpec) -> None:
        """Raise if this node cannot serve ADDs now (e.g. master missing)."""
        ...
