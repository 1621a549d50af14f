"""The node agent: the CNI service (ADD/DEL/CHECK/GC/STATUS), its socket server and locks.

Public API::

    from flatnet.agent import Service, AgentServer, request
    svc = Service(host_netns="fnlab-node1", node="node1", default_store={"type": "memory"})
    server = AgentServer("/run/flatnet/agent.sock", svc)   # then serve_until_signal(server)
    request("/run/flatnet/agent.sock", {"v": 1, "op": "status"})  # -> {"exit": 0, ...}

Names are resolved lazily: importing ``flatnet.agent`` (or its light modules such as
``flatnet.agent.protocol``) does not import the service and with it pyroute2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flatnet.agent.locks import ContainerLocks
    from flatnet.agent.protocol import AgentReplyError, NoAgent, request
    from flatnet.agent.server import AgentServer, serve_until_signal
    from flatnet.agent.service import Service

__all__ = ["AgentReplyError", "AgentServer", "ContainerLocks", "NoAgent", "Service", "request", "serve_until_signal"]

_WHERE = {
    "AgentReplyError": "protocol",
    "NoAgent": "protocol",
    "request": "protocol",
    "AgentServer": "server",
    "serve_until_signal": "server",
    "ContainerLocks": "locks",
    "Service": "service",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'flatnet.agent' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"flatnet.agent.{_WHERE[name]}"), name)
