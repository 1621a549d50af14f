"""Fixtures for the podman end-to-end test: a private podman, a flat segment, a conflist.

Skips only when podman or runc is missing (or we are not root, which podman's CNI
backend needs). Everything is created under one temp dir and in ``fne-*`` namespaces
and removed at teardown, on failure too.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from flatnet import defaults
from tests.helpers.cnirun import install_forwarder, tree_inprocess_entry

from . import segment as seg_mod
from .podmanctl import Podman, build_rootfs, containers_conf

CNI_CACHE = Path("/var/lib/cni/results")
BUSYBOX = ("/usr/bin/busybox", "/bin/busybox")


@dataclass
class Env:
    """What a test needs: the podman, the network name, the segment and the IPAM db."""

    podman: Podman
    network: str
    seg: seg_mod.Segment
    rootfs: Path
    token: str
    db: Path
    log: Path
    tag: str
    entry: str = ""
    #: how the no-agent mode is turned on: "key" (the config's inProcess) or "env" (FLATNET_INPROCESS)
    mode: str = "key"

    @property
    def locks(self) -> Path:
        return self.db.parent / "locks"

    def plugin_log(self) -> str:
        """The plugin's traceback log (FLATNET_LOG), for assertion messages."""
        return self.log.read_text() if self.log.exists() else "(no plugin log)"


def _require_tools() -> str:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman)")
    if shutil.which("runc") is None and not os.path.exists("/usr/sbin/runc"):
        pytest.skip("runc is not installed (apt-get install runc); crun fails on setrlimit here")
    if os.geteuid() != 0:
        pytest.skip("podman's CNI backend and network namespaces need root")
    busybox = next((b for b in BUSYBOX if os.path.exists(b)), None)
    if busybox is None:
        pytest.fail("no static busybox for the container rootfs: apt-get install busybox-static")
    return busybox


def _plugin_dir(work: Path) -> list[str]:
    """Plugin search path: this working tree's forwarder, copied into our temp dir.

    Not /opt/cni/bin's (which may be another tree's), and nothing written outside what the
    test removes. With no agent on ``agentSocket`` it execs ``flatnet-inprocess``.
    """
    bindir = work / "cni-bin"
    install_forwarder(str(bindir))
    return [str(bindir), "/usr/lib/cni"]


def flatnet_conflist(network: str, seg: seg_mod.Segment, work: Path, entry: str | None) -> dict:
    """The network config podman loads: flat macvlan on the node netns's parent link;
    ``entry`` is the config's ``inProcess`` (None: the mode comes from the environment)."""
    conf = {
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [
            {
                "type": "flatnet",
                "mode": "macvlan",
                "master": seg.parent,
                "hostNetns": seg.node,
                "agentSocket": str(work / "no-agent.sock"),  # absent: the in-process mode runs
                "ipam": {
                    "pools": [
                        {
                            "name": f"{network}-v4",
                            "subnet": str(seg_mod.SUBNET),
                            "rangeStart": "198.18.100.50",
                            "rangeEnd": "198.18.100.99",
                            "gateway": "198.18.100.1",
                            "sticky": True,
                        }
                    ],
                    "store": {"type": "sqlite", "path": str(work / "ipam.db")},
                },
            }
        ],
    }
    if entry is not None:
        conf["plugins"][0]["inProcess"] = entry
    return conf


def _drop_records(bindir: str) -> None:
    """No-agent records (flatnet.agent.inprocess) naming this test's entry point."""
    records = Path(defaults.INPROCESS_DIR)
    for rec in records.iterdir() if records.is_dir() else ():
        try:
            if rec.read_text().startswith(bindir + "/"):
                rec.unlink()
        except OSError:
            pass


@pytest.fixture
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("fne-podman")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def reference_podman(workdir: Path) -> Iterator[tuple[Podman, Path]]:
    """A private podman with only the reference loopback plugin configured."""
    busybox = _require_tools()
    net_dir = workdir / "net.d"
    net_dir.mkdir()
    (net_dir / "fne-ref.conflist").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "fne-ref", "plugins": [{"type": "loopback"}]})
    )
    conf = containers_conf(workdir / "containers.conf", net_dir, ["/usr/lib/cni"])
    rootfs = build_rootfs(workdir / "rootfs", busybox, "ref")
    podman = Podman(workdir, conf)
    try:
        yield podman, rootfs
    finally:
        podman.close()


@pytest.fixture(params=["key"])
def flat(workdir: Path, request: pytest.FixtureRequest) -> Iterator[Env]:
    """A private podman whose network ``fne-<tag>`` is flatnet on a namespaced segment.

    The no-agent mode is on through the config's ``inProcess`` ("key", the default) or,
    with ``@pytest.mark.parametrize("flat", ["env"], indirect=True)``, through
    FLATNET_INPROCESS in podman's environment only. The entry point imports flatnet from
    the tree under test even where podman drops the environment (its exit cleanup).
    """
    mode = request.param
    busybox = _require_tools()
    plugin_dirs = _plugin_dir(workdir)
    tag = secrets.token_hex(3)
    network = f"fne-{tag}"
    seg = seg_mod.build(tag)
    podman: Podman | None = None
    try:
        net_dir = workdir / "net.d"
        net_dir.mkdir()
        entry = tree_inprocess_entry(str(workdir / "bin"))
        conflist = flatnet_conflist(network, seg, workdir, entry if mode == "key" else None)
        (net_dir / f"{network}.conflist").write_text(json.dumps(conflist, indent=2))
        conf = containers_conf(workdir / "containers.conf", net_dir, plugin_dirs)
        token = f"flatnet-e2e-{secrets.token_hex(8)}"
        rootfs = build_rootfs(workdir / "rootfs", busybox, token)
        log = workdir / "plugin.log"
        # FLATNET_* reach the plugin: podman execs it with its own environment
        plugin_env = {"FLATNET_LOG": str(log), "FLATNET_LOCK_DIR": str(workdir / "locks")}
        if mode == "env":
            plugin_env["FLATNET_INPROCESS"] = entry
        podman = Podman(workdir, conf, env=plugin_env)
        yield Env(podman, network, seg, rootfs, token, workdir / "ipam.db", log, tag, entry, mode)
    finally:
        if podman is not None:
            podman.close()
        for stale in CNI_CACHE.glob(f"{network}-*") if CNI_CACHE.is_dir() else ():
            stale.unlink(missing_ok=True)
        _drop_records(str(workdir / "bin"))
        seg_mod.destroy(seg)
