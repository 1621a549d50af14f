"""scripts/setup.sh and ``make image`` leave the host's etcd, containerd and Prometheus running.

Each test runs the real script in a private mount and network namespace beside a real etcd
(127.0.0.1:2379), containerd (/run/containerd/containerd.sock) and Prometheus (127.0.0.1:9090)
that a fake ``systemctl`` reports as active, enabled system services; a stop or disable through
it stops the daemon, as systemd would (tests/helpers/system_services.py). The old setup.sh,
which stopped etcd and ran ``systemctl disable --now`` on the other two, fails these checks.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers.system_services import run_beside_services

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)"),
    pytest.mark.skipif(
        not all(shutil.which(b) for b in ("etcd", "containerd", "ctr", "prometheus", "unshare")),
        reason="etcd-server, containerd and prometheus are installed by scripts/setup.sh",
    ),
]
SERVICES = {"etcd", "containerd", "prometheus"}
STOPPING = ("stop", "disable", "mask", "restart", "kill", "try-restart", "reload-or-restart")


def _venv_ready() -> bool:
    """setup.sh rebuilds .venv when its stamp is stale; in `make test` it has just run."""
    import hashlib

    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + (ROOT / "tooling/pyproject.toml").read_bytes())
    stamp = ROOT / ".venv/.flatnet-installed"
    return stamp.exists() and stamp.read_text().strip() == want.hexdigest()[:16]


def _assert_untouched(result: dict) -> None:
    calls = [c for c in result["systemctl"] if c.split() and c.split()[0] in STOPPING]
    assert calls == [], f"systemctl calls that stop or disable a service: {calls}"
    assert result["running"] == dict.fromkeys(SERVICES, True), result
    assert result["answering"] == dict.fromkeys(SERVICES, True), result


def test_setup_leaves_system_services_running(tmp_path: Path) -> None:
    if not _venv_ready():
        pytest.skip("run scripts/setup.sh first (its .venv is missing or stale; this test runs it offline)")
    result = run_beside_services(tmp_path, ["bash", str(ROOT / "scripts/setup.sh")])
    assert result["rc"] == 0, result["output"]
    _assert_untouched(result)


def test_fake_systemctl_catches_the_old_setup(tmp_path: Path) -> None:
    """The check can fail: the service-stopping lines setup.sh used to have stop all three."""
    old = tmp_path / "old.sh"
    old.write_text(
        "if systemctl is-active --quiet etcd; then systemctl stop etcd || true; fi\n"
        "for svc in containerd prometheus; do\n"
        '  if systemctl is-enabled --quiet "$svc"; then systemctl disable --now "$svc" || true; fi\n'
        "done\n"
    )
    result = run_beside_services(tmp_path, ["bash", str(old)])
    assert result["running"] == dict.fromkeys(SERVICES, False), result
    assert result["systemctl"] == [
        "is-active --quiet etcd",
        "stop etcd",
        "is-enabled --quiet containerd",
        "disable --now containerd",
        "is-enabled --quiet prometheus",
        "disable --now prometheus",
    ]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_make_image_loads_into_the_system_containerd(tmp_path: Path) -> None:
    """`make image` on a containerd host imports the image there and leaves containerd running."""
    from tests.helpers.image import ensure_image

    image = ensure_image()  # built (or cached) outside: the namespace has no network
    fakebin = tmp_path / "podman-bin"
    fakebin.mkdir()
    (fakebin / "podman").write_text("#!/bin/sh\nexit 0\n")  # the host's podman is another test's business
    (fakebin / "podman").chmod(0o755)
    result = run_beside_services(
        tmp_path,
        ["bash", "-c", f'PATH={fakebin}:"$PATH" exec bash {ROOT / "scripts/image/build.sh"}'],
        env={"FNT_LIST_IMAGE": "1", "PY": sys.executable},
    )
    assert result["rc"] == 0, result["output"]
    assert "imported " + image.ref in result["output"], result["output"]
    assert image.ref in result["images"], result
    _assert_untouched(result)
