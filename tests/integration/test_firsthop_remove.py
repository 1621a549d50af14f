"""A pod's first-hop filter is removed idempotently, also once its interface is gone.

DEL must succeed however far the pod already went away: the link deleted with its VLAN parent,
a second DEL, or a pod that never had a filter. The chain is real (installed on a veth in a
namespace this test creates), and the check that it is gone reads the kernel's ruleset.

Kernels differ here: Debian 12's 6.1 refuses a netdev hook on a device that does not exist
(ENOENT), newer ones accept it. The old add-then-delete removal failed every DEL after the link
was gone on 6.1 (the kernel tier met it) and passed here, so the gone-interface case runs in
the kernel tier's VM too.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from typing import Iterator

import pytest

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")]

from flatnet.datapath import firsthop  # noqa: E402

MAC = "02:fe:00:00:00:21"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=15)


@pytest.fixture
def pod_ns() -> Iterator[str]:
    name = f"fhr-{secrets.token_hex(3)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "add", "eth0", "address", MAC, "type", "veth", "peer", "name", "peer0")
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=15)


def _install(ns_path: str) -> None:
    who = firsthop.allowed(MAC, ["198.18.150.21"], [firsthop.eui64_link_local(MAC)])
    firsthop.install(ns_path, "eth0", who, firsthop.Policy())


def test_remove_deletes_the_chain_and_a_second_remove_is_a_no_op(pod_ns: str) -> None:
    _install(pod_ns)
    assert firsthop.installed(pod_ns, "eth0")[0] is not None
    firsthop.remove(pod_ns, "eth0")
    assert firsthop.installed(pod_ns, "eth0") == (None, 0)
    firsthop.remove(pod_ns, "eth0")  # a second DEL


def _gone_interface(ns_path: str) -> None:
    _install(ns_path)
    _ip("-n", os.path.basename(ns_path), "link", "del", "eth0")
    firsthop.remove(ns_path, "eth0")
    assert firsthop.installed(ns_path, "eth0") == (None, 0)


def test_remove_after_the_interface_is_gone(pod_ns: str) -> None:
    """The link went first (with its parent, or by hand): nothing is left to remove, and
    saying so is not an error."""
    _gone_interface(pod_ns)


@pytest.mark.kernel()
def test_remove_after_the_interface_is_gone_on_debians_kernel(pod_ns: str) -> None:
    """The same on Debian 12's kernel (6.1), where a hook on a missing device is ENOENT."""
    _gone_interface(pod_ns)


def test_remove_where_no_filter_was_ever_installed(pod_ns: str) -> None:
    firsthop.remove(pod_ns, "eth0")
    assert firsthop.installed(pod_ns, "eth0") == (None, 0)
