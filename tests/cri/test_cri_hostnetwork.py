"""A node as kubeadm leaves it (no CNI config yet): host-network, privileged pods still run.

That is how a CNI DaemonSet starts on a fresh node; the DaemonSet test (issue 11) builds on
this. The pod's network namespace is the node's (it sees the node's eth0 and address), a
hostPath mount shows the node's files, and nothing is left after Stop + Remove.
"""

from __future__ import annotations

import pytest

from flatnet_lab.testbed.cri import CriNode, PodSpec

from .conftest import require_tools

pytestmark = [pytest.mark.netns, pytest.mark.cri, pytest.mark.timeout(300)]


def test_host_network_privileged_pod_without_cni_config() -> None:
    require_tools()
    with CriNode(network="none") as node:
        ready, message = node.cri.conditions()["NetworkReady"]
        assert not ready and "cni" in message.lower(), message
        (node.work / "hostdir").mkdir()
        (node.work / "hostdir" / "hello").write_text("from the node\n")
        spec = PodSpec(name="flatnet-ds-x", namespace="kube-system", host_network=True, privileged=True)
        pod_id = node.cri.run_pod(spec)
        cid = node.cri.create_container(
            pod_id,
            spec,
            "agent",
            "docker.io/flatnet/busybox:test",
            command=["sleep", "300"],
            mounts=[(str(node.work / "hostdir"), "/host", True)],
            privileged=True,
        )
        node.cri.start_container(cid)
        code, out, err = node.cri.exec_sync(cid, ["ip", "-4", "-o", "addr", "show", "eth0"])
        assert code == 0 and f" {node.node_ip}/" in out.decode(), (out, err)
        code, out, _ = node.cri.exec_sync(cid, ["cat", "/host/hello"])
        assert (code, out) == (0, b"from the node\n")
        assert node.cri.pod_status(pod_id).ip == ""  # host network: no pod address
        node.cri.stop_container(cid)
        node.cri.remove_container(cid)
        node.cri.stop_remove(pod_id)
        assert node.cri.list_pods() == [] and node.cri.list_containers() == []
