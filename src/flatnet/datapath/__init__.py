"""The datapath: the only part of flatnet that talks to the kernel.

``get_datapath(mode)`` returns the implementation of ``Datapath`` (see ``api.py``) for a mode
named in the network config. The modes and their traits are one table in ``modes.py``; each
mode's module is imported lazily, so e.g. the plugin can start without loading pyroute2 for
a mode it does not use.
"""

from __future__ import annotations

from flatnet import errors
from flatnet.datapath import modes
from flatnet.datapath.api import Attachment, AttachSpec, Datapath, Route

__all__ = ["get_datapath", "AttachSpec", "Attachment", "Datapath", "Route", "modes"]


def get_datapath(mode: str) -> Datapath:
    """The datapath for a registered ``mode`` (see ``modes.py``); ConfigError otherwise."""
    found = modes.find(mode)
    if found is None:
        raise errors.ConfigError(f"unknown datapath mode {mode!r}; use one of: {', '.join(modes.names())}")
    return found.new_datapath()
