"""What the data-plane bench puts on the lab: pods per network, ipvlan pods, the UDP tunnel.

Everything made here is remembered in ``LabSetup`` and removed by ``close`` (pods deleted
through the CNI plugin, tunnel processes stopped, the bench's own namespaces removed), so
a run that fails or is interrupted leaves the lab as it found it.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import uuid
from typing import Any, Callable

from flatnet_lab.bench.cniexec import REF_CNI_DIR, Call, exec_plugin, install_forwarder
from flatnet_lab.bench.nsenv import Scratch
from flatnet_lab.launch import stop_proc
from flatnet_lab.testbed import net as labnet
from flatnet.errors import FlatnetError
from flatnet_lab.lab import netconf, pods, procs
from flatnet_lab.lab.topology import Topology

NETWORKS = {"flat macvlan": "flat", "flat bridge": "flat-bridge", "vxlan overlay": "overlay"}
TUN_NET = "198.18.250"  # the userspace tunnel's own /24 (tun0 of node k is .k)
PM_IPERF, PM_RR = 5301, 5399  # the port-mapped overlay pod's ports (hostPort == containerPort)


def pod_name(network: str, node: str, k: int) -> str:
    return f"bench-{network}-{node}-{k}"


class LabSetup:
    def __init__(self, topo: Topology, scratch: Scratch, tmp: str) -> None:
        self.topo, self.s, self.tmp = topo, scratch, tmp
        #: this run's lab pods, in the order made: name -> network (by the network, not the name:
        #: "bench-flat-" also begins flat-wide's and flat-bridge's names)
        self.made: dict[str, str] = {}
        self.ipvlan: list[tuple[Call, str, dict[str, Any], dict[str, Any]]] = []

    # -- lab pods ------------------------------------------------------------
    def pod(self, network: str, node: str, k: int, **kw: Any) -> pods.Pod:
        """The bench's pod ``k`` of ``network`` on ``node`` (created on first use)."""
        name = pod_name(network, node, k)
        return self._pod(name, network, lambda: pods.add_pod(node, name, network, namespace="bench", **kw))

    def port_mapped_overlay_pod(self, node: str) -> pods.Pod:
        maps = [
            {"hostPort": PM_IPERF, "containerPort": PM_IPERF, "protocol": "tcp"},
            {"hostPort": PM_IPERF, "containerPort": PM_IPERF, "protocol": "udp"},
            {"hostPort": PM_RR, "containerPort": PM_RR, "protocol": "tcp"},
        ]
        name = f"bench-ovpm-{node}"
        return self._pod(
            name, "overlay", lambda: pods.add_pod(node, name, "overlay", namespace="bench", port_mappings=maps)
        )

    def _pod(self, name: str, network: str, make: Callable[[], pods.Pod]) -> pods.Pod:
        """This run's pod ``name``: the one it made, else made now. A pod of that name this
        run did not make was left by a run that crashed: it is deleted first (its state is
        unknown), and the new one is this run's to remove like the others."""
        if name in self.made:
            return pods.get_pod(name)
        try:
            pods.get_pod(name)
        except FlatnetError:
            pass
        else:
            pods.del_pod(name)
        self.made[name] = network
        return make()

    def delete_pods(self, network: str, done: Callable[[int, int], None] | None = None) -> None:
        """Delete this run's pods of ``network`` (so the next network counts from zero);
        ``done(k, total)`` after each one."""
        names = [n for n, net in self.made.items() if net == network]
        for k, name in enumerate(names, 1):
            pods.del_pod(name)
            del self.made[name]
            if done is not None:
                done(k, len(names))

    # -- ipvlan: not a lab network, so plumbed here with the node's flat config ----------
    def ipvlan_pod(self, node: str) -> tuple[str, str]:
        """(netns, address) of an ipvlan pod on ``node``; FlatnetError when impossible."""
        conf = procs.read_json(netconf.config_path(node, "flat"))
        if conf is None:
            raise FlatnetError(f"no flat config for {node}", "is the lab up?")
        conf = {**conf, "name": "bench-ipvlan", "mode": "ipvlan"}
        shim = install_forwarder(os.path.join(self.tmp, "bin"))
        call = Call(uuid.uuid4().hex, self.s.netns(f"ipv-{node}"), "eth0", pod=f"ipv-{node}")
        node_ns = self.topo.node(node).ns
        _, result = exec_plugin(shim, "ADD", call, conf, node_ns, f"{os.path.dirname(shim)}:{REF_CNI_DIR}")
        self.ipvlan.append((call, node_ns, conf, result))
        return call.netns, result["ips"][0]["address"].split("/")[0]

    # -- the userspace UDP tunnel ------------------------------------------------
    def udp_tunnel(self, a: str, b: str) -> str:
        """Start a forwarder in nodes ``a`` and ``b``; return b's tunnel address."""
        na, nb = self.topo.node(a), self.topo.node(b)
        for me, peer in ((na, nb), (nb, na)):
            argv = [
                sys.executable,
                "-m",
                "flatnet_lab.bench.udptun",
                "--tun",
                "fnbtun0",
                "--addr",
                f"{TUN_NET}.{me.index}/24",
                "--local",
                me.ipv4,
                "--peer",
                peer.ipv4,
            ]
            proc = self.s.track(
                labnet.spawn(me.ns, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            )
            ready, _, _ = select.select([proc.stdout], [], [], 15.0)
            line = proc.stdout.readline().decode().strip() if ready else ""  # type: ignore[union-attr]
            if line != "ready":
                stop_proc(proc, timeout=5.0, kill_wait=5.0)
                err = proc.stderr.read().decode()[-300:] if proc.stderr else ""  # type: ignore[union-attr]
                raise FlatnetError(f"bench: the UDP tunnel in {me.ns} did not start", err)
        return f"{TUN_NET}.{nb.index}"

    # -- cleanup -------------------------------------------------------------
    def close(self) -> list[str]:
        """Delete what this run made; return errors instead of raising (cleanup goes on)."""
        errors = []
        for call, node_ns, conf, result in self.ipvlan:
            try:
                exec_plugin(
                    install_forwarder(os.path.join(self.tmp, "bin")),
                    "DEL",
                    call,
                    {**conf, "prevResult": result},
                    node_ns,
                    REF_CNI_DIR,
                )
            except (FlatnetError, OSError) as exc:
                errors.append(str(exc))
        for name in reversed(list(self.made)):
            try:
                pods.del_pod(name)
            except (FlatnetError, OSError) as exc:  # the lab may have been taken down under us
                errors.append(f"{name}: {exc}")
        self.made.clear()
        return errors
