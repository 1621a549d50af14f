"""``flatnet network check FILE``: the plugin's own parser, offline, on a file a user wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

GOOD: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "name": "flat100",
    "plugins": [
        {
            "type": "flatnet",
            "mode": "macvlan",
            "master": "bond0.100",
            "ipam": {
                "pools": [{"subnet": "198.18.100.0/24", "rangeStart": "198.18.100.50", "rangeEnd": "198.18.100.99"}],
                "store": {"type": "sqlite", "path": "/var/lib/flatnet/ipam.db"},
            },
        },
        {"type": "tuning"},
    ],
}


def flatnet(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run(
        [sys.executable, "-m", "flatnet.cli.main", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def write(tmp_path: Path, conf: dict[str, Any], name: str = "flat100.conflist") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(conf))
    return str(path)


def test_a_valid_conflist_is_summarised_and_other_plugins_left_alone(tmp_path: Path) -> None:
    entry = tmp_path / "flatnet-inprocess"
    entry.write_text("#!/bin/sh\n")
    entry.chmod(0o755)
    conf = json.loads(json.dumps(GOOD))
    conf["plugins"][0].update(inProcess=str(entry), agentSocket=str(tmp_path / "none.sock"))
    proc = flatnet("network", "check", write(tmp_path, conf))
    assert proc.returncode == 0, proc.stderr
    assert "plugins[0]: valid — network flat100, cniVersion 1.0.0, macvlan on bond0.100" in proc.stdout
    assert "198.18.100.50-198.18.100.99" in proc.stdout and f"served in-process by {entry}" in proc.stdout
    assert "type 'tuning' is not flatnet's; not checked" in proc.stdout and "warning" not in proc.stdout
    data = json.loads(flatnet("network", "check", "--json", write(tmp_path, conf)).stdout)
    assert data["valid"] and data["plugins"][0]["served"]["inProcessRunnable"] is True


@pytest.mark.parametrize(
    "change, words",
    [
        ({"mastr": "eth0"}, ["plugins[0]: the flatnet plugin config has unknown key 'mastr'; did you mean 'master'?"]),
        ({"inprocess": "/x"}, ["did you mean 'inProcess'?"]),
        ({"ipam": {"pools": [{"subnett": "198.18.0.0/24"}]}}, ["ipam.pools[0] has unknown key 'subnett'"]),
        ({"mode": "macvlna"}, ["mode 'macvlna' is not supported"]),
    ],
)
def test_an_invalid_config_is_the_plugins_own_error(tmp_path: Path, change: dict[str, Any], words: list[str]) -> None:
    conf = json.loads(json.dumps(GOOD))
    conf["plugins"][0].update(change)
    path = write(tmp_path, conf)
    proc = flatnet("network", "check", path)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout
    assert proc.stderr.startswith(f"flatnet: error 7: {path}: ") and len(proc.stderr.splitlines()) == 1, proc.stderr
    for word in words:
        assert word in proc.stderr


def test_warnings_for_what_parses_but_will_not_work(tmp_path: Path) -> None:
    conf = json.loads(json.dumps(GOOD))
    conf["cniVersion"] = "1.1.0"
    conf["plugins"][0]["agentSocket"] = str(tmp_path / "none.sock")
    proc = flatnet("network", "check", write(tmp_path, conf))
    assert proc.returncode == 0
    assert 'use "1.0.0" for podman' in proc.stdout and "calls fail with code 11" in proc.stdout


def test_single_conf_stdin_and_unreadable_files(tmp_path: Path) -> None:
    single = {"cniVersion": "1.0.0", "name": "flat100", **GOOD["plugins"][0]}
    assert flatnet("network", "check", "-", stdin=json.dumps(single)).returncode == 0
    proc = flatnet("network", "check", str(tmp_path / "nope.conflist"))
    assert proc.returncode == 1 and "cannot read it: No such file or directory" in proc.stderr
    proc = flatnet("network", "check", "-", stdin="{not json")
    assert proc.returncode == 1 and "error 6" in proc.stderr and "not valid JSON" in proc.stderr
    proc = flatnet(
        "network", "check", "-", stdin=json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}]})
    )
    assert proc.returncode == 1 and "no plugin of type flatnet" in proc.stderr
