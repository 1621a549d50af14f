"""Every module of both packages (the runtime and the tooling) imports: a module moved or renamed leaves no stale import behind
(ruff and import-linter do not notice an import of a module that no longer exists)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import flatnet
import flatnet_lab

MODULES = sorted(
    m.name
    for pkg in (flatnet, flatnet_lab)
    for m in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_a_plugin_call_does_not_load_pyroute2() -> None:
    """``flatnet-inprocess`` runs once per CNI call: importing pyroute2 (~0.3 s on the test VM)
    was most of its time. The agent's service and every mode's datapath must not need it, nor
    ssl (~14 ms; the etcd store loads it when it makes a TLS context or explains a failure)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import flatnet.agent.inprocess, flatnet.agent.service, flatnet.cni\n"
        "from flatnet.datapath import get_datapath, netns, rtnl\n"
        "from flatnet.datapath.modes import names\n"
        "for name in names(): get_datapath(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyroute2', 'ssl')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout[:300]
