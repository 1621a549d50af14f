"""The first-hop attacks of issue 20, each as "send it, then look for its effect".

Every function sends one attack from ``s`` (a pod, or an ordinary host on the segment) as
an unprivileged attacker (uid 65534, only CAP_NET_RAW: tests/chaos/frames.py) and returns
True when the effect is visible where it would hurt: the VM's neighbour table, a VM
socket, the switch's FDB, the VM's IPv6 routes and addresses. The tests call each one from
a filtered pod (must be False), from the same pod with its filter removed and from a host
that is not a pod (must be True), so every "blocked" can fail.
"""

from __future__ import annotations

import secrets
import time
from typing import Callable

from tests.chaos import frames
from tests.chaos.fhsnet import GW4, SLOW, VM4, FhsNet, Sender
from tests.helpers.net import ping, sh, wait_until


def arp_reply_claims_gateway(net: FhsNet, s: Sender, bypass: bool = False, label: int = 0) -> bool:
    """Unsolicited ARP reply to the VM: "198.18.100.1 is at <attacker MAC>"."""
    vm = net.name("vm")
    vm_mac = net.mac(vm)
    sh(vm, "ip", "neigh", "flush", "dev", "eth0")
    assert ping(vm, GW4), "the VM cannot reach its gateway"  # a fresh, real entry for the gateway
    time.sleep(1.2)  # past the neighbour entry's locktime (1 s): a reply may override it now
    frame = frames.eth(vm_mac, s.mac, 0x0806, frames.arp(2, s.mac, GW4, vm_mac, VM4))
    return _twice(
        lambda: frames.send_as_attacker(s.ns, s.ifname, frame, bypass=bypass, label=label),
        lambda: net.neigh_mac(vm, GW4) == s.mac,
    )


def _twice(send: Callable[[], object], took: Callable[[], bool]) -> bool:
    """Send, look for the effect for a second; once more if none (a neighbour entry that was
    refreshed within its 1 s locktime ignores an override): an attacker would repeat too."""
    for _ in range(2):
        send()
        if wait_until(took, 1.0 * SLOW):
            return True
        time.sleep(1.0)
    return False


def udp_from_gateway_address(net: FhsNet, s: Sender, bypass: bool = False, label: int = 0) -> bool:
    """UDP to the VM with the gateway's address as source: does the VM's socket get it?"""
    vm_mac = net.mac(net.name("vm"))
    frame = frames.eth(vm_mac, s.mac, 0x0800, frames.udp4(GW4, VM4, 40001, 40400, b"fhs-spoof"))
    seen = net.udp_sources(40400, lambda: frames.send_as_attacker(s.ns, s.ifname, frame, bypass=bypass, label=label))
    return GW4 in seen


def tcp_from_gateway_address(net: FhsNet, s: Sender, bypass: bool = False, label: int = 0) -> bool:
    """A TCP SYN to the VM with the gateway's address as source: does it reach the VM's TCP
    input (a counter in the VM's input hook)? TCP is what the filter lets go early (after
    the source checks): this is the attack that would pass if that early accept moved up."""
    vm = net.name("vm")
    vm_mac = net.mac(vm)
    made = sh(
        vm,
        "nft",
        "add table inet fnfhs; add counter inet fnfhs syn; "
        "add chain inet fnfhs in { type filter hook input priority -300; }; "
        # counted, then dropped: no SYN-ACK goes to the real gateway, whose RST would re-teach
        # the switch its MAC while the next attack (gateway-mac-as-source) looks at the FDB
        f"add rule inet fnfhs in ip saddr {GW4} tcp dport 40402 counter name syn drop",
    )
    assert made.returncode == 0, made.stderr
    try:
        frame = frames.eth(vm_mac, s.mac, 0x0800, frames.tcp4_syn(GW4, VM4, 40001, 40402))

        def seen() -> bool:
            out = sh(vm, "nft", "list", "counter", "inet", "fnfhs", "syn").stdout
            return "packets 0 " not in out

        return _twice(lambda: frames.send_as_attacker(s.ns, s.ifname, frame, bypass=bypass, label=label), seen)
    finally:
        sh(vm, "nft", "delete", "table", "inet", "fnfhs")


def gateway_mac_as_source(net: FhsNet, s: Sender, bypass: bool = False) -> bool:
    """A frame from the gateway's MAC: does the switch move that MAC to the attacker's port?"""
    gw = net.name("gw")
    gw_mac = net.mac(gw)
    assert ping(gw, VM4), "the gateway cannot reach the VM"
    assert net.fdb_port(gw_mac) == "s-gw", "the switch did not learn the gateway's MAC on its port"
    frame = frames.eth("ff:ff:ff:ff:ff:ff", gw_mac, 0x0800, frames.udp4(s.ip4, VM4, 40001, 40401, b"x"))
    frames.send_as_attacker(s.ns, s.ifname, frame, bypass=bypass)
    moved = wait_until(lambda: net.fdb_port(gw_mac) not in ("s-gw", None), 1.0 * SLOW)
    ping(gw, VM4)  # the gateway speaks again: the switch learns it back
    return moved


def router_advertisement(net: FhsNet, s: Sender, bypass: bool = False, label: int = 0) -> bool:
    """An RA from the attacker's own link-local: does the VM take it as default router / prefix?"""
    vm = net.name("vm")
    prefix = f"2001:db8:{secrets.randbelow(0xFFF) + 0x1000:x}::/64"
    frame = frames.router_advert(s.mac, s.ll6, prefix)
    frames.send_as_attacker(s.ns, s.ifname, frame, bypass=bypass, label=label)

    def taken() -> bool:
        routes = sh(vm, "ip", "-6", "route", "show", "default").stdout
        addrs = sh(vm, "ip", "-6", "addr", "show", "dev", "eth0").stdout
        return s.ll6 in routes or prefix.split("::")[0] + ":" in addrs

    took = wait_until(taken, 1.5 * SLOW)
    sh(vm, "ip", "-6", "route", "flush", "default")  # undo, for the next sender
    return took


def dhcp_reply(net: FhsNet, s: Sender, bypass: bool = False) -> bool:
    """A broadcast DHCPOFFER (UDP 67 -> 68): does a DHCP client socket on the VM receive it?"""
    frame = frames.dhcp_offer(s.mac, s.ip4, b"fhs-offer")
    seen = net.udp_sources(68, lambda: frames.send_as_attacker(s.ns, s.ifname, frame, bypass=bypass))
    return s.ip4 in seen


def vlan_tagged_frame(net: FhsNet, s: Sender, bypass: bool = False) -> bool:
    """An 802.1Q-tagged frame: does it reach the VM's port?

    VLAN 200 on a plain segment; on a VLAN the pod's own VID (a VLAN-aware bridge already
    drops other VIDs from an access port; the own VID is what it lets through)."""
    marker = secrets.token_bytes(8)
    frame = frames.tagged(s.mac, net.vlan or 200, marker)
    return net.vm_sniffed(marker, lambda: frames.send_as_attacker(s.ns, s.ifname, frame, bypass=bypass))


def na_claims_gateway6(net: FhsNet, s: Sender, bypass: bool = False) -> bool:
    """An unsolicited override NA: "2001:db8:100::1 is at <attacker MAC>" sent to the VM."""
    from tests.chaos.fhsnet import GW6, VM6

    vm = net.name("vm")
    vm_mac = net.mac(vm)
    sh(vm, "ip", "-6", "neigh", "flush", "dev", "eth0")
    assert ping(vm, GW6), "the VM cannot reach its IPv6 gateway"
    time.sleep(1.2)
    src = s.ll6
    frame = frames.neighbor_advert(s.mac, src, GW6, vm_mac, VM6)
    return _twice(
        lambda: frames.send_as_attacker(s.ns, s.ifname, frame, bypass=bypass), lambda: net.neigh_mac(vm, GW6) == s.mac
    )


ATTACKS: dict[str, Callable[..., bool]] = {
    "arp-reply-claims-gateway": arp_reply_claims_gateway,
    "udp-from-gateway-ip": udp_from_gateway_address,
    "tcp-from-gateway-ip": tcp_from_gateway_address,
    "gateway-mac-as-source": gateway_mac_as_source,
    "ipv6-router-advert": router_advertisement,
    "dhcp-reply": dhcp_reply,
    "vlan-tagged-frame": vlan_tagged_frame,
    "ipv6-na-claims-gateway": na_claims_gateway6,
}
