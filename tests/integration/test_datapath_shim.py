"""The node's shim link (macvlan sibling ``fns-<hash>`` of the parent): how the node reaches
its own pods, which source address it uses, and that it goes with the last pod.

Real namespaces and real traffic. The node here is the common podman shape: its parent on
the pod segment carries NO address, its own address is on another link ("mgmt0", a
management network). Host -> pod must work anyway, from that address: the host routes carry
it as ``prefsrc`` and the pod gets an on-link route to it (datapath/shim.py).

    fnsh-X-sw    br0: the pod segment
    fnsh-X-node  eth0 (the parent, no address) on br0; mgmt0 (a veth to nowhere) 198.19.7.11/24, 2001:db8:7::11/64
    fnsh-X-vm    198.18.100.200/24 on br0
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import threading
from typing import Iterator

import pytest
from flatnet_topo import link_names, pod_addrs, route_dsts, tcp_exchange

from flatnet.datapath import get_datapath, netns, routes, shim
from flatnet.datapath.api import AttachSpec, Route
from flatnet.datapath.common import RTPROT_FLATNET, shim_name
from flatnet_lab.testbed import net as labnet
from tests.helpers.net import ping, sh, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")]

MGMT4, MGMT6 = "198.19.7.11", "2001:db8:7::11"


class Net:
    def __init__(self) -> None:
        tag = secrets.token_hex(2)
        self.sw, self.node, self.vm = (f"fnsh-{tag}-{n}" for n in ("sw", "node", "vm"))
        self.namespaces = [self.sw, self.node, self.vm]
        self.pods = 0

    def build(self) -> None:
        for ns in self.namespaces:
            labnet.ensure_netns(ns)
        labnet.ensure_bridge(self.sw, "br0")
        for i, (ns, ifname, addrs) in enumerate([(self.node, "eth0", []), (self.vm, "eth0", ["198.18.100.200/24"])]):
            labnet.ensure_veth(self.sw, f"p{i}", ns, ifname)
            labnet.set_master(self.sw, f"p{i}", "br0")
            labnet.ensure_addresses(ns, ifname, addrs)
        labnet.ensure_veth(self.sw, "mg", self.node, "mgmt0")  # the management network (no dummy here)
        labnet.link_up(self.sw, "mg")
        labnet.link_up(self.node, "mgmt0")
        labnet.ensure_addresses(self.node, "mgmt0", [f"{MGMT4}/24", f"{MGMT6}/64"])
        # a tentative v6 address (DAD running) is no source yet: the tests need MGMT6 usable
        settled = wait_until(lambda: "tentative" not in sh(self.node, "ip", "-6", "addr", "show", "mgmt0").stdout, 10)
        assert settled, "the management v6 address stayed tentative"

    def pod(self) -> str:
        self.pods += 1
        name = f"{self.namespaces[0][:-3]}-p{self.pods}"
        labnet.create_netns(name)
        labnet.link_up(name, "lo")
        self.namespaces.append(name)
        return name

    def spec(self, pod_ns: str, n: int) -> AttachSpec:
        return AttachSpec(
            container_id=f"ctr-{pod_ns}",
            ifname="eth0",
            netns=netns.ns_path(pod_ns) or "",
            mode="macvlan",
            master="eth0",
            addresses=pod_addrs(n),
            routes=(Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("198.18.100.1")),),
            host_netns=self.node,
        )

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            try:
                labnet.remove_netns(ns)
            except Exception:  # noqa: BLE001 - best effort, the rest still goes
                pass


@pytest.fixture
def net() -> Iterator[Net]:
    n = Net()
    try:
        n.build()
        yield n
    finally:
        n.close()


def flatnet_routes(ns: str) -> set[str]:
    return {r for r in route_dsts(ns) if r.endswith(f" {RTPROT_FLATNET}")}


def test_host_reaches_its_pod_from_its_own_address_with_none_on_the_parent(net: Net) -> None:
    dp = get_datapath("macvlan")
    pod_ns = net.pod()
    spec = net.spec(pod_ns, 5)
    dp.add(spec)
    try:
        # the host route carries the management address as its source ...
        got = sh(net.node, "ip", "-o", "route", "get", "198.18.100.55").stdout
        assert f"src {MGMT4}" in got and shim_name("eth0") in got, got
        # ... the pod answers it on its own segment (an on-link route, the shim answers ARP)
        assert re.search(rf"^{re.escape(MGMT4)} dev eth0 .*scope link", sh(pod_ns, "ip", "-o", "route").stdout, re.M)
        assert ping(net.node, "198.18.100.55", tries=3, wait=1), "host -> pod failed"
        reply, peer = tcp_exchange(pod_ns, "198.18.100.55", net.node, "198.18.100.55", port=5311)
        assert reply.startswith("hello ") and peer == MGMT4, (reply, peer)
        # v6 too: from the node's management v6 address, answered by proxy NDP on the shim
        got6 = sh(net.node, "ip", "-o", "-6", "route", "get", "2001:db8:100::55").stdout
        assert f"src {MGMT6}" in got6, got6
        assert ping(net.node, "2001:db8:100::55", tries=5, wait=1), "host -> pod (v6) failed"
        # and the VM on the segment still reaches the pod directly
        assert ping(net.vm, "198.18.100.55", tries=3, wait=1)
    finally:
        dp.delete(spec)


def test_an_address_in_the_pods_subnet_is_preferred(net: Net) -> None:
    labnet.ensure_addresses(net.node, "mgmt0", ["198.18.100.9/32"])  # in the subnet, on another link
    dp = get_datapath("macvlan")
    pod_ns = net.pod()
    spec = net.spec(pod_ns, 6)
    dp.add(spec)
    try:
        assert "src 198.18.100.9" in sh(net.node, "ip", "-o", "route", "get", "198.18.100.56").stdout
        assert MGMT4 not in sh(pod_ns, "ip", "-o", "route").stdout, "no on-link route needed in the subnet"
    finally:
        dp.delete(spec)


def test_the_shim_goes_with_the_last_pod_of_its_parent(net: Net) -> None:
    dp = get_datapath("macvlan")
    name = shim_name("eth0")
    specs = [net.spec(net.pod(), n) for n in (1, 2)]
    for spec in specs:
        dp.add(spec)
    assert name in link_names(net.node)
    dp.delete(specs[0])
    assert name in link_names(net.node), "another pod still routes through the shim"
    assert ping(net.node, "198.18.100.52", tries=3, wait=1), "the remaining pod lost the node"
    dp.delete(specs[1])
    assert name not in link_names(net.node) and flatnet_routes(net.node) == set()
    assert link_names(net.node) == {"lo", "eth0", "mgmt0"}
    dp.delete(specs[1])  # idempotent, with the shim gone
    # and a pod after that gets a fresh shim
    spec = net.spec(net.pod(), 3)
    dp.add(spec)
    assert name in link_names(net.node) and ping(net.node, "198.18.100.53", tries=3, wait=1)
    dp.delete(spec)
    assert name not in link_names(net.node)


def test_a_shim_in_use_is_never_retired_and_an_add_waits_for_a_retirement(net: Net) -> None:
    dp = get_datapath("macvlan")
    name = shim_name("eth0")
    first = net.spec(net.pod(), 1)
    dp.add(first)
    with netns.ipr(net.node) as ip:  # the shim with no host route left: retirable
        for a in first.addresses:
            assert routes.del_host(ip, a.ip)
    with shim.holding(net.node, "eth0", exclusive=False):  # an ADD is between ensure and routes
        assert shim.retire_if_unused(net.node, "eth0") is False
    assert name in link_names(net.node)

    # a DEL holds the lock to retire it: an ADD meanwhile waits, then makes a shim of its own
    second = net.spec(net.pod(), 2)
    done: list[BaseException | None] = []

    def add() -> None:
        try:
            dp.add(second)
            done.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            done.append(exc)

    with shim.holding(net.node, "eth0", exclusive=True):
        worker = threading.Thread(target=add)
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive(), "ADD must wait while the shim is being retired"
        with netns.ipr(net.node) as ip:
            link = ip.get_link(name)
            assert link is not None
            ip.del_link(link.index)  # what the retiring DEL does
    worker.join(timeout=60)
    assert done == [None], done
    assert ping(net.node, "198.18.100.52", tries=3, wait=1), "the ADD after a retirement must route"
    dp.delete(second)
    dp.delete(first)
    assert name not in link_names(net.node)


def test_a_del_through_the_agent_leaves_the_idle_shim_to_the_reconciler(net: Net) -> None:
    """``shim.KEEP_IDLE`` (the agent's DELs): the last pod's DEL keeps the shim, so the node's
    next ADD needs no new one; ``retire_idle`` (the reconciler's pass) deletes it if it is
    still unused, and keeps one that got a pod again."""
    dp = get_datapath("macvlan")
    name = shim_name("eth0")
    first = net.spec(net.pod(), 1)
    first.options[shim.KEEP_IDLE] = True
    dp.add(first)
    index = dict(link_index_pairs(net.node))[name]
    dp.delete(first)
    assert name in link_names(net.node), "the agent's DEL of the last pod must leave the shim"
    second = net.spec(net.pod(), 2)
    second.options[shim.KEEP_IDLE] = True
    dp.add(second)
    assert dict(link_index_pairs(net.node))[name] == index, "the next ADD must reuse the shim"
    assert ping(net.node, "198.18.100.52", tries=3, wait=1)
    assert shim.retire_idle() == [] and name in link_names(net.node)  # it has a pod again
    dp.delete(second)
    assert shim.retire_idle() == [name] and name not in link_names(net.node)
    assert shim.retire_idle() == []  # nothing left to look at


def link_index_pairs(ns: str) -> list[tuple[str, int]]:
    out = sh(ns, "ip", "-o", "link", "show").stdout
    return [(m.group(2).split("@")[0], int(m.group(1))) for m in re.finditer(r"^(\d+): ([^:]+):", out, re.M)]
