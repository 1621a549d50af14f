"""``flatnet doctor``: checks that say what is wrong, why it matters and the exact fix.

Two halves: ``cluster`` reads a ``kubectl get ... -o json`` dump (pure logic over dicts,
so it is tested on stored dumps) and ``node`` checks one machine's prerequisites
(kernel link types, sysctls, nftables, tools, agent, store, CNI files). Both return
:class:`~flatnet.doctor.findings.Finding` lists; the worst severity is the exit code.
"""

from flatnet.doctor.findings import Finding, exit_code, worst

__all__ = ["Finding", "exit_code", "worst"]
