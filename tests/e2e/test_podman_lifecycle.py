"""The no-agent mode cannot leak: podman's every way to end a container releases its address.

Both ways of turning the mode on are run through each of podman's teardown paths:
``podman stop``, ``podman rm -f`` of a running container, ``podman run --rm`` and a
container that exits on its own (then conmon runs ``podman container cleanup``, which
calls DEL without the environment ``podman run`` had: with FLATNET_INPROCESS only in
that environment, DEL used to fail with code 11 and the lease stayed). After each: no
lease, no no-agent record, no libcni cache file, no lock file, no host route.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from flatnet import defaults

from .conftest import CNI_CACHE, Env
from .test_podman import held

pytestmark = [pytest.mark.podman, pytest.mark.netns, pytest.mark.timeout(300)]

SLEEP = ["/bin/sleep", "600"]


def leftovers(env: Env, cid: str, ip: str) -> list[str]:
    """What of container ``cid`` (address ``ip``) is still on the node; [] when clean."""
    from pyroute2 import IPRoute

    out = []
    if cid in held(env).values():
        out.append(f"lease of {cid[:12]}: {[a for a, c in held(env).items() if c == cid]}")
    out += [f"record {p}" for p in Path(defaults.INPROCESS_DIR).glob(f"{cid}.*")]
    out += [f"libcni cache {p}" for p in CNI_CACHE.glob(f"*{cid}*")] if CNI_CACHE.is_dir() else []
    out += [f"lock {p}" for p in env.locks.glob(f"{cid}*")] if env.locks.is_dir() else []
    with IPRoute(netns=f"/run/netns/{env.seg.node}") as ipr:
        dsts = {str(r.get_attr("RTA_DST")) for r in ipr.get_routes(family=socket.AF_INET)}
    if ip in dsts:
        out.append(f"host route to {ip}")
    return out


def wait_clean(env: Env, cid: str, ip: str, seconds: float = 45.0) -> list[str]:
    """Leftovers once podman's asynchronous cleanup had ``seconds`` to run (bounded poll)."""
    deadline = time.monotonic() + seconds
    while (left := leftovers(env, cid, ip)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def start(env: Env, name: str, cmd: list[str]) -> tuple[str, str]:
    cid = env.podman.run_detached(name, env.network, env.rootfs, cmd)
    ip = env.podman.address(name, env.network)
    assert held(env).get(ip) == cid, env.plugin_log()
    assert list(Path(defaults.INPROCESS_DIR).glob(f"{cid}.*")), "ADD must record the no-agent mode"
    return cid, ip


BOTH = pytest.mark.parametrize("flat", ["key", "env"], indirect=True)


@BOTH
def test_podman_stop_releases(flat: Env) -> None:
    cid, ip = start(flat, "stop-0", SLEEP)
    flat.podman("stop", "-t", "0", "stop-0")
    assert wait_clean(flat, cid, ip) == [], flat.plugin_log()
    flat.podman("rm", "stop-0")
    assert leftovers(flat, cid, ip) == []


@BOTH
def test_podman_rm_force_of_a_running_container_releases(flat: Env) -> None:
    cid, ip = start(flat, "rm-0", SLEEP)
    flat.podman("rm", "-f", "-t", "0", "rm-0")
    assert wait_clean(flat, cid, ip) == [], flat.plugin_log()


@BOTH
def test_podman_run_rm_releases(flat: Env) -> None:
    proc = flat.podman(
        "run", "--rm", "--name", "once-0", "--network", flat.network, "--rootfs", str(flat.rootfs),
        "/bin/sh", "-c", "ip -o -4 addr show eth0; cat /proc/self/cgroup >/dev/null",
    )  # fmt: skip
    ip = proc.stdout.split("inet ", 1)[1].split("/", 1)[0]
    assert ip.startswith("198.18.100."), proc.stdout
    cids = {c for c in held(flat).values()}
    assert not cids, f"leases left after podman run --rm: {held(flat)}"
    leaked = [p for p in Path(defaults.INPROCESS_DIR).iterdir() if p.read_text().startswith(flat.entry)]
    assert leaked == [], leaked


@BOTH
def test_a_container_that_exits_on_its_own_is_released_by_podmans_cleanup(flat: Env) -> None:
    cid, ip = start(flat, "short-0", ["/bin/sleep", "2"])
    flat.podman("wait", "short-0")
    assert wait_clean(flat, cid, ip) == [], flat.plugin_log()
    flat.podman("rm", "short-0")
    assert leftovers(flat, cid, ip) == []
