"""flatnet's tooling: the lab, the bench, the chaos harness and the test-bed.

A distribution of its own (``flatnet-lab``, ``tooling/``) that depends on the runtime
(``flatnet``) and is never imported by it: a node's image carries only the runtime. Its
commands (``flatnet lab``, ``flatnet check``, ``flatnet bench``) reach the ``flatnet`` command
through the ``flatnet.commands`` entry-point group.
"""
