"""Fixtures for the containerd CRI scenarios: one flatnet node per test module.

Needs root, containerd, runc, musl-gcc and busybox-static (scripts/setup.sh installs them):
a missing tool fails the tests loudly rather than skipping them. The node is warmed up by
one pod (the first pod creates node infrastructure that stays by design: flatnet's shim
link and the portmap plugin's base chains), then ``node.baseline`` is the state every
scenario must return to.
"""

from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

from flatnet_lab.testbed.cri import CriNode, PortMap, snapshot

TOOLS = ("containerd", "ctr", "runc", "musl-gcc", "busybox", "nsenter", "nft", "iptables")


def require_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("containerd and network namespaces need root")
    missing = [t for t in TOOLS if shutil.which(t) is None and not os.path.exists(f"/usr/sbin/{t}")]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: run scripts/setup.sh (apt: containerd runc "
            "musl-tools busybox-static nftables iptables)"
        )


def assert_clean(node: CriNode, netns_paths: list[str] = ()) -> None:
    """Nothing beyond the node's baseline: links, routes, neighbours, nft, leases, netns."""
    leaked = snapshot.leaks(node.baseline, snapshot.take(node))
    left = snapshot.netns_left(netns_paths)
    assert not leaked and not left, f"leaked: {leaked} netns left: {left}"


@pytest.fixture(scope="module")
def node() -> Iterator[CriNode]:
    require_tools()
    with CriNode(network="flatnet") as n:
        assert n.cri is not None
        pod_id, _ = n.run_pod("warmup", "kube-system", port_mappings=[PortMap(80, 30999)])
        n.cri.stop_remove(pod_id)
        n.baseline = snapshot.take(n)  # type: ignore[attr-defined]
        yield n
