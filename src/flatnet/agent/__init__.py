"""The node agent: the CNI service (ADD/DEL/CHECK/GC/STATUS), its socket server and locks.

Public API::

    from flatnet.agent import Service, AgentServer, request
    svc = Service(host_netns="fnlab-node1", node="node1", default_store={"type": "memory"})
    server = AgentServer("/run/flatnet/agent.sock", svc)   # then serve_until_signal(server)
    request("/run/flatnet/agent.sock", {"v": 1, "op": "status"})  # -> {"exit": 0, ...}
"""

from flatnet.agent.client import request
from flatnet.agent.locks import ContainerLocks
from flatnet.agent.server import AgentServer, serve_until_signal
from flatnet.agent.service import Service

__all__ = ["AgentServer", "ContainerLocks", "Service", "request", "serve_until_signal"]
