"""``flatnet install-cni`` / ``uninstall-cni``: what the DaemonSet's init container and
preStop hook do on the node, run here on temporary directories standing for the node's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from flatnet.cli.main import main
from tests.unit.test_manifests import render_chart


def _dirs(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    bin_dir.mkdir()
    conf_dir.mkdir()
    plugin = tmp_path / "forwarder"
    plugin.write_bytes(b"\x7fELF-fnm-test")
    cm = next(d for d in render_chart() if d["kind"] == "ConfigMap")
    conflist = tmp_path / "conflist"
    conflist.write_text(cm["data"]["conflist"])
    return bin_dir, conf_dir, plugin, conflist


def _install(bin_dir: Path, conf_dir: Path, plugin: Path, conflist: Path, *extra: str) -> int:
    return main(
        [
            "install-cni",
            "--conflist",
            str(conflist),
            "--conf-dir",
            str(conf_dir),
            "--name",
            "00-flatnet.conflist",
            "--bin-dir",
            str(bin_dir),
            "--plugin",
            str(plugin),
            *extra,
        ]
    )


def test_install_then_uninstall_leaves_nothing(tmp_path: Path) -> None:
    bin_dir, conf_dir, plugin, conflist = _dirs(tmp_path)
    (conf_dir / "10-flatnet.conflist").write_text("{}")  # an older release's name
    (conf_dir / "10-calico.conflist").write_text("{}")  # someone else's: kept
    assert _install(bin_dir, conf_dir, plugin, conflist) == 0
    assert (bin_dir / "flatnet").read_bytes() == plugin.read_bytes()
    assert os.stat(bin_dir / "flatnet").st_mode & 0o777 == 0o755
    assert json.loads((conf_dir / "00-flatnet.conflist").read_text())["cniVersion"] == "1.0.0"
    assert sorted(p.name for p in conf_dir.iterdir()) == ["00-flatnet.conflist", "10-calico.conflist"]
    assert _install(bin_dir, conf_dir, plugin, conflist) == 0  # an agent restart: idempotent
    args = ["--conf-dir", str(conf_dir), "--name", "00-flatnet.conflist", "--bin-dir", str(bin_dir)]
    assert main(["uninstall-cni", *args]) == 0
    assert sorted(p.name for p in conf_dir.iterdir()) == ["10-calico.conflist"]
    assert list(bin_dir.iterdir()) == []
    assert main(["uninstall-cni", *args]) == 0  # again: missing files are fine


def test_a_bad_conflist_fails_the_init_container_and_installs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir, conf_dir, plugin, conflist = _dirs(tmp_path)
    conf = json.loads(conflist.read_text())
    conf["plugins"][0]["mode"] = "macvlna"
    conflist.write_text(json.dumps(conf))
    assert _install(bin_dir, conf_dir, plugin, conflist) != 0
    assert "mode" in capsys.readouterr().err
    assert list(bin_dir.iterdir()) == [] and list(conf_dir.iterdir()) == []


def test_substitution_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, conf_dir, plugin, conflist = _dirs(tmp_path)
    conflist.write_text(conflist.read_text().replace('"mtu": 1500', '"mtu": __MTU__'))
    assert _install(bin_dir, conf_dir, plugin, conflist, "--substitute", "__MTU__=FNM_MTU") != 0
    assert list(conf_dir.iterdir()) == []  # $FNM_MTU unset: nothing written
    monkeypatch.setenv("FNM_MTU", "9000")
    assert _install(bin_dir, conf_dir, plugin, conflist, "--substitute", "__MTU__=FNM_MTU") == 0
    plugin_conf = json.loads((conf_dir / "00-flatnet.conflist").read_text())["plugins"][0]
    assert plugin_conf["mtu"] == 9000
