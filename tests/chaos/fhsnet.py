"""One shared L2 segment with a gateway, a VM, an ordinary host and a flatnet node: the
place where first-hop attacks are sent and their effects looked for.

    switch netns  br0 (a plain bridge: the "switch"; its FDB shows where a MAC was learnt)
    gw            198.18.100.1/24, 2001:db8:100::1/64   (the segment's router)
    vm            198.18.100.200/24, 2001:db8:100::200/64 (a production VM: accepts RAs, as VMs do)
    host          198.18.100.150/24                       (a host on the segment that is not a pod)
    n1            the node: eth0 198.18.100.11/24; pods in ``mode`` (macvlan / bridge / ipvlan)
With ``vlan`` set (kernel tier: needs 8021q and bridge vlan_filtering) the switch is
VLAN-aware: gw, vm and host are access ports of that VLAN, the node's port a trunk carrying
it tagged, the node's address on ``eth0.<vlan>`` and the pods in that VLAN (macvlan/ipvlan on
the 802.1Q sub-interface, bridge mode on the VLAN-aware ``fnbr0``).
Pods are added through the real datapath (``get_datapath(mode).add``), as the agent does.
Everything is named ``fhs-<6 hex>-*`` and removed by ``close()``; every tool is bounded in
packets and seconds.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from flatnet.datapath import antispoof, firsthop, get_datapath, pod as dpod
from flatnet.datapath.api import AttachSpec, Attachment, Route
from flatnet.datapath.common import host_veth_name
from flatnet.errors import FlatnetError
from flatnet_lab.testbed import net as testnet
from tests.chaos.spoofnet import RAW_SNIFF, UDP_SINK
from tests.helpers.net import sh, wait_until

NET4, NET6 = "198.18.100", "2001:db8:100:"
#: the kernel tier's VM is emulated (TCG) and far slower: every listening window grows
SLOW = 4.0 if os.environ.get("FLATNET_KERNEL_TIER") == "vm" else 1.0
GW4, GW6, VM4, VM6, HOST4 = f"{NET4}.1", f"{NET6}:1", f"{NET4}.200", f"{NET6}:200", f"{NET4}.150"


@dataclass
class Sender:
    """Who sends an attack: a pod or an ordinary host; what it really is on the wire."""

    ns: str
    ifname: str
    mac: str
    ip4: str
    ll6: str
    spec: AttachSpec | None = None
    att: Attachment | None = None


@dataclass
class FhsNet:
    mode: str = "macvlan"
    vlan: int | None = None
    policy: dict | None = None
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    pods: list[Sender] = field(default_factory=list)

    def name(self, part: str) -> str:
        return f"fhs-{self.tag}-{part}"

    @property
    def sw(self) -> str:
        return self.name("sw")

    @property
    def node(self) -> str:
        return self.name("n1")

    def _ns(self, part: str) -> str:
        name = self.name(part)
        testnet.create_netns(name)
        self.namespaces.append(name)
        testnet.link_up(name, "lo")
        return name

    def _attach(self, part: str, cidrs: list[str], trunk: bool = False) -> str:
        ns = self._ns(part)
        testnet.ensure_veth(self.sw, f"s-{part}", ns, "eth0")
        testnet.set_master(self.sw, f"s-{part}", "br0")
        testnet.set_sysctl(ns, "net/ipv6/conf/eth0/accept_dad", "0")
        dev = "eth0"
        if self.vlan is not None:
            if trunk:
                testnet.set_port_vlans(self.sw, f"s-{part}", tagged=[self.vlan])
                if self.mode == "bridge":
                    return ns  # eth0 becomes fnbr0's trunk port: the node keeps no address here
                dev = f"eth0.{self.vlan}"
                testnet.ensure_vlan_link(ns, "eth0", dev, self.vlan)
            else:
                testnet.set_port_vlans(self.sw, f"s-{part}", access=self.vlan)
        testnet.ensure_addresses(ns, dev, cidrs)
        return ns

    def build(self) -> "FhsNet":
        sw = self._ns("sw")
        testnet.ensure_bridge(sw, "br0", vlan_filtering=self.vlan is not None)
        testnet.set_sysctl(sw, "net/ipv6/conf/all/disable_ipv6", "1")  # the switch itself is silent
        self._attach("gw", [f"{GW4}/24", f"{GW6}/64"])
        vm = self._attach("vm", [f"{VM4}/24", f"{VM6}/64"])
        testnet.set_sysctl(vm, "net/ipv6/conf/eth0/accept_ra", "1")
        testnet.set_sysctl(vm, "net/ipv6/conf/eth0/autoconf", "1")
        self._attach("host", [f"{HOST4}/24"])
        self._attach("n1", [f"{NET4}.11/24", f"{NET6}:11/64"], trunk=True)
        return self

    def ns_of(self, part: str) -> str:
        return self.name(part)

    def add_pod(self, host: int, mode: str | None = None) -> Sender:
        ns = self._ns(f"p{len(self.pods)}")
        options = {firsthop.OPTION: self.policy} if self.policy is not None else {}
        spec = AttachSpec(
            container_id=f"fhs-{self.tag}-c{len(self.pods)}",
            ifname="eth0",
            netns=f"/run/netns/{ns}",
            mode=mode or self.mode,
            master="eth0",
            vlan=self.vlan,
            addresses=(
                ipaddress.ip_interface(f"{NET4}.{host}/24"),
                ipaddress.ip_interface(f"{NET6}:{host}/64"),
            ),
            routes=(Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address(GW4)),),
            host_netns=self.node,
            options=options,
        )
        att = get_datapath(spec.mode).add(spec)
        sender = Sender(ns, "eth0", att.mac, f"{NET4}.{host}", self.link_local(ns), spec, att)
        self.pods.append(sender)
        return sender

    def outsider(self) -> Sender:
        ns = self.name("host")
        return Sender(ns, "eth0", self.mac(ns), HOST4, self.link_local(ns))

    # ---- what the VM, the switch and the gateway show ----
    def mac(self, ns: str, ifname: str = "eth0") -> str:
        return json.loads(sh(ns, "ip", "-j", "link", "show", ifname).stdout)[0]["address"]

    def link_local(self, ns: str, ifname: str = "eth0") -> str:
        def found() -> bool:
            return "fe80::" in sh(ns, "ip", "-6", "addr", "show", "dev", ifname, "scope", "link").stdout

        wait_until(found, 5)
        out = sh(ns, "ip", "-j", "-6", "addr", "show", "dev", ifname, "scope", "link").stdout
        return next(a["local"] for a in json.loads(out)[0]["addr_info"] if "local" in a)

    def neigh_mac(self, ns: str, ip: str) -> str | None:
        out = sh(ns, "ip", "neigh", "show", ip).stdout.split()
        return out[out.index("lladdr") + 1] if "lladdr" in out else None

    def fdb_port(self, mac: str) -> str | None:
        """The switch port the switch last learnt ``mac`` on."""
        for entry in json.loads(sh(self.sw, "bridge", "-j", "fdb", "show", "br", "br0").stdout or "[]"):
            if entry.get("mac") == mac and "permanent" not in entry.get("state", ""):
                return str(entry.get("ifname"))
        return None

    def udp_sources(self, port: int, send: "callable[[], object]", seconds: float = 2.0) -> set[str]:  # type: ignore[valid-type]
        """Sources a UDP socket on the VM (``port``, broadcasts too) saw while ``send`` ran."""
        sink = subprocess.Popen(
            ["ip", "netns", "exec", self.name("vm"), sys.executable, "-c", UDP_SINK, str(port), str(seconds * SLOW)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
            send()
            out, _ = sink.communicate(timeout=15 * SLOW)
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait(5)
        return set(out.split())

    def vm_sniffed(self, marker: bytes, send: "callable[[], object]", seconds: float = 2.0) -> bool:  # type: ignore[valid-type]
        """Did a frame carrying ``marker`` reach the VM's eth0 while ``send`` ran?"""
        sniff = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.name("vm"),
                sys.executable,
                "-c",
                RAW_SNIFF,
                "eth0",
                marker.hex(),
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert sniff.stdout is not None and sniff.stdout.readline().strip() == "ready"
            send()
            out, _ = sniff.communicate(timeout=15 * SLOW)
        finally:
            if sniff.poll() is None:
                sniff.kill()
                sniff.wait(5)
        return "seen" in out

    @contextmanager
    def unfiltered(self, p: Sender) -> Iterator[None]:
        """Control runs: the pod's filters removed (pod side and, in bridge mode, node side)."""
        assert p.spec is not None and p.att is not None
        firsthop.remove(p.spec.netns, p.ifname)
        host = host_veth_name(p.spec.container_id, p.spec.ifname)
        if p.spec.mode == "bridge":
            antispoof.remove(self.node, host)
        try:
            yield
        finally:
            policy = firsthop.Policy.from_options(p.spec.options)
            dpod.install_filter(p.spec, p.spec.netns, p.mac, policy)
            if p.spec.mode == "bridge":
                antispoof.install(self.node, host, p.mac, [a.ip for a in p.spec.addresses])

    def close(self) -> None:
        for p in self.pods:
            try:
                assert p.spec is not None
                get_datapath(p.spec.mode).delete(p.spec)
            except Exception:  # noqa: BLE001 - the namespaces go next anyway
                pass
        for ns in reversed(self.namespaces):
            try:
                testnet.remove_netns(ns)
            except FlatnetError:
                pass
