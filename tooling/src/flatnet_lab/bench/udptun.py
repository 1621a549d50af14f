"""A userspace TUN <-> UDP tunnel, like flannel's old ``udp`` backend: the historical baseline.

Every packet crosses into userspace twice (read from the TUN device, sendto() the peer
node; recv() there, write to its TUN device). Run one per node, inside the node's netns:

    python -m flatnet_lab.bench.udptun --tun fnbtun0 --addr 198.18.250.1/24 \\
        --local 198.18.100.11 --peer 198.18.100.12

It prints ``ready`` once the device is up and forwards until SIGTERM. It creates only its
own TUN device, in the namespace it runs in (the bench starts it inside a lab node).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import socket
import struct
import sys
import threading

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
PORT = 8285  # flannel's udp backend port


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def configure(name: str, cidr: str, mtu: int) -> None:
    """Address, MTU and up, over netlink in this process's own netns (the test-bed's step)."""
    from flatnet_lab.testbed.net import configure_link

    configure_link(None, name, cidr, mtu)


def tun_to_udp(fd: int, sock: socket.socket, peer: tuple[str, int]) -> None:
    while True:
        sock.sendto(os.read(fd, 65535), peer)


def udp_to_tun(fd: int, sock: socket.socket) -> None:
    while True:
        os.write(fd, sock.recv(65535))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tun", required=True)
    ap.add_argument("--addr", required=True, help="tunnel address with prefix")
    ap.add_argument("--local", required=True, help="this node's underlay address")
    ap.add_argument("--peer", required=True, help="the other node's underlay address")
    ap.add_argument("--mtu", type=int, default=1400)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    fd = open_tun(args.tun)
    configure(args.tun, args.addr, args.mtu)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((args.local, PORT))
    threading.Thread(target=tun_to_udp, args=(fd, sock, (args.peer, PORT)), daemon=True).start()
    print("ready", flush=True)
    try:
        udp_to_tun(fd, sock)
    except (OSError, KeyboardInterrupt):
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
