"""Isolation and anti-spoofing with real spoofed traffic (bridge mode), and the root-only socket.

Every attack is also replayed with the pod's rules (node-side port filter and pod-side
first-hop filter, datapath/firsthop.py) removed: the VM then does see it, so
each "blocked" assertion is shown to be able to fail.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import socket
import subprocess
from typing import Iterator

import pytest

pytestmark = [
    pytest.mark.netns,
    pytest.mark.chaos,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

from flatnet.datapath import antispoof, firsthop  # noqa: E402
from flatnet.datapath import pod as dpod  # noqa: E402
from flatnet.errors import ConfigError  # noqa: E402
from tests.chaos.spoofnet import SpoofNet, arp_request, mac_bytes  # noqa: E402
from tests.helpers.net import ping, sh  # noqa: E402


@pytest.fixture(scope="module")
def net() -> Iterator[SpoofNet]:
    n = SpoofNet()
    try:
        n.build()
        n.add_pod(100, 21)
        n.add_pod(100, 22)
        n.add_pod(200, 21)
        yield n
    finally:
        n.close()


def _without_rules(net: SpoofNet, pod_index: int):
    """Context: the pod's allow-list removed (control run), restored afterwards."""
    from contextlib import contextmanager

    @contextmanager
    def cm() -> Iterator[None]:
        pod = net.pods[pod_index]
        antispoof.remove(net.node, pod.host_ifname)
        firsthop.remove(pod.spec.netns, pod.spec.ifname)  # the pod-side filter too
        try:
            yield
        finally:
            antispoof.install(net.node, pod.host_ifname, pod.att.mac, [pod.ip])
            dpod.install_filter(pod.spec, pod.spec.netns, pod.att.mac, firsthop.Policy())

    return cm()


def test_rules_exist_per_port_and_go_with_del(net: SpoofNet) -> None:
    ports = antispoof.ports(net.node)
    assert {p.host_ifname for p in net.pods} <= set(ports)
    assert all(ports[p.host_ifname] >= 5 for p in net.pods)


def test_real_address_passes_spoofed_address_blocked(net: SpoofNet) -> None:
    a, b = net.pods[0], net.pods[1]
    assert net.udp_seen(a, a.ip, 100) == {a.ip}
    for fake in (b.ip, "198.18.100.99", "198.18.100.11"):  # a neighbour, a free address, the node
        assert net.udp_seen(a, fake, 100) == set(), f"spoofed source {fake} reached the VM"
    with _without_rules(net, 0):
        assert net.udp_seen(a, b.ip, 100) == {b.ip}  # control: the attack works unfiltered


def test_spoofed_mac_blocked(net: SpoofNet) -> None:
    a = net.pods[0]
    assert ping(a.ns, "198.18.100.200")
    real = a.att.mac
    fake = "02:" + ":".join(secrets.token_hex(1) for _ in range(5))
    try:
        assert sh(a.ns, "ip", "link", "set", "eth0", "address", fake).returncode == 0
        assert net.udp_seen(a, a.ip, 100) == set()
        assert not ping(a.ns, "198.18.100.200", tries=1, wait=1)
        with _without_rules(net, 0):
            assert net.udp_seen(a, a.ip, 100) == {a.ip}
    finally:
        sh(a.ns, "ip", "link", "set", "eth0", "address", real)
    assert net.udp_seen(a, a.ip, 100) == {a.ip}


def test_arp_claiming_a_neighbours_address_blocked(net: SpoofNet) -> None:
    a, b = net.pods[0], net.pods[1]
    vm = net.vm(100)
    frame = arp_request(a.att.mac, b.ip, "198.18.100.200")
    sh(vm, "ip", "neigh", "flush", "dev", "eth0")
    net.raw_seen(a, frame, mac_bytes(a.att.mac), 100)
    assert net.neigh_mac(vm, b.ip) != a.att.mac, "the VM learned the neighbour's IP at the spoofer's MAC"
    with _without_rules(net, 0):
        net.raw_seen(a, frame, mac_bytes(a.att.mac), 100)
        assert net.neigh_mac(vm, b.ip) == a.att.mac  # control: unfiltered, the cache is poisoned
    sh(vm, "ip", "neigh", "flush", "dev", "eth0")


def test_vlan_tagged_frames_blocked(net: SpoofNet) -> None:
    """A pod must not hop VLANs by tagging frames itself (the bridge forwards tags as-is)."""
    a = net.pods[0]
    marker = secrets.token_bytes(8)
    frame = (b"\xff" * 6 + mac_bytes(a.att.mac) + b"\x81\x00\x00\xc8\x08\x00" + marker * 8).hex()
    assert not net.raw_seen(a, frame, marker, 100)
    with _without_rules(net, 0):
        assert net.raw_seen(a, frame, marker, 100)


def test_pools_on_different_vlans_cannot_reach_each_other(net: SpoofNet) -> None:
    a, b, c = net.pods
    assert ping(a.ns, b.ip) and ping(a.ns, "198.18.100.200")
    assert ping(c.ns, "198.18.101.200")
    # even told the other segment's pod is on-link, nothing reaches it
    sh(a.ns, "ip", "route", "add", f"{c.ip}/32", "dev", "eth0")
    assert not ping(a.ns, c.ip, tries=2, wait=1)
    sh(a.ns, "ip", "route", "add", "198.18.101.200/32", "dev", "eth0")
    assert not ping(a.ns, "198.18.101.200", tries=1, wait=1)


@pytest.mark.parametrize("name", ["fn;rm -rf /", 'fn"x', "fn{x}", "", "a" * 16, "fn x"])
def test_hostile_interface_names_never_reach_nft(name: str) -> None:
    with pytest.raises(ConfigError):
        antispoof.install("fnk-none", name, "02:00:00:00:00:01", ["198.18.100.5"])


@pytest.mark.parametrize("mac", ["01:00:5e:00:00:01", "02:00:00:00:00", "zz:00:00:00:00:01"])
def test_bad_macs_rejected(mac: str) -> None:
    with pytest.raises(ConfigError):
        antispoof.port_rules(mac, ["198.18.100.5"])


def _status_request(path: str) -> dict:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(json.dumps({"v": 1, "op": "status"}).encode())
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return json.loads(data)


def _as_nobody(path: str) -> str:
    """In a forked child with uid 65534: try the socket; report what happened."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            try:
                out = json.dumps(_status_request(path))
            except OSError as exc:
                out = f"oserror {exc.errno}"
            os.write(w, out.encode())
        finally:
            os._exit(0)
    os.close(w)
    with io.open(r, "rb") as f:
        text = f.read().decode()
    os.waitpid(pid, 0)
    return text


def test_agent_socket_serves_root_only(tmp_path: object) -> None:
    import threading

    from flatnet.agent.server import AgentServer

    directory = f"/tmp/fnk-sock-{secrets.token_hex(3)}"
    path = os.path.join(directory, "agent.sock")
    server = AgentServer(path, service=None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        refused = _as_nobody(path)
        assert refused.startswith("oserror 13"), refused  # file mode keeps non-root out
        os.chmod(directory, 0o755)
        os.chmod(path, 0o666)  # an operator loosened the modes: the uid check still holds
        answer = json.loads(_as_nobody(path))
        assert answer["exit"] == 1 and json.loads(answer["stdout"])["code"] == 106
        assert "uid 65534" in json.loads(answer["stdout"])["msg"]
        ok = _status_request(path)  # root is still served afterwards
        assert ok["exit"] == 0 and ok["metrics"]["rejected"] == 1
    finally:
        server.shutdown()
        server.server_close()
        subprocess.run(["rm", "-rf", directory], timeout=10)
