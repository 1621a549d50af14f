"""The ``flatnet`` command: help that teaches, versions, one-line errors, agent lifecycle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from flatnet import SUPPORTED_VERSIONS, __version__
from flatnet.cli.common import parse_store_url
from flatnet.cli.main import main
from flatnet.errors import ConfigError
from tests.helpers.cli import spawn_agent, wait_for_socket


def flatnet(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run(
        [sys.executable, "-m", "flatnet.cli.main", *argv], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_version(capsys: Any) -> None:
    assert main(["version", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"version": __version__, "cniVersions": list(SUPPORTED_VERSIONS)}
    assert main(["version"]) == 0
    text = capsys.readouterr().out
    assert __version__ in text and "1.1.0" in text


def test_help_has_examples_and_subcommands() -> None:
    proc = flatnet("--help")
    assert proc.returncode == 0
    for word in ("examples:", "agent", "ipam", "version"):
        assert word in proc.stdout
    proc = flatnet("ipam", "release", "--help")
    assert proc.returncode == 0 and "--forget-sticky" in proc.stdout


def test_bare_group_prints_help_and_fails(capsys: Any) -> None:
    assert main(["ipam"]) == 2
    assert "SUBCOMMAND" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url,expected",
    [
        ("memory", {"type": "memory"}),
        ("sqlite:/tmp/x.db", {"type": "sqlite", "path": "/tmp/x.db"}),
        (
            "etcd:http://127.0.0.1:2379,http://127.0.0.2:2379",
            {"type": "etcd", "endpoints": ["http://127.0.0.1:2379", "http://127.0.0.2:2379"]},
        ),
    ],
)
def test_store_urls(url: str, expected: dict) -> None:
    assert parse_store_url(url) == expected


@pytest.mark.parametrize("url", ["", "sqlite:", "etcd:127.0.0.1:2379", "redis://x", "mem"])
def test_bad_store_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="store"):
        parse_store_url(url)


def test_errors_are_one_line_without_traceback() -> None:
    proc = flatnet("ipam", "ls", "--store", "bogus:thing")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error 7" in lines[0] and "sqlite:" in lines[0]
    proc = flatnet("ipam", "release", "--container", "abc")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "--ifname" in proc.stderr


def test_ipam_ls_show_release_on_sqlite(tmp_path: Any) -> None:
    from flatnet.ipam import Ipam
    from flatnet.ipam.api import Owner, PoolSpec
    from flatnet.ipam.store import open_store
    import ipaddress

    db = tmp_path / "ipam.db"
    store = open_store({"type": "sqlite", "path": str(db)})
    pool = PoolSpec("flat-v4", ipaddress.ip_network("198.18.100.0/24"), gateway=ipaddress.ip_address("198.18.100.1"))
    ipam = Ipam(store)
    lease = ipam.allocate([pool], Owner("cafe01", "eth0", "flat", "default", "web-0", "node1"))[0]
    store.close()
    url = f"sqlite:{db}"
    proc = flatnet("ipam", "ls", "--store", url)
    assert proc.returncode == 0, proc.stderr
    for word in ("flat-v4", str(lease.address.ip), "cafe01", "eth0", "default/web-0", "node1"):
        assert word in proc.stdout
    proc = flatnet("ipam", "show", str(lease.address.ip), "--store", url)
    assert proc.returncode == 0 and "cafe01" in proc.stdout
    proc = flatnet("ipam", "release", "--pool", "flat-v4", "--ip", str(lease.address.ip), "--store", url)
    assert proc.returncode == 0 and "released" in proc.stdout
    proc = flatnet("ipam", "show", str(lease.address.ip), "--store", url)
    assert proc.returncode == 1 and "not leased" in proc.stdout


def test_agent_runs_answers_and_stops_on_sigterm(tmp_path: Any) -> None:
    sock = tmp_path / "run" / "agent.sock"
    proc = spawn_agent(str(sock), "--store", "memory", "--lock-dir", str(tmp_path / "locks"), "--node", "n1")
    try:
        from flatnet.agent.protocol import request

        wait_for_socket(proc, str(sock), 20)
        reply = request(str(sock), {"v": 1, "op": "status"}, timeout=10)
        assert reply["exit"] == 0 and reply["metrics"]["adds"] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert not sock.exists()
        assert "serving" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_agent_refuses_a_negative_reconcile_interval_before_starting(tmp_path: Any) -> None:
    sock = tmp_path / "run" / "agent.sock"
    proc = flatnet("agent", "--socket", str(sock), "--reconcile-every", "-1", "--lock-dir", str(tmp_path / "locks"))
    assert proc.returncode == 2
    assert "--reconcile-every must be >= 0" in proc.stderr and "Traceback" not in proc.stderr
    assert not sock.parent.exists()  # nothing was set up


def test_tooling_commands_come_from_flatnet_lab_and_say_how_to_install_it_when_absent(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """lab/check/bench are flatnet-lab's entry points; without them each name still parses and
    says how to install the tooling, and the runtime's own commands still work."""
    import flatnet.cli.main as cli_main

    found = {ep.name: ep.value for ep in cli_main.entry_points(group="flatnet.commands")}
    assert found == {
        "lab": "flatnet_lab.cli.lab:register",
        "check": "flatnet_lab.cli.check:register",
        "bench": "flatnet_lab.cli.bench:register",
    }
    monkeypatch.setattr(cli_main, "entry_points", lambda group: [])
    assert cli_main.main(["bench", "--quick"]) == 1
    err = capsys.readouterr().err
    assert "'flatnet bench' is part of the tooling (flatnet-lab), which is not installed" in err
    assert "pip install ./tooling" in err and "Traceback" not in err
    assert cli_main.main(["version"]) == 0  # the other commands still work


def test_a_tooling_dependency_missing_names_it_and_an_own_import_error_is_raised(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import flatnet.cli.main as cli_main

    class Ep:
        def __init__(self, name: str, missing: str) -> None:
            self.name, self.missing = name, missing

        def load(self) -> Any:
            raise ModuleNotFoundError(f"No module named {self.missing!r}", name=self.missing)

    monkeypatch.setattr(cli_main, "entry_points", lambda group: [Ep("bench", "matplotlib")])
    assert cli_main.main(["bench"]) == 1
    assert "whose dependency 'matplotlib' is not installed" in capsys.readouterr().err
    monkeypatch.setattr(cli_main, "entry_points", lambda group: [Ep("lab", "flatnet_lab.lab.gone")])
    with pytest.raises(ModuleNotFoundError):
        cli_main.build_parser()
