"""The flat topology with real 802.1Q: one VLAN-filtering switch, every port a trunk.

    switch netns: br0, vlan_filtering 1; every port is a trunk carrying VLANs 100 and 200
                  tagged (and nothing untagged: no PVID), the way a ToR port to a server is set
    node netns (n1, n2): ``eth0`` is the trunk; no address on it (pods use ``eth0.100``,
                  made on demand by the datapath)
    vm netns:     ``eth0`` trunk, ``eth0.100`` = 198.18.100.200/24 + 2001:db8:100::200/64
    v200 netns:   ``eth0`` trunk of VLAN 200 only, ``eth0.200`` = 198.18.100.201/24: same subnet

Needs 8021q and bridge vlan_filtering: it runs in the kernel tier's VM (tests marked
``kernel``). Set-up goes through ``ip``/``bridge`` (test tooling, not flatnet code).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from flatnet_topo import Node, Topology

from flatnet.datapath import netns as fnetns
from tests.helpers.net import sh

VLANS = (100, 200)


def must(ns: str, *cmd: str) -> str:
    out = sh(ns, *cmd)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} in {ns}: {out.stderr.strip()}")
    return out.stdout


@dataclass
class TrunkTopology(Topology):
    """``with TrunkTopology() as topo:``; see the module docstring for the layout."""

    def build(self) -> None:
        import ipaddress

        self._ns(self.switch)
        must(
            self.switch,
            "ip",
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
            "vlan_default_pvid",
            "0",
            "mcast_snooping",
            "0",
        )
        must(self.switch, "ip", "link", "set", "br0", "up")
        for i in range(1, self.nodes_n + 1):
            ns = self._ns(f"fnt-{self.tag}-n{i}")
            self._trunk(ns, f"n{i}p0")
            self.nodes.append(
                Node(
                    ns,
                    ipaddress.IPv4Interface(f"198.18.100.{10 + i}/24"),
                    ipaddress.IPv6Interface(f"2001:db8:100::{10 + i}/64"),
                    ("eth0",),
                )
            )
        self._ns(self.vm)
        self._trunk(self.vm, "vm")
        self._sub(self.vm, 100, ["198.18.100.200/24", "2001:db8:100::200/64"])
        self._ns(self.v200)
        self._trunk(self.v200, "v200", (200,))
        self._sub(self.v200, 200, ["198.18.100.201/24", "2001:db8:100::201/64"])

    def _trunk(self, ns: str, sw_port: str, vlans: tuple[int, ...] = VLANS) -> None:
        """``eth0`` in ``ns`` whose switch side ``sw_port`` is a trunk of ``vlans`` (tagged)."""
        self._port(ns, "eth0", sw_port, "br0", [])
        for vid in vlans:
            must(self.switch, "bridge", "vlan", "add", "vid", str(vid), "dev", sw_port)

    def _sub(self, ns: str, vid: int, addrs: list[str]) -> None:
        must(ns, "ip", "link", "add", "link", "eth0", "name", f"eth0.{vid}", "type", "vlan", "id", str(vid))
        for a in addrs:
            must(ns, "ip", "addr", "add", a, "dev", f"eth0.{vid}", *(["nodad"] if ":" in a else []))
        must(ns, "ip", "link", "set", f"eth0.{vid}", "up")


def capture(ns: str, ifname: str, bpf: str, count: int, seconds: int) -> subprocess.Popen:
    """``tcpdump -e`` on ``ifname`` in ``ns``, bounded by ``count`` frames and ``seconds``."""
    cmd = [
        "ip",
        "netns",
        "exec",
        ns,
        "timeout",
        str(seconds),
        "tcpdump",
        "-e",
        "-nn",
        "-l",
        "-c",
        str(count),
        "-i",
        ifname,
        *bpf.split(),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_listening(proc: subprocess.Popen, seconds: float = 20) -> None:
    """Block until tcpdump says it listens (its first stderr line), bounded in time."""
    import select

    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], seconds)
    if ready:
        proc.stderr.readline()


__all__ = ["TrunkTopology", "capture", "must", "wait_listening", "fnetns"]
