"""Two L2 segments (VLAN 100 / 200), one bridge-mode node, two VMs, and raw-traffic tools.

    switch netns  br100, br200 (one bridge per VLAN segment: no vlan_filtering here)
    node netns    eth0 -> br100 (198.18.100.11/24), eth1 -> br200 (198.18.101.11/24);
                  flatnet's bridge mode puts them under fnbr100 / fnbr200 with the pods
    vm100, vm200  198.18.100.200/24 on br100, 198.18.101.200/24 on br200
Everything is named ``fnk-<6 hex>-*`` and removed by ``close()``. Every traffic tool is
bounded in packets and seconds.
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
import sys
from dataclasses import dataclass, field

from flatnet.datapath import get_datapath
from flatnet.datapath.api import AttachSpec, Attachment, Route
from flatnet.datapath.common import host_veth_name
from flatnet.errors import FlatnetError
from flatnet_lab.testbed import net as testnet
from tests.helpers.net import sh

SEG = {100: ("198.18.100", "eth0"), 200: ("198.18.101", "eth1")}

UDP_SINK = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(0.3)
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[2])
seen = set()
while time.monotonic() < end:
    try:
        data, peer = s.recvfrom(2048)
    except socket.timeout:
        continue
    seen.add(peer[0])
print(" ".join(sorted(seen)), flush=True)
"""

UDP_SEND = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT: send from an address we do not own
s.bind((sys.argv[1], 0))
for _ in range(5):
    s.sendto(b"fnk", (sys.argv[2], int(sys.argv[3])))
"""

RAW_SEND = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
frame = bytes.fromhex(sys.argv[2])
for _ in range(3):
    try:
        s.send(frame)
    except OSError:  # ENOBUFS: the pod's first-hop filter dropped it on the way out
        pass
"""

RAW_SNIFF = r"""
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.settimeout(0.3)
print("ready", flush=True)
marker = bytes.fromhex(sys.argv[2])
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    try:
        if marker in s.recv(4096):
            print("seen", flush=True)
            break
    except socket.timeout:
        pass
"""


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def arp_request(sha: str, spa: str, tpa: str) -> str:
    """Broadcast ARP who-has ``tpa`` tell ``spa`` at ``sha``, as hex."""
    eth = b"\xff" * 6 + mac_bytes(sha) + b"\x08\x06"
    arp = (
        b"\x00\x01\x08\x00\x06\x04\x00\x01"
        + mac_bytes(sha)
        + ipaddress.IPv4Address(spa).packed
        + b"\x00" * 6
        + ipaddress.IPv4Address(tpa).packed
    )
    return (eth + arp).hex()


@dataclass
class Pod:
    ns: str
    ip: str
    vlan: int
    spec: AttachSpec
    att: Attachment

    @property
    def host_ifname(self) -> str:
        return host_veth_name(self.spec.container_id, self.spec.ifname)


@dataclass
class SpoofNet:
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)

    def name(self, part: str) -> str:
        return f"fnk-{self.tag}-{part}"

    @property
    def node(self) -> str:
        return self.name("n1")

    def vm(self, vlan: int) -> str:
        return self.name(f"vm{vlan}")

    def _ns(self, part: str) -> str:
        """A netns as a runtime makes it: lo up, nothing else (the test-bed's steps)."""
        name = self.name(part)
        testnet.create_netns(name)
        self.namespaces.append(name)
        testnet.link_up(name, "lo")
        return name

    def _port(self, ns: str, ifname: str, bridge: str, addr: str | None) -> None:
        sw_port = f"p{len(self.namespaces)}{ifname}"
        testnet.ensure_veth(self.name("sw"), sw_port, ns, ifname)
        testnet.set_master(self.name("sw"), sw_port, bridge)
        if addr:
            testnet.ensure_addresses(ns, ifname, [f"{addr}/24"])

    def build(self) -> "SpoofNet":
        sw = self._ns("sw")
        for br in ("br100", "br200"):
            testnet.ensure_bridge(sw, br)
        node = self._ns("n1")
        for vlan, (net, port) in SEG.items():
            self._port(node, port, f"br{vlan}", f"{net}.11")
            self._port(self._ns(f"vm{vlan}"), "eth0", f"br{vlan}", f"{net}.200")
        return self

    def add_pod(self, vlan: int, host: int) -> Pod:
        net, port = SEG[vlan]
        ns = self._ns(f"p{len(self.pods)}")
        ip = f"{net}.{host}"
        spec = AttachSpec(
            container_id=f"fnk-{self.tag}-c{len(self.pods)}",
            ifname="eth0",
            netns=f"/run/netns/{ns}",
            mode="bridge",
            master=port,
            bridge=f"fnbr{vlan}",
            addresses=(ipaddress.ip_interface(f"{ip}/24"),),
            routes=(Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address(f"{net}.1")),),
            host_netns=self.node,
        )
        att = get_datapath("bridge").add(spec)
        pod = Pod(ns, ip, vlan, spec, att)
        self.pods.append(pod)
        return pod

    def udp_seen(self, src: Pod, bind: str, vlan: int, port: int = 40400) -> set[str]:
        """Sources the VM on ``vlan`` saw when ``src`` sent 5 datagrams from ``bind``."""
        vm, dst = self.vm(vlan), f"{SEG[vlan][0]}.200"
        sink = subprocess.Popen(
            ["ip", "netns", "exec", vm, sys.executable, "-c", UDP_SINK, str(port), "2.5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
            sent = sh(src.ns, sys.executable, "-c", UDP_SEND, bind, dst, str(port))
            assert sent.returncode == 0, f"sender failed: {sent.stderr}"
            out, _ = sink.communicate(timeout=15)
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait(5)
        return set(out.split())

    def raw_seen(self, src: Pod, frame_hex: str, marker: bytes, vlan: int) -> bool:
        """Did a frame carrying ``marker``, sent raw by ``src``, reach the VM on ``vlan``?"""
        sniff = subprocess.Popen(
            ["ip", "netns", "exec", self.vm(vlan), sys.executable, "-c", RAW_SNIFF, "eth0", marker.hex(), "2.5"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert sniff.stdout is not None and sniff.stdout.readline().strip() == "ready"
            sent = sh(src.ns, sys.executable, "-c", RAW_SEND, "eth0", frame_hex)
            assert sent.returncode == 0, f"raw sender failed: {sent.stderr}"
            out, _ = sniff.communicate(timeout=15)
        finally:
            if sniff.poll() is None:
                sniff.kill()
                sniff.wait(5)
        return "seen" in out

    def neigh_mac(self, ns: str, ip: str) -> str | None:
        out = sh(ns, "ip", "neigh", "show", ip).stdout.split()
        return out[out.index("lladdr") + 1] if "lladdr" in out else None

    def close(self) -> None:
        for pod in self.pods:
            try:
                get_datapath("bridge").delete(pod.spec)
            except Exception:  # noqa: BLE001 - the namespaces go next anyway
                pass
        for ns in reversed(self.namespaces):
            try:
                testnet.remove_netns(ns)
            except FlatnetError:
                pass
