"""The leak reconciler run in another PID (and mount) namespace than the ADD, as a DaemonSet
agent without hostPID would be: it must never reclaim a live pod, and still reclaims a pod
that is provably gone in its own view.

Pods are real processes in real network namespaces (``unshare --net sleep``), their CNI_NETNS a
``/proc/<pid>/ns/net`` path as cri-dockerd hands out; the store is a real SQLite file shared by
both sides. The datapath is the fake one: plumbing is not what is under test here, the
evidence of "gone" is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any, Iterator

import pytest

pytestmark = pytest.mark.netns

if os.geteuid() != 0:
    pytest.skip("needs root (PID and network namespaces)", allow_module_level=True)

# one side of the test: ADD a pod (a process in its own netns) through Service, or run passes
CHILD = textwrap.dedent("""
    import io, json, os, subprocess, sys, time
    from flatnet.agent.service import Service
    from flatnet.agent.reconcile import Reconciler
    from flatnet.cni import dispatch
    from flatnet.datapath.fake import FakeDatapath

    tmp, what = sys.argv[1], sys.argv[2]
    conf = {"cniVersion": "1.0.0", "name": "fni-flat", "type": "flatnet", "mode": "macvlan",
            "master": "fni-parent",
            "ipam": {"pools": [{"name": "fni-v4", "subnet": "198.18.130.0/24"}],
                     "store": {"type": "sqlite", "path": tmp + "/ipam.db"}}}
    dp = FakeDatapath()
    svc = Service(node="fni-node", lock_dir=tmp + "/locks", datapath_factory=lambda m: dp)

    def add(cid, netns):
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": cid, "CNI_IFNAME": "eth0",
               "CNI_NETNS": netns, "CNI_PATH": "/opt/cni/bin"}
        out = io.StringIO()
        assert dispatch(svc, env, json.dumps(conf).encode(), out, io.StringIO()) == 0, out.getvalue()

    def pod():
        p = subprocess.Popen(["unshare", "--net", "sleep", "120"])
        mine = os.stat("/proc/self/ns/net").st_ino
        for _ in range(200):  # until unshare has made the netns and exec'd sleep
            try:
                if os.stat(f"/proc/{p.pid}/ns/net").st_ino != mine:
                    return p
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        raise SystemExit("unshare --net did not start")

    if what == "add-live":
        add("fni-live", sys.argv[3])
        print(json.dumps({"ok": True}))
    else:
        live_path = sys.argv[3]
        legacy_gone = os.path.isdir("/proc/1") and not os.path.exists(
            "/proc/" + live_path.split("/")[2])
        gone = pod()
        add("fni-gone", f"/proc/{gone.pid}/ns/net")
        gone.kill(); gone.wait()
        rec = Reconciler(svc, interval=0)
        reports = [rec.run_once() for _ in range(3)]
        left = sorted(l.owner.container_id for l in svc.ipam(svc.served_networks()[0]).leases())
        print(json.dumps({"legacy_would_reclaim_live": legacy_gone, "left": left,
                          "reclaimed": [r.reclaimed for r in reports],
                          "pidns": os.readlink("/proc/self/ns/pid")}))
""")


@pytest.fixture
def tmp() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="fni-reconcile-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _run(argv: list[str]) -> dict[str, Any]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_reconciler_in_its_own_pid_namespace_never_reclaims_a_live_pod(tmp: str) -> None:
    live = subprocess.Popen(["unshare", "--net", "sleep", "120"])
    try:
        path = f"/proc/{live.pid}/ns/net"
        for _ in range(200):
            if os.path.exists(path) and os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino:
                break
            time.sleep(0.01)
        # ADD as the runtime's side sees it (the host's PID namespace)
        _run([sys.executable, "-c", CHILD, tmp, "add-live", path])
        # the agent's side: its own PID namespace and mount namespace (a fresh /proc)
        out = _run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", CHILD, tmp, "reconcile", path])
        assert out["pidns"] != os.readlink("/proc/self/ns/pid")  # it really ran elsewhere
        # the old rule ("/proc/<pid> missing") would have called the live pod gone there
        assert out["legacy_would_reclaim_live"]
        assert out["left"] == ["fni-live"], out  # live kept, the gone one reclaimed
        assert any(r and r[0].startswith("fni-gone/eth0") for r in out["reclaimed"]), out
        assert live.poll() is None  # and the live pod really was alive throughout
    finally:
        live.kill()
        live.wait()
