"""The lab's lifecycle with real namespaces and real agent processes.

up -> status -> down must leave nothing behind (namespace, process, socket, file), also
twice in a row, after a crashed ``up`` and when ``up`` is re-run on a damaged lab.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Iterator

import pytest

from flatnet_lab.testbed import net as labnet
from tests.helpers.net import ping
from flatnet.datapath.netns import iproute
from flatnet_lab.etcd import ETCD_BIN
from flatnet_lab.lab import manager, procs
from flatnet_lab.lab.topology import PREFIX, default_topology

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
]


@pytest.fixture
def lab() -> Iterator[None]:
    """Exclusive use of the lab; whatever a test leaves is removed, even on failure."""
    with manager.exclusive():
        manager.down()  # leftovers of an earlier crashed run
        try:
            yield
        finally:
            manager.down()


def _pid_exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _assert_nothing_left(pids: list[int]) -> None:
    assert labnet.list_namespaces(PREFIX) == []
    assert not os.path.exists(procs.LAB_DIR), os.listdir(procs.LAB_DIR)
    assert procs.lab_pids() == []
    alive = [p for p in pids if _pid_exists(p)]
    assert alive == [], f"lab processes still running: {alive}"


def test_up_status_down_twice_leaves_nothing(lab: None) -> None:
    topo = default_topology(3)
    for _round in range(2):
        manager.up(nodes=3)
        st = manager.status()
        assert st.up and st.store == "sqlite"
        assert [n.name for n in st.nodes] == ["node1", "node2", "node3"]
        assert all(n.ns_exists and n.agent_alive and n.agent_answers for n in st.nodes), st.nodes
        assert sorted(st.namespaces) == sorted(topo.namespaces)
        pids = [n.agent_pid for n in st.nodes if n.agent_pid]
        assert len(set(pids)) == 3
        socks = [procs.agent_socket(n.name) for n in topo.nodes]
        assert all(os.path.exists(s) for s in socks)
        res = manager.down()
        assert res["namespaces"] == len(topo.namespaces)
        _assert_nothing_left(pids)
        assert not any(os.path.exists(s) for s in socks)
        assert manager.status().up is False


def test_up_twice_is_idempotent_and_repairs(lab: None) -> None:
    manager.up(nodes=2)
    before = {n.name: n.agent_pid for n in manager.status().nodes}
    manager.up(nodes=2)  # nothing to do: same agents, same namespaces
    after = manager.status()
    assert {n.name: n.agent_pid for n in after.nodes} == before
    assert all(n.agent_answers for n in after.nodes)
    # damage it the way a crash would: a namespace gone, half a veth pair, a dead agent
    labnet.remove_netns(f"{PREFIX}vm2")
    with iproute(f"{PREFIX}sw") as ip:
        ip.link("del", index=ip.link_lookup(ifname="vm1")[0])
    os.kill(before["node2"], signal.SIGKILL)  # type: ignore[arg-type]
    assert not ping(f"{PREFIX}vm1", "198.18.100.11", tries=1, wait=1)
    manager.up(nodes=2)
    st = manager.status()
    assert all(n.agent_answers for n in st.nodes), st.nodes
    assert {n.name: n.agent_pid for n in st.nodes}["node1"] == before["node1"]
    assert {n.name: n.agent_pid for n in st.nodes}["node2"] != before["node2"]
    assert ping(f"{PREFIX}vm1", "198.18.100.11", tries=1, wait=1)
    assert ping(f"{PREFIX}vm2", "198.18.100.12", tries=1, wait=1)


def test_up_refuses_a_different_shape(lab: None) -> None:
    manager.up(nodes=1, agents=False)
    with pytest.raises(Exception) as info:
        manager.up(nodes=2, agents=False)
    assert "lab down" in getattr(info.value, "details", "")


def test_down_after_crashed_up_leaves_nothing(lab: None) -> None:
    manager.up(nodes=3)
    pids = [n.agent_pid for n in manager.status().nodes if n.agent_pid]
    for pid in pids:  # the agents crash ...
        os.kill(pid, signal.SIGKILL)
    os.unlink(procs.path("state.json"))  # ... and so did up, before it finished
    # a server somebody started inside a lab host must go too
    sleeper = labnet.spawn(f"{PREFIX}vm1", ["sleep", "60"])
    try:
        assert manager.status().namespaces  # namespaces are left over
        manager.down()
        sleeper.wait(timeout=10)
        _assert_nothing_left([*pids, sleeper.pid])
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait(timeout=5)


def test_status_says_partial_after_an_up_that_did_not_finish(lab: None) -> None:
    """An up interrupted half-way (Ctrl-C, crash) must not be reported as "up"; the next up
    completes it."""

    class Interrupted(Exception):
        pass

    def progress(msg: str, _done: int, _total: int) -> None:
        if msg == "starting the agent of node2":
            raise Interrupted(msg)

    with pytest.raises(Interrupted):
        manager.up(nodes=3, progress=progress)
    st = manager.status()
    assert st.up is False and st.namespaces  # something exists, but it is not a whole lab
    manager.up(nodes=3)
    st = manager.status()
    assert st.up is True and all(n.agent_answers for n in st.nodes)


def test_down_with_only_some_namespaces(lab: None) -> None:
    """A crash right after the first namespaces: no state dir at all, down still cleans."""
    for ns in (f"{PREFIX}sw", f"{PREFIX}node1"):
        labnet.ensure_netns(ns)
    assert manager.status().up is False
    manager.down()
    _assert_nothing_left([])


@pytest.mark.etcd
@pytest.mark.skipif(not os.access(ETCD_BIN, os.X_OK), reason="no etcd binary")
def test_up_with_etcd_store(lab: None) -> None:
    manager.up(nodes=1, store="etcd")
    st = manager.status()
    assert st.store == "etcd" and st.etcd_alive is True
    assert all(n.agent_answers for n in st.nodes)
    etcd_pid = procs.read_pid("etcd")
    assert etcd_pid and _pid_exists(etcd_pid)
    manager.down()
    deadline = time.monotonic() + 10
    while _pid_exists(etcd_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    _assert_nothing_left([etcd_pid])


def test_cli_needs_root_message() -> None:
    """As a normal user the command says in one line that root is needed (no traceback)."""
    import sys

    code = (
        "import os, sys; from flatnet.cli.main import main, build_parser; "
        "import flatnet_lab.cli.lab; build_parser(); os.setuid(65534); "
        "sys.exit(main(['lab', 'status']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1
    assert "needs root" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
