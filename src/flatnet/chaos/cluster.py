"""The chaos cluster: a switch, N nodes (own agent each), pod namespaces, an optional etcd.

All names are ``fnk-<tag>-*`` so the harness never meets the lab (``fnlab-``) or other
tests (``fnt-``); ``close()`` removes every namespace and process it made, also after a
failure. Kernel setup goes through pyroute2; processes are only ever signalled by the pid
the harness itself started.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import httpx
from pyroute2 import netns as pnetns

from flatnet.datapath import netns as fnetns
from flatnet.errors import FlatnetError

NETWORK = "fnkchaos"
SUBNET, RANGE_START, RANGE_END, GATEWAY = "198.18.200.0/24", "198.18.200.10", "198.18.200.250", "198.18.200.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(pred: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class Etcd:
    """A private etcd (127.0.0.1, free ports); ``stop``/``start`` keep data and ports."""

    def __init__(self, workdir: str) -> None:
        self.binary = shutil.which("etcd") or "/usr/bin/etcd"
        if not os.path.exists(self.binary):
            raise FlatnetError("etcd is not installed", "apt-get install etcd-server, or use --store sqlite")
        self.data = os.path.join(workdir, "etcd")
        self.client, self.peer = _free_port(), _free_port()
        self.endpoint = f"http://127.0.0.1:{self.client}"
        self.proc: subprocess.Popen | None = None

    def healthy(self) -> bool:
        try:
            return httpx.get(self.endpoint + "/health", timeout=1.0).json().get("health") in ("true", True)
        except (httpx.HTTPError, ValueError):
            return False

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer}"
        log = open(self.data + ".log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--name", "fnk", "--data-dir", self.data, "--listen-client-urls", self.endpoint,
             "--advertise-client-urls", self.endpoint, "--listen-peer-urls", peer,
             "--initial-advertise-peer-urls", peer, "--initial-cluster", f"fnk={peer}", "--log-level", "error"],
            stdout=log, stderr=log, start_new_session=True)
        log.close()
        if not _wait(self.healthy, 30, 0.1):
            raise FlatnetError(f"etcd did not become healthy in 30 s (log: {self.data}.log)")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        _stop(self.proc, sig)
        self.proc = None


@dataclass
class Node:
    name: str
    ns: str
    mode: str
    socket: str
    proc: subprocess.Popen | None = None
    lost: bool = False


@dataclass
class Cluster:
    """Build with ``with Cluster(nodes=3, store="sqlite") as c``."""

    nodes_n: int = 3
    store_kind: str = "sqlite"
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="fnk-chaos-"))
    nodes: list[Node] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    etcd: Etcd | None = None

    # ---- build / close ----
    def __enter__(self) -> "Cluster":
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ns_name(self, part: str) -> str:
        return f"fnk-{self.tag}-{part}"

    def _netns(self, part: str) -> str:
        name = self.ns_name(part)
        pnetns.create(name)
        self.namespaces.append(name)
        with fnetns.ipr(name) as ip:
            ip.link("set", index=ip.link_lookup(ifname="lo")[0], state="up")
        return name

    def build(self) -> None:
        if self.store_kind == "etcd":
            self.etcd = Etcd(self.workdir)
            self.etcd.start()
        sw = self._netns("sw")
        with fnetns.ipr(sw) as ip:
            ip.link("add", ifname="br0", kind="bridge")
            ip.link("set", index=ip.link_lookup(ifname="br0")[0], state="up")
        for i in range(1, self.nodes_n + 1):
            ns = self._netns(f"n{i}")
            with fnetns.ipr(sw) as ip:  # uplink: veth, node side "up0", switch side on br0
                ip.link("add", ifname=f"n{i}", kind="veth", peer={"ifname": "up0", "net_ns_fd": ns})
                ip.link("set", index=ip.link_lookup(ifname=f"n{i}")[0], master=ip.link_lookup(ifname="br0")[0],
                        state="up")
            with fnetns.ipr(ns) as ip:
                idx = ip.link_lookup(ifname="up0")[0]
                ip.addr("add", index=idx, address=f"198.18.200.{i}", prefixlen=24)
                ip.link("set", index=idx, state="up")
            # alternate modes so both kinds of host-side state (routes / veths + nft) are exercised
            node = Node(f"node{i}", ns, "macvlan" if i % 2 else "bridge",
                        os.path.join(self.workdir, f"node{i}", "agent.sock"))
            self.nodes.append(node)
            self.start_agent(node)

    def close(self) -> None:
        for node in self.nodes:
            _stop(node.proc)
        if self.etcd is not None:
            self.etcd.stop(signal.SIGTERM)
        for ns in reversed(self.pod_namespaces() + self.namespaces):
            try:
                pnetns.remove(ns)
            except OSError:
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)

    def pod_namespaces(self) -> list[str]:
        prefix = self.ns_name("p")
        try:
            return sorted(n for n in os.listdir(fnetns.NETNS_RUN_DIR) if n.startswith(prefix))
        except FileNotFoundError:
            return []

    # ---- store and configs ----
    def store_config(self) -> dict:
        if self.store_kind == "etcd":
            assert self.etcd is not None
            return {"type": "etcd", "endpoints": [self.etcd.endpoint], "prefix": f"/fnk-{self.tag}/"}
        return {"type": "sqlite", "path": os.path.join(self.workdir, "ipam.db")}

    def conf(self, node: Node) -> dict:
        return {"cniVersion": "1.1.0", "name": NETWORK, "type": "flatnet", "mode": node.mode,
                "master": "up0", "hostNetns": node.ns, "agentSocket": node.socket,
                "ipam": {"pools": [{"name": NETWORK, "subnet": SUBNET, "rangeStart": RANGE_START,
                                    "rangeEnd": RANGE_END, "gateway": GATEWAY}],
                         "store": self.store_config()}}

    def lock_dir(self, node: Node) -> str:
        return os.path.join(self.workdir, node.name, "locks")

    # ---- agents ----
    def start_agent(self, node: Node) -> None:
        os.makedirs(os.path.dirname(node.socket), mode=0o700, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        log = open(os.path.join(self.workdir, f"{node.name}-agent.log"), "ab")
        node.proc = subprocess.Popen(
            [sys.executable, "-m", "flatnet.cli.main", "agent", "--socket", node.socket, "--netns", node.ns,
             "--node", node.name, "--lock-dir", self.lock_dir(node), "--reconcile-every", "1", "-q"],
            env=env, stdout=log, stderr=log, start_new_session=True)
        log.close()

    def wait_agent(self, node: Node, timeout: float = 30.0) -> bool:
        """True once the agent answers a status request (False if it died or timed out)."""
        from flatnet.agent import protocol

        def answers() -> bool:
            return protocol.status(node.socket, timeout=2) is not None
        return _wait(lambda: answers() or (node.proc is not None and node.proc.poll() is not None), timeout, 0.1) \
            and node.proc is not None and node.proc.poll() is None

    def kill_agent(self, node: Node) -> None:
        """SIGKILL (no cleanup at all: the socket file stays, in-flight requests die)."""
        _stop(node.proc, signal.SIGKILL)
        node.proc = None

    # ---- pods ----
    def new_pod_netns(self, cid: str) -> str:
        name = self.ns_name(f"p{cid}")
        pnetns.create(name)
        return name

    def drop_netns(self, name: str) -> None:
        try:
            pnetns.remove(name)
        except OSError:
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
