"""ADD/DEL with namespace rules and pod annotations over FakeDatapath + memory store, through
dispatch (what a runtime sees): the choice reaches the allocator, the lease records it, every
refusal leaves nothing allocated or plumbed. The same scenarios run through containerd's CRI in
tests/cri/test_cri_pod_pools.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flatnet.cni import parse_netconf
from flatnet.cni.annotations import CAPABILITY
from test_agent_service import Harness, make_conf

POOLS = [
    {"name": "v100", "subnet": "198.18.100.0/24", "rangeStart": "198.18.100.20", "rangeEnd": "198.18.100.29"},
    {
        "name": "v300",
        "subnet": "198.18.30.0/24",
        "rangeStart": "198.18.30.20",
        "rangeEnd": "198.18.30.29",
        "vlan": 300,
        "namespaces": ["payments"],
        "sticky": True,
    },
    {"name": "db", "subnet": "198.18.101.0/24", "rangeStart": "198.18.101.20", "rangeEnd": "198.18.101.29"},
]


@pytest.fixture
def h(tmp_path: Any) -> Harness:
    return Harness(tmp_path)


def conf(**annotations: str) -> dict:
    keys = {"pool": "flatnet.io/pool", "ip": "flatnet.io/ip"}
    return make_conf(pools=POOLS, runtimeConfig={CAPABILITY: {keys[k]: v for k, v in annotations.items()}})


def add(h: Harness, c: dict, ns: str, name: str, cid: str) -> tuple[int, dict]:
    return h.call("ADD", c, cid=cid, netns=f"/run/netns/{cid}", args=f"K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name}")


def held(h: Harness) -> dict[str, tuple[str, str, str | None]]:
    ipam = h.svc.ipam(parse_netconf(json.dumps(make_conf(pools=POOLS)).encode()))
    return {str(l.address.ip): (l.pool, l.owner.pod or "", dict(l.owner.choices).get(l.pool)) for l in ipam.leases()}


def test_namespace_rule_annotation_fixed_and_default_are_recorded(h: Harness) -> None:
    assert add(h, conf(), "payments", "api-0", "c1")[0] == 0
    assert add(h, conf(pool="db"), "shop", "pg-0", "c2")[0] == 0
    assert add(h, conf(ip="198.18.100.25"), "shop", "vip", "c3")[0] == 0
    assert add(h, conf(), "shop", "web", "c4")[0] == 0
    assert held(h) == {
        "198.18.30.20": ("v300", "payments/api-0", "namespace"),
        "198.18.101.20": ("db", "shop/pg-0", "annotation"),
        "198.18.100.25": ("v100", "shop/vip", "ip"),
        "198.18.100.20": ("v100", "shop/web", "default"),
    }
    assert h.dp.attachments[("/run/netns/c1", "eth0")].vlan == 300
    for cid in ("c1", "c2", "c3", "c4"):
        assert h.call("DEL", conf(), cid=cid, netns=f"/run/netns/{cid}")[0] == 0
    assert held(h) == {} and h.dp.attachments == {}


@pytest.mark.parametrize(
    ("annotations", "ns", "code", "words"),
    [
        ({"pool": "nope"}, "shop", 7, "this network has no pool 'nope'"),
        ({"pool": "v300"}, "shop", 7, "serves only namespaces payments"),
        ({"ip": "198.18.30.22"}, "shop", 7, "serves only namespaces payments"),
        ({"ip": "192.0.2.9"}, "shop", 102, "outside every pool"),
        ({"ip": "198.18.100.x"}, "shop", 7, "is not an IP address"),
        ({"pool": "v100,,"}, "shop", 7, "empty item"),
    ],
)
def test_refusals_allocate_and_plumb_nothing(
    h: Harness, annotations: dict[str, str], ns: str, code: int, words: str
) -> None:
    rc, res = add(h, conf(**annotations), ns, "x", "c9")
    assert rc == 1 and res["code"] == code and words in res["msg"], res
    assert "flatnet.io/" in res["msg"] and "may use: v100" in res["msg"], res
    assert held(h) == {} and h.dp.attachments == {}


def test_a_fixed_address_held_by_another_pod_is_refused(h: Harness) -> None:
    assert add(h, conf(ip="198.18.100.25"), "shop", "a", "c1")[0] == 0
    rc, res = add(h, conf(ip="198.18.100.25"), "shop", "b", "c2")
    assert rc == 1 and res["code"] == 102, res
    assert res["msg"].startswith("pod annotation flatnet.io/ip '198.18.100.25': ") and "pod shop/a" in res["msg"]
    assert set(held(h)) == {"198.18.100.25"} and list(h.dp.attachments) == [("/run/netns/c1", "eth0")]


def test_a_fixed_address_reserved_for_another_sticky_pod_is_refused_and_wins_over_own_stickiness(
    h: Harness,
) -> None:
    assert add(h, conf(), "payments", "db-0", "c1")[0] == 0  # sticky: 198.18.30.20 is db-0's
    assert h.call("DEL", conf(), cid="c1", netns="/run/netns/c1")[0] == 0
    rc, res = add(h, conf(ip="198.18.30.20"), "payments", "other", "c2")
    assert rc == 1 and res["code"] == 102 and "reserved for sticky pod payments/db-0" in res["msg"], res
    assert "--forget-sticky payments/db-0" in res["details"]
    assert held(h) == {} and h.dp.attachments == {}
    # db-0 itself asking for another address gets that one, not its sticky one
    assert add(h, conf(ip="198.18.30.27"), "payments", "db-0", "c3")[0] == 0
    assert held(h) == {"198.18.30.27": ("v300", "payments/db-0", "ip")}


def test_a_quarantined_fixed_address_is_refused(h: Harness) -> None:
    def probe(spec: Any, ip: Any) -> Any:
        return lambda: "02:00:00:00:00:99" if str(ip) == "198.18.100.26" else None

    h.svc.conflict_probe = probe
    rc, res = add(h, conf(ip="198.18.100.26"), "shop", "a", "c1")
    assert rc == 1 and res["code"] == 102 and "in use on the VLAN (answered by 02:00:00:00:00:99)" in res["msg"]
    assert res["msg"].startswith("pod annotation flatnet.io/ip")
    rc, res = add(h, conf(ip="198.18.100.26"), "shop", "a", "c2")
    assert rc == 1 and res["code"] == 102 and "quarantined" in res["msg"], res
    assert held(h) == {} and h.dp.attachments == {}


def test_annotation_and_runtime_request_must_agree(h: Harness) -> None:
    c = conf(ip="198.18.100.25")
    c["runtimeConfig"]["ips"] = ["198.18.100.26"]
    rc, res = add(h, c, "shop", "a", "c1")
    assert rc == 1 and res["code"] == 102 and "runtime requested 198.18.100.26" in res["msg"], res
    c["runtimeConfig"]["ips"] = ["198.18.100.25/24"]
    assert add(h, c, "shop", "a", "c1")[0] == 0


def test_del_ignores_annotations(h: Harness) -> None:
    assert add(h, conf(), "shop", "a", "c1")[0] == 0
    assert h.call("DEL", conf(pool="nope,,"), cid="c1", netns="/run/netns/c1")[0] == 0
    assert held(h) == {}


def test_ipam_ls_shows_how_each_pool_was_chosen(tmp_path: Any) -> None:
    from flatnet.ipam import Ipam, Owner
    from flatnet.ipam.store import open_store
    from test_cli_ipam import flatnet

    db = tmp_path / "ipam.db"
    store = open_store({"type": "sqlite", "path": str(db)})
    specs = parse_netconf(json.dumps(make_conf(pools=POOLS)).encode()).pools
    ipam = Ipam(store)
    ipam.allocate([specs[1]], Owner("c1", "eth0", "flat", "payments", "api-0", "n1", choices=(("v300", "namespace"),)))
    ipam.allocate([specs[2]], Owner("c2", "eth0", "flat", "shop", "pg-0", "n1", choices=(("db", "annotation"),)))
    store.close()
    proc = flatnet("ipam", "ls", "--json", "--store", f"sqlite:{db}")
    assert proc.returncode == 0, proc.stderr
    got = {(x["namespace"], x["name"], x["pool"], x["choice"]) for x in json.loads(proc.stdout)["leases"]}
    assert got == {("payments", "api-0", "v300", "namespace"), ("shop", "pg-0", "db", "annotation")}
    proc = flatnet("ipam", "ls", "--store", f"sqlite:{db}", env={"COLUMNS": "200"})
    assert "chosen by" in proc.stdout and "namespace rule" in proc.stdout and "flatnet.io/pool" in proc.stdout
