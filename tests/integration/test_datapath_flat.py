"""The flat datapath, macvlan and bridge modes, in real namespaces with real traffic.

Each mode gets its own topology (see flatnet_topo): two nodes on the VLAN-100 segment, a VM
beside them and a host on VLAN 200 with an address in the same subnet. Three pods are
plumbed once per mode (a, b on node 1; c on node 2); tests that change state make their own.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, replace

import pytest
from flatnet_topo import Topology, iface_addrs, link_names, pod_addrs, route_dsts, tcp_exchange

from flatnet import errors
from flatnet.datapath import get_datapath, netns
from flatnet.datapath.api import AttachSpec, Datapath, Route
from flatnet.datapath.common import host_veth_name, tmp_name
from tests.helpers.net import ping, sh, wait_until

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

ROUTES = (
    Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("198.18.100.1")),
    Route(ipaddress.ip_network("::/0"), ipaddress.ip_address("2001:db8:100::1")),
)


@dataclass
class Cluster:
    mode: str
    topo: Topology
    dp: Datapath
    master: str
    pods: dict[str, tuple[str, AttachSpec]]  # name -> (pod netns, spec)

    def spec(self, node: int, pod_ns: str, n: int, **kw: object) -> AttachSpec:
        base = AttachSpec(
            container_id=f"ctr-{pod_ns}",
            ifname="eth0",
            netns=netns.ns_path(pod_ns) or "",
            mode=self.mode,
            master=self.master,
            addresses=pod_addrs(n),
            routes=ROUTES,
            host_netns=self.topo.nodes[node].ns,
        )
        return replace(base, **kw) if kw else base

    def ip(self, name: str, version: int = 4) -> str:
        return str(next(a.ip for a in self.pods[name][1].addresses if a.version == version))


@pytest.fixture(scope="module", params=["macvlan", "bridge"])
def cluster(request: pytest.FixtureRequest):
    mode = request.param
    # bridge mode: a second access port per node that carries the node's address (and moves
    # it to the bridge), so the macvlan and bridge set-ups never share a parent
    ports, master = (("eth0", "eth1"), "eth1") if mode == "bridge" else (("eth0",), "eth0")
    with Topology(ports=ports, addr_port=master) as topo:
        cl = Cluster(mode, topo, get_datapath(mode), master, {})
        try:
            for name, node, n in (("a", 0, 1), ("b", 0, 2), ("c", 1, 3)):
                pod_ns = topo.pod()
                spec = cl.spec(node, pod_ns, n)
                cl.dp.add(spec)
                cl.pods[name] = (pod_ns, spec)
            yield cl
        finally:
            for _pod_ns, spec in cl.pods.values():
                cl.dp.delete(spec)


def test_add_reports_what_the_kernel_has(cluster: Cluster) -> None:
    pod_ns = cluster.topo.pod()
    spec = cluster.spec(0, pod_ns, 10)
    att = cluster.dp.add(spec)
    try:
        link = sh(pod_ns, "ip", "-o", "link", "show", "eth0").stdout
        assert att.mac.lower() in link.lower()
        assert f"mtu {att.mtu} " in link and att.mtu == 1500
        assert att.ifname == "eth0" and att.sandbox == spec.netns
        if cluster.mode == "bridge":
            assert att.host_ifname == host_veth_name(spec.container_id, "eth0")
            assert att.host_ifname in link_names(cluster.topo.nodes[0].ns)
        v6 = sh(pod_ns, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global").stdout
        assert "2001:db8:100::60/64" in v6 and "tentative" not in v6  # no DAD wait
        assert iface_addrs(pod_ns, "eth0") == {"198.18.100.60/24", "2001:db8:100::60/64"}
    finally:
        cluster.dp.delete(spec)


def test_pod_to_pod_same_node(cluster: Cluster) -> None:
    a_ns = cluster.pods["a"][0]
    assert ping(a_ns, cluster.ip("b"))
    assert ping(a_ns, cluster.ip("b", 6))


def test_pod_to_pod_across_nodes(cluster: Cluster) -> None:
    a_ns = cluster.pods["a"][0]
    assert ping(a_ns, cluster.ip("c"))
    assert ping(cluster.pods["c"][0], cluster.ip("a", 6))


def test_vm_pings_pod_v4_and_v6(cluster: Cluster) -> None:
    assert ping(cluster.topo.vm, cluster.ip("c"))
    assert ping(cluster.topo.vm, cluster.ip("a", 6))


def test_vm_opens_tcp_to_pod_without_nat(cluster: Cluster) -> None:
    pod_ns = cluster.pods["a"][0]
    reply, peer = tcp_exchange(pod_ns, cluster.ip("a"), cluster.topo.vm, cluster.ip("a"))
    assert reply == "hello 198.18.100.200"
    assert peer == "198.18.100.200"


def test_pod_calls_vm_with_its_own_source_address(cluster: Cluster) -> None:
    for name, version, vm_addr in (("c", 4, "198.18.100.200"), ("b", 6, "2001:db8:100::200")):
        reply, peer = tcp_exchange(cluster.topo.vm, vm_addr, cluster.pods[name][0], vm_addr)
        assert peer == cluster.ip(name, version), reply
        assert reply == f"hello {cluster.ip(name, version)}"


def test_other_vlan_cannot_reach_pod(cluster: Cluster) -> None:
    assert ping(cluster.topo.vm, cluster.ip("a"))  # the pod is up ...
    assert not ping(cluster.topo.v200, cluster.ip("a"), tries=1, wait=1)  # ... but not on VLAN 200
    assert not ping(cluster.pods["a"][0], "198.18.100.201", tries=1, wait=1)


def test_node_reaches_its_own_pod(cluster: Cluster) -> None:
    node1 = cluster.topo.nodes[0].ns
    for name in ("a", "b"):
        assert ping(node1, cluster.ip(name)), f"node -> pod {name} v4"
        assert ping(node1, cluster.ip(name, 6)), f"node -> pod {name} v6"
    # and the pod initiates towards its node (ARP/ND for the node's address answered)
    assert ping(cluster.pods["a"][0], "198.18.100.11")
    assert ping(cluster.pods["a"][0], "2001:db8:100::11")
    reply, peer = tcp_exchange(cluster.pods["b"][0], cluster.ip("b"), node1, cluster.ip("b"))
    assert peer == "198.18.100.11", reply


def test_check_passes_then_fails_when_address_removed(cluster: Cluster) -> None:
    pod_ns = cluster.topo.pod()
    spec = cluster.spec(1, pod_ns, 11)
    cluster.dp.add(spec)
    try:
        cluster.dp.check(spec)
        with netns.iproute(pod_ns) as ip:
            idx = ip.link_lookup(ifname="eth0")[0]
            ip.addr("del", index=idx, address="198.18.100.61", prefixlen=24)
        with pytest.raises(errors.DatapathError) as exc:
            cluster.dp.check(spec)
        assert exc.value.code == errors.STATE_MISMATCH
        assert "198.18.100.61" in exc.value.msg
    finally:
        cluster.dp.delete(spec)


def test_check_fails_when_interface_gone(cluster: Cluster) -> None:
    pod_ns = cluster.topo.pod()
    spec = cluster.spec(1, pod_ns, 12)
    cluster.dp.add(spec)
    cluster.dp.delete(spec)
    with pytest.raises(errors.DatapathError) as exc:
        cluster.dp.check(spec)
    assert exc.value.code == errors.STATE_MISMATCH and "eth0" in exc.value.msg


def test_del_removes_everything_and_is_idempotent(cluster: Cluster) -> None:
    node = cluster.topo.nodes[0].ns
    pod_ns = cluster.topo.pod()
    links_before, routes_before = link_names(node), route_dsts(node)
    spec = cluster.spec(0, pod_ns, 13)
    cluster.dp.add(spec)
    assert ping(node, "198.18.100.63")
    assert link_names(node) != links_before or route_dsts(node) != routes_before
    cluster.dp.delete(spec)
    assert link_names(pod_ns) == {"lo"}
    assert link_names(node) == links_before
    assert route_dsts(node) == routes_before
    cluster.dp.delete(spec)  # second DEL: nothing to do, no error
    assert not ping(cluster.topo.vm, "198.18.100.63", tries=1, wait=1)


def test_del_after_container_netns_is_gone(cluster: Cluster) -> None:
    node = cluster.topo.nodes[1].ns
    pod_ns = cluster.topo.pod()
    links_before, routes_before = link_names(node), route_dsts(node)
    spec = cluster.spec(1, pod_ns, 14)
    cluster.dp.add(spec)
    cluster.topo.namespaces.remove(pod_ns)
    from pyroute2 import netns as pnetns

    pnetns.remove(pod_ns)  # the runtime tore the sandbox down before calling DEL
    cluster.dp.delete(spec)
    cluster.dp.delete(replace(spec, netns=""))
    assert link_names(node) == links_before
    assert route_dsts(node) == routes_before


def test_add_with_existing_ifname_leaves_it_untouched(cluster: Cluster) -> None:
    a_ns, a_spec = cluster.pods["a"]
    before = sh(a_ns, "ip", "-o", "link", "show", "eth0").stdout.split("link/ether")[1].split()[0]
    node_routes = route_dsts(a_spec.host_netns or "")
    with pytest.raises(errors.InterfaceExists) as exc:
        cluster.dp.add(replace(a_spec, addresses=pod_addrs(15)))
    assert exc.value.code == errors.INTERFACE_EXISTS and "eth0" in exc.value.msg
    assert iface_addrs(a_ns, "eth0") == {str(a) for a in a_spec.addresses}
    assert before in sh(a_ns, "ip", "-o", "link", "show", "eth0").stdout
    assert route_dsts(a_spec.host_netns or "") == node_routes
    assert ping(cluster.topo.vm, cluster.ip("a"))


def test_missing_parent_creates_nothing(cluster: Cluster) -> None:
    node = cluster.topo.nodes[0].ns
    pod_ns = cluster.topo.pod()
    before = link_names(node), route_dsts(node)
    spec = cluster.spec(0, pod_ns, 16, master="nope0", bridge="fnbrtest")
    with pytest.raises(errors.ParentMissing) as exc:
        cluster.dp.add(spec)
    assert "nope0" in exc.value.msg and node in exc.value.msg
    assert (link_names(node), route_dsts(node)) == before
    assert link_names(pod_ns) == {"lo"}
    with pytest.raises(errors.ParentMissing):
        cluster.dp.status(spec)
    cluster.dp.status(cluster.pods["a"][1])  # the real parent is fine


def _kernel_has_8021q(topo: Topology) -> bool:
    probe = topo.pod()
    with netns.iproute(probe) as ip:
        ip.link("add", ifname="fnprobe", kind="veth", peer={"ifname": "fnprobe1"})
        try:
            ip.link("add", ifname="fnprobe.7", kind="vlan", link=ip.link_lookup(ifname="fnprobe")[0], vlan_id=7)
            return True
        except Exception:  # noqa: BLE001 - any failure means: not usable here
            return False


@pytest.mark.kernel("8021q")
def test_vlan_parent_is_made_on_demand(cluster: Cluster) -> None:
    node = cluster.topo.nodes[0].ns
    pod_ns = cluster.topo.pod()
    before = link_names(node)
    spec = cluster.spec(0, pod_ns, 17, vlan=100)
    cluster.dp.add(spec)
    try:
        if cluster.mode == "bridge":
            # a kernel with vlan_filtering: no sub-interface, the one bridge's uplink is a
            # trunk that carries VLAN 100 tagged and the pod's port is untagged in VLAN 100
            vlans = {e["ifname"]: e["vlans"] for e in json.loads(sh(node, "bridge", "-j", "vlan", "show").stdout)}
            host = host_veth_name(spec.container_id, spec.ifname)
            assert [v for v in vlans[cluster.master] if v["vlan"] == 100 and "PVID" not in v.get("flags", [])], vlans
            assert [(v["vlan"], set(v.get("flags", []))) for v in vlans[host]] == [
                (100, {"PVID", "Egress Untagged"})
            ], vlans
            assert not {"fnbr100", f"{cluster.master}.100"} & link_names(node)
        else:
            assert f"{cluster.master}.100" in link_names(node) - before
        cluster.dp.check(spec)
    finally:
        cluster.dp.delete(spec)
    assert link_names(pod_ns) == {"lo"}


def test_missing_8021q_is_named_and_leaves_nothing(cluster: Cluster) -> None:
    if _kernel_has_8021q(cluster.topo):
        pytest.skip(
            "kernel has 8021q: the missing-feature path cannot happen "
            "(this test runs on hosts without it, such as this project's machines and CI)"
        )
    node = cluster.topo.nodes[0].ns
    pod_ns = cluster.topo.pod()
    before = link_names(node), route_dsts(node)
    spec = cluster.spec(0, pod_ns, 17, vlan=100)
    with pytest.raises(errors.KernelFeatureMissing) as exc:
        cluster.dp.add(spec)
    assert "CONFIG_VLAN_8021Q" in exc.value.msg and "modprobe 8021q" in exc.value.msg
    assert (link_names(node), route_dsts(node)) == before
    assert link_names(pod_ns) == {"lo"}


def test_failed_add_rolls_back_every_step(cluster: Cluster) -> None:
    node = cluster.topo.nodes[1].ns
    pod_ns = cluster.topo.pod()
    before = link_names(node), route_dsts(node)
    bad = (Route(ipaddress.ip_network("198.18.120.0/24"), ipaddress.ip_address("198.18.77.1")),)
    spec = cluster.spec(1, pod_ns, 18, routes=bad)
    with pytest.raises(errors.DatapathError) as exc:
        cluster.dp.add(spec)
    assert "198.18.77.1" in exc.value.msg
    assert link_names(pod_ns) == {"lo"}
    assert (link_names(node), route_dsts(node)) == before
    assert not any(name.startswith("fntmp") for name in link_names(node))


def test_add_announces_the_new_binding_to_neighbours(cluster: Cluster) -> None:
    """A reused pod address (sticky, churn) is still mapped to the old pod's MAC at the VM;
    ADD's own announcement (GARP / unsolicited NA) must correct it with no traffic from the VM."""
    pod_ns = cluster.topo.pod()
    spec = cluster.spec(0, pod_ns, 22)
    ips = [str(a.ip) for a in spec.addresses]
    for ip in ips:
        sh(cluster.topo.vm, "ip", "neigh", "replace", ip, "dev", "eth0", "lladdr", "02:00:00:00:de:ad", "nud", "stale")
    att = cluster.dp.add(spec)
    try:

        def table() -> str:
            return sh(cluster.topo.vm, "ip", "neigh", "show", "dev", "eth0").stdout

        wait_until(lambda: all(f"{ip} lladdr {att.mac.lower()}" in table() for ip in ips), 5, 0.1)
        for ip in ips:
            assert f"{ip} lladdr {att.mac.lower()}" in table(), table()
    finally:
        cluster.dp.delete(spec)
        for ip in ips:
            sh(cluster.topo.vm, "ip", "neigh", "del", ip, "dev", "eth0")


#: where a killed ADD can leave its temporary-named link, per mode: a bridge veth is made in
#: the node ("host") then moved ("pod"); a macvlan child is born in the pod netns, so its
#: only half-made state is there
HALF_MADE = {"bridge": ("host", "pod"), "macvlan": ("pod",)}


def _half_made_link(cluster: Cluster, spec: AttachSpec, where: str) -> None:
    """Leave what an ADD killed right after creating its link leaves: the temporary-named
    link in the node netns ("host"), or already moved into the pod netns ("pod")."""
    tmp = tmp_name(spec.container_id, spec.ifname)
    node = spec.host_netns or ""
    if cluster.mode == "bridge":
        sh(
            node,
            "ip",
            "link",
            "add",
            host_veth_name(spec.container_id, spec.ifname),
            "type",
            "veth",
            "peer",
            "name",
            tmp,
        )
    else:
        sh(node, "ip", "link", "add", tmp, "link", cluster.master, "type", "macvlan", "mode", "bridge")
    if where == "pod":
        sh(node, "ip", "link", "set", tmp, "netns", os.path.basename(spec.netns))


def test_del_after_killed_add_removes_the_half_made_link(cluster: Cluster) -> None:
    """The chaos run's finding: the agent SIGKILLed between creating the pod's link and
    renaming it left an 'fntmp…' link that no DEL found. The runtime's DEL must remove it."""
    node = cluster.topo.nodes[0].ns
    for where in HALF_MADE[cluster.mode]:
        pod_ns = cluster.topo.pod()
        before = link_names(node)
        spec = cluster.spec(0, pod_ns, 20)
        _half_made_link(cluster, spec, where)
        assert link_names(node) != before or link_names(pod_ns) != {"lo"}
        cluster.dp.delete(spec)
        assert link_names(node) == before, where
        assert link_names(pod_ns) == {"lo"}, where


def test_retried_add_after_killed_add_succeeds(cluster: Cluster) -> None:
    """Without a DEL in between (the runtime retries ADD), the new ADD clears the leftover."""
    node = cluster.topo.nodes[0].ns
    for where in HALF_MADE[cluster.mode]:
        pod_ns = cluster.topo.pod()
        before = link_names(node)
        spec = cluster.spec(0, pod_ns, 21)
        _half_made_link(cluster, spec, where)
        cluster.dp.add(spec)
        try:
            assert link_names(pod_ns) == {"lo", "eth0"}, where
            assert not any(name.startswith("fntmp") for name in link_names(node)), where
            assert ping(cluster.topo.vm, "198.18.100.71")
        finally:
            cluster.dp.delete(spec)
        assert link_names(node) == before, where


def test_custom_mtu_and_mac(cluster: Cluster) -> None:
    pod_ns = cluster.topo.pod()
    spec = cluster.spec(0, pod_ns, 19, mtu=1400, mac="02:42:c6:12:64:45")
    att = cluster.dp.add(spec)
    try:
        assert (att.mtu, att.mac) == (1400, "02:42:c6:12:64:45")
        cluster.dp.check(spec)
        with pytest.raises(errors.DatapathError) as exc:
            cluster.dp.check(replace(spec, mtu=1300))
        assert exc.value.code == errors.STATE_MISMATCH and "MTU" in exc.value.msg
        assert ping(cluster.topo.vm, "198.18.100.69")
    finally:
        cluster.dp.delete(spec)


def test_netns_given_as_proc_pid_path(cluster: Cluster) -> None:
    """CNI_NETNS may be /proc/<pid>/ns/net of a sandbox process with no named netns."""
    import subprocess
    import time

    proc = subprocess.Popen(["unshare", "--net", "sleep", "30"])
    try:
        path = f"/proc/{proc.pid}/ns/net"
        deadline = 50
        while os.readlink(path) == os.readlink("/proc/self/ns/net") and deadline:
            deadline -= 1  # unshare has not switched yet
            time.sleep(0.1)
        spec = replace(cluster.spec(1, "unused", 20), netns=path)
        cluster.dp.add(spec)
        try:
            assert ping(cluster.topo.vm, "198.18.100.70")
            cluster.dp.check(spec)
        finally:
            cluster.dp.delete(spec)
        with netns.iproute(path) as ip:
            assert {m.get("ifname") for m in ip.link("dump")} == {"lo"}
    finally:
        proc.kill()
        proc.wait(timeout=5)


def test_del_host_removes_only_flatnet_host_routes() -> None:
    """Deleted by key: ours (proto 201) go, an operator's route to the same /32 stays."""
    import subprocess

    from flatnet.datapath import routes

    name = f"fnrt{os.getpid() % 100000}"

    def ip_(*args: str) -> str:
        return subprocess.run(["ip", "-n", name, *args], check=True, capture_output=True, text=True, timeout=15).stdout

    subprocess.run(["ip", "netns", "add", name], check=True, timeout=15)
    try:
        ip_("link", "add", "fnr0", "type", "veth", "peer", "name", "fnr1")
        ip_("link", "set", "fnr0", "up")
        ip_("link", "set", "fnr1", "up")
        ip_("route", "add", "198.18.77.5/32", "dev", "fnr0", "scope", "link", "proto", "201")
        ip_("-6", "route", "add", "2001:db8:77::5/128", "dev", "fnr0", "proto", "201")
        ip_("route", "add", "198.18.77.6/32", "dev", "fnr1", "scope", "link", "proto", "static")
        with netns.ipr(name) as ip:
            assert routes.del_host(ip, ipaddress.ip_address("198.18.77.5")) is True
            assert routes.del_host(ip, ipaddress.ip_address("2001:db8:77::5")) is True
            assert routes.del_host(ip, ipaddress.ip_address("198.18.77.5")) is False  # idempotent
            assert routes.del_host(ip, ipaddress.ip_address("198.18.77.6")) is False  # not ours
        left = ip_("route", "show") + ip_("-6", "route", "show")
        assert "198.18.77.6" in left and "198.18.77.5" not in left and "2001:db8:77::5" not in left
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=15)
