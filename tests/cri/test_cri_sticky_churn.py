"""A sticky pool under Deployment churn, through containerd's CRI (issue 12's case).

A sticky pool of 51 addresses; 65 Deployment-style pods (random-suffix names, as a
ReplicaSet makes them) each started and removed through CRI, a few at a time: every one gets
an address, although each name ever seen leaves a reservation behind (the old allocator failed
the last ones with "no free address"). Meanwhile a StatefulSet pod (db/redis-0, fixed name)
is deleted and recreated twice within its hold and gets its address back each time, the
second time after the pool had run out of fresh addresses and the churn was taking over the
oldest reservations.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import pytest

from flatnet_lab.testbed.cri import CriNode, PodSpec

from .conftest import require_tools

pytestmark = [pytest.mark.netns, pytest.mark.cri, pytest.mark.timeout(300)]
POOL = {
    "name": "fni-sticky51",
    "subnet": "198.18.100.0/23",
    "rangeStart": "198.18.100.20",
    "rangeEnd": "198.18.100.70",
    "gateway": "198.18.100.1",
    "sticky": True,
}
POOL_RANGE = (ipaddress.ip_address("198.18.100.20"), ipaddress.ip_address("198.18.100.70"))
WORKERS = 3


class StickyNode(CriNode):
    """The CRI test node, its flatnet network on a 51-address sticky pool."""

    def conflist(self) -> dict[str, Any]:
        conf = super().conflist()
        if self.network == "flatnet":
            conf["plugins"][0]["ipam"]["pools"] = [POOL]
        return conf


@pytest.fixture(scope="module")
def node() -> Iterator[CriNode]:
    require_tools()
    with StickyNode(network="flatnet", prefix=f"fni-{secrets.token_hex(2)}", portmap=False) as n:
        yield n


def deployment_pod_name() -> str:
    """web-<replicaset hash>-<5 chars>, like a Deployment's pods."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "web-7c9d8f6b5-" + "".join(secrets.choice(alphabet) for _ in range(5))


def in_pool(ip: str) -> bool:
    return POOL_RANGE[0] <= ipaddress.ip_address(ip) <= POOL_RANGE[1]


def start(node: CriNode, name: str, namespace: str) -> tuple[str, str]:
    assert node.cri is not None
    pod_id = node.cri.run_pod(PodSpec(name=name, namespace=namespace))
    st = node.cri.pod_status(pod_id)
    assert st.ready and st.ip and in_pool(st.ip), f"{namespace}/{name}: {st}"
    return pod_id, st.ip


def churn_one(node: CriNode, _n: int) -> str:
    """One Deployment pod: RunPodSandbox, then StopPodSandbox + RemovePodSandbox."""
    pod_id, ip = start(node, deployment_pod_name(), "web")
    node.cri.stop_remove(pod_id)  # type: ignore[union-attr]
    return ip


def churn(node: CriNode, count: int) -> list[str]:
    with ThreadPoolExecutor(WORKERS) as ex:
        return list(ex.map(lambda n: churn_one(node, n), range(count)))


def ipam_ls(node: CriNode) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "flatnet.cli.main", "ipam", "ls", "--json", "--store", f"sqlite:{node.db}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout)


def test_deployment_churn_through_a_51_address_sticky_pool_with_a_statefulset_pod(node: CriNode) -> None:
    t0 = time.monotonic()
    redis_id, redis_ip = start(node, "redis-0", "db")
    node.cri.stop_remove(redis_id)  # type: ignore[union-attr]
    seen = churn(node, 30)  # fresh addresses still last: redis-0's reservation is untouched
    redis_id, again = start(node, "redis-0", "db")
    assert again == redis_ip, f"redis-0 came back at {again}, was {redis_ip}"
    seen += churn(node, 35)  # past the pool's size: the oldest reservations are taken over
    node.cri.stop_remove(redis_id)  # type: ignore[union-attr]
    seen += churn(node, 5)
    redis_id, third = start(node, "redis-0", "db")
    assert third == redis_ip, f"redis-0 came back at {third} after the takeovers, was {redis_ip}"
    node.cri.stop_remove(redis_id)  # type: ignore[union-attr]
    elapsed = time.monotonic() - t0

    state = ipam_ls(node)
    takeovers = state["pools"].get(POOL["name"], {}).get("takeovers", 0)
    assert len(seen) == 70 and all(in_pool(ip) for ip in seen)
    assert takeovers >= 70 + 1 - 51  # every pod past the pool's size took over a reservation
    assert state["leases"] == []  # every sandbox removed: no lease left behind
    reserved = {r["pod"]: r["address"] for r in state["reservations"]}
    assert reserved.get("db/redis-0") == redis_ip and len(reserved) <= 51
    print(
        f"\nCRI sticky churn: pool {POOL['name']} {POOL['rangeStart']}-{POOL['rangeEnd']} "
        f"(51 addresses, sticky); {len(seen)} Deployment-style pods (web/web-7c9d8f6b5-xxxxx, "
        f"{WORKERS} at a time) each RunPodSandbox + Stop + Remove: {len(seen)} ok, 0 failed; "
        f"{len(set(seen))} distinct addresses"
    )
    print(
        f"StatefulSet pod db/redis-0: {redis_ip} -> deleted, 30 churned -> {again} -> deleted, "
        f"40 churned (pool exhausted of fresh addresses) -> {third}"
    )
    print(
        f"ipam ls: {len(state['leases'])} lease(s), {len(state['reservations'])} reservation(s), "
        f"pool counters {state['pools'].get(POOL['name'])}; {elapsed:.1f} s"
    )
