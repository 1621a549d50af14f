"""Client side of the agent protocol, for tools and tests.

The implementation lives in ``flatnet.plugin`` (which must stay stdlib-only and cannot
import this package); this module re-exports it under the agent's namespace.
"""

from flatnet.plugin import AgentReplyError, NoAgent, request

__all__ = ["AgentReplyError", "NoAgent", "request"]
