"""``CriNode``: one Kubernetes-style node on this machine, driven through containerd's CRI.

    <prefix>-sw    switch: bridge br0
    <prefix>-node  the node: parent link eth0 (198.18.100.11/23) on br0; containerd runs here
                   (its pod sandboxes' "host" netns) and the flatnet agent serves it
    <prefix>-vm    a VM on the same L2: eth0 198.18.101.250/23

Networks (``network=``): ``"flatnet"`` (flatnet, mode macvlan on eth0, pool 198.18.100.20 -
198.18.101.200, sticky, sqlite store) or ``"bridge"`` (the reference bridge + host-local on
198.19.0.0/24, the baseline), each chained with the reference portmap plugin. The CNI bin dir
is the node's own: the flatnet forwarder (``plugin_path()``) + Debian's bridge, host-local,
portmap, loopback. Everything is named from ``prefix`` and removed by ``close()``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from flatnet.errors import FlatnetError
from flatnet_lab.launch import agent_argv, spawn, wait_agent
from flatnet_lab.testbed import net as labnet
from flatnet_lab.testbed.net import BuiltOnEnter
from flatnet_lab.testbed.cri import image
from flatnet_lab.testbed.cri.client import CriClient, PodSpec
from flatnet_lab.testbed.cri.containerd import Containerd

REFERENCE_DIR = Path("/usr/lib/cni")
REFERENCE_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
INSTALLED_PLUGIN = Path("/opt/cni/bin/flatnet")
PAUSE_IMAGE = "docker.io/flatnet/pause:test"
BUSYBOX_IMAGE = "docker.io/flatnet/busybox:test"
NODE_ADDR, VM_ADDR = "198.18.100.11/23", "198.18.101.250/23"
POOL = {
    "name": "cri-v4",
    "subnet": "198.18.100.0/23",
    "rangeStart": "198.18.100.20",
    "rangeEnd": "198.18.101.200",
    "gateway": "198.18.100.1",
    "sticky": True,
}
BRIDGE_SUBNET = "198.19.0.0/24"
AGENT_READY_TIMEOUT = 20.0


def plugin_path() -> Path:
    """The flatnet plugin to install in the node's bin dir: $FLATNET_CNI_PLUGIN, else this
    tree's native forwarder (native/forwarder/build/flatnet, built with make if needed), else
    the installed /opt/cni/bin/flatnet."""
    env = os.environ.get("FLATNET_CNI_PLUGIN")
    if env:
        return Path(env)
    tree = Path(__file__).resolve().parents[5] / "native" / "forwarder"
    if (tree / "Makefile").exists():
        proc = subprocess.run(["make", "-s", "-C", str(tree)], capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"building the CNI forwarder failed: {proc.stderr.strip()}")
        return tree / "build" / "flatnet"
    if INSTALLED_PLUGIN.exists():
        return INSTALLED_PLUGIN
    raise RuntimeError("no flatnet CNI plugin: run scripts/setup.sh (installs /opt/cni/bin/flatnet)")


class CriNode(BuiltOnEnter):
    """A node with containerd + (for ``network="flatnet"``) a flatnet agent; see module doc.

    ``with CriNode(network="flatnet") as node:`` builds everything, imports the images and
    returns once containerd's CRI answers; ``node.cri`` is a ``CriClient``. ``network="none"``
    starts no agent and writes no conflist and no flatnet plugin (containerd reports
    NetworkReady false; host-network pods still run): the node as kubeadm leaves it, for a
    DaemonSet that installs ``bin_dir``/flatnet and a conflist in ``conf_dir`` (hostPath mounts). ``close()``
    removes every sandbox, then stops containerd, its shims, the agent, and the namespaces.
    """

    def __init__(
        self,
        network: str = "flatnet",
        prefix: str | None = None,
        portmap: bool = True,
        plugin: Path | None = None,
        reconcile_every: float = 0.0,
    ) -> None:
        if network not in ("flatnet", "bridge", "none"):
            raise ValueError(f"network must be 'flatnet', 'bridge' or 'none', not {network!r}")
        self.network = network
        self.prefix = prefix or f"fnc-{secrets.token_hex(3)}"
        self.portmap = portmap
        self.plugin = plugin if plugin is not None or network == "none" else plugin_path()
        self.reconcile_every = reconcile_every
        self.switch, self.ns, self.vm = (f"{self.prefix}-{s}" for s in ("sw", "node", "vm"))
        self.node_name = f"{self.prefix}-node"  # what the agent and the plugin call this node
        self.node_ip, self.vm_ip = NODE_ADDR.split("/")[0], VM_ADDR.split("/")[0]
        self.work = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.bin_dir, self.conf_dir = self.work / "bin", self.work / "net.d"
        self.db = self.work / "ipam.db"
        self.agent_socket = str(self.work / "agent.sock")
        self.agent_proc: subprocess.Popen | None = None
        self.containerd = Containerd(
            self.work,
            self.ns,
            self.bin_dir,
            self.conf_dir,
            PAUSE_IMAGE,
            env={"FLATNET_LOCK_DIR": str(self.work / "locks"), "FLATNET_NODE": self.node_name},
        )
        self.cri: CriClient | None = None
        self._namespaces: list[str] = []

    # --- lifecycle ----------------------------------------------------------------------------
    def build(self) -> None:
        self._topology()
        self._bin_dir()
        self.conf_dir.mkdir()
        (self.work / "locks").mkdir()
        if self.network != "none":
            (self.conf_dir / f"10-{self.prefix}.conflist").write_text(json.dumps(self.conflist(), indent=2))
        if self.network == "flatnet":
            self.start_agent()
        self.containerd.start()
        self.cri = CriClient(self.containerd.socket)
        self._images()

    def close(self) -> None:
        """Remove every sandbox (CNI DEL through the runtime), then tear everything down."""
        if self.cri is not None and self.containerd.proc is not None:
            try:
                for pod_id, *_ in self.cri.list_pods():
                    try:
                        self.cri.stop_remove(pod_id)
                    except Exception:  # noqa: BLE001 - teardown goes on regardless
                        pass
            except Exception:  # noqa: BLE001
                pass
        if self.cri is not None:
            self.cri.close()
            self.cri = None
        self.containerd.shutdown()
        self.stop_agent()
        for ns in reversed(self._namespaces):
            labnet.remove_netns(ns)
        self._namespaces.clear()
        shutil.rmtree(self.work, ignore_errors=True)

    def _topology(self) -> None:
        for ns in (self.switch, self.ns, self.vm):
            labnet.ensure_netns(ns)
            self._namespaces.append(ns)
        labnet.ensure_bridge(self.switch, "br0")
        for ns, port, addr in ((self.ns, "swnode", NODE_ADDR), (self.vm, "swvm", VM_ADDR)):
            labnet.ensure_veth(ns, "eth0", self.switch, port)
            labnet.set_master(self.switch, port, "br0")
            labnet.ensure_addresses(ns, "eth0", [addr])
        labnet.set_sysctl(self.ns, "net.ipv4.ip_forward", "1")

    def _bin_dir(self) -> None:
        self.bin_dir.mkdir(parents=True)
        for name in REFERENCE_PLUGINS:
            shutil.copy2(REFERENCE_DIR / name, self.bin_dir / name)
        if self.plugin is not None:
            shutil.copy2(self.plugin, self.bin_dir / "flatnet")

    def _images(self) -> None:
        for name, rootfs, entry in (
            (PAUSE_IMAGE, image.pause_rootfs(self.work / "img" / "pause"), ["/pause"]),
            (BUSYBOX_IMAGE, image.busybox_rootfs(self.work / "img" / "busybox"), ["/bin/sh"]),
        ):
            archive = image.oci_archive(rootfs, name, entry, self.work / "img" / f"{rootfs.name}.tar")
            self.containerd.import_image(archive)

    # --- the network configuration -----------------------------------------------------------
    def conflist(self) -> dict[str, Any]:
        if self.network == "flatnet":
            main: dict[str, Any] = {
                "type": "flatnet",
                "mode": "macvlan",
                "master": "eth0",
                "hostNetns": self.ns,
                "agentSocket": self.agent_socket,
                "ipam": {"pools": [POOL], "store": {"type": "sqlite", "path": str(self.db)}},
            }
        else:
            main = {
                "type": "bridge",
                "bridge": "fncbr0",
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": BRIDGE_SUBNET}]],
                    "dataDir": str(self.work / "host-local"),
                },
            }
        plugins = [main]
        if self.portmap:
            plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
        return {"cniVersion": "1.0.0", "name": f"{self.prefix}-{self.network}", "plugins": plugins}

    # --- the flatnet agent --------------------------------------------------------------------
    def start_agent(self) -> None:
        """Start the node's agent (serving ``agent_socket``); return once it answers."""
        if os.path.exists(self.agent_socket):
            os.unlink(self.agent_socket)
        argv = agent_argv(
            self.agent_socket,
            netns=self.ns,
            node=self.node_name,
            store=f"sqlite:{self.db}",
            lock_dir=str(self.work / "locks"),
            reconcile_every=self.reconcile_every,
        )
        self.agent_proc = spawn(argv, str(self.work / "agent.log"))
        try:
            wait_agent(self.agent_proc, self.agent_socket, AGENT_READY_TIMEOUT, str(self.work / "agent.log"))
        except FlatnetError as e:
            raise RuntimeError(f"the flatnet agent did not start: {e}:\n{self.log_tail('agent.log')}") from None

    def stop_agent(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL with ``kill``) the agent and wait for it."""
        proc, self.agent_proc = self.agent_proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill() if kill else proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join((self.work / name).read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return f"(no {name})"

    # --- conveniences for tests and the bench ------------------------------------------------
    def run_pod(self, name: str, namespace: str = "default", **kw: Any) -> tuple[str, PodSpec]:
        """RunPodSandbox for a pod ``namespace/name``; (sandbox id, the PodSpec used)."""
        assert self.cri is not None
        spec = PodSpec(name=name, namespace=namespace, **kw)
        return self.cri.run_pod(spec), spec

    def run_container(
        self, pod_id: str, spec: PodSpec, name: str, args: list[str], image_name: str = BUSYBOX_IMAGE
    ) -> str:
        """Create + start a busybox container ``sh -c ARGS``-style in ``pod_id``; its id."""
        assert self.cri is not None
        cid = self.cri.create_container(pod_id, spec, name, image_name, command=args)
        self.cri.start_container(cid)
        return cid
