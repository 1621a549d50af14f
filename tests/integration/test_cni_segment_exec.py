"""Issue 26's repro as a regression test: the real plugin executable and the agent, three
network configs (neta, netb, netc) on one master, one subnet and range, one SQLite store.

Before the segment index: neta's pod got .50, netb's pod that asked for .50 (``CNI_ARGS IP=``)
got it, and netc's pod that asked for nothing got .50 too. Now netb's request is refused with
code 102 naming neta's pod, netc's pod gets .51, and ``runtimeConfig.ips`` (podman ``--ip``)
is refused the same way; the same holds in the no-agent (podman) mode.
"""

from __future__ import annotations

import secrets
from typing import Any, Iterator

import pytest

from tests.helpers.cli import stop_agent
from tests.helpers.cnirun import CniError, Runner
from tests.integration.test_cni_exec import REF_PLUGINS, Topo, _start_agent

pytestmark = pytest.mark.netns


@pytest.fixture
def topo(tmp_path: Any) -> Iterator[Topo]:
    t = Topo(tmp_path)
    try:
        t.build()
        yield t
    finally:
        t.teardown()


def net(topo: Topo, name: str, sock: str | None) -> dict:
    """A network config as a new user writes one: no pool name (so ``<network>-<subnet>``)."""
    plugin: dict[str, Any] = {
        "type": "flatnet",
        "mode": "macvlan",
        "master": "vp0",
        "hostNetns": topo.node,
        "capabilities": {"ips": True},
        "ipam": {
            "pools": [{"subnet": "198.18.120.0/24", "rangeStart": "198.18.120.50", "rangeEnd": "198.18.120.59"}],
            "store": {"type": "sqlite", "path": topo.db},
        },
    }
    if sock:
        plugin["agentSocket"] = sock
    return {"cniVersion": "1.0.0", "name": name, "plugins": [plugin]}


def runner(topo: Topo, conflist: dict, **kw: Any) -> Runner:
    return Runner(
        conflist,
        secrets.token_hex(8),
        topo.pod(),
        netns_exec=topo.node,
        cni_path=(topo.bin, REF_PLUGINS),
        env=topo.env,
        **kw,
    )


def _ip(result: dict) -> str:
    return str(result["ips"][0]["address"].split("/")[0])


def _three_networks(topo: Topo, sock: str | None) -> None:
    a = runner(topo, net(topo, "neta", sock))
    assert _ip(a.add()) == "198.18.120.50"
    b = runner(topo, net(topo, "netb", sock), cni_args="IgnoreUnknown=1;IP=198.18.120.50")
    with pytest.raises(CniError) as exc:
        b.add()
    assert exc.value.code == 102, exc.value.msg
    assert "198.18.120.50" in exc.value.msg and "neta" in exc.value.msg and a.container_id in exc.value.msg
    b2 = runner(topo, net(topo, "netb", sock), capability_args={"ips": ["198.18.120.50/24"]})
    with pytest.raises(CniError) as exc:
        b2.add()
    assert exc.value.code == 102 and "neta" in exc.value.msg
    c = runner(topo, net(topo, "netc", sock))
    assert _ip(c.add()) == "198.18.120.51"
    held = sorted((lease.pool, str(lease.address.ip)) for lease in topo.leases())
    assert held == [("neta-198.18.120.0_24", "198.18.120.50"), ("netc-198.18.120.0_24", "198.18.120.51")]
    # once neta's pod is gone, netb may have the address it asked for
    a.delete()
    b3 = runner(topo, net(topo, "netb", sock), cni_args="IgnoreUnknown=1;IP=198.18.120.50")
    assert _ip(b3.add()) == "198.18.120.50"
    for r in (b3, c):
        r.delete()
    assert topo.leases() == []


def test_three_networks_one_subnet_through_the_agent(topo: Topo) -> None:
    agent, sock = _start_agent(topo)
    try:
        _three_networks(topo, sock)
    finally:
        stop_agent(agent)


def test_three_networks_one_subnet_without_agent(topo: Topo) -> None:
    _three_networks(topo, None)
