"""Several CRI nodes on one flat VLAN, with a VM outside the cluster (test tooling only).

    with CriCluster(["keludev05", "keludev06", "keludev07"], images=[archive]) as cl:
        node = cl.nodes["keludev05"]            # a CriNode: node.cri, node.containerd, node.ns
        pod_id, spec = node.run_pod("redis-0", "redis")
        cl.vm                                     # the VM's netns (198.18.101.250)

Each node is what ``CriNode`` builds (a private containerd in the node's network namespace,
its own CNI bin/conf dirs, the flatnet agent, macvlan on the node's eth0), with two
differences that make them one cluster: every node's eth0 hangs on the same switch (one
L2 segment, the VLAN), and every agent and plugin use the same IPAM store (a SQLite file:
the lab's store), so a sticky reservation holds cluster-wide. Node names are the names a
kubelet registers (the ``kubernetes.io/hostname`` label), given by the caller. ``root(node)``
is a directory standing for that node's own disk: node-local paths (a ``local`` PV's
``path``) resolve under it, so two nodes never share a volume by accident.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from flatnet_lab.testbed import net as labnet
from flatnet_lab.testbed.cri.node import CriNode
from flatnet_lab.testbed.net import BuiltOnEnter

VM_ADDR = "198.18.101.250/23"
NODE_BASE = "198.18.100.{}/23"  # node k (1-based) at .10+k


class ClusterNode(CriNode):
    """A CriNode that joins a shared switch and a shared IPAM store instead of making its own."""

    def __init__(self, cluster: "CriCluster", index: int, name: str) -> None:
        super().__init__(network="flatnet", prefix=f"{cluster.prefix}-n{index}", portmap=False)
        self.name, self.index = name, index
        self.switch, self.vm = cluster.switch, cluster.vm
        self.node_ip = NODE_BASE.format(10 + index).split("/")[0]
        self.vm_ip = VM_ADDR.split("/")[0]
        self.db = cluster.db
        self.node_name = name
        self.containerd.env["FLATNET_NODE"] = name
        self._extra_images = list(cluster.images)

    def _topology(self) -> None:
        labnet.ensure_netns(self.ns)
        self._namespaces.append(self.ns)
        port = f"sw{self.index}"
        labnet.ensure_veth(self.ns, "eth0", self.switch, port)
        labnet.set_master(self.switch, port, "br0")
        labnet.ensure_addresses(self.ns, "eth0", [NODE_BASE.format(10 + self.index)])
        labnet.set_sysctl(self.ns, "net.ipv4.ip_forward", "1")

    def _images(self) -> None:
        super()._images()
        for archive in self._extra_images:
            self.containerd.import_image(archive)


class CriCluster(BuiltOnEnter):
    """N ``ClusterNode``s, one switch, one VM, one IPAM store; ``close()`` removes all of it."""

    def __init__(self, names: Sequence[str], images: Sequence[Path] = (), prefix: str | None = None) -> None:
        if not names or len(set(names)) != len(names):
            raise ValueError(f"node names must be distinct and non-empty: {list(names)}")
        self.prefix = prefix or f"fnr-{secrets.token_hex(2)}"
        self.switch, self.vm = f"{self.prefix}-sw", f"{self.prefix}-vm"
        self.vm_ip = VM_ADDR.split("/")[0]
        self.images = list(images)
        self.work = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.db = self.work / "ipam.db"
        self.names = list(names)
        self.nodes: dict[str, ClusterNode] = {}
        self._namespaces: list[str] = []

    def build(self) -> None:
        for ns in (self.switch, self.vm):
            labnet.ensure_netns(ns)
            self._namespaces.append(ns)
        labnet.ensure_bridge(self.switch, "br0")
        labnet.ensure_veth(self.vm, "eth0", self.switch, "swvm")
        labnet.set_master(self.switch, "swvm", "br0")
        labnet.ensure_addresses(self.vm, "eth0", [VM_ADDR])
        for k, name in enumerate(self.names, start=1):
            node = ClusterNode(self, k, name)
            self.nodes[name] = node  # registered first: close() tears down a half-built node too
            node.build()

    def root(self, node: str) -> Path:
        """The directory standing for ``node``'s own disk (node-local paths live under it)."""
        path = self.work / "disks" / node
        path.mkdir(parents=True, exist_ok=True)
        return path

    def close(self) -> None:
        for node in reversed(list(self.nodes.values())):
            try:
                node.close()
            except Exception:  # noqa: BLE001 - every node is torn down regardless
                pass
        self.nodes.clear()
        for ns in reversed(self._namespaces):
            labnet.remove_netns(ns)
        self._namespaces.clear()
        shutil.rmtree(self.work, ignore_errors=True)
