"""A node that comes back after its addresses were reclaimed stops serving them — for real:
a macvlan pod in real namespaces, plumbed by the agent's service with the real datapath and
a real etcd; another agent reclaims the node; on its next beat the node removes the pod's
interface, and a host on the segment no longer gets an answer from that address."""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
from typing import Iterator

import pytest

pytestmark = [pytest.mark.etcd, pytest.mark.netns, pytest.mark.timeout(180)]

if os.geteuid() != 0:
    pytest.skip("needs root (network namespaces)", allow_module_level=True)

from pyroute2 import netns as pnetns  # noqa: E402

from flatnet.agent import Service  # noqa: E402
from flatnet.agent.heartbeat import NodeHeartbeat  # noqa: E402
from flatnet.cni import dispatch  # noqa: E402
from flatnet.datapath import netns as fnetns  # noqa: E402

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"


@pytest.fixture
def segment() -> Iterator[tuple[str, str, str]]:
    """(node netns, host netns, pod netns): veth fneup0 (node) -- fneup1 (host, 198.18.124.2)."""
    tag = secrets.token_hex(3)
    node, host, pod = f"fne-{tag}-n", f"fne-{tag}-h", f"fne-{tag}-p"
    made: list[str] = []
    try:
        for ns in (node, host, pod):
            pnetns.create(ns)
            made.append(ns)
            with fnetns.iproute(ns) as ip:
                ip.link("set", index=ip.link_lookup(ifname="lo")[0], state="up")
        with fnetns.iproute(node) as ip:
            ip.link("add", ifname="fneup0", kind="veth", peer={"ifname": "fneup1"})
            fd = os.open(fnetns.ns_path(host), os.O_RDONLY)
            try:
                ip.link("set", index=ip.link_lookup(ifname="fneup1")[0], net_ns_fd=fd)
            finally:
                os.close(fd)
            ip.link("set", index=ip.link_lookup(ifname="fneup0")[0], state="up")
        with fnetns.iproute(host) as ip:
            idx = ip.link_lookup(ifname="fneup1")[0]
            ip.addr("add", index=idx, address="198.18.124.2", prefixlen=24)
            ip.link("set", index=idx, state="up")
        yield node, host, pod
    finally:
        for ns in reversed(made):
            try:
                pnetns.remove(ns)
            except OSError:
                pass


def _ping(ns: str, addr: str) -> bool:
    return (
        subprocess.run(
            [IP, "netns", "exec", ns, "ping", "-c", "1", "-W", "1", addr], capture_output=True, timeout=10, check=False
        ).returncode
        == 0
    )


def test_returning_node_removes_the_reclaimed_address_from_a_real_pod(
    segment, etcd_shared, etcd_prefix, tmp_path
) -> None:
    node, host, pod = segment
    cfg = {"type": "etcd", "endpoints": [etcd_shared.endpoint], "prefix": etcd_prefix}
    conf = {
        "cniVersion": "1.1.0",
        "name": "fne-dnr",
        "type": "flatnet",
        "mode": "macvlan",
        "master": "fneup0",
        "hostNetns": node,
        "ipam": {
            "pools": [
                {
                    "subnet": "198.18.124.0/24",
                    "rangeStart": "198.18.124.10",
                    "rangeEnd": "198.18.124.20",
                    "conflictProbe": False,
                }
            ],
            "store": cfg,
        },
    }
    svc_a = Service(node="fne-ra", lock_dir=str(tmp_path / "a"))
    svc_b = Service(node="fne-rb", lock_dir=str(tmp_path / "b"))
    try:
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "fne-ctr1",
            "CNI_IFNAME": "eth0",
            "CNI_NETNS": fnetns.ns_path(pod) or "",
            "CNI_PATH": "/opt/cni/bin",
        }
        out = io.StringIO()
        assert dispatch(svc_a, env, json.dumps(conf).encode(), out, io.StringIO()) == 0, out.getvalue()
        addr = json.loads(out.getvalue())["ips"][0]["address"].split("/")[0]
        assert _ping(host, addr), "the pod does not answer before the reclaim"

        hb_a = NodeHeartbeat(svc_a, cfg, ttl=2, grace=30, state_dir=str(tmp_path / "sa"))
        hb_b = NodeHeartbeat(svc_b, cfg, ttl=2, grace=30, state_dir=str(tmp_path / "sb"))
        t = [0.0]
        hb_b.clock = lambda: t[0]
        hb_a.beat()
        hb_b.beat()
        hb_a.store.revoke_lease(hb_a.lease_id)  # a's heartbeat is gone
        assert hb_b.sweep() == []
        t[0] += 31
        assert hb_b.sweep() == ["fne-ra"]
        assert _ping(host, addr), "reclaiming in the store alone touched the pod"

        hb_a.beat()  # a is back: it must stop serving the reclaimed address
        with fnetns.iproute(pod) as ip:
            assert ip.link_lookup(ifname="eth0") == [], "the pod still has its interface"
        assert not _ping(host, addr), "the reclaimed address still answers on the segment"
    finally:
        svc_a.close()
        svc_b.close()
