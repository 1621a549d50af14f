"""The VLAN conflict probe (datapath/conflict.py) against real hosts in real namespaces.

fni-<tag>-n ("node") --veth-- fni-<tag>-h ("host" flatnet does not manage): the host has
addresses configured by hand; probes from the node's end of the link must find exactly those,
by ARP (RFC 5227 probe) and by DAD-style NS, and nothing else.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
from typing import Iterator

import pytest

pytestmark = pytest.mark.netns

if os.geteuid() != 0:
    pytest.skip("needs root (network namespaces)", allow_module_level=True)

from flatnet.datapath import conflict  # noqa: E402
from flatnet.datapath.api import AttachSpec  # noqa: E402
from flatnet.datapath.netns import iproute  # noqa: E402

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=20)


@pytest.fixture
def pair() -> Iterator[tuple[str, str, str]]:
    """(node netns, host netns, host MAC); veth fniv0 (node) -- fniv1 (host)."""
    tag = secrets.token_hex(3)
    node, host = f"fni-{tag}-n", f"fni-{tag}-h"
    try:
        from pyroute2 import netns as pnetns

        pnetns.create(node)
        pnetns.create(host)
        with iproute(node) as ip:
            ip.link("add", ifname="fniv0", kind="veth", peer={"ifname": "fniv1", "net_ns_fd": host})
            ip.link("set", index=ip.link_lookup(ifname="fniv0")[0], state="up")
        with iproute(host) as ip:
            idx = ip.link_lookup(ifname="fniv1")[0]
            ip.link("set", index=idx, state="up")
            ip.addr("add", index=idx, address="198.18.140.5", prefixlen=24)
            ip.addr("add", index=idx, address="2001:db8:140::5", prefixlen=64, flags=0x02)  # nodad
            mac = ip.get_links(idx)[0].get_attr("IFLA_ADDRESS")
        yield node, host, mac
    finally:
        for ns in (node, host):
            subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=20)


def test_arp_probe_finds_the_host_and_only_it(pair: tuple[str, str, str]) -> None:
    node, _host, mac = pair
    taken, free = ipaddress.ip_address("198.18.140.5"), ipaddress.ip_address("198.18.140.6")
    assert conflict.probe(node, "fniv0", taken, wait=1.0) == mac
    assert conflict.probe(node, "fniv0", free, wait=0.05) is None


def test_dad_probe_finds_the_host_and_only_it(pair: tuple[str, str, str]) -> None:
    node, _host, mac = pair
    taken, free = ipaddress.ip_address("2001:db8:140::5"), ipaddress.ip_address("2001:db8:140::6")
    assert conflict.probe(node, "fniv0", taken, wait=1.0) == mac
    assert conflict.probe(node, "fniv0", free, wait=0.05) is None


def test_probe_link_is_the_parent_that_exists(pair: tuple[str, str, str]) -> None:
    node, _host, _mac = pair
    spec = AttachSpec(container_id="c", ifname="eth0", netns="", mode="macvlan", master="fniv0", host_netns=node)
    assert conflict.probe_link(spec) == "fniv0"
    missing = AttachSpec(
        container_id="c", ifname="eth0", netns="", mode="macvlan", master="fniv0", vlan=300, host_netns=node
    )
    assert conflict.probe_link(missing) is None


@pytest.fixture
def kept() -> Iterator[None]:
    conflict.keep_sockets()
    try:
        yield
    finally:
        conflict._kept.enabled = False
        conflict._kept.close_all()  # they pin the test's netns


def _kept_socket() -> object:
    """The one kept socket, once the probe's thread has given it back (bounded wait)."""
    import time

    for _ in range(200):
        got = conflict._kept.kept()
        if got:
            assert len(got) == 1
            return got[0]
        time.sleep(0.01)
    raise AssertionError("the probe's socket was not kept")


def test_kept_sockets_are_reused_and_frames_from_before_a_probe_are_no_conflict(
    pair: tuple[str, str, str], kept: None
) -> None:
    """The agent keeps probe sockets open (closing one per probe slowed the node). A kept
    socket queues every ARP on the link between probes; those predate the next probe (say,
    of a pod that used the address before) and must not count as an answer."""
    node, host, mac = pair
    taken, free = ipaddress.ip_address("198.18.140.5"), ipaddress.ip_address("198.18.140.6")
    assert conflict.probe(node, "fniv0", free, wait=0.05) is None
    first = _kept_socket()
    # the host uses .6 for a moment: its ARP requests (sender .6) queue on the kept socket
    sh(IP, "-n", host, "addr", "add", "198.18.140.6/24", "dev", "fniv1")
    subprocess.run(
        [IP, "netns", "exec", host, "ping", "-c", "1", "-W", "1", "-I", "198.18.140.6", "198.18.140.7"],
        capture_output=True,
        timeout=10,
    )
    sh(IP, "-n", host, "addr", "del", "198.18.140.6/24", "dev", "fniv1")
    assert conflict.probe(node, "fniv0", free, wait=0.05) is None  # the queued frames were dropped
    assert _kept_socket() is first  # and the socket was the kept one
    assert conflict.probe(node, "fniv0", taken, wait=1.0) == mac  # a live answer still counts
