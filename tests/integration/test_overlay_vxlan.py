"""vxlan overlay mode in real namespaces: the measured contrast to the flat modes.

Topology (all ``fnt-<hex>-*``, removed at the end even on failure):
  sw   : bridge ``br0`` = the underlay L2 segment
  n1-n3: nodes, ``ul0`` = 198.18.100.11-13/24 on br0; cluster 198.19.0.0/17, /24 blocks
  vm   : a VM on the same underlay, 198.18.100.200/24, with no route to the cluster subnet
  pods : one netns each, plumbed by VxlanDatapath like a runtime would ask
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
from dataclasses import dataclass, field
from typing import Iterator

import pytest
from pyroute2 import netns as pnetns

from flatnet.datapath import nft, routes, vxlan
from flatnet.datapath.api import AttachSpec
from flatnet.datapath.common import RTPROT_FLATNET
from flatnet.datapath.netns import ipr, iproute, run_in
from flatnet.ipam import blocks
from flatnet.ipam.store import open_store
from tests.helpers.net import ping

pytestmark = pytest.mark.netns
CLUSTER, NET, VNI, UNDERLAY_MTU = "198.19.0.0/17", "ovl", 4242, 1500
VM_IP = "198.18.100.200"


#: one run of 2 probes, 2 s each: the MTU and isolation checks must not be retried into passing
ONCE = {"tries": 1, "count": 2, "interval": 0.3, "wait": 2}


def listen(ns: str, ip: str, port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket bound inside ``ns`` (created on a thread that joined it; it stays there)."""

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        if kind == socket.SOCK_STREAM:
            s.listen(4)
        s.settimeout(8)
        return s

    return run_in(ns, make)


def serve_once(srv: socket.socket) -> dict:
    """Accept one TCP client on a thread; the box gets the peer (ip, port) it saw."""
    box: dict = {}

    def run() -> None:
        try:
            conn, peer = srv.accept()
            box["peer"] = peer
            with conn:
                conn.settimeout(5)
                conn.sendall(f"{peer[0]}:{peer[1]}".encode())
        except OSError as exc:
            box["error"] = exc
        finally:
            srv.close()

    box["thread"] = t = threading.Thread(target=run, daemon=True)
    t.start()
    return box


def connect(ns: str, ip: str, port: int, timeout: float = 4) -> tuple[str, tuple[str, int]]:
    """TCP connect from ``ns``; returns (reply, our local address)."""

    def run() -> tuple[str, tuple[str, int]]:
        with socket.create_connection((ip, port), timeout=timeout) as c:
            return c.recv(100).decode(), c.getsockname()

    return run_in(ns, run)


@dataclass
class Topo:
    prefix: str
    nodes: list[str]
    vm: str
    opts: dict[str, dict]  # node ns -> options for the datapath
    made: list[str] = field(default_factory=list)
    pods: list[AttachSpec] = field(default_factory=list)

    def pod(self, node: int, k: int, mappings: list[dict] | None = None) -> AttachSpec:
        """A pod netns on node ``node`` with the ``k``-th address of that node's block."""
        name = f"{self.prefix}-p{node}{k}"
        pnetns.create(name)
        self.made.append(name)
        with iproute(name) as ip:
            ip.link("set", index=ip.link_lookup(ifname="lo")[0], state="up")
        node_ns = self.nodes[node]
        opts = dict(self.opts[node_ns])
        if mappings:
            opts["portMappings"] = mappings
        pool = blocks.block_pool(NET, node_ns, opts["block"])
        addr = ipaddress.ip_interface(f"{pool.range_start + k}/{pool.subnet.prefixlen}")
        spec = AttachSpec(
            container_id=f"cid-{name}",
            ifname="net0",
            netns=name,
            mode="vxlan",
            addresses=(addr,),
            host_netns=node_ns,
            options=opts,
        )
        vxlan.VxlanDatapath().add(spec)
        self.pods.append(spec)
        return spec


def _veth(ns_a: str, a: str, ns_b: str, b: str, cidr: str | None) -> None:
    with iproute(ns_a) as ip:
        ip.link("add", ifname=a, kind="veth", mtu=UNDERLAY_MTU, peer={"ifname": b, "net_ns_fd": f"/run/netns/{ns_b}"})
        idx = ip.link_lookup(ifname=a)[0]
        ip.link("set", index=idx, master=ip.link_lookup(ifname="br0")[0], state="up")
    with iproute(ns_b) as ip:
        idx = ip.link_lookup(ifname=b)[0]
        iface = ipaddress.ip_interface(cidr)  # type: ignore[arg-type]
        ip.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        ip.link("set", index=idx, state="up")
        ip.link("set", index=ip.link_lookup(ifname="lo")[0], state="up")


@pytest.fixture(scope="module")
def topo() -> Iterator[Topo]:
    prefix = f"fnt-{secrets.token_hex(3)}"
    t = Topo(prefix, [f"{prefix}-n{i}" for i in (1, 2, 3)], f"{prefix}-vm", {})
    store = open_store({"type": "memory"})
    try:
        for name in [f"{prefix}-sw", *t.nodes, t.vm]:
            pnetns.create(name)
            t.made.append(name)
        with iproute(f"{prefix}-sw") as ip:
            ip.link("add", ifname="br0", kind="bridge")
            ip.link("set", index=ip.link_lookup(ifname="br0")[0], state="up")
        for i, node in enumerate(t.nodes, 1):
            _veth(f"{prefix}-sw", f"sw{i}", node, "ul0", f"198.18.100.1{i}/24")
        _veth(f"{prefix}-sw", "swvm", t.vm, "ul0", f"{VM_IP}/24")
        for i, node in enumerate(t.nodes, 1):
            block = blocks.ensure_block(store, NET, node, CLUSTER, 24)
            t.opts[node] = {
                "vni": VNI,
                "vtep": f"198.18.100.1{i}",
                "block": str(block),
                "clusterSubnet": CLUSTER,
                "network": NET,
                "node": node,
            }
            mac = vxlan.ensure_node(node, t.opts[node])
            blocks.register_node(store, NET, node, f"198.18.100.1{i}", mac, block)
        peers = [n.as_peer() for n in blocks.nodes(store, NET)]
        for node in t.nodes:
            t.opts[node]["peers"] = peers
            assert vxlan.sync_peers(node, t.opts[node]) == 2
        yield t
    finally:
        for spec in t.pods:
            try:
                vxlan.VxlanDatapath().delete(spec)
            except Exception:  # noqa: BLE001 - the namespaces go below anyway
                pass
        for name in reversed(t.made):
            try:
                pnetns.remove(name)
            except OSError:
                pass
        store.close()


def peer_routes(node: str) -> list[routes.RouteEntry]:
    with ipr(node) as ip:
        return [r for r in routes.list_(ip, None, family=4) if r.proto == RTPROT_FLATNET]


def test_pod_to_pod_across_nodes_ping_and_tcp(topo: Topo) -> None:
    a, b = topo.pod(0, 0), topo.pod(1, 0)
    b_ip = str(b.addresses[0].ip)
    assert ping(a.netns, b_ip, **ONCE)
    box = serve_once(listen(b.netns, b_ip, 7001))
    reply, local = connect(a.netns, b_ip, 7001)
    box["thread"].join(10)
    # pod-to-pod inside the cluster is not NATed: b sees a's own address
    assert box["peer"][0] == str(a.addresses[0].ip) == reply.split(":")[0] == local[0]


def test_pod_to_vm_is_snated_to_the_node(topo: Topo) -> None:
    a = topo.pod(0, 1)
    box = serve_once(listen(topo.vm, VM_IP, 7002))
    reply, local = connect(a.netns, VM_IP, 7002)
    box["thread"].join(10)
    seen_ip, seen_port = box["peer"]
    print(f"\npod {local[0]}:{local[1]} -> VM saw {seen_ip}:{seen_port}")
    assert seen_ip == "198.18.100.11"  # the node's underlay address, not the pod's
    assert seen_ip != local[0]
    assert 1 <= seen_port <= 65535


def test_vm_cannot_reach_a_pod_directly(topo: Topo) -> None:
    a = topo.pod(0, 2)
    pod_ip = str(a.addresses[0].ip)
    assert not ping(topo.vm, pod_ip, **ONCE)
    with pytest.raises(OSError):
        connect(topo.vm, pod_ip, 7003, timeout=2)


def test_vm_reaches_pod_through_port_mapping_and_del_removes_it(topo: Topo) -> None:
    spec = topo.pod(
        1,
        1,
        [
            {"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"},
            {"hostPort": 18081, "containerPort": 8081, "protocol": "udp"},
        ],
    )
    pod_ip, node_ns = str(spec.addresses[0].ip), spec.host_netns
    assert node_ns is not None
    vxlan.VxlanDatapath().check(spec)
    assert len(nft.portmap_rules(node_ns, NET, spec.container_id)) == 4  # 2 mappings x prerouting/output
    box = serve_once(listen(spec.netns, pod_ip, 8080))
    reply, _ = connect(topo.vm, "198.18.100.12", 18080)
    box["thread"].join(10)
    assert box["peer"][0] == VM_IP  # inbound DNAT keeps the VM's source address
    assert reply.startswith(VM_IP)
    udp = listen(spec.netns, pod_ip, 8081, socket.SOCK_DGRAM)
    try:

        def send() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"hi", ("198.18.100.12", 18081))

        run_in(topo.vm, send)
        data, peer = udp.recvfrom(100)
        assert data == b"hi" and peer[0] == VM_IP
    finally:
        udp.close()
    dp = vxlan.VxlanDatapath()
    dp.delete(spec)
    assert nft.portmap_rules(node_ns, NET, spec.container_id) == []
    with iproute(node_ns) as ip:
        assert not ip.link_lookup(ifname=vxlan.overlay_veth_name(spec.container_id, spec.ifname))
    with iproute(spec.netns) as ip:
        assert not ip.link_lookup(ifname="net0")
    with pytest.raises(OSError):
        connect(topo.vm, "198.18.100.12", 18080, timeout=2)
    dp.delete(spec)  # second DEL is fine
    topo.pods.remove(spec)


def test_mtu_full_size_df_passes_one_more_byte_fails(topo: Topo) -> None:
    a, b = topo.pod(0, 3), topo.pod(1, 3)
    with iproute(a.netns) as ip:
        mtu = ip.get_links(ip.link_lookup(ifname="net0")[0])[0].get("mtu")
    assert mtu == UNDERLAY_MTU - 50
    b_ip = str(b.addresses[0].ip)
    assert ping(a.netns, b_ip, "-M", "do", "-s", str(mtu - 28), **ONCE)
    assert not ping(a.netns, b_ip, "-M", "do", "-s", str(mtu - 27), **ONCE)


def test_routes_are_per_node_block_not_per_pod(topo: Topo) -> None:
    node = topo.nodes[2]
    before = peer_routes(node)
    expected = {ipaddress.ip_network(topo.opts[n]["block"]) for n in topo.nodes if n != node}
    assert {r.dst for r in before} == expected and len(before) == 2
    topo.pod(0, 4)
    topo.pod(0, 5)
    topo.pod(1, 4)
    assert sorted(map(str, peer_routes(node))) == sorted(map(str, before))
    with ipr(node) as ip:  # and no route in the whole table names a pod address
        assert all(r.dst.prefixlen < 32 for r in routes.list_(ip, None, family=4))


def test_sync_peers_removes_departed_nodes_and_is_idempotent(topo: Topo) -> None:
    node, gone = topo.nodes[0], topo.nodes[2]
    opts = dict(topo.opts[node])
    full = opts["peers"]
    try:
        opts["peers"] = [p for p in full if p["node"] != gone]
        assert vxlan.sync_peers(node, opts) == 1
        assert vxlan.sync_peers(node, opts) == 1
        assert {str(r.dst) for r in peer_routes(node)} == {topo.opts[topo.nodes[1]]["block"]}
        with iproute(node) as ip:
            vx = ip.link_lookup(ifname=f"fnvx{VNI}")[0]
            macs = {f.get("NDA_LLADDR") for f in ip.fdb("dump", ifindex=vx) if f.get("NDA_DST")}
            neigh = {n.get("NDA_DST") for n in ip.neigh("dump", ifindex=vx, family=2)}
        gone_peer = next(p for p in full if p["node"] == gone)
        assert gone_peer["mac"] not in macs
        assert str(ipaddress.ip_network(gone_peer["block"]).network_address) not in neigh
    finally:
        opts["peers"] = full
        assert vxlan.sync_peers(node, opts) == 2
    assert len(peer_routes(node)) == 2


def test_check_detects_a_missing_host_veth(topo: Topo) -> None:
    from flatnet.errors import DatapathError, STATE_MISMATCH

    spec = topo.pod(2, 0)
    dp = vxlan.VxlanDatapath()
    dp.check(spec)
    with iproute(spec.host_netns) as ip:
        ip.link("del", index=ip.link_lookup(ifname=vxlan.overlay_veth_name(spec.container_id, "net0"))[0])
    with pytest.raises(DatapathError) as err:
        dp.check(spec)
    assert err.value.code == STATE_MISMATCH


def test_failed_add_leaves_nothing_behind(topo: Topo, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure at the last step (port mapping) undoes the veth and the pod interface."""
    from flatnet.errors import ConfigError, DatapathError

    with pytest.raises(ConfigError, match="hostPort"):  # bad input: refused before any kernel step
        topo.pod(2, 1, [{"hostPort": 70000, "containerPort": 80}])
    spec_ns = f"{topo.prefix}-p21"

    def boom(*_a: object, **_k: object) -> None:
        raise DatapathError("injected: nft refused the ruleset")

    monkeypatch.setattr(nft, "add_portmaps", boom)
    pnetns.remove(spec_ns)
    topo.made.remove(spec_ns)
    with pytest.raises(DatapathError, match="injected"):
        topo.pod(2, 1, [{"hostPort": 18090, "containerPort": 80}])
    host = vxlan.overlay_veth_name(f"cid-{spec_ns}", "net0")
    with iproute(topo.nodes[2]) as ip:
        assert not ip.link_lookup(ifname=host)
    with iproute(spec_ns) as ip:
        assert not ip.link_lookup(ifname="net0")
    assert nft.portmap_rules(topo.nodes[2], NET, f"cid-{spec_ns}") == []
