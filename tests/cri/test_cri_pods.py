"""containerd's CRI -> CNI -> flatnet, the path kubelet takes: address, reachability, cleanup.

Each test drives the module's node (conftest) through CRI calls only, checks with real
traffic from the "VM" namespace on the same L2, and ends with the node back at its baseline:
no link, route, neighbour entry, nft rule, lease or sandbox netns left.
"""

from __future__ import annotations

import ipaddress
import secrets

import pytest

from flatnet_lab.testbed.cri import CriError, CriNode, PortMap, snapshot

from .conftest import assert_clean
from .traffic import http_get, httpd_args, ping

pytestmark = [pytest.mark.netns, pytest.mark.cri, pytest.mark.timeout(300)]
POOL = ipaddress.ip_network("198.18.100.0/23")


def lease_of(node: CriNode, ip: str) -> str:
    found = [le for le in snapshot.leases(str(node.db)) if le.startswith(ip + " ")]
    assert len(found) == 1, f"leases for {ip}: {found}"
    return found[0]


def test_sandbox_gets_flat_address_the_vm_reaches(node: CriNode) -> None:
    token = f"fnc-{secrets.token_hex(6)}"
    pod_id, spec = node.run_pod("web-0", "shop")
    st = node.cri.pod_status(pod_id)
    assert st.ready and ipaddress.ip_address(st.ip) in POOL, st
    # the lease names the pod as kubelet told containerd (K8S_POD_NAMESPACE/K8S_POD_NAME)
    assert lease_of(node, st.ip) == f"{st.ip} shop/web-0 {pod_id}"
    cid = node.run_container(pod_id, spec, "httpd", httpd_args(token, 8080))
    assert node.cri.container_state(cid)[0] == "CONTAINER_RUNNING"
    code, out, _ = node.cri.exec_sync(cid, ["ip", "-4", "-o", "addr", "show", "eth0"])
    assert code == 0 and f" {st.ip}/23 " in out.decode(), out
    assert ping(node.vm, st.ip), f"the VM cannot ping the pod at {st.ip}"
    assert http_get(node.vm, st.ip, 8080) == token
    node.cri.stop_container(cid)
    node.cri.remove_container(cid)
    node.cri.stop_remove(pod_id)
    assert not ping(node.vm, st.ip, attempts=1)
    assert_clean(node, [st.netns])


def test_stop_remove_deletes_everything(node: CriNode) -> None:
    pod_id, _ = node.run_pod("job-1", "batch")
    st = node.cri.pod_status(pod_id)
    held = snapshot.leaks(node.baseline, snapshot.take(node))
    # while it runs the pod holds a lease and a host route through the shim (so the check bites)
    assert any(st.ip in le for le in held.get("leases", [])), held
    assert any(r.startswith(f"{st.ip}/32 ") for r in held.get("routes", [])), held
    node.cri.stop_pod(pod_id)
    node.cri.stop_pod(pod_id)  # kubelet may stop more than once: idempotent
    node.cri.remove_pod(pod_id)
    assert_clean(node, [st.netns])
    with pytest.raises(CriError):
        node.cri.pod_status(pod_id)


def test_port_mappings_through_portmap(node: CriNode) -> None:
    token = f"fnc-{secrets.token_hex(6)}"
    pod_id, spec = node.run_pod("api-0", "shop", port_mappings=[PortMap(8080, 30080)])
    st = node.cri.pod_status(pod_id)
    node.run_container(pod_id, spec, "httpd", httpd_args(token, 8080))
    rules = snapshot.nft_rules(node.ns)
    assert any("30080" in r and "dnat" in r.lower() for r in rules), (
        f"portmap installed no DNAT for hostPort 30080: {sorted(rules)}"
    )
    # hostPort on the node's address -> DNAT to the pod (from the node: a VM on the same L2
    # would get the pod's answer straight from the pod, as flat pods are reached directly)
    assert http_get(node.ns, node.node_ip, 30080) == token
    assert http_get(node.vm, st.ip, 8080) == token  # and the pod itself, flat
    node.cri.stop_remove(pod_id)
    assert not any("30080" in r for r in snapshot.nft_rules(node.ns))
    assert_clean(node, [st.netns])


def test_statefulset_pod_gets_its_address_back(node: CriNode) -> None:
    first, _ = node.run_pod("redis-0", "db")
    ip = node.cri.pod_status(first).ip
    node.cri.stop_remove(first)
    other, _ = node.run_pod("redis-1", "db")  # another pod in between must not take it
    assert node.cri.pod_status(other).ip != ip
    again, _ = node.run_pod("redis-0", "db")  # recreated: new uid, new sandbox, same identity
    st = node.cri.pod_status(again)
    assert again != first and st.ip == ip
    assert lease_of(node, ip) == f"{ip} db/redis-0 {again}"
    assert ping(node.vm, ip)
    for pod_id in (other, again):
        node.cri.stop_remove(pod_id)
    assert_clean(node)


def test_containerd_restart_keeps_pods(node: CriNode) -> None:
    pods = [node.run_pod(f"keep-{i}", "shop")[0] for i in range(2)]
    before = {p: node.cri.pod_status(p) for p in pods}
    node.containerd.restart()
    for p in pods:
        st = node.cri.pod_status(p)
        assert st.ready and st.ip == before[p].ip, (before[p], st)
        assert ping(node.vm, st.ip), f"pod {st.ip} unreachable after the containerd restart"
    for p in pods:
        node.cri.stop_remove(p)  # DEL after the restart: containerd recovered the CNI state
    assert_clean(node, [st.netns for st in before.values()])
