"""``flatnet doctor node``: judgement on injected facts, and one real run on this kernel."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from flatnet.cli.main import main
from flatnet.datapath.kernelprobe import LINK_FEATURES, ProbeResult
from flatnet.doctor.findings import exit_code
from flatnet.doctor.node import evaluate, pick_node
from flatnet.doctor.nodefacts import CniFacts, NodeFacts, read_kconfig, scan_cni

SOCK = "/run/flatnet/agent.sock"


def healthy_facts() -> NodeFacts:
    cni = CniFacts(
        "/etc/cni/net.d",
        "/opt/cni/bin",
        files=["/etc/cni/net.d/10-flatnet.conflist"],
        flatnet_files=["/etc/cni/net.d/10-flatnet.conflist"],
        modes=["macvlan"],
        plugin_ok=True,
        no_fallback=["/etc/cni/net.d/10-flatnet.conflist"],  # the chart's conflist names no inProcess
    )
    return NodeFacts(
        links={f: ProbeResult(f, True) for f in LINK_FEATURES},
        kconfig={},
        nft=ProbeResult("nftables", True, "ok"),
        sysctls={
            "net.ipv4.ip_forward": "1",
            "net.ipv4.conf.all.rp_filter": "2",
            "net.ipv4.conf.default.rp_filter": "0",
        },
        tools={t: f"/usr/bin/{t}" for t in ("socat", "nsenter", "conntrack", "ip", "iperf3")},
        agent=("ok", "{}"),
        store=("ok", "http://198.18.0.10:2379"),
        cni=cni,
        hostname="keludev05",
        node={"kind": "Node", "metadata": {"name": "keludev05", "labels": {"kubernetes.io/hostname": "keludev05"}}},
    )


def by_object(facts: NodeFacts) -> dict:
    return {f.object: f for f in evaluate(facts, SOCK)}


def test_healthy_node_is_all_ok() -> None:
    found = evaluate(healthy_facts(), SOCK)
    assert {f.severity for f in found} == {"ok"} and exit_code(found) == 0


def test_missing_socat_names_the_package_and_the_seed_error() -> None:
    facts = healthy_facts()
    facts.tools["socat"] = None
    f = by_object(facts)["tool/socat"]
    assert f.severity == "warn" and f.fix == "apt-get install socat"
    assert "socat not found" in f.why
    facts.tools["iperf3"] = None
    assert by_object(facts)["tool/iperf3"].severity == "ok"  # optional


def test_missing_kernel_feature_is_error_only_when_a_mode_needs_it() -> None:
    facts = healthy_facts()
    facts.links["ipvlan"] = ProbeResult("ipvlan", False, "errno 95: Operation not supported")
    facts.kconfig = {"CONFIG_IPVLAN": "n"}
    f = by_object(facts)["kernel/ipvlan"]
    assert f.severity == "warn" and "CONFIG_IPVLAN" in f.fix and "modprobe ipvlan" in f.fix
    facts.cni.modes = ["ipvlan"]
    assert by_object(facts)["kernel/ipvlan"].severity == "error"
    facts.kconfig = {"CONFIG_IPVLAN": "m"}
    assert by_object(facts)["kernel/ipvlan"].fix.startswith("modprobe ipvlan")


def test_vlan_pools_need_8021q() -> None:
    facts = healthy_facts()
    facts.links["8021q"] = ProbeResult("8021q", False, "errno 95")
    assert by_object(facts)["kernel/8021q"].severity == "warn"
    facts.cni.vlans = True
    assert by_object(facts)["kernel/8021q"].severity == "error"


def test_sysctls() -> None:
    facts = healthy_facts()
    facts.sysctls["net.ipv4.ip_forward"] = "0"
    assert by_object(facts)["sysctl/net.ipv4.ip_forward"].severity == "warn"
    facts.cni.modes = ["vxlan"]
    assert by_object(facts)["sysctl/net.ipv4.ip_forward"].severity == "error"
    facts.sysctls["net.ipv4.conf.all.rp_filter"] = "1"
    f = by_object(facts)["sysctl/net.ipv4.conf.all.rp_filter"]
    assert f.severity == "warn" and "rp_filter=2" in f.fix


def test_agent_store_cni_and_hostname_problems() -> None:
    facts = healthy_facts()
    facts.agent = ("absent", "no such file")
    facts.store = ("broken", "http://198.18.0.10:2379: connection refused")
    facts.cni.plugin_ok = False
    facts.cni.files.insert(0, "/etc/cni/net.d/00-other.conf")
    facts.hostname = "KeluDev05"
    found = by_object(facts)
    assert found["agent"].severity == "error" and SOCK in found["agent"].what  # the config has no inProcess
    assert "code 11" in found["agent"].why
    assert found["store"].severity == "error"
    assert found["/opt/cni/bin/flatnet"].severity == "error"
    assert found["/etc/cni/net.d"].code == "cni-not-first"
    host = [f for f in evaluate(facts, SOCK) if f.object == "node/hostname" and f.severity != "ok"]
    assert [f.code for f in host] == ["hostname-case"]
    assert "'keludev05'" in host[0].fix
    facts.hostname = "keludev06"
    assert [f.code for f in evaluate(facts, SOCK) if f.severity == "error" and f.object == "node/hostname"] == [
        "hostname-label"
    ]


def test_probe_failure_is_a_finding_not_a_crash() -> None:
    facts = healthy_facts()
    facts.links, facts.probe_error = None, "PermissionError: not root"
    f = by_object(facts)["node/kernel"]
    assert f.severity == "warn" and "not root" in f.what


def test_scan_cni_reads_modes_vlans_and_store(tmp_path: Path) -> None:
    (tmp_path / "10-flatnet.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "1.1.0",
                "name": "flat",
                "plugins": [
                    {
                        "type": "flatnet",
                        "mode": "bridge",
                        "ipam": {
                            "pools": [{"subnet": "198.18.100.0/24", "vlan": 100}],
                            "store": {"type": "sqlite", "path": "/tmp/x.db"},
                        },
                    }
                ],
            }
        )
    )
    (tmp_path / "99-bad.conf").write_text("{")
    facts = scan_cni(str(tmp_path), str(tmp_path))
    assert facts.modes == ["bridge"] and facts.vlans and facts.store["type"] == "sqlite"
    assert facts.errors and not facts.plugin_ok
    (tmp_path / "flatnet").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "flatnet", 0o755)
    assert scan_cni(str(tmp_path), str(tmp_path)).plugin_ok


def test_read_kconfig_parses_set_and_unset(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "config.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("CONFIG_MACVLAN=y\n# CONFIG_IPVLAN is not set\nCONFIG_VXLAN=m\n")
    assert read_kconfig(str(path)) == {"CONFIG_MACVLAN": "y", "CONFIG_IPVLAN": "n", "CONFIG_VXLAN": "m"}
    assert read_kconfig(str(tmp_path / "absent.gz")) is None


def test_pick_node_from_list() -> None:
    nodes = {"kind": "List", "items": [{"kind": "Node", "metadata": {"name": n}} for n in ("keludev05", "keludev06")]}
    assert pick_node(nodes, "KeluDev06")["metadata"]["name"] == "keludev06"
    assert pick_node(nodes, "other") is None


def _kernel_can(kind_args: list[str]) -> bool:
    """Independent oracle: iproute2 in a test netns (fnt-<hex>), always removed."""
    ns = f"fnt-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        subprocess.run(
            ["ip", "-n", ns, "link", "add", "fntp0", "type", "veth", "peer", "name", "fntp1"],
            check=True,
            timeout=10,
            capture_output=True,
        )
        rc = subprocess.run(["ip", "-n", ns, "link", "add", *kind_args], timeout=10, capture_output=True).returncode
        return rc == 0
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=10, check=False)


@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
def test_real_node_run_matches_the_kernel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {n for n in os.listdir("/run/netns") if n.startswith("fnd-")} if os.path.isdir("/run/netns") else set()
    rc = main(
        [
            "doctor",
            "node",
            "--json",
            "--socket",
            str(tmp_path / "none.sock"),
            "--cni-conf-dir",
            str(tmp_path),
            "--cni-bin-dir",
            str(tmp_path),
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert rc == doc["exitCode"] == 2  # no flatnet CNI config in the empty dir
    found = {f["object"]: f for f in doc["findings"]}
    ipvlan_ok = _kernel_can(["fntiv", "link", "fntp0", "type", "ipvlan", "mode", "l2"])
    macvlan_ok = _kernel_can(["fntmv", "link", "fntp0", "type", "macvlan", "mode", "bridge"])
    vlan_ok = _kernel_can(["fntp0.100", "link", "fntp0", "type", "vlan", "id", "100"])
    assert (found["kernel/ipvlan"]["severity"] == "ok") == ipvlan_ok
    assert (found["kernel/macvlan"]["severity"] == "ok") == macvlan_ok
    assert (found["kernel/8021q"]["severity"] == "ok") == vlan_ok
    if not ipvlan_ok:
        assert "CONFIG_IPVLAN" in found["kernel/ipvlan"]["fix"]
    assert found["agent"]["code"] == "agent-absent"
    after = {n for n in os.listdir("/run/netns") if n.startswith("fnd-")}
    assert after <= before, f"probe namespaces left behind: {after - before}"


def test_br_netfilter_is_flagged_only_for_bridge_mode() -> None:
    facts = healthy_facts()
    facts.sysctls["net.bridge.bridge-nf-call-iptables"] = "1"
    key = "sysctl/net.bridge.bridge-nf-call-iptables"
    assert by_object(facts)[key].severity == "ok"  # macvlan frames never cross a bridge
    facts.cni.modes = ["bridge"]
    f = by_object(facts)[key]
    assert f.severity == "warn" and "bridge-nf-call-iptables=0" in f.fix and "kube-proxy" in f.fix
    facts.sysctls["net.bridge.bridge-nf-call-iptables"] = "0"
    assert by_object(facts)[key].severity == "ok"


def test_missing_agent_is_a_warning_only_when_every_config_has_an_in_process_fallback(tmp_path: Path) -> None:
    conf = {"cniVersion": "1.0.0", "name": "flat", "type": "flatnet", "master": "eth1"}
    (tmp_path / "10-flatnet.conf").write_text(json.dumps(conf))
    facts = healthy_facts()
    facts.agent = ("absent", "no such file")
    facts.cni = scan_cni(str(tmp_path), str(tmp_path))
    assert facts.cni.no_fallback == [str(tmp_path / "10-flatnet.conf")]
    f = by_object(facts)["agent"]
    assert f.severity == "error" and "10-flatnet.conf" in f.why and "code 11" in f.why
    (tmp_path / "10-flatnet.conf").write_text(json.dumps({**conf, "inProcess": "/usr/bin/flatnet-inprocess"}))
    facts.cni = scan_cni(str(tmp_path), str(tmp_path))
    f = by_object(facts)["agent"]
    assert facts.cni.no_fallback == [] and f.severity == "warn" and "inProcess" in f.why


def test_bridge_mode_says_the_node_address_moves() -> None:
    facts = healthy_facts()
    assert "node/addresses" not in by_object(facts)
    facts.cni.modes = ["bridge"]
    f = by_object(facts)["node/addresses"]
    assert f.code == "bridge-moves-addresses" and "fnbr0" in f.what and f.severity == "ok"


def test_in_a_container_the_tools_are_not_judged_by_the_image_path(tmp_path: Path, monkeypatch) -> None:
    """kubectl exec ds/flatnet-agent -- flatnet doctor node: the image lacks socat/conntrack."""
    from flatnet.doctor.nodefacts import gather

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # the image's PATH: none of the tools
    facts = gather(str(tmp_path / "none.sock"), None, str(tmp_path), str(tmp_path), None, probe=False)
    tools = [f for f in evaluate(facts, SOCK) if f.object.startswith("tool/")]
    assert [f.code for f in tools] == ["tools-not-checked"] and tools[0].severity == "ok"
    assert "Kubernetes pod" in tools[0].what and "--host-root" in tools[0].fix
    # with the node's / mounted, its tools are found there and named by their path on the node
    root = tmp_path / "host"
    (root / "usr/bin").mkdir(parents=True)
    for tool in ("socat", "ip"):
        (root / "usr/bin" / tool).write_text("#!/bin/sh\n")
        (root / "usr/bin" / tool).chmod(0o755)
    facts = gather(str(tmp_path / "none.sock"), None, str(tmp_path), str(tmp_path), None, False, str(root))
    found = by_object(facts)
    assert found["tool/socat"].what == "socat: /usr/bin/socat" and found["tool/ip"].severity == "ok"
    assert found["tool/conntrack"].severity == "warn" and f"under {root}" in found["tool/conntrack"].what
