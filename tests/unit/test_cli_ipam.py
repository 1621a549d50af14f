"""``flatnet ipam ls``: leases next to reservations, --json, the agent's store found without
--store, and a read that never creates a store."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flatnet.ipam import Ipam, Owner, PoolSpec
from flatnet.ipam.store import open_store
from tests.helpers.cli import spawn_agent, stop_agent, wait_for_socket


def flatnet(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "flatnet.cli.main", *argv], capture_output=True, text=True, timeout=60, env=full
    )


def _sticky_store(db: Path) -> None:
    """One live lease, one reservation, one reservation taken over, in a 2-address pool."""
    store = open_store({"type": "sqlite", "path": str(db)})
    try:
        ipam = Ipam(store)
        pool = PoolSpec(
            "flat-v4",
            ipaddress.ip_network("198.18.100.0/24"),
            range_start=ipaddress.ip_address("198.18.100.10"),
            range_end=ipaddress.ip_address("198.18.100.11"),
            sticky=True,
        )
        for cid, pod in (("c-redis", "redis-0"), ("c-web", "web-abc12"), ("c-api", "api-xyz34")):
            ipam.allocate([pool], Owner(cid, "eth0", "flat", "default", pod, "node1"))
            if cid != "c-api":
                ipam.release(cid, "eth0")
    finally:
        store.close()


def test_ls_shows_leases_reservations_and_counters(tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    _sticky_store(db)
    proc = flatnet("ipam", "ls", "--store", f"sqlite:{db}")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "1 lease(s)" in out and "c-api" in out and "default/api-xyz34" in out
    assert "1 reservation(s)" in out and "default/web-abc12" in out and "sticky (pod gone)" in out
    assert "pool flat-v4: takeovers 1" in out
    proc = flatnet("ipam", "ls", "--store", f"sqlite:{db}", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [(l["address"], l["pod"]) for l in data["leases"]] == [("198.18.100.10/24", "default/api-xyz34")]
    (res,) = data["reservations"]
    assert (res["address"], res["pod"], res["pool"]) == ("198.18.100.11", "default/web-abc12", "flat-v4")
    assert res["until"] > res["since"] and data["pools"] == {"flat-v4": {"takeovers": 1}}


def test_read_commands_never_create_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "mistyped" / "dir" / "x.db"
    for argv in (["ls"], ["show", "198.18.100.10"], ["release", "--container", "c", "--ifname", "eth0"]):
        proc = flatnet("ipam", *argv, "--store", f"sqlite:{missing}")
        assert proc.returncode == 1, proc.stdout
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert f"no flatnet store exists at {missing}" in proc.stderr and "--store" in proc.stderr
    assert not (tmp_path / "mistyped").exists()
    # a missing file in an existing directory: the same, and no file appears
    proc = flatnet("ipam", "ls", "--store", f"sqlite:{tmp_path / 'x.db'}")
    assert proc.returncode == 1 and "the file does not exist" in proc.stderr
    assert not (tmp_path / "x.db").exists()


def test_ls_finds_the_store_of_the_nodes_agent(tmp_path: Path) -> None:
    db = tmp_path / "state" / "ipam.db"
    db.parent.mkdir()
    _sticky_store(db)
    sock = tmp_path / "run" / "agent.sock"
    agent = spawn_agent(
        str(sock),
        "--store",
        f"sqlite:{db}",
        "--lock-dir",
        str(tmp_path / "locks"),
        "--node",
        "node1",
        "--reconcile-every",
        "0",
        "-q",
        "--state-dir",
        str(tmp_path / "agent-state"),
    )
    try:
        wait_for_socket(agent, str(sock), 30)
        assert sock.exists(), agent.stderr.read() if agent.poll() is not None else "no socket"
        state: dict[str, Any] = json.loads((sock.parent / "stores.json").read_text())
        assert state["stores"] == [{"type": "sqlite", "path": str(db)}]
        proc = flatnet("ipam", "ls", "--json", env={"FLATNET_AGENT_SOCKET": str(sock)})
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert [l["container"] for l in data["leases"]] == ["c-api"]
        assert data["leases"][0]["store"] == f"sqlite:{db}"
    finally:
        stop_agent(agent)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to write a root-only stores.json and drop to nobody")
def test_ls_as_a_non_root_user_says_it_cannot_read_the_agents_record(tmp_path: Path) -> None:
    """stores.json is 0600: a user who cannot read it is told so, not shown the default store.

    A forked child drops to uid/gid 65534 and runs the CLI (the venv's interpreter may sit
    where that user cannot exec it, so the child keeps this one)."""
    os.chmod(tmp_path, 0o755)
    state = tmp_path / "stores.json"
    state.write_text(json.dumps({"stores": [{"type": "sqlite", "path": f"{tmp_path}/ipam.db"}]}))
    os.chmod(state, 0o600)
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.dup2(err_w, 2)
            sys.stderr = open(err_w, "w", closefd=False)  # noqa: SIM115 - pytest captures sys.stderr
            # what the command imports, loaded first: the interpreter's own library may sit
            # where that user cannot read it (here: under /root)
            import flatnet.agent.storestate  # noqa: F401
            import flatnet.cli.ipam  # noqa: F401
            import flatnet.cli.main  # noqa: F401
            import flatnet.obs.logs  # noqa: F401

            parser = flatnet.cli.main.build_parser()  # every subcommand's module, imported now
            flatnet.cli.main.build_parser = lambda: parser  # type: ignore[assignment]
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            os.environ["FLATNET_AGENT_SOCKET"] = f"{tmp_path}/agent.sock"
            from flatnet.cli.main import main

            code = main(["ipam", "ls"])
        except BaseException as exc:  # noqa: BLE001 - reported through the exit code and stderr
            import traceback

            traceback.print_exc()
            code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 98
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(err_w)
    with os.fdopen(err_r) as fh:
        stderr = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1, stderr
    assert f"cannot read {state}" in stderr and "permission denied" in stderr, stderr
    assert "Traceback" not in stderr and "no flatnet store exists" not in stderr


def _podman_like_store(db: Path) -> tuple[str, str, str]:
    """Three leases held by 64-hex container IDs, two of them sharing their first 4 characters."""
    a, b, c = "6b3c" + "1" * 60, "6b3c" + "2" * 60, "157b900f23bd76e" + "3" * 49
    store = open_store({"type": "sqlite", "path": str(db)})
    try:
        pool = PoolSpec("flat-v4", ipaddress.ip_network("198.18.100.0/24"))
        for cid in (a, b, c):
            Ipam(store).allocate([pool], Owner(cid, "eth0", "flat", None, None, "node1"))
    finally:
        store.close()
    return a, b, c


def test_container_ids_are_taken_by_unique_prefix_and_ambiguity_is_an_error(tmp_path: Path) -> None:
    db = tmp_path / "ipam.db"
    a, b, c = _podman_like_store(db)
    store = ["--store", f"sqlite:{db}"]
    # the table shows the short ID podman shows, whole (no ellipsis), and it pastes back
    proc = flatnet("ipam", "ls", *store, env={"COLUMNS": "60"})
    assert proc.returncode == 0 and c[:12] in proc.stdout and "…" not in proc.stdout, proc.stdout
    assert c not in proc.stdout
    assert c in flatnet("ipam", "ls", *store, "--no-trunc", env={"COLUMNS": "200"}).stdout
    proc = flatnet("ipam", "show", c[:12], *store)
    assert proc.returncode == 0 and "198.18.100." in proc.stdout and c in proc.stdout, proc.stdout
    proc = flatnet("ipam", "ls", *store, "--container", a[:6], "--json")
    assert [l["container"] for l in json.loads(proc.stdout)["leases"]] == [a]

    for argv in (
        ["show", "6b3c"],
        ["ls", "--container", "6b3c"],
        ["release", "--container", "6b3c", "--ifname", "eth0"],
    ):
        proc = flatnet("ipam", *argv, *store)
        assert proc.returncode == 1 and "ambiguous" in proc.stderr and a[:12] in proc.stderr and b[:12] in proc.stderr
        assert "more characters" in proc.stderr and "Traceback" not in proc.stderr
    assert len(_held(db)) == 3, "an ambiguous release must release nothing"

    proc = flatnet("ipam", "release", "--container", c[:12], "--ifname", "eth0", *store)
    assert proc.returncode == 0 and "released 198.18.100." in proc.stdout and c in proc.stdout, proc.stdout
    assert c not in _held(db) and len(_held(db)) == 2
    proc = flatnet("ipam", "release", "--container", c[:12], "--ifname", "eth0", *store)
    assert proc.returncode == 0 and "holds no address" in proc.stdout, proc.stdout
    proc = flatnet("ipam", "release", "--container", a, "--ifname", "eth0", *store)  # the whole ID still works
    assert proc.returncode == 0 and a in proc.stdout and _held(db) == [b]


def _held(db: Path) -> list[str]:
    store = open_store({"type": "sqlite", "path": str(db)})
    try:
        return sorted(l.owner.container_id for l in Ipam(store).leases())
    finally:
        store.close()
