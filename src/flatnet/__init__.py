"""flatnet: flat, routable pod networking for bare-metal clusters.

Public entry points: the ``flatnet`` command (``flatnet.cli``) and the agent
(``flatnet.agent``); the CNI plugin runtimes exec is the native forwarder in
native/forwarder/ (``flatnet.forwarder`` finds it). Errors live in ``flatnet.errors``.
"""

__version__ = "0.1.0"

#: CNI spec versions this plugin speaks, oldest first. native/forwarder/Makefile reads
#: this line and __version__ (one line each, this format) into the forwarder's VERSION.
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
