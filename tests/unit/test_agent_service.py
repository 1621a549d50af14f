"""Service (the agent's CNI handler) over FakeDatapath + memory store, through dispatch.

Driving it through ``flatnet.cni.dispatch`` with real env/stdin checks what a runtime
would see (exit code and JSON), not just Python return values.
"""

from __future__ import annotations

import io
import ipaddress
import json
from typing import Any

import pytest

from flatnet.agent.service import Service
from flatnet.datapath.fake import FakeDatapath
from flatnet.errors import DatapathError, INTERFACE_EXISTS


def make_conf(version: str = "1.1.0", pools: list[dict] | None = None, **extra: Any) -> dict:
    conf = {
        "cniVersion": version,
        "name": "flat",
        "type": "flatnet",
        "mode": "macvlan",
        "master": "vlan100",
        "ipam": {
            "pools": pools
            if pools is not None
            else [
                {
                    "name": "v4",
                    "subnet": "198.18.100.0/24",
                    "rangeStart": "198.18.100.32",
                    "rangeEnd": "198.18.100.35",
                    "gateway": "198.18.100.1",
                }
            ],
            "store": {"type": "memory"},
        },
    }
    conf.update(extra)
    return conf


class Harness:
    """One Service with a FakeDatapath and a memory store shared by all its calls."""

    def __init__(self, tmp_path: Any) -> None:
        self.dp = FakeDatapath(masters={"vlan100"})
        stores: dict[str, Any] = {}

        def store_factory(cfg: dict) -> Any:
            from flatnet.ipam.store import open_store

            return stores.setdefault(json.dumps(cfg, sort_keys=True), open_store(cfg))

        self.svc = Service(
            node="node1",
            lock_dir=str(tmp_path / "locks"),
            datapath_factory=lambda mode: self.dp,
            store_factory=store_factory,
        )

    def call(
        self,
        verb: str,
        conf: dict,
        cid: str = "c1",
        ifname: str = "eth0",
        netns: str = "/run/netns/pod1",
        args: str = "",
    ) -> tuple[int, dict]:
        env = {
            "CNI_COMMAND": verb,
            "CNI_CONTAINERID": cid,
            "CNI_IFNAME": ifname,
            "CNI_NETNS": netns,
            "CNI_PATH": "/opt/cni/bin",
            "CNI_ARGS": args,
        }
        out = io.StringIO()
        code = __import__("flatnet.cni", fromlist=["dispatch"]).dispatch(
            self.svc, env, json.dumps(conf).encode(), out, io.StringIO()
        )
        text = out.getvalue()
        return code, (json.loads(text) if text.strip() else {})

    def leases(self, conf: dict) -> list[Any]:
        from flatnet.cni import parse_netconf

        return self.svc.ipam(parse_netconf(json.dumps(conf).encode())).leases()


@pytest.fixture
def h(tmp_path: Any) -> Harness:
    return Harness(tmp_path)


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_add_result_shape_per_version(h: Harness, version: str) -> None:
    code, res = h.call("ADD", make_conf(version))
    assert code == 0, res
    assert res["cniVersion"] == version
    iface = res["interfaces"][res["ips"][0]["interface"]]
    assert iface["name"] == "eth0" and iface["sandbox"] == "/run/netns/pod1"
    assert res["ips"][0]["address"] == "198.18.100.32/24"
    assert res["ips"][0]["gateway"] == "198.18.100.1"
    assert ("version" in res["ips"][0]) == (version < "1.0.0")
    assert {"dst": "0.0.0.0/0", "gw": "198.18.100.1"} in res["routes"]
    spec = h.dp.attachments[("/run/netns/pod1", "eth0")]
    assert spec.addresses == (ipaddress.ip_interface("198.18.100.32/24"),)
    assert spec.master == "vlan100"


def test_add_dual_stack_and_pool_routes(h: Harness) -> None:
    pools = [
        {
            "name": "v4",
            "subnet": "198.18.100.0/24",
            "gateway": "198.18.100.1",
            "routes": [{"dst": "198.19.0.0/16", "gw": "198.18.100.254"}],
        },
        {"name": "v6", "subnet": "2001:db8:100::/64", "gateway": "2001:db8:100::1"},
    ]
    code, res = h.call("ADD", make_conf(pools=pools))
    assert code == 0, res
    assert sorted(ipaddress.ip_interface(i["address"]).version for i in res["ips"]) == [4, 6]
    dsts = {r["dst"] for r in res["routes"]}
    assert {"0.0.0.0/0", "::/0", "198.19.0.0/16"} <= dsts


def test_rollback_on_datapath_failure_releases_address(h: Harness) -> None:
    conf = make_conf()
    h.dp.fail_add = DatapathError("netlink said no")
    code, res = h.call("ADD", conf)
    assert code == 1 and res["code"] == 107 and "netlink said no" in res["msg"]
    assert h.leases(conf) == []
    assert h.dp.attachments == {}
    # the address is free again: the next pod can get a lease
    code, res = h.call("ADD", conf, cid="c2")
    assert code == 0, res


def test_parent_missing_leaks_nothing(h: Harness) -> None:
    conf = make_conf(master="nope0")
    code, res = h.call("ADD", conf)
    assert (code, res["code"]) == (1, 103)
    assert h.leases(conf) == []


def test_add_twice_same_ifname_keeps_first(h: Harness) -> None:
    conf = make_conf()
    assert h.call("ADD", conf)[0] == 0
    # same container again (runtime bug) and another container on the same netns
    for cid in ("c1", "c2"):
        code, res = h.call("ADD", conf, cid=cid)
        assert (code, res["code"]) == (1, INTERFACE_EXISTS)
    assert [str(l.address) for l in h.leases(conf)] == ["198.18.100.32/24"]
    assert ("/run/netns/pod1", "eth0") in h.dp.attachments


def test_pool_exhausted(h: Harness) -> None:
    conf = make_conf()
    for n in range(4):
        assert h.call("ADD", conf, cid=f"c{n}", netns=f"/run/netns/p{n}")[0] == 0
    code, res = h.call("ADD", conf, cid="c9", netns="/run/netns/p9")
    assert (code, res["code"]) == (1, 101)
    assert len(h.leases(conf)) == 4


def test_del_idempotent_and_without_state(h: Harness) -> None:
    conf = make_conf()
    assert h.call("ADD", conf)[0] == 0
    assert h.call("DEL", conf) == (0, {})
    assert h.leases(conf) == [] and h.dp.attachments == {}
    assert h.call("DEL", conf) == (0, {})  # second DEL
    assert h.call("DEL", conf, cid="never-added", netns="") == (0, {})  # no state, no netns


def test_del_failure_keeps_lease(h: Harness) -> None:
    conf = make_conf()
    assert h.call("ADD", conf)[0] == 0
    h.dp.fail_delete = DatapathError("busy")
    code, res = h.call("DEL", conf)
    assert (code, res["code"]) == (1, 107)
    assert len(h.leases(conf)) == 1  # not handed to another pod while still plumbed
    assert h.call("DEL", conf)[0] == 0
    assert h.leases(conf) == []


def test_check_ok_missing_prev_and_mismatch(h: Harness) -> None:
    conf = make_conf()
    code, res = h.call("ADD", conf)
    assert code == 0
    assert h.call("CHECK", {**conf, "prevResult": res}) == (0, {})
    code, err = h.call("CHECK", conf)
    assert (code, err["code"]) == (1, 7) and "prevResult" in err["msg"]
    wrong = json.loads(json.dumps(res))
    wrong["ips"][0]["address"] = "198.18.100.99/24"
    code, err = h.call("CHECK", {**conf, "prevResult": wrong})
    assert (code, err["code"]) == (1, 108)
    h.dp.remove_address("/run/netns/pod1", "eth0", ipaddress.ip_interface("198.18.100.32/24"))
    code, err = h.call("CHECK", {**conf, "prevResult": res})
    assert (code, err["code"]) == (1, 108)


def test_gc_releases_only_stale(h: Harness) -> None:
    conf = make_conf()
    for cid in ("keep", "stale1", "stale2"):
        assert h.call("ADD", conf, cid=cid, netns=f"/run/netns/{cid}")[0] == 0
    other = make_conf(name="other", pools=[{"subnet": "198.18.101.0/24"}])
    assert h.call("ADD", other, cid="othernet", netns="/run/netns/o")[0] == 0
    gc = {**conf, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    assert h.call("GC", gc) == (0, {})
    assert [l.owner.container_id for l in h.leases(conf) if l.owner.network == "flat"] == ["keep"]
    assert any(l.owner.container_id == "othernet" for l in h.leases(other))
    assert set(h.dp.attachments) == {("/run/netns/keep", "eth0"), ("/run/netns/o", "eth0")}


def test_sticky_pod_gets_same_address_back(h: Harness) -> None:
    conf = make_conf(
        pools=[
            {
                "name": "v4",
                "subnet": "198.18.100.0/24",
                "rangeStart": "198.18.100.32",
                "rangeEnd": "198.18.100.40",
                "sticky": True,
            }
        ]
    )
    pod = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=redis-0"
    code, first = h.call("ADD", conf, cid="a1", args=pod)
    assert code == 0
    assert h.call("DEL", conf, cid="a1")[0] == 0
    assert h.call("ADD", conf, cid="other", netns="/run/netns/x")[0] == 0  # takes a fresh one
    code, again = h.call("ADD", conf, cid="a2", args=pod)
    assert code == 0
    assert again["ips"][0]["address"] == first["ips"][0]["address"]
    lease = [l for l in h.leases(conf) if l.owner.container_id == "a2"][0]
    assert (lease.owner.pod, lease.owner.node) == ("default/redis-0", "node1")


def test_requested_ip_from_cni_args(h: Harness) -> None:
    code, res = h.call("ADD", make_conf(), args="IP=198.18.100.34")
    assert code == 0 and res["ips"][0]["address"] == "198.18.100.34/24"
    code, res = h.call("ADD", make_conf(), cid="c2", netns="/run/netns/x", args="IP=198.18.100.34")
    assert (code, res["code"]) == (1, 102)


def test_status_ok_and_unavailable(h: Harness) -> None:
    assert h.call("STATUS", make_conf()) == (0, {})
    code, res = h.call("STATUS", make_conf(master="gone0"))
    assert (code, res["code"]) == (1, 50) and "gone0" in res["msg"]


def test_vxlan_hook_refuses_clearly(h: Harness) -> None:
    conf = make_conf(mode="vxlan", clusterSubnet="198.19.0.0/17")
    conf.pop("master")
    code, res = h.call("ADD", conf)
    assert code == 1 and res["code"] == 7 and "vxlan" in res["msg"]
