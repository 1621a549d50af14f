"""CRI under churn: the agent killed in a burst of RunPodSandbox, and 100 sandboxes in and out.

kubelet runs pod workers in parallel and, when RunPodSandbox fails, stops and removes the
pod's dead sandboxes and calls RunPodSandbox again later with the next ``attempt``. The tests
do the same from a small thread pool, bounded in attempts and time.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from flatnet_lab.testbed.cri import CriError, CriNode, PodSpec, PodStatus, snapshot

from .conftest import assert_clean
from .traffic import ping

pytestmark = [pytest.mark.netns, pytest.mark.cri, pytest.mark.slow, pytest.mark.timeout(420)]
ATTEMPTS = 12  # backoff 0.3 s doubling to 3 s: ~30 s for the agent to come back


def reap_not_ready(node: CriNode, name: str, namespace: str) -> bool:
    """kubelet's cleanup of a pod's dead sandboxes: Stop + Remove each NOTREADY one.

    containerd 1.6 keeps a sandbox whose network setup failed (NOTREADY) when it cannot
    tear the network down either (the agent is gone): kubelet stops it again later. True
    when none is left.
    """
    clean = True
    for pod_id, ns, pod_name, ready in node.cri.list_pods():
        if (ns, pod_name) == (namespace, name) and not ready:
            try:
                node.cri.stop_remove(pod_id)
            except CriError:
                clean = False
    return clean


def run_with_retries(
    node: CriNode, name: str, namespace: str, started: list[int], errors: list[str], lock: threading.Lock
) -> tuple[str, PodStatus] | None:
    """RunPodSandbox until the sandbox is ready with an address (kubelet-style backoff)."""
    spec = PodSpec(name=name, namespace=namespace)
    for attempt in range(ATTEMPTS):
        spec.attempt = attempt
        with lock:
            started[0] += 1
        try:
            reap_not_ready(node, name, namespace)
            pod_id = node.cri.run_pod(spec)
            st = node.cri.pod_status(pod_id)
            if st.ready and st.ip:
                for _ in range(ATTEMPTS):  # what the failed attempts left (kubelet's GC)
                    if reap_not_ready(node, name, namespace):
                        break
                    time.sleep(1.0)
                return pod_id, st
            errors.append(f"{name}: sandbox {pod_id} not ready: {st}")
        except CriError as exc:
            errors.append(f"{name} attempt {attempt}: {exc.details[:200]}")
        time.sleep(min(0.3 * 2**attempt, 3.0))
    return None


def remove_all(node: CriNode, pod_ids: list[str], workers: int = 4) -> None:
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(node.cri.stop_remove, pod_ids))


def test_agent_killed_during_a_burst_of_50(node: CriNode) -> None:
    n, lock, started, errors = 50, threading.Lock(), [0], []
    with ThreadPoolExecutor(6) as ex:
        futures = [ex.submit(run_with_retries, node, f"burst-{i}", "burst", started, errors, lock) for i in range(n)]
        deadline = time.monotonic() + 60
        while started[0] < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        done_at_kill = sum(f.done() for f in futures)
        node.stop_agent(kill=True)  # SIGKILL mid-burst: requests in flight die with it
        time.sleep(1.0)
        node.start_agent()
        results = [f.result(timeout=300) for f in futures]
    assert done_at_kill < n, "the burst was over before the agent was killed"
    print(
        f"burst of {n}: {done_at_kill} done at the kill, {started[0]} RunPodSandbox calls, "
        f"{len(errors)} failed (first: {errors[:1]})"
    )
    ok = [r for r in results if r is not None]
    ids = {pod_id for pod_id, _ in ok}
    # every sandbox that exists is one that ended up ready; failed attempts left no sandbox
    extra = [p for p in node.cri.list_pods() if p[1] == "burst" and p[0] not in ids]
    assert not extra, f"sandboxes left by failed attempts: {extra[:5]}; errors: {errors[:8]}"
    # ... and the store holds exactly one lease per running sandbox, with its own address
    expected = {f"{st.ip} burst/{st.name} {pod_id}" for pod_id, st in ok}
    held = snapshot.leaks(node.baseline, snapshot.take(node)).get("leases", [])
    assert set(held) == expected, f"errors seen: {errors[:5]}"
    assert len({st.ip for _, st in ok}) == len(ok)
    assert len(ok) == n, f"{n - len(ok)} pods never started; errors: {errors[:5]}"
    for _, st in ok[:: max(1, len(ok) // 4)]:
        assert ping(node.vm, st.ip), f"{st.name} at {st.ip} unreachable"
    remove_all(node, sorted(ids))
    assert_clean(node, [st.netns for _, st in ok])


def test_hundred_sandboxes_created_and_removed(node: CriNode) -> None:
    specs = [PodSpec(name=f"many-{i}", namespace="churn") for i in range(100)]

    def run(spec: PodSpec) -> tuple[str, PodStatus]:
        pod_id = node.cri.run_pod(spec)
        return pod_id, node.cri.pod_status(pod_id)

    with ThreadPoolExecutor(4) as ex:
        pods = list(ex.map(run, specs))
    assert all(st.ready and st.ip for _, st in pods)
    assert len({st.ip for _, st in pods}) == 100
    held = snapshot.leaks(node.baseline, snapshot.take(node)).get("leases", [])
    assert len(held) == 100
    remove_all(node, [pod_id for pod_id, _ in pods])
    assert not [p for p in node.cri.list_pods() if p[1] == "churn"]
    assert_clean(node, [st.netns for _, st in pods])
