"""Control plane: CNI ADD/DEL latency, a 100-pod burst, and the agent's memory.

Three subjects, all exec'd the same way (``ip netns exec <node> <plugin>``, CNI_* env,
config on stdin) against pod namespaces created beforehand, as a runtime does:
  flatnet (agent)       the native forwarder (/opt/cni/bin/flatnet) handing the call to a
                        running ``flatnet agent``
  flatnet (in-process)  the same forwarder with no agent: it execs ``flatnet-inprocess``
                        ($FLATNET_INPROCESS), which runs the service itself
  bridge+host-local     the reference plugins from /usr/lib/cni (the baseline)
Creating a pod's netns is not timed; only the plugin exec is. The floors of that exec are
measured alongside (``exec floor``): ``ip netns exec`` of /bin/true, and of the Python
interpreter doing nothing (``python -I -S -c pass``) -- what the in-process mode pays first;
and VERSION (answered by the executable itself) of flatnet and of the reference plugin.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from flatnet_lab import forwarder
from flatnet_lab.bench.cniexec import IP, REF_CNI_DIR, Call, exec_plugin, install_forwarder
from flatnet_lab.bench.nsenv import Scratch
from flatnet_lab.bench.profile import Profile
from flatnet_lab.launch import agent_argv, spawn, stop_proc, wait_agent
from flatnet_lab.bench.results import Results
from flatnet_lab.bench.stats import percentile
from flatnet.errors import FlatnetError

SECTION = "control plane"
AGENT, INPROC, REF = "flatnet (agent)", "flatnet (in-process)", "bridge+host-local"
#: the agent with its VLAN conflict probe off (agent/probing.py): what the probe costs an ADD
NOPROBE = "flatnet (agent, conflict probe off)"
FLOOR = "exec floor"
SUBJECTS = (AGENT, INPROC, REF)
CNI_VERSION = "1.0.0"
Tick = Callable[[str], None]


@dataclass
class Subject:
    name: str
    binary: str
    conf: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` from /proc/<pid>/status (VmRSS, KiB)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise FlatnetError(f"bench: no VmRSS for pid {pid}", "is the agent still running?")


class ControlBench:
    """One run of the control-plane measurements; ``scratch`` owns every namespace."""

    def __init__(self, profile: Profile, results: Results, scratch: Scratch, tmp: str, tick: Tick) -> None:
        self.p, self.r, self.s, self.tmp, self.tick = profile, results, scratch, tmp, tick
        self.node = ""
        self.agent: subprocess.Popen | None = None
        self.sock = os.path.join(tmp, "agent.sock")
        self.burst_failures: dict[str, list[str]] = {}
        self._seq = itertools.count(1)  # next() is atomic: pod names from many threads
        self._p50: dict[str, float] = {}  # ADD p50 (s) of each subject's last sequential run

    # -- setup ---------------------------------------------------------------
    def _subjects(self) -> list[Subject]:
        shim = install_forwarder(os.path.join(self.tmp, "bin"))

        def flat(pool: str, subnet: str, db: str, sock: str, probe: bool = True) -> dict[str, Any]:
            return {
                "cniVersion": CNI_VERSION,
                "name": f"fnb-{pool}",
                "type": "flatnet",
                "mode": "macvlan",
                "master": "vp0",
                "hostNetns": self.node,
                "agentSocket": sock,
                "ipam": {
                    "pools": [{"name": f"fnb-{pool}", "subnet": subnet, "conflictProbe": probe}],
                    "store": {"type": "sqlite", "path": os.path.join(self.tmp, db)},
                },
            }

        inproc_env = {
            "FLATNET_INPROCESS": forwarder.inprocess_entry(),
            "FLATNET_LOCK_DIR": os.path.join(self.tmp, "locks"),
            "FLATNET_NODE": "bench",
            "FLATNET_HOST_NETNS": self.node,
        }
        ref = {
            "cniVersion": CNI_VERSION,
            "name": "fnb-ref",
            "type": "bridge",
            "bridge": "fnbb0",
            "isGateway": False,
            "ipMasq": False,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "198.18.160.0/20"}]],
                "dataDir": os.path.join(self.tmp, "host-local"),
            },
        }
        return [
            Subject(AGENT, shim, flat("agent", "198.18.128.0/20", "agent.db", self.sock)),
            Subject(
                INPROC,
                shim,
                flat("inproc", "198.18.144.0/20", "inproc.db", os.path.join(self.tmp, "no-agent.sock")),
                inproc_env,
            ),
            Subject(REF, os.path.join(REF_CNI_DIR, "bridge"), ref),
            Subject(NOPROBE, shim, flat("noprobe", "198.18.176.0/20", "agent.db", self.sock, False)),
        ]

    def start_agent(self) -> int:
        """Start ``flatnet agent`` serving the node netns; return its pid once it answers."""
        argv = agent_argv(
            self.sock,
            netns=self.node,
            node="bench",
            quiet=True,
            store=f"sqlite:{os.path.join(self.tmp, 'agent.db')}",
            lock_dir=os.path.join(self.tmp, "locks"),
        )
        log = os.path.join(self.tmp, "agent.log")
        self.agent = self.s.track(spawn(argv, log))
        wait_agent(self.agent, self.sock, 20.0, log)  # FlatnetError naming the log if it does not
        return self.agent.pid

    # -- one pod -------------------------------------------------------------
    def _new_call(self) -> Call:
        k = next(self._seq)
        ns = self.s.netns(f"p{k}")
        return Call(uuid.uuid4().hex, ns, "eth0", pod=f"p{k}")

    def _add(self, sub: Subject, call: Call) -> tuple[float, dict[str, Any]]:
        return exec_plugin(
            sub.binary, "ADD", call, sub.conf, self.node, f"{os.path.dirname(sub.binary)}:{REF_CNI_DIR}", sub.env
        )

    def _del(self, sub: Subject, call: Call, prev: dict[str, Any]) -> float:
        conf = {**sub.conf, "prevResult": prev} if prev else sub.conf
        took, _ = exec_plugin(
            sub.binary, "DEL", call, conf, self.node, f"{os.path.dirname(sub.binary)}:{REF_CNI_DIR}", sub.env
        )
        return took

    # -- measurements ----------------------------------------------------------
    def run(self) -> None:
        self.node = self.s.node_with_parent()
        subjects = self._subjects()
        self.tick("control plane: starting the agent")
        pid = self.start_agent()
        idle = rss_kib(pid)
        for rep in range(self.p.repeats):
            for sub in subjects:
                self.tick(f"control plane: {sub.name} sequential ADD/DEL (repeat {rep + 1})")
                self._sequential(sub)
                if sub.name == NOPROBE:  # only what the probe costs one ADD
                    continue
                self.tick(f"control plane: {sub.name} burst of {self.p.cni_burst} (repeat {rep + 1})")
                self._burst(sub)
            on, off = self._p50[AGENT], self._p50[NOPROBE]
            self.r.add(SECTION, AGENT, "conflict probe cost (ADD p50 on - off)", "ms", (on - off) * 1e3)
            self.tick(f"control plane: exec floors (repeat {rep + 1})")
            self._floors()
            self._versions([s for s in subjects if s.name != NOPROBE])
        self.r.add(SECTION, AGENT, "agent RSS idle", "MiB", idle / 1024)
        for name, fails in self.burst_failures.items():
            n = self.p.cni_burst
            self.r.notes.append(
                f"{name}: {len(fails)} of {2 * n * self.p.repeats} calls in "
                f"{self.p.repeats} bursts of {n} pods failed (not retried), "
                f"e.g. {fails[0][:200]}"
            )
        self.tick(f"control plane: agent memory with {self.p.agent_pods} pods")
        self._loaded_memory(subjects[0], pid)

    def _sequential(self, sub: Subject) -> None:
        adds, dels = [], []
        for _ in range(self.p.cni_sequential):
            call = self._new_call()
            took, result = self._add(sub, call)
            adds.append(took)
            dels.append(self._del(sub, call, result))
            self.s.drop(call.netns)
        self._p50[sub.name] = percentile(adds, 50)
        for verb, xs in (("ADD", adds), ("DEL", dels)):
            self.r.add(SECTION, sub.name, f"{verb} p50", "ms", percentile(xs, 50) * 1e3)
            self.r.add(SECTION, sub.name, f"{verb} p99", "ms", percentile(xs, 99) * 1e3)

    def _floors(self) -> None:
        """p50 of exec'ing nothing: /bin/true, and the plugin's interpreter with -I -S."""
        for metric, argv in (
            ("/bin/true p50", ["/bin/true"]),
            ("python -IS start p50", [sys.executable, "-I", "-S", "-c", "pass"]),
        ):
            took = []
            for _ in range(self.p.cni_sequential):
                t0 = time.perf_counter()
                subprocess.run(
                    [IP, "netns", "exec", self.node, *argv], check=True, stdin=subprocess.DEVNULL, capture_output=True
                )
                took.append(time.perf_counter() - t0)
            self.r.add(SECTION, FLOOR, metric, "ms", percentile(took, 50) * 1e3)

    def _versions(self, subjects: list[Subject]) -> None:
        """p50 of VERSION, which a plugin answers by itself: its bare start-up cost."""
        call = Call("version", "none")
        for sub in subjects:
            if sub.name == INPROC:  # the same executable as AGENT answers VERSION
                continue
            took = [
                exec_plugin(sub.binary, "VERSION", call, {"cniVersion": CNI_VERSION}, self.node, REF_CNI_DIR)[0]
                for _ in range(self.p.cni_sequential)
            ]
            self.r.add(SECTION, sub.name, "VERSION p50", "ms", percentile(took, 50) * 1e3)

    def _burst(self, sub: Subject) -> None:
        """All pods at once; failed calls are counted (and reported), not hidden or retried."""
        calls = [self._new_call() for _ in range(self.p.cni_burst)]
        failures: list[str] = []

        def add(call: Call) -> dict[str, Any] | None:
            try:
                return self._add(sub, call)[1]
            except FlatnetError as exc:
                failures.append(f"ADD: {exc.msg}")
                return None

        def delete(pair: tuple[Call, dict[str, Any] | None]) -> None:
            try:
                self._del(sub, pair[0], pair[1] or {})
            except FlatnetError as exc:
                failures.append(f"DEL: {exc.msg}")

        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            t0 = time.perf_counter()
            results = list(pool.map(add, calls))
            add_total = time.perf_counter() - t0
            t0 = time.perf_counter()
            list(pool.map(delete, zip(calls, results, strict=False)))
            del_total = time.perf_counter() - t0
        n = self.p.cni_burst
        self.r.add(SECTION, sub.name, f"burst {n} ADD total", "s", add_total)
        self.r.add(SECTION, sub.name, f"burst {n} DEL total", "s", del_total)
        self.r.add(SECTION, sub.name, f"burst {n} failed calls", "count", len(failures))
        if failures:
            self.burst_failures.setdefault(sub.name, []).extend(failures)
        for call in calls:
            self.s.drop(call.netns)

    def _loaded_memory(self, sub: Subject, pid: int) -> None:
        """Real ADDs through the agent until the budget runs out; the rest as direct leases."""
        target, budget = self.p.agent_pods, self.p.agent_add_budget
        deadline = time.monotonic() + budget
        done = 0

        def one(_: int) -> int:
            if time.monotonic() > deadline:
                return 0
            self._add(sub, self._new_call())
            return 1

        with ThreadPoolExecutor(max_workers=4) as pool:
            done = sum(pool.map(one, range(target)))
        direct = target - done
        if direct:
            self._direct_leases(direct)
        mib = rss_kib(pid) / 1024
        self.r.add(SECTION, AGENT, f"agent RSS with {target} pods", "MiB", mib)
        how = (
            f"{done} real ADDs through the agent"
            if not direct
            else f"{done} real ADDs through the agent in the {budget:.0f} s budget, then "
            f"{direct} leases written straight into the agent's store"
        )
        self.r.notes.append(f"Agent memory with {target} pods: {how}.")

    def _direct_leases(self, count: int) -> None:
        import ipaddress

        from flatnet.ipam import Ipam, Owner, PoolSpec, open_store

        store = open_store({"type": "sqlite", "path": os.path.join(self.tmp, "agent.db")})
        try:
            ipam = Ipam(store)
            pool = PoolSpec("fnb-agent", ipaddress.ip_network("198.18.128.0/20"))
            for i in range(count):
                ipam.allocate([pool], Owner(uuid.uuid4().hex, "eth0", "fnb-agent", "bench", f"direct{i}", "bench"))
        finally:
            store.close()

    def close(self) -> None:
        if self.agent is not None:
            stop_proc(self.agent, timeout=5.0, kill_wait=5.0)
