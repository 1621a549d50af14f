"""CRI: what a pod's network costs as kubelet sees it, through containerd's CRI.

Two private containerd nodes (``flatnet_lab.testbed.cri.CriNode``), one per subject, the same
chain shape (main plugin + portmap) and the same pause image:
  flatnet (agent)     flatnet in mode macvlan through its agent
  bridge+host-local   the reference plugins (the baseline)
Per repeat, ``cri_pods`` pods per subject: RunPodSandbox timed (its answer comes once the
network is up), then StopPodSandbox + RemovePodSandbox timed as one; the per-repeat p50s are
the samples. The subjects take turns pod by pod (who goes first flips every repeat), so that
a noisy second on this shared machine hits both alike, not one subject's whole block. Each node runs two untimed pods first (its first pod creates node
infrastructure: flatnet's shim, portmap's base chains).
"""

from __future__ import annotations

import secrets
import time
from contextlib import ExitStack
from typing import Callable

from flatnet import defaults
from flatnet_lab.bench.profile import Profile
from flatnet_lab.bench.results import Results
from flatnet_lab.bench.stats import percentile

SECTION = "cri"
AGENT, REF = "flatnet (agent)", "bridge+host-local"
RUN, STOP = "RunPodSandbox p50", "Stop+Remove p50"
Tick = Callable[[str], None]


class CriBench:
    def __init__(self, profile: Profile, results: Results, tick: Tick) -> None:
        self.p, self.r, self.tick = profile, results, tick

    def run(self) -> None:
        try:
            from flatnet_lab.testbed.cri import CriNode
        except ImportError as exc:  # grpcio/grpcio-tools: the bench and test extras
            for subject in (AGENT, REF):
                for metric in (RUN, STOP):
                    self.r.unavailable(SECTION, subject, metric, f"no CRI client: {exc}")
            return
        tag = secrets.token_hex(2)
        with ExitStack() as stack:
            nodes = {}
            for subject, network in ((REF, "bridge"), (AGENT, "flatnet")):
                self.tick(f"cri: starting containerd for {subject}")
                # the agent as the DaemonSet runs it: its reconciler on (the testbed's default
                # is off, for the tests' sake), so DELs leave an idle shim to it as in production
                nodes[subject] = stack.enter_context(
                    CriNode(network, prefix=f"fnb-c{tag}{network[0]}", reconcile_every=defaults.RECONCILE_EVERY)
                )
                for i in range(2):
                    pod_id, _ = nodes[subject].run_pod(f"warm-{i}", "bench")
                    nodes[subject].cri.stop_remove(pod_id)
            for rep in range(self.p.repeats):
                order = (AGENT, REF) if rep % 2 == 0 else (REF, AGENT)
                self.tick(f"cri: repeat {rep + 1}/{self.p.repeats}, {self.p.cri_pods} pods each")
                self._measure(nodes, order, rep)

    def _measure(self, nodes: dict[str, object], order: tuple[str, str], rep: int) -> None:
        runs: dict[str, list[float]] = {subject: [] for subject in order}
        stops: dict[str, list[float]] = {subject: [] for subject in order}
        for i in range(self.p.cri_pods):
            for subject in order:
                node = nodes[subject]
                t0 = time.perf_counter()
                pod_id, _ = node.run_pod(f"pod-{rep}-{i}", "bench")  # type: ignore[attr-defined]
                t1 = time.perf_counter()
                node.cri.stop_remove(pod_id)  # type: ignore[attr-defined]
                t2 = time.perf_counter()
                runs[subject].append((t1 - t0) * 1000)
                stops[subject].append((t2 - t1) * 1000)
        for subject in order:
            self.r.add(SECTION, subject, RUN, "ms", percentile(runs[subject], 50))
            self.r.add(SECTION, subject, STOP, "ms", percentile(stops[subject], 50))
