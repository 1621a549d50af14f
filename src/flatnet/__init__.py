"""flatnet: flat, routable pod networking for bare-metal clusters.

Public entry points: the CNI plugin (``flatnet.plugin``), the ``flatnet`` command
(``flatnet.cli``) and the agent (``flatnet.agent``). Errors live in ``flatnet.errors``.
"""

__version__ = "0.1.0"

#: CNI spec versions this plugin speaks, oldest first.
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
