"""flatnet: flat, routable pod networking for bare-metal clusters.

Public entry points: the ``flatnet`` command (``flatnet.cli``) and the agent
(``flatnet.agent``); the CNI plugin runtimes exec is the native forwarder in
native/forwarder/. Errors live in ``flatnet.errors``. The lab, bench, chaos harness and
test-bed are a separate distribution (``flatnet-lab``, package ``flatnet_lab``) that the
runtime never imports.
"""

__version__ = "0.1.0"

#: CNI spec versions this plugin speaks, oldest first. native/forwarder/Makefile reads
#: this line and __version__ (one line each, this format) into the forwarder's VERSION.
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
