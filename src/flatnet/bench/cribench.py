"""CRI: what a pod's network costs as kubelet sees it, through containerd's CRI.

Two private containerd nodes (``flatnet.testbed.cri.CriNode``), one per subject, the same
chain shape (main plugin + portmap) and the same pause image:
  flatnet (agent)     flatnet in mode macvlan through its agent
  bridge+host-local   the reference plugins (the baseline)
Per repeat and subject, ``cri_pods`` pods one after the other: RunPodSandbox timed (its
answer comes once the network is up), then StopPodSandbox + RemovePodSandbox timed as one;
the per-repeat p50s are the samples. Subjects alternate within each repeat so that a noisy
minute hits both. Each node runs two untimed pods first (its first pod creates node
infrastructure: flatnet's shim, portmap's base chains).
"""

from __future__ import annotations

import secrets
import time
from contextlib import ExitStack
from typing import Callable

from flatnet.bench.profile import Profile
from flatnet.bench.results import Results
from flatnet.bench.stats import percentile

SECTION = "cri"
AGENT, REF = "flatnet (agent)", "bridge+host-local"
RUN, STOP = "RunPodSandbox p50", "Stop+Remove p50"
Tick = Callable[[str], None]


class CriBench:
    def __init__(self, profile: Profile, results: Results, tick: Tick) -> None:
        self.p, self.r, self.tick = profile, results, tick

    def run(self) -> None:
        try:
            from flatnet.testbed.cri import CriNode
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
                nodes[subject] = stack.enter_context(CriNode(network, prefix=f"fnb-c{tag}{network[0]}"))
                for i in range(2):
                    pod_id, _ = nodes[subject].run_pod(f"warm-{i}", "bench")
                    nodes[subject].cri.stop_remove(pod_id)
            for rep in range(self.p.repeats):
                order = (AGENT, REF) if rep % 2 == 0 else (REF, AGENT)
                for subject in order:
                    self.tick(f"cri: {subject}, repeat {rep + 1}/{self.p.repeats}")
                    self._measure(nodes[subject], subject, rep)

    def _measure(self, node: object, subject: str, rep: int) -> None:
        runs, stops = [], []
        for i in range(self.p.cri_pods):
            t0 = time.perf_counter()
            pod_id, _ = node.run_pod(f"pod-{rep}-{i}", "bench")  # type: ignore[attr-defined]
            t1 = time.perf_counter()
            node.cri.stop_remove(pod_id)  # type: ignore[attr-defined]
            t2 = time.perf_counter()
            runs.append((t1 - t0) * 1000)
            stops.append((t2 - t1) * 1000)
        self.r.add(SECTION, subject, RUN, "ms", percentile(runs, 50))
        self.r.add(SECTION, subject, STOP, "ms", percentile(stops, 50))
