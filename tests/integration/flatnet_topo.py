"""A small flat-network topology in network namespaces, for datapath integration tests.

    switch netns: br100 (VLAN 100 segment), br200 (VLAN 200 segment) - one bridge per VLAN
                  because this kernel has no bridge vlan_filtering
    node netns (n1, n2): access ports into br100; the node's address on ``addr_port``
                  (198.18.100.11/24 + 2001:db8:100::11/64, .12 ...)
    vm netns:     on br100, 198.18.100.200/24 + 2001:db8:100::200/64
    v200 netns:   on br200, 198.18.100.201/24 - same subnet, other L2 segment
    pod netns:    made like a runtime would (a named netns with lo up), one per ``pod()`` call

Built from the test-bed's steps (``flatnet_lab.testbed.net``). Everything is named
``fnt-<6 hex>-*`` and removed by ``close()`` (also on failure: use it as
a context manager). Traffic helpers are bounded in count and time.
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
import sys
from dataclasses import dataclass, field

from flatnet.datapath import netns as fnetns
from flatnet.errors import FlatnetError
from flatnet_lab.testbed import net as testnet
from flatnet_lab.testbed.net import BuiltOnEnter
from tests.helpers.net import sh

SERVER = r"""
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
try:
    c, peer = s.accept()
except socket.timeout:
    print("timeout", flush=True)
    sys.exit(3)
c.settimeout(5)
c.sendall(b"hello " + peer[0].encode())
c.close()
print("peer", peer[0], flush=True)
"""

CLIENT = r"""
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print(s.recv(200).decode(), flush=True)
except OSError as e:
    print("error", e, flush=True)
    sys.exit(2)
"""


def tcp_exchange(server_ns: str, bind: str, client_ns: str, dst: str, port: int = 5201) -> tuple[str, str]:
    """One TCP connection client_ns -> server_ns; returns (client output, peer the server saw)."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, sys.executable, "-c", SERVER, bind, str(port), "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline().strip()
        if first != "ready":
            return "", f"server failed: {first} {server.stderr.read() if server.stderr else ''}"
        client = sh(client_ns, sys.executable, "-c", CLIENT, dst, str(port), "5", timeout=20)
        rest, _ = server.communicate(timeout=15)
        peer = ""
        for line in rest.splitlines():
            if line.startswith("peer "):
                peer = line.split()[1]
        return client.stdout.strip(), peer
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=5)


@dataclass
class Node:
    ns: str
    addr4: ipaddress.IPv4Interface
    addr6: ipaddress.IPv6Interface
    ports: tuple[str, ...]


@dataclass
class Topology(BuiltOnEnter):
    """Build with ``with Topology() as topo:``; see the module docstring for the layout."""

    nodes_n: int = 2
    ports: tuple[str, ...] = ("eth0",)
    addr_port: str = "eth0"
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    nodes: list[Node] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    _pods: int = 0

    @property
    def switch(self) -> str:
        return f"fnt-{self.tag}-sw"

    @property
    def vm(self) -> str:
        return f"fnt-{self.tag}-vm"

    @property
    def v200(self) -> str:
        return f"fnt-{self.tag}-v200"

    def _ns(self, name: str, quiet: bool = True) -> str:
        """A netns with lo up; ``quiet``: IPv6 DAD off (addresses are unique by construction)."""
        self.namespaces.append(name)
        if quiet:
            testnet.ensure_netns(name)
        else:
            testnet.create_netns(name)
            testnet.link_up(name, "lo")
        return name

    def _port(self, ns: str, ifname: str, sw_port: str, bridge: str, addrs: list[str]) -> None:
        """A veth ``ifname`` in ``ns`` whose peer ``sw_port`` is an access port of ``bridge``."""
        testnet.ensure_veth(self.switch, sw_port, ns, ifname)
        testnet.set_master(self.switch, sw_port, bridge)
        testnet.ensure_addresses(ns, ifname, addrs)

    def build(self) -> None:
        self._ns(self.switch)
        for br in ("br100", "br200"):
            testnet.ensure_bridge(self.switch, br)
        for i in range(1, self.nodes_n + 1):
            ns = self._ns(f"fnt-{self.tag}-n{i}")
            node = Node(
                ns,
                ipaddress.IPv4Interface(f"198.18.100.{10 + i}/24"),
                ipaddress.IPv6Interface(f"2001:db8:100::{10 + i}/64"),
                self.ports,
            )
            for j, port in enumerate(self.ports):
                addrs = [str(node.addr4), str(node.addr6)] if port == self.addr_port else []
                self._port(ns, port, f"n{i}p{j}", "br100", addrs)
            self.nodes.append(node)
        self._ns(self.vm)
        self._port(self.vm, "eth0", "vm", "br100", ["198.18.100.200/24", "2001:db8:100::200/64"])
        self._ns(self.v200)
        self._port(self.v200, "eth0", "v200", "br200", ["198.18.100.201/24", "2001:db8:100::201/64"])

    def pod(self) -> str:
        """A fresh container netns, as a runtime makes it: named, lo up, nothing else."""
        self._pods += 1
        return self._ns(f"fnt-{self.tag}-p{self._pods}", quiet=False)

    def close(self) -> None:
        for name in reversed(self.namespaces):
            try:
                testnet.remove_netns(name)
            except FlatnetError:
                pass
        self.namespaces.clear()


# --- helpers for datapath tests -------------------------------------------------------------

GATEWAY4 = ipaddress.ip_address("198.18.100.1")


def pod_addrs(n: int) -> tuple[ipaddress.IPv4Interface, ipaddress.IPv6Interface]:
    """The n-th pod's addresses on the VLAN-100 subnet (198.18.100.50+n, 2001:db8:100::50+n)."""
    return (
        ipaddress.IPv4Interface(f"198.18.100.{50 + n}/24"),
        ipaddress.IPv6Interface(f"2001:db8:100::{50 + n}/64"),
    )


def link_names(ns: str) -> set[str]:
    """Names of every link in ``ns``."""
    with fnetns.iproute(ns) as ip:
        return {msg.get("ifname") for msg in ip.link("dump")}


def route_dsts(ns: str) -> set[str]:
    """``dst/len dev-index proto`` of every main-table route in ``ns`` (v4 and v6)."""
    out = set()
    with fnetns.iproute(ns) as ip:
        for msg in ip.route("dump", table=254):
            fam_any = "0.0.0.0" if msg["family"] == 2 else "::"
            out.add(f"{msg.get('dst') or fam_any}/{msg['dst_len']} {msg.get('oif')} {msg['proto']}")
    return out


def iface_addrs(ns: str, ifname: str) -> set[str]:
    """Global addresses on ``ifname`` in ``ns``."""
    with fnetns.iproute(ns) as ip:
        idx = ip.link_lookup(ifname=ifname)
        if not idx:
            return set()
        return {f"{m.get('address')}/{m['prefixlen']}" for m in ip.addr("dump", index=idx[0]) if m["scope"] == 0}
