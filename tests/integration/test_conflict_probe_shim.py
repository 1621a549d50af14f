"""The conflict probe sees the node's own pods (issue 26): a macvlan parent never hears its
children, so the probe also leaves from the node's shim, a sibling child that does.

fnj-<tag>-n ("node"): veth fnjv0 (the parent) -- fnjv1 in fnj-<tag>-h (a host on the wire);
fnj-<tag>-p ("pod" of this node): a macvlan child of fnjv0 holding 198.18.141.7 (and a v6
address); the node's shim ``fns-<hash(fnjv0)>`` (macvlan, bridge mode, like the datapath's).
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

from flatnet.agent.probing import wire_probe  # noqa: E402
from flatnet.datapath import conflict  # noqa: E402
from flatnet.datapath.api import AttachSpec  # noqa: E402
from flatnet.datapath.common import shim_name  # noqa: E402
from flatnet.datapath.netns import iproute as ipr  # noqa: E402  (pyroute2's API: the test builds its own links)

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"
HELD4, HELD6 = ipaddress.ip_address("198.18.141.7"), ipaddress.ip_address("2001:db8:141::7")
WIRE4, FREE4 = ipaddress.ip_address("198.18.141.5"), ipaddress.ip_address("198.18.141.9")


@pytest.fixture
def node() -> Iterator[tuple[str, str, str]]:
    """(node netns, the same-node pod's MAC, the wire host's MAC)."""
    from pyroute2 import netns as pnetns

    tag = secrets.token_hex(3)
    n, h, p = f"fnj-{tag}-n", f"fnj-{tag}-h", f"fnj-{tag}-p"
    try:
        for ns in (n, h, p):
            pnetns.create(ns)
        with ipr(n) as ip:
            ip.link("add", ifname="fnjv0", kind="veth", peer={"ifname": "fnjv1", "net_ns_fd": h})
            parent = ip.link_lookup(ifname="fnjv0")[0]
            ip.link("set", index=parent, state="up")
            ip.link("add", ifname="fnjpod", kind="macvlan", link=parent, macvlan_mode="bridge")
            ip.link("set", index=ip.link_lookup(ifname="fnjpod")[0], net_ns_fd=p)
        with ipr(h) as ip:
            idx = ip.link_lookup(ifname="fnjv1")[0]
            ip.link("set", index=idx, state="up")
            ip.addr("add", index=idx, address=str(WIRE4), prefixlen=24)
            wire_mac = ip.get_links(idx)[0].get_attr("IFLA_ADDRESS")
        with ipr(p) as ip:
            idx = ip.link_lookup(ifname="fnjpod")[0]
            ip.addr("add", index=idx, address=str(HELD4), prefixlen=24)
            ip.addr("add", index=idx, address=str(HELD6), prefixlen=64, flags=0x02)  # nodad
            ip.link("set", index=idx, state="up")
            pod_mac = ip.get_links(idx)[0].get_attr("IFLA_ADDRESS")
        yield n, pod_mac, wire_mac
    finally:
        for ns in (n, h, p):
            subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=20)


def _add_shim(n: str) -> str:
    name = shim_name("fnjv0")
    with ipr(n) as ip:
        parent = ip.link_lookup(ifname="fnjv0")[0]
        ip.link("add", ifname=name, kind="macvlan", link=parent, macvlan_mode="bridge")
        ip.link("set", index=ip.link_lookup(ifname=name)[0], state="up")
    return name


def _spec(n: str) -> AttachSpec:
    return AttachSpec(container_id="c", ifname="eth0", netns="", mode="macvlan", master="fnjv0", host_netns=n)


def test_the_parent_alone_does_not_hear_a_pod_of_its_node(node: tuple[str, str, str]) -> None:
    """Why the shim is needed: the same-node pod answers, but not on the parent."""
    n, _pod_mac, wire_mac = node
    assert conflict.probe(n, "fnjv0", HELD4, wait=0.3) is None
    assert conflict.probe(n, "fnjv0", WIRE4, wait=1.0) == wire_mac  # the wire is heard


def test_probe_from_the_shim_finds_the_same_node_holder(node: tuple[str, str, str]) -> None:
    n, pod_mac, wire_mac = node
    spec = _spec(n)
    assert conflict.probe_links(spec) == ["fnjv0"]  # no shim yet: the parent only
    shim = _add_shim(n)
    assert conflict.probe_links(spec) == ["fnjv0", shim]
    assert conflict.probe(n, shim, HELD4, wait=1.0) == pod_mac
    assert conflict.probe(n, shim, HELD6, wait=1.0) == pod_mac
    # the agent's probe (parent and shim at once): the pod of this node, the host on the
    # wire, and nothing for a free address (the shim's probe seen leaving on the parent is
    # not an answer)
    assert wire_probe(spec, HELD4)() == pod_mac
    assert wire_probe(spec, HELD6)() == pod_mac
    assert wire_probe(spec, WIRE4)() == wire_mac
    for _ in range(3):
        assert wire_probe(spec, FREE4)() is None
        assert wire_probe(spec, ipaddress.ip_address("2001:db8:141::9"))() is None
