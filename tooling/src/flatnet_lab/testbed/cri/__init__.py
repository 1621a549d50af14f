"""containerd CRI test-bed: a node on this machine driven the way kubelet drives it.

    from flatnet_lab.testbed.cri import CriNode, PodSpec, PortMap

    with CriNode(network="flatnet") as node:      # "bridge" (bridge + host-local), "none" (no CNI)
        pod_id, spec = node.run_pod("web-0", "shop", port_mappings=[PortMap(80, 30080)])
        st = node.cri.pod_status(pod_id)          # .ip, .ready, .netns, .name, .namespace
        cid = node.run_container(pod_id, spec, "httpd", ["httpd", "-f", "-p", "80"])
        node.cri.exec_sync(cid, ["hostname"])     # (exit code, stdout, stderr)
        node.cri.stop_remove(pod_id)              # StopPodSandbox + RemovePodSandbox (CNI DEL)
        node.containerd.restart()                 # pods keep running (shims survive)
        node.stop_agent(kill=True); node.start_agent()

Parts: ``CriClient`` (the CRI v1 calls kubelet makes, over a unix socket; ``CriError`` on
failure), ``Containerd`` (a private containerd 1.6 in a network namespace), ``image`` (pause
and busybox images built locally as OCI archives), ``snapshot`` (what a node holds: links,
routes, neighbours, nft rules, leases, for leak checks). Needs root, containerd, runc,
musl-tools, busybox-static and the reference CNI plugins (scripts/setup.sh installs them).
"""

from flatnet_lab.testbed.cri.client import CriClient, CriError, PodSpec, PodStatus, PortMap
from flatnet_lab.testbed.cri.containerd import Containerd, ContainerdError
from flatnet_lab.testbed.cri.node import BUSYBOX_IMAGE, PAUSE_IMAGE, CriNode

__all__ = [
    "CriNode",
    "CriClient",
    "CriError",
    "PodSpec",
    "PodStatus",
    "PortMap",
    "Containerd",
    "ContainerdError",
    "PAUSE_IMAGE",
    "BUSYBOX_IMAGE",
]
