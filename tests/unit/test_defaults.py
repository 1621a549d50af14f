"""Every default lives in src/flatnet/defaults.py: the modules' names are aliases of it, and the
C forwarder's socket and timeouts are generated from it (native/forwarder/Makefile)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from flatnet import defaults

ROOT = Path(__file__).resolve().parents[2]


def test_module_defaults_are_the_ones_in_defaults_py() -> None:
    from flatnet.cli.agent import register  # noqa: F401 - the module's --reconcile-every default
    from flatnet.ipam import api
    from flatnet.ipam.store import etcd
    from flatnet.obs import http

    assert api.DEFAULT_STICKY_HOLD == defaults.STICKY_HOLD and api.DEFAULT_QUARANTINE == defaults.QUARANTINE
    assert http.DEFAULT_PORT == defaults.METRICS_PORT
    assert etcd.DOWN_FOR == defaults.ETCD_DOWN_FOR and etcd.CONNECT_TIMEOUT == defaults.ETCD_CONNECT_TIMEOUT
    assert etcd.DEFAULT_ENDPOINTS == (defaults.ETCD_ENDPOINT,) and etcd.DEFAULT_PREFIX == defaults.ETCD_PREFIX
    from flatnet.cli.main import build_parser

    agent = build_parser()._subparsers._group_actions[0].choices["agent"]  # type: ignore[union-attr]
    assert agent.get_default("reconcile_every") == defaults.RECONCILE_EVERY


def test_the_forwarder_takes_its_socket_and_timeouts_from_defaults_py(tmp_path: Path) -> None:
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    tree = tmp_path / "tree"
    shutil.copytree(
        ROOT / "native" / "forwarder", tree / "native" / "forwarder", ignore=shutil.ignore_patterns("build")
    )
    (tree / "src" / "flatnet").mkdir(parents=True)
    for name in ("__init__.py", "defaults.py"):
        shutil.copy(ROOT / "src" / "flatnet" / name, tree / "src" / "flatnet" / name)
    subprocess.run(["make", "-s", "-C", str(tree / "native" / "forwarder"), "build/versions.h"], check=True)
    header = (tree / "native" / "forwarder" / "build" / "versions.h").read_text()
    assert f'#define DEFAULT_SOCKET "{defaults.AGENT_SOCKET}"' in header
    assert f"#define DEFAULT_TIMEOUT_S {defaults.AGENT_TIMEOUT}" in header
    assert f"(({'long long'})({defaults.AGENT_CONNECT_TIMEOUT} * 1000))" in header
    source = (ROOT / "native" / "forwarder" / "flatnet.c").read_text()
    assert not re.search(r"#define (DEFAULT_SOCKET|CONNECT_TIMEOUT_MS|DEFAULT_TIMEOUT_S)\b", source)
