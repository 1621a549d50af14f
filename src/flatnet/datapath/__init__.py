"""The datapath: the only part of flatnet that talks to the kernel.

``get_datapath(mode)`` returns the implementation of ``Datapath`` (see ``api.py``) for a mode
named in the network config. Modes are imported lazily so that e.g. the plugin can start
without loading pyroute2 for a mode it does not use.
"""

from __future__ import annotations

from flatnet import errors
from flatnet.datapath.api import MODES, Attachment, AttachSpec, Datapath, Route

__all__ = ["get_datapath", "AttachSpec", "Attachment", "Datapath", "Route", "MODES"]


def get_datapath(mode: str) -> Datapath:
    """The datapath for ``mode`` (macvlan, ipvlan, bridge, vxlan); ConfigError otherwise."""
    if mode == "macvlan":
        from flatnet.datapath.macvlan import MacvlanDatapath

        return MacvlanDatapath()
    if mode == "ipvlan":
        from flatnet.datapath.ipvlan import IpvlanDatapath

        return IpvlanDatapath()
    if mode == "bridge":
        from flatnet.datapath.bridge import BridgeDatapath

        return BridgeDatapath()
    if mode == "vxlan":
        from flatnet.datapath.vxlan import VxlanDatapath

        return VxlanDatapath()
    raise errors.ConfigError(
        f"unknown datapath mode {mode!r}; use one of: {', '.join(MODES)}"
    )
