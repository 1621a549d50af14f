"""The chaos cluster: a switch, N nodes (own agent each), pod namespaces, an optional etcd.

All names are ``fnk-<tag>-*`` so the harness never meets the lab (``fnlab-``) or other
tests (``fnt-``); ``close()`` removes every namespace and process it made, also after a
failure. Kernel setup goes through the test-bed (``flatnet_lab.testbed.net``); processes are
only ever signalled by the pid the harness itself started.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field

from flatnet_lab.etcd import EtcdCluster, EtcdMember
from flatnet_lab.launch import agent_answers, agent_argv, child_env, spawn, stop_proc, wait_until
from flatnet.errors import FlatnetError
from flatnet_lab.testbed import net as testnet
from flatnet_lab.testbed.net import BuiltOnEnter

NETWORK = "fnkchaos"
SUBNET, RANGE_START, RANGE_END, GATEWAY = "198.18.200.0/24", "198.18.200.10", "198.18.200.250", "198.18.200.1"
#: the shared-subnet scenario's networks (issue 26): three network configs on one subnet and
#: one VLAN, each its own pool; the third's range overlaps the others' only in part
SHARED = {
    "fnkneta": (SUBNET, RANGE_START, RANGE_END),
    "fnknetb": (SUBNET, RANGE_START, RANGE_END),
    "fnknetc": ("198.18.200.0/25", "198.18.200.100", "198.18.200.126"),
}


@dataclass
class Node:
    name: str
    ns: str
    mode: str
    socket: str
    proc: subprocess.Popen | None = None
    lost: bool = False


@dataclass
class Cluster(BuiltOnEnter):
    """Build with ``with Cluster(nodes=3, store="sqlite") as c``."""

    nodes_n: int = 3
    store_kind: str = "sqlite"
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="fnk-chaos-"))
    nodes: list[Node] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    etcd_members: int = 1  # 3: a three-member etcd cluster (etcd-member-loss)
    etcd: EtcdMember | EtcdCluster | None = None
    #: network name -> (subnet, rangeStart, rangeEnd) of its one pool (named like the network)
    networks: dict[str, tuple[str, str, str]] = field(
        default_factory=lambda: {NETWORK: (SUBNET, RANGE_START, RANGE_END)}
    )

    # ---- build / close ----
    def ns_name(self, part: str) -> str:
        return f"fnk-{self.tag}-{part}"

    def _netns(self, part: str) -> str:
        name = self.ns_name(part)
        testnet.ensure_netns(name)
        self.namespaces.append(name)
        return name

    def build(self) -> None:
        if self.store_kind == "etcd":
            # loaded: wide election timeouts, the faults here are kills, not a slow machine
            self.etcd = (
                EtcdCluster(self.workdir, self.etcd_members, token=self.tag, loaded=True, log_level="error")
                if self.etcd_members > 1
                else EtcdMember(os.path.join(self.workdir, "fnk"), "fnk", loaded=True, log_level="error")
            )
            self.etcd.start()
        sw = self._netns("sw")
        testnet.ensure_bridge(sw, "br0")
        for i in range(1, self.nodes_n + 1):
            ns = self._netns(f"n{i}")
            testnet.ensure_veth(sw, f"n{i}", ns, "up0")  # uplink: node side "up0", switch side on br0
            testnet.set_master(sw, f"n{i}", "br0")
            testnet.ensure_addresses(ns, "up0", [f"198.18.200.{i}/24"])
            # alternate modes so both kinds of host-side state (routes / veths + nft) are exercised
            node = Node(
                f"node{i}", ns, "macvlan" if i % 2 else "bridge", os.path.join(self.workdir, f"node{i}", "agent.sock")
            )
            self.nodes.append(node)
            self.start_agent(node)

    def close(self) -> None:
        for node in self.nodes:
            stop_proc(node.proc)
        if self.etcd is not None:
            self.etcd.stop(signal.SIGTERM)
        for ns in reversed(self.pod_namespaces() + self.namespaces):
            try:
                testnet.remove_netns(ns)
            except FlatnetError:
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)

    def pod_namespaces(self) -> list[str]:
        return testnet.list_namespaces(self.ns_name("p"))

    # ---- store and configs ----
    def store_config(self) -> dict:
        if self.store_kind == "etcd":
            assert self.etcd is not None
            return {"type": "etcd", "endpoints": list(self.etcd.endpoints), "prefix": f"/fnk-{self.tag}/"}
        return {"type": "sqlite", "path": os.path.join(self.workdir, "ipam.db")}

    def conf(self, node: Node, network: str = NETWORK) -> dict:
        subnet, start, end = self.networks.get(network, (SUBNET, RANGE_START, RANGE_END))
        return {
            "cniVersion": "1.1.0",
            "name": network,
            "type": "flatnet",
            "mode": node.mode,
            "master": "up0",
            "hostNetns": node.ns,
            "agentSocket": node.socket,
            "ipam": {
                "pools": [
                    {
                        "name": network,
                        "subnet": subnet,
                        "rangeStart": start,
                        "rangeEnd": end,
                        "gateway": GATEWAY,
                    }
                ],
                "store": self.store_config(),
            },
        }

    def lock_dir(self, node: Node) -> str:
        return os.path.join(self.workdir, node.name, "locks")

    # ---- agents ----
    def start_agent(self, node: Node) -> None:
        os.makedirs(os.path.dirname(node.socket), mode=0o700, exist_ok=True)
        argv = agent_argv(
            node.socket,
            netns=node.ns,
            node=node.name,
            lock_dir=self.lock_dir(node),
            reconcile_every=1,
            quiet=True,
            state_dir=os.path.join(self.workdir, node.name),
        )
        node.proc = spawn(argv, os.path.join(self.workdir, f"{node.name}-agent.log"), env=child_env())

    def wait_agent(self, node: Node, timeout: float = 30.0) -> bool:
        """True once the agent answers a status request (False if it died or timed out)."""
        proc = node.proc
        if proc is None:
            return False
        return wait_until(lambda: proc.poll() is not None or agent_answers(node.socket), timeout, 0.1) and (
            proc.poll() is None
        )

    def kill_agent(self, node: Node) -> None:
        """SIGKILL (no cleanup at all: the socket file stays, in-flight requests die)."""
        stop_proc(node.proc, signal.SIGKILL)
        node.proc = None

    # ---- pods ----
    def new_pod_netns(self, cid: str) -> str:
        name = self.ns_name(f"p{cid}")
        testnet.create_netns(name)
        return name

    def drop_netns(self, name: str) -> None:
        try:
            testnet.remove_netns(name)
        except FlatnetError:
            pass

    def lose_node(self, node: Node, pod_namespaces: list[str]) -> None:
        """The node dies: agent killed, its pods' and its own namespaces gone, no DEL ever."""
        self.kill_agent(node)
        for ns in pod_namespaces:
            self.drop_netns(ns)
        self.drop_netns(node.ns)
        if node.ns in self.namespaces:
            self.namespaces.remove(node.ns)
        node.lost = True
