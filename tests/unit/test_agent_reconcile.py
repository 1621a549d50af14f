"""The agent's leak reconciler: reclaims only what is provably gone, never a live pod's lease."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from flatnet.agent import nsproof
from flatnet.agent.reconcile import Reconciler, netns_gone
from test_agent_service import Harness, make_conf


@pytest.fixture
def h(tmp_path: Any) -> Harness:
    return Harness(tmp_path)


def _netns_file(tmp_path: Any, name: str) -> str:
    d = tmp_path / "netns"
    d.mkdir(exist_ok=True)
    path = d / name
    path.write_text("")
    return str(path)


def test_netns_gone_is_conservative(tmp_path: Any) -> None:
    present = _netns_file(tmp_path, "p1")
    seen = nsproof.record(present)
    assert seen and seen.startswith("file:")
    assert not netns_gone(present, seen)
    os.unlink(present)
    assert netns_gone(present, seen)  # the very directory it was in, and it is not there
    assert not netns_gone(present, None)  # nothing recorded at ADD: decide nothing
    # another directory at that path (another mount namespace's /run/netns): decide nothing
    os.rename(tmp_path / "netns", tmp_path / "netns-old")
    (tmp_path / "netns").mkdir()
    assert not netns_gone(present, seen)
    assert not netns_gone(str(tmp_path / "no-such-dir" / "p1"), seen)
    assert not netns_gone("", seen)
    assert not netns_gone("relative/path", seen)


def test_proc_netns_gone_only_in_the_same_pid_namespace() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        path = f"/proc/{child.pid}/ns/net"
        seen = nsproof.record(path)
        assert seen and seen.startswith("proc:")
        assert not netns_gone(path, seen)
        _, view, net = seen.split(":")
        # the same number now names a process in another netns: the pod's process is gone
        assert netns_gone(path, f"proc:{view}:0.0")
        # recorded through another PID namespace's /proc: its numbers say nothing here
        assert not netns_gone(path, f"proc:0.0:{net}")
        assert not netns_gone(path, None)
    finally:
        child.kill()
        child.wait()
    assert netns_gone(path, seen)
    assert not netns_gone(path, f"proc:0.0:{net}")


def test_reclaims_after_two_passes_only_what_is_gone(h: Harness, tmp_path: Any) -> None:
    conf = make_conf()
    live, gone = _netns_file(tmp_path, "live"), _netns_file(tmp_path, "gone")
    assert h.call("ADD", conf, cid="live", netns=live)[0] == 0
    assert h.call("ADD", conf, cid="gone", netns=gone)[0] == 0
    os.unlink(gone)
    rec = Reconciler(h.svc, interval=0)
    first = rec.run_once()
    assert (first.checked, first.suspects, first.reclaimed) == (2, 1, [])
    assert len(h.leases(conf)) == 2  # one sighting is not enough
    second = rec.run_once()
    assert len(second.reclaimed) == 1 and second.reclaimed[0].startswith("gone/eth0")
    assert [l.owner.container_id for l in h.leases(conf)] == ["live"]
    assert (gone, "eth0") not in h.dp.attachments and (live, "eth0") in h.dp.attachments
    assert rec.run_once().reclaimed == []


def test_a_container_that_comes_back_is_left_alone(h: Harness, tmp_path: Any) -> None:
    """Between the two sightings the runtime DELs and ADDs the same container again
    (new lease record): the reconciler must not reclaim the new attachment."""
    conf = make_conf()
    path = _netns_file(tmp_path, "p")
    assert h.call("ADD", conf, cid="c", netns=path)[0] == 0
    os.unlink(path)
    rec = Reconciler(h.svc, interval=0)
    assert rec.run_once().suspects == 1
    assert h.call("DEL", conf, cid="c", netns=path)[0] == 0
    _netns_file(tmp_path, "p")
    assert h.call("ADD", conf, cid="c", netns=path)[0] == 0
    os.unlink(path)  # gone again, but this is a new lease: a first sighting
    assert rec.run_once().reclaimed == []
    assert len(h.leases(conf)) == 1


def test_a_busy_container_is_skipped(h: Harness, tmp_path: Any) -> None:
    conf = make_conf()
    path = _netns_file(tmp_path, "p")
    assert h.call("ADD", conf, cid="busy", netns=path)[0] == 0
    os.unlink(path)
    rec = Reconciler(h.svc, interval=0)
    rec.run_once()
    with h.svc.locks.hold("busy"):  # an ADD/DEL in flight holds it
        assert rec.run_once().reclaimed == []
    assert len(h.leases(conf)) == 1
    assert len(rec.run_once().reclaimed) == 1


def test_other_nodes_and_unrecorded_netns_are_never_touched(h: Harness, tmp_path: Any) -> None:
    conf = make_conf()
    path = _netns_file(tmp_path, "p")
    assert h.call("ADD", conf, cid="mine", netns=path)[0] == 0
    os.unlink(path)
    h.svc.node = "node2"  # the same store seen from another node's agent
    rec = Reconciler(h.svc, interval=0)
    rec.run_once()
    assert rec.run_once().reclaimed == [] and len(h.leases(conf)) == 1


def test_light_passes_reclaim_a_known_attachment_without_reading_every_lease(h: Harness, tmp_path: Any) -> None:
    conf = make_conf()
    gone = _netns_file(tmp_path, "gone")
    assert h.call("ADD", conf, cid="gone", netns=gone)[0] == 0
    rec = Reconciler(h.svc, interval=60)  # periodic: the first pass is full, the next ones light
    assert rec.run_once().checked == 1 and rec.records_read == 1
    os.unlink(gone)
    assert not rec.full_due()
    first = rec.run_once()
    assert (first.checked, first.suspects, rec.records_read) == (1, 1, 0)
    second = rec.run_once()
    assert len(second.reclaimed) == 1 and h.leases(conf) == [] and rec.records_read == 0
    assert rec.run_once().checked == 0
