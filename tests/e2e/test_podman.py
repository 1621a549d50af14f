"""End to end: podman (CNI backend) + the flatnet plugin + a "VM" on the same segment.

Proves with real traffic that a container podman starts on a flatnet network gets an
address on the VM's L2 segment, that the VM reaches it (ping and TCP) and sees its own
address as the source of the pod's outbound connection (no NAT), that stop/rm releases
the address in the IPAM, and that a sticky pod (podman's container name arrives as
K8S_POD_NAME, the namespace through podman's own CNI_ARGS environment) gets its
address back after rm and run.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time

import pytest

from flatnet.datapath.common import shim_name
from flatnet.datapath.netns import run_in
from tests.helpers.net import ping

from .conftest import Env

pytestmark = [pytest.mark.podman, pytest.mark.netns, pytest.mark.timeout(240)]

RANGE = (ipaddress.ip_address("198.18.100.50"), ipaddress.ip_address("198.18.100.99"))
OUT_PORT = 9000  # the VM listens here; the pod connects out to it
WEB_PORT = 8080  # busybox httpd in the pod


def held(env: Env) -> dict[str, str]:
    """Addresses the IPAM holds now -> owning container id (read from the sqlite store)."""
    from flatnet.ipam import Ipam
    from flatnet.ipam.store import open_store

    store = open_store({"type": "sqlite", "path": str(env.db)})
    try:
        return {str(lease.address.ip): lease.owner.container_id for lease in Ipam(store).leases()}
    finally:
        store.close()


def listen_in(ns: str, port: int) -> socket.socket:
    """A TCP listener bound inside netns ``ns`` (a socket keeps the netns it was made in)."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.listen(4)
        return sock

    return run_in(f"/run/netns/{ns}", make)


def http_get(ns: str, addr: str, port: int, attempts: int = 20) -> str:
    """GET / from ``ns``; retried (bounded) while the pod's httpd starts."""
    last: Exception | None = None
    for _ in range(attempts):
        sock = run_in(f"/run/netns/{ns}", socket.socket, socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(3)
        try:
            sock.connect((addr, port))
            sock.sendall(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
        except OSError as exc:
            last = exc
            time.sleep(0.5)
        finally:
            sock.close()
    raise AssertionError(f"no HTTP answer from {addr}:{port} in {ns}: {last}")


def node_state(env: Env) -> tuple[set[str], set[str]]:
    """Link names and route destinations in the node netns (what ADD may leave behind)."""
    from pyroute2 import IPRoute

    with IPRoute(netns=f"/run/netns/{env.seg.node}") as ipr:
        names = {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        dsts = {str(r.get_attr("RTA_DST")) for r in ipr.get_routes(family=socket.AF_INET)}
    return names, dsts


def test_reference_plugin_runs_a_container(reference_podman) -> None:
    """Baseline: this podman setup (CNI backend, runc, busybox rootfs) runs a container."""
    podman, rootfs = reference_podman
    proc = podman("run", "--rm", "--network", "fne-ref", "--rootfs", str(rootfs), "/bin/ip", "-o", "addr", "show", "lo")
    assert "127.0.0.1/8" in proc.stdout


def test_pod_gets_flat_address_reachable_from_vm_and_released(flat: Env) -> None:
    vm_ip = str(flat.seg.vm_addr.ip)
    listener = listen_in(flat.seg.vm, OUT_PORT)
    listener.settimeout(30)
    try:
        cmd = ["/bin/sh", "-c", f"echo {flat.token} | nc -w 3 {vm_ip} {OUT_PORT}; exec httpd -f -p {WEB_PORT} -h /www"]
        cid = flat.podman.run_detached(f"web-{flat.tag}", flat.network, flat.rootfs, cmd)
        ip = flat.podman.address(f"web-{flat.tag}", flat.network)
        assert RANGE[0] <= ipaddress.ip_address(ip) <= RANGE[1], (ip, flat.plugin_log())
        assert held(flat).get(ip) == cid, "the IPAM must record the address for this container"

        inside = flat.podman("exec", f"web-{flat.tag}", "ip", "-o", "-4", "addr", "show", "eth0")
        assert f"{ip}/24" in inside.stdout

        # outbound: the VM sees the pod's own address as the source (no SNAT on a flat net)
        conn, (peer, _port) = listener.accept()
        with conn:
            conn.settimeout(10)
            data = conn.recv(256).decode()
        assert peer == ip and flat.token in data

        # inbound: the VM reaches the pod by its address, ICMP and TCP
        assert ping(flat.seg.vm, ip, tries=5, wait=1), f"VM cannot ping pod {ip}"
        assert flat.token in http_get(flat.seg.vm, ip, WEB_PORT)
    finally:
        listener.close()

    flat.podman.stop_rm(f"web-{flat.tag}")
    assert ip not in held(flat), f"{ip} still held after podman stop/rm"
    assert cid not in held(flat).values()
    # the node keeps only its parent: the shim went with its last pod; no pod route, no pod link
    links, dsts = node_state(flat)
    assert links == {"lo", flat.seg.parent}, links
    assert shim_name(flat.seg.parent) not in links
    assert ip not in dsts, f"host route to {ip} left in the node netns"
    assert not ping(flat.seg.vm, ip, tries=1, wait=1), f"{ip} still answers after rm"


def test_sticky_pod_gets_its_address_back(flat: Env) -> None:
    """podman passes K8S_POD_NAME=<container name>; K8S_POD_NAMESPACE comes via CNI_ARGS."""
    pod_env = {"CNI_ARGS": f"K8S_POD_NAMESPACE=fne-{flat.tag}"}
    sleep = ["/bin/sleep", "600"]
    first = flat.podman.run_detached("redis-0", flat.network, flat.rootfs, sleep, env=pod_env)
    addr = flat.podman.address("redis-0", flat.network)
    assert held(flat).get(addr) == first, flat.plugin_log()

    flat.podman.stop_rm("redis-0")
    assert addr not in held(flat), f"{addr} still leased after podman rm"

    # another pod must not be handed redis-0's address while redis-0 is away
    flat.podman.run_detached("other-1", flat.network, flat.rootfs, sleep, env=pod_env)
    other = flat.podman.address("other-1", flat.network)
    assert other != addr

    second = flat.podman.run_detached("redis-0", flat.network, flat.rootfs, sleep, env=pod_env)
    assert second != first, "podman made a new container"
    assert flat.podman.address("redis-0", flat.network) == addr, flat.plugin_log()
    assert held(flat).get(addr) == second
    assert ping(flat.seg.vm, addr, tries=5, wait=1), f"VM cannot reach the returning pod at {addr}"
    for name in ("redis-0", "other-1"):
        flat.podman.stop_rm(name)
    assert addr not in held(flat) and other not in held(flat)


def test_cni_args_podman_passes_reach_the_plugin(flat: Env) -> None:
    """Pins the identity contract the sticky test relies on (podman 4.3 behaviour)."""
    pod_env = {"CNI_ARGS": f"K8S_POD_NAMESPACE=fne-{flat.tag}"}
    cid = flat.podman.run_detached("ident-0", flat.network, flat.rootfs, ["/bin/sleep", "600"], env=pod_env)
    from flatnet.ipam import Ipam
    from flatnet.ipam.store import open_store

    store = open_store({"type": "sqlite", "path": str(flat.db)})
    try:
        owners = [lease.owner for lease in Ipam(store).leases() if lease.owner.container_id == cid]
    finally:
        store.close()
    assert len(owners) == 1, flat.plugin_log()
    assert (owners[0].pod_namespace, owners[0].pod_name) == (f"fne-{flat.tag}", "ident-0")
    assert owners[0].ifname == "eth0" and owners[0].network == flat.network
    flat.podman.stop_rm("ident-0")
    assert os.path.exists(f"/run/netns/{flat.seg.node}")
