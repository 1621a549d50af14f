"""``flatnet ipam release --node NAME`` against a real etcd: refused while the node's heartbeat
is alive; once it is gone, the node is fenced and its leases (only its) released, sticky
addresses stay reserved, and the node coming back tears the addresses off its pods the way it
does after the agents reclaimed it."""

from __future__ import annotations

import ipaddress
import json
import logging

import pytest

from flatnet.agent import Service
from flatnet.agent.heartbeat import NodeHeartbeat
from flatnet.datapath.fake import FakeDatapath
from flatnet.ipam import Ipam
from flatnet.ipam import records as r
from flatnet.ipam.nodes import node_key
from flatnet.ipam.store import open_store
from tests.helpers.cli import flatnet_cli
from tests.integration.test_etcd_deadnode import _cni

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(180)]


def test_release_node_refuses_a_live_node_and_fences_a_dead_one(etcd_shared, etcd_prefix, tmp_path, caplog) -> None:
    cfg = {"type": "etcd", "endpoints": [etcd_shared.endpoint], "prefix": etcd_prefix}
    store = open_store(cfg)
    made = []
    try:
        nodes = {}
        for name in ("fne-a", "fne-b"):
            dp = FakeDatapath()
            svc = Service(
                node=name, default_store=cfg, lock_dir=str(tmp_path / name), datapath_factory=lambda m, d=dp: d
            )
            made.append(svc)
            hb = NodeHeartbeat(svc, cfg, ttl=2, grace=0, state_dir=str(tmp_path / name))
            nodes[name] = (svc, dp, hb)
        svc_a, dp_a, hb_a = nodes["fne-a"]
        code, sticky = _cni(svc_a, "ADD", "fne-c1", cfg, pod="redis-0")
        assert code == 0, sticky
        code, plain = _cni(svc_a, "ADD", "fne-c2", cfg)
        assert code == 0, plain
        code, other = _cni(nodes["fne-b"][0], "ADD", "fne-c3", cfg)
        assert code == 0, other
        for _, _, hb in nodes.values():
            hb.beat()
        url = json.dumps(cfg)

        def leases(node: str) -> set[str]:
            return {l.owner.container_id for l in Ipam(store).leases() if l.owner.node == node}

        # alive: refused, nothing changed
        res = flatnet_cli("ipam", "release", "--node", "fne-a", "--store", url)
        assert res.returncode == 1 and "'fne-a' is alive" in res.stderr and "nothing was released" in res.stderr, res
        assert "Traceback" not in res.stderr
        assert leases("fne-a") == {"fne-c1", "fne-c2"} and store.get(node_key("fne-a", "fence")) is None

        # a name no agent ever announced: refused, the known nodes listed
        res = flatnet_cli("ipam", "release", "--node", "fne-x", "--store", url)
        assert res.returncode == 1 and "never announced" in res.stderr and "fne-a, fne-b" in res.stderr, res

        # dead (its heartbeat lease is gone): fenced, its leases released, the other node's kept
        store.revoke_lease(hb_a.lease_id)
        res = flatnet_cli("ipam", "release", "--node", "fne-a", "--store", url)
        assert res.returncode == 0, res
        assert "released 2 lease(s)" in res.stdout, res.stdout
        assert leases("fne-a") == set() and leases("fne-b") == {"fne-c3"}
        fence = json.loads(store.get(node_key("fne-a", "fence")).value)
        assert fence["by"].startswith("operator@") and fence["done"] is True
        ip = ipaddress.ip_address(sticky["ips"][0]["address"].split("/")[0])
        held = store.get(r.ip_key("fne-dn-198.18.122.0_24", ip))
        assert held is not None and json.loads(held.value).get("reserved_for") == "fne/redis-0"
        # a second run finds nothing more and says so
        res = flatnet_cli("ipam", "release", "--node", "fne-a", "--store", url)
        assert res.returncode == 0 and "released 0 lease(s)" in res.stdout, res

        # the node comes back: it finds the fence, tears down, announces again
        assert len(dp_a.attachments) == 2
        with caplog.at_level(logging.ERROR, logger="flatnet.agent"):
            hb_a.beat()
        assert any("WAS DECLARED DEAD by node operator@" in m for m in caplog.messages), caplog.messages
        assert dp_a.attachments == {}
        assert store.get(node_key("fne-a", "alive")) is not None and store.get(node_key("fne-a", "fence")) is None
    finally:
        store.close()
        for svc in made:
            svc.close()


def test_release_node_needs_etcd(tmp_path) -> None:
    res = flatnet_cli("ipam", "release", "--node", "fne-a", "--store", f"sqlite:{tmp_path / 'x.db'}")
    assert res.returncode == 1 and "--node needs the etcd store" in res.stderr, res
    res = flatnet_cli("ipam", "release", "--node", "fne-a", "--ip", "198.18.0.1")
    assert res.returncode == 1 and "--node goes alone" in res.stderr, res
