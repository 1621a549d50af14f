"""etcd down at the CNI level: ADD answers code 11 promptly, changes nothing, and the same
agent service works again once etcd is back (no restart)."""

from __future__ import annotations

import io
import json
import time

import pytest

from flatnet.agent import Service
from flatnet.cni import dispatch
from flatnet.datapath.fake import FakeDatapath
from flatnet.ipam import Ipam
from flatnet.ipam.store import open_store

pytestmark = pytest.mark.etcd


def _conf(endpoint: str) -> bytes:
    return json.dumps(
        {
            "cniVersion": "1.1.0",
            "name": "flat",
            "type": "flatnet",
            "master": "vlan100",
            "ipam": {
                "pools": [
                    {
                        "subnet": "198.18.100.0/24",
                        "gateway": "198.18.100.1",
                        "rangeStart": "198.18.100.32",
                        "rangeEnd": "198.18.100.63",
                    }
                ],
                "store": {"type": "etcd", "endpoints": [endpoint]},
            },
        }
    ).encode()


def _add(service: Service, conf: bytes, cid: str) -> tuple[int, dict]:
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": f"/run/netns/{cid}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
    }
    out = io.StringIO()
    code = dispatch(service, env, conf, out, io.StringIO())
    return code, json.loads(out.getvalue() or "{}")


def test_add_while_etcd_is_down_is_code_11_and_changes_nothing(etcd_server, tmp_path) -> None:
    dp = FakeDatapath()
    service = Service(node="node1", lock_dir=str(tmp_path / "locks"), datapath_factory=lambda mode: dp)
    conf = _conf(etcd_server.endpoint)
    code, res = _add(service, conf, "pod-a")
    assert code == 0, res
    assert res["ips"][0]["address"] == "198.18.100.32/24"

    etcd_server.stop()
    started = time.monotonic()
    code, res = _add(service, conf, "pod-b")
    elapsed = time.monotonic() - started
    assert code == 1 and res["code"] == 11, res
    assert "etcd" in res["msg"].lower() or "store" in res["msg"].lower(), res
    assert elapsed < 10, f"ADD with etcd down took {elapsed:.1f}s; it must answer promptly"
    assert [k[0] for k in dp.attachments] == ["/run/netns/pod-a"], "nothing plumbed for pod-b"

    etcd_server.start()
    store = open_store({"type": "etcd", "endpoints": [etcd_server.endpoint]})
    try:
        held = {(l.owner.container_id, str(l.address)) for l in Ipam(store).leases()}
    finally:
        store.close()
    assert held == {("pod-a", "198.18.100.32/24")}, "the failed ADD allocated nothing"
    code, res = _add(service, conf, "pod-b")  # same service object: no agent restart
    assert code == 0, res
    assert res["ips"][0]["address"] == "198.18.100.33/24"
