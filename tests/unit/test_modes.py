"""The mode registry (datapath/modes.py): adding a mode is one module plus one line.

The modes registered here live only in this test module: a flat one that needs a master,
and one whose hooks provide the pools and prepare options (the shape of an overlay). The
config parser, ``get_datapath`` and the agent's Service pick them up through the registry
alone, with no other file edited.
"""

from __future__ import annotations

import io
import ipaddress
import json
import subprocess
import sys
from typing import Any, Iterator

import pytest

from flatnet.agent.service import Service
from flatnet.cni import dispatch, parse_netconf
from flatnet.datapath import get_datapath, modes
from flatnet.datapath.fake import FakeDatapath
from flatnet.errors import ConfigError
from flatnet.ipam.api import PoolSpec

SEEN: list[FakeDatapath] = []


def test_datapath() -> FakeDatapath:
    """The test mode's "module": a datapath factory the registry line names."""
    dp = FakeDatapath()
    SEEN.append(dp)
    return dp


test_datapath.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


class PoolHooks:
    """Hooks of a mode that brings its own pool and prepares an option before plumbing."""

    ready_by_prepare = True

    def __init__(self) -> None:
        self.prepared: list[tuple[str, str]] = []

    def pools(self, store: Any, conf: Any, node: str) -> list[PoolSpec]:
        net = ipaddress.ip_network("198.18.77.0/29")
        return [PoolSpec(name=f"{conf.name}-{node}", subnet=net, gateway=ipaddress.ip_address("198.18.77.1"))]

    def prepare(self, store: Any, conf: Any, node: str, host_netns: str | None) -> dict:
        self.prepared.append((conf.name, node))
        return {"tunnel": f"to-{node}"}


@pytest.fixture
def test_modes() -> Iterator[tuple[modes.Mode, modes.Mode]]:
    SEEN.clear()
    flat = modes.register(modes.Mode("fnatest", test_datapath, needs=("master",)))
    own = modes.register(modes.Mode("fnatest-pools", test_datapath, pools="test hooks", hooks=PoolHooks))
    try:
        yield flat, own
    finally:
        modes.unregister(flat.name)
        modes.unregister(own.name)


def _conf(mode: str, **extra: Any) -> dict:
    conf: dict[str, Any] = {
        "cniVersion": "1.1.0",
        "name": "t",
        "type": "flatnet",
        "mode": mode,
        "ipam": {"store": {"type": "memory"}},
    }
    conf.update(extra)
    return conf


def _call(svc: Service, verb: str, conf: dict) -> tuple[int, dict]:
    env = {
        "CNI_COMMAND": verb,
        "CNI_CONTAINERID": "c1",
        "CNI_IFNAME": "eth0",
        "CNI_NETNS": "/run/netns/fna-pod",
        "CNI_PATH": "/opt/cni/bin",
    }
    out = io.StringIO()
    code = dispatch(svc, env, json.dumps(conf).encode(), out, io.StringIO())
    return code, json.loads(out.getvalue()) if out.getvalue().strip() else {}


def test_builtin_modes_and_their_traits() -> None:
    assert modes.names()[:4] == ("macvlan", "ipvlan", "bridge", "vxlan")
    assert modes.get("macvlan").needs == ("master",) and modes.get("ipvlan").needs == ("master",)
    assert modes.get("bridge").defaults["bridge"] == "fnbr0"
    vx = modes.get("vxlan")
    assert vx.overlay and not vx.pools_from_config
    assert not any(modes.get(m).overlay for m in ("macvlan", "ipvlan", "bridge"))
    with pytest.raises(ConfigError, match="'sriov' is not supported; use one of: macvlan"):
        modes.get("sriov")


def test_registry_and_cni_config_load_no_kernel_code() -> None:
    code = "import sys, flatnet.cni.config, flatnet.datapath.modes;sys.exit('pyroute2' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_a_new_flat_mode_is_validated_from_its_traits(test_modes: Any) -> None:
    with pytest.raises(ConfigError, match="master"):
        parse_netconf(json.dumps(_conf("fnatest", ipam={"pools": [{"subnet": "198.18.76.0/24"}]})).encode())
    with pytest.raises(ConfigError, match="ipam.pools is required in fnatest mode"):
        parse_netconf(json.dumps(_conf("fnatest", master="fna-eth0")).encode())
    pools = {"pools": [{"subnet": "198.18.76.0/24"}]}
    # a key only another mode reads would be ignored here: refused, naming the mode that reads it
    with pytest.raises(ConfigError, match="only mode bridge reads; this network's mode is 'fnatest'"):
        parse_netconf(json.dumps(_conf("fnatest", master="fna-eth0", bridge="x", ipam=pools)).encode())
    conf = parse_netconf(json.dumps(_conf("fnatest", master="fna-eth0", ipam=pools)).encode())
    assert conf.mode == "fnatest" and conf.master == "fna-eth0" and conf.bridge is None
    assert isinstance(get_datapath("fnatest"), FakeDatapath)


def test_a_new_mode_runs_through_the_agent(test_modes: Any, tmp_path: Any) -> None:
    svc = Service(node="n1", lock_dir=str(tmp_path / "locks"))  # default datapath factory
    conf = _conf(
        "fnatest",
        master="fna-eth0",
        ipam={"pools": [{"subnet": "198.18.76.0/24", "gateway": "198.18.76.1"}], "store": {"type": "memory"}},
    )
    code, res = _call(svc, "ADD", conf)
    assert code == 0, res
    assert res["ips"][0]["address"] == "198.18.76.2/24"
    [dp] = SEEN
    spec = dp.attachments[("/run/netns/fna-pod", "eth0")]
    assert spec.mode == "fnatest" and spec.master == "fna-eth0"
    assert _call(svc, "DEL", conf)[0] == 0 and not dp.attachments


def test_a_mode_whose_hooks_provide_pools_and_prepare(test_modes: Any, tmp_path: Any) -> None:
    svc = Service(node="n1", lock_dir=str(tmp_path / "locks"))
    conf = _conf("fnatest-pools")  # no ipam.pools: the mode's hooks provide them
    code, res = _call(svc, "ADD", conf)
    assert code == 0, res
    assert res["ips"][0]["address"] == "198.18.77.2/29"
    assert {"dst": "0.0.0.0/0", "gw": "198.18.77.1"} in res["routes"]
    [dp] = SEEN
    assert dp.attachments[("/run/netns/fna-pod", "eth0")].options["tunnel"] == "to-n1"
    hooks = svc.hooks("fnatest-pools")
    assert isinstance(hooks, PoolHooks) and hooks.prepared == [("t", "n1")]
    # STATUS: a mode ready by its prepare hook does not ask the datapath
    dp.fail_status = RuntimeError("the datapath's status must not be asked")
    assert _call(svc, "STATUS", conf)[0] == 0
    assert hooks.prepared == [("t", "n1"), ("t", "n1")]
