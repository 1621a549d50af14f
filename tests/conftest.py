"""Shared pytest plugins; each helper module registers its own fixtures.

tests/helpers/kernel_tier.py: tests marked ``kernel`` (happy paths needing 8021q, ipvlan or
bridge vlan_filtering, which this machine's kernel lacks) run inside the kernel tier's VM and
report their in-VM outcome here; their error paths run on the host as ordinary tests.
tests/helpers/sigterm.py: SIGTERM tears the running tests' fixtures down, as Ctrl-C does.
"""

pytest_plugins = ["tests.helpers.etcd", "tests.helpers.kernel_tier", "tests.helpers.sigterm"]
