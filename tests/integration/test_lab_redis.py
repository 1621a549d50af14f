"""``flatnet lab redis``, lighter: real redis-server/Sentinel pods, a VM client, a failover.

Checks what the scenario is for: the VM finds the master through Sentinel, follows the
failover with no change on its side, redis-0 comes back at the same (sticky) address with
its AOF data and rejoins as a replica; on the overlay (when it exists) Sentinel announces an
address the VM cannot reach. Nothing may be left behind: pods, processes, volumes.
"""

from __future__ import annotations

import ipaddress
import os
import time
from typing import Iterator

import pytest

from tests.helpers.lab import fresh_lab

from flatnet_lab.testbed import net as labnet
from flatnet_lab.lab import pods, redis, redis_pods
from flatnet_lab.lab.topology import POD_NS_PREFIX, Topology

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(
        not os.path.exists(redis_pods.REDIS_BIN), reason="needs redis-server (Debian package redis-server)"
    ),
]
KEYS = 200


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with fresh_lab() as topo:
        yield topo


def _redis_pids() -> list[int]:
    """redis-server processes whose command line names a lab volume (ours, not the host's)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmd = fh.read().decode(errors="replace")
            except OSError:
                continue
            if "redis-server" in cmd and redis_pods.volumes_root() in cmd:
                out.append(int(entry))
    return out


def _assert_nothing_left() -> None:
    left = [
        ns
        for ns in labnet.list_namespaces(POD_NS_PREFIX)
        if ns.startswith((f"{POD_NS_PREFIX}redis-", f"{POD_NS_PREFIX}sentinel-"))
    ]
    assert left == []
    assert [p.name for p in pods.list_pods()] == []
    assert not os.path.exists(redis_pods.volumes_root())
    assert _redis_pids() == []


def test_flat_vm_follows_sentinel_through_failover_and_restart(topo: Topology) -> None:
    out = redis.run_network(topo, "flat", KEYS)
    _assert_nothing_left()
    assert out.available and out.error == "", out.error
    assert [r.step[0] for r in out.rows] == ["1", "2", "3", "4"]
    flat = ipaddress.ip_network(topo.flat.v4_subnet)

    first, failover, back, rejoined = out.rows
    assert first.master.startswith(out.redis0_ip_before + ":")  # redis-0 is the master
    assert ipaddress.ip_address(out.redis0_ip_before) in flat
    assert first.vm_reach == "ok" and first.written == KEYS
    assert first.found == {"redis-0": KEYS, "redis-1": KEYS, "redis-2": KEYS}

    # the VM asked Sentinel again and got a surviving replica, on the VMs' plane
    assert failover.master != first.master
    assert failover.master.split(":")[0] in (out.ips["redis-1"], out.ips["redis-2"])
    assert failover.vm_reach == "ok" and failover.written == 2 * KEYS
    assert failover.found == {"redis-0": "no pod", "redis-1": 2 * KEYS, "redis-2": 2 * KEYS}

    # same address (sticky), the pre-crash keys from its own AOF, nothing newer yet
    assert out.redis0_ip_after == out.redis0_ip_before
    assert back.found["redis-0"] == KEYS and out.aof_keys == KEYS

    # Sentinel turned it into a replica of the new master; new writes reach all three
    assert rejoined.note == f"replica of {failover.master}"
    assert rejoined.master == failover.master
    assert rejoined.vm_reach == "ok" and rejoined.written == 3 * KEYS
    assert rejoined.found == {f"redis-{k}": 3 * KEYS for k in range(3)}
    assert redis.problems(out, KEYS) == []


def test_overlay_sentinel_announces_an_address_the_vm_cannot_reach(topo: Topology) -> None:
    started = time.monotonic()
    out = redis.run_network(topo, "overlay", 50)
    _assert_nothing_left()
    if not out.available:
        pytest.skip(f"overlay: not available ({out.reason})")
    first = out.rows[0]
    host = first.master.rsplit(":", 1)[0]
    assert ipaddress.ip_address(host) in ipaddress.ip_network(topo.overlay.cluster_subnet)
    assert first.vm_reach.startswith("unreachable")
    assert first.written == 0
    assert all(str(v).startswith("unreachable") for v in first.found.values())
    assert time.monotonic() - started < 180  # every failed attempt was bounded
