"""Hand-built attack frames, and the unprivileged sender that puts them on a pod's wire.

The sender runs as an attacker in a pod would: ``setpriv`` to uid/gid 65534 with CAP_NET_RAW
as its only capability (what containerd, CRI-O and podman grant every container), writing
raw frames to an AF_PACKET socket — optionally with PACKET_QDISC_BYPASS, the socket option
that skips the qdisc layer and tc's egress hook. It reports its uid and effective capability
mask, so a test can assert the attacker really held nothing more.
"""

from __future__ import annotations

import ipaddress
import struct
import subprocess
import sys

CAP_NET_RAW_MASK = 1 << 13
NOBODY = 65534

SENDER = r"""
import socket, sys
caps = next(l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff:"))
import os
print("uid", os.getuid(), "capeff", caps, flush=True)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
if sys.argv[3] == "bypass":
    s.setsockopt(263, 20, 1)  # SOL_PACKET, PACKET_QDISC_BYPASS
label = int(sys.argv[5]) if len(sys.argv) > 5 else 0
s.bind((sys.argv[1], 0))
frame = bytes.fromhex(sys.argv[2])
sent = 0
for _ in range(int(sys.argv[4])):
    try:
        if label > 0:  # the sll_protocol the kernel files the frame under (skb->protocol), whatever it holds
            s.sendto(frame, (sys.argv[1], label))
        else:
            s.send(frame)
        sent += 1
    except OSError as e:  # EPERM when a filter drops it on some paths: still "sent" by the attacker
        print("send-error", e.errno, flush=True)
print("sent", sent, flush=True)
"""


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def eth(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype) + payload


def arp(op: int, sha: str, spa: str, tha: str, tpa: str) -> bytes:
    return (
        struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
        + mac_bytes(sha)
        + ipaddress.IPv4Address(spa).packed
        + mac_bytes(tha)
        + ipaddress.IPv4Address(tpa).packed
    )


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64) -> bytes:
    head = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0x1234,
        0,
        ttl,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    head = head[:10] + struct.pack("!H", _csum(head)) + head[12:]
    return head + payload


def udp4(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 packet carrying UDP (checksum 0: optional in IPv4)."""
    return ipv4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


def tcp4_syn(src: str, dst: str, sport: int, dport: int) -> bytes:
    """An IPv4 packet carrying a TCP SYN, checksum filled (a receiver drops a bad one)."""
    head = struct.pack("!HHIIBBHHH", sport, dport, 0x1000, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + struct.pack("!BBH", 0, 6, 20)
    head = head[:16] + struct.pack("!H", _csum(pseudo + head)) + head[18:]
    return ipv4(src, dst, 6, head)


def ipv6(src: str, dst: str, nh: int, payload: bytes, hlim: int = 255) -> bytes:
    return (
        struct.pack("!IHBB", 6 << 28, len(payload), nh, hlim)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + payload
    )


def icmpv6(src: str, dst: str, body: bytes) -> bytes:
    """An IPv6 packet carrying ICMPv6 ``body`` (type, code, 0 checksum, rest), checksum filled."""
    pseudo = ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + struct.pack("!I3xB", len(body), 58)
    c = _csum(pseudo + body)
    return ipv6(src, dst, 58, body[:2] + struct.pack("!H", c) + body[4:])


def router_advert(src_mac: str, src_ll: str, prefix: str) -> bytes:
    """An RA from ``src_ll``: default router for 1800 s, SLAAC prefix ``prefix`` (a /64)."""
    net = ipaddress.IPv6Network(prefix)
    body = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
    body += struct.pack("!BB", 1, 1) + mac_bytes(src_mac)
    body += struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0) + net.network_address.packed
    return eth("33:33:00:00:00:01", src_mac, 0x86DD, icmpv6(src_ll, "ff02::1", body))


def neighbor_solicit_dad(src_mac: str, target: str) -> bytes:
    """A DAD probe: NS from ``::`` to the target's solicited-node group (no source option)."""
    t = ipaddress.IPv6Address(target)
    group = ipaddress.IPv6Address("ff02::1:ff00:0") + (int(t) & 0xFFFFFF)
    mac = "33:33:" + ":".join(f"{b:02x}" for b in group.packed[-4:])
    body = struct.pack("!BBHI", 135, 0, 0, 0) + t.packed
    return eth(mac, src_mac, 0x86DD, icmpv6("::", str(group), body))


def neighbor_advert(src_mac: str, src: str, target: str, dst_mac: str, dst: str) -> bytes:
    """An unsolicited NA (override flag) claiming ``target`` at ``src_mac``."""
    body = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + ipaddress.IPv6Address(target).packed
    body += struct.pack("!BB", 2, 1) + mac_bytes(src_mac)
    return eth(dst_mac, src_mac, 0x86DD, icmpv6(src, dst, body))


def dhcp_offer(src_mac: str, src_ip: str, marker: bytes) -> bytes:
    """A broadcast DHCPOFFER (UDP 67 -> 68) whose ``sname`` field carries ``marker``."""
    bootp = struct.pack("!BBBBIHH", 2, 1, 6, 0, 0x5EED, 0, 0x8000)
    bootp += b"\0" * 4 + ipaddress.IPv4Address("198.18.100.99").packed + ipaddress.IPv4Address(src_ip).packed
    bootp += b"\0" * 4 + b"\0" * 16 + marker.ljust(64, b"\0") + b"\0" * 128
    bootp += b"\x63\x82\x53\x63" + bytes([53, 1, 2, 54, 4]) + ipaddress.IPv4Address(src_ip).packed + b"\xff"
    return eth("ff:ff:ff:ff:ff:ff", src_mac, 0x0800, udp4(src_ip, "255.255.255.255", 67, 68, bootp))


def tagged(src_mac: str, vid: int, marker: bytes) -> bytes:
    """A broadcast 802.1Q-tagged frame in VLAN ``vid`` carrying ``marker``."""
    inner = struct.pack("!HH", vid & 0xFFF, 0x0800) + marker * 8
    return eth("ff:ff:ff:ff:ff:ff", src_mac, 0x8100, inner)


def send_as_attacker(ns: str, ifname: str, frame: bytes, count: int = 3, bypass: bool = False, label: int = 0) -> str:
    """Send ``frame`` ``count`` times from ``ns`` as uid 65534 holding only CAP_NET_RAW.

    ``label``: the protocol number given to ``sendto`` (sll_protocol), which the kernel takes
    as the frame's protocol without looking at its ethertype. By default the frame's own
    ethertype, as a tool that opens ``socket(AF_PACKET, SOCK_RAW, htons(proto))`` labels it
    (some drivers, e.g. ipvlan, leave an unlabelled raw frame at protocol 0, which the filter
    drops outright); another number makes a mislabelled frame; -1 sends it unlabelled.

    Returns the sender's output; raises if it did not run as that unprivileged attacker.
    """
    if label == 0:
        (ethertype,) = struct.unpack("!H", frame[12:14])
        label = ethertype if ethertype >= 0x600 else -1
    cmd = [
        "ip", "netns", "exec", ns,
        "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
        "--inh-caps=-all,+net_raw", "--ambient-caps=-all,+net_raw", "--bounding-set=-all,+net_raw",
        sys.executable, "-c", SENDER, ifname, frame.hex(), "bypass" if bypass else "queue", str(count), str(label),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    out = proc.stdout
    assert proc.returncode == 0, f"attacker failed: {proc.stderr or out}"
    first = out.split("\n", 1)[0].split()
    assert first[:2] == ["uid", str(NOBODY)], out
    assert int(first[3], 16) == CAP_NET_RAW_MASK, f"attacker held more than CAP_NET_RAW: {out}"
    return out
