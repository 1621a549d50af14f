"""flatnet's DaemonSet run as kubelet would run it, through containerd's CRI (issue 11).

The chart is rendered by real Helm (tests/helpers/chart.py) with the node paths pointed at
the CRI node's directories (what an operator does on k3s) and a SQLite store in the node's
state dir; the image is the one ``make image`` builds. ``flatnet_lab.testbed.kubelet`` runs the
pod from those manifests: host network, init container, agent, probes, preStop. The node
starts as kubeadm leaves it — no conflist, no flatnet plugin, no Python of flatnet's — and:
ordinary sandboxes get flat addresses from that agent; a wedged agent fails liveness and
is restarted (readiness false meanwhile); a second image version rolled in keeps running
pods connected and their leases; uninstall leaves no conflist, plugin or socket.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time
from typing import Any

import pytest

from flatnet_lab.testbed.cri import CriNode
from flatnet_lab.testbed.cri.node import POOL, plugin_path
from flatnet_lab.testbed.kubelet import DaemonSetPod
from tests.helpers.cli import flatnet_cli
from tests.helpers import chart
from tests.helpers.image import ensure_image

from .conftest import require_tools

pytestmark = [pytest.mark.netns, pytest.mark.cri, pytest.mark.slow, pytest.mark.timeout(1800)]
SERVICE_CIDR = "198.19.128.0/24"


def _render(node: CriNode, tag: str = "") -> list[dict[str, Any]]:
    return chart.docs(
        {
            "image.tag": tag,
            "cni.binDir": str(node.bin_dir),
            "cni.confDir": str(node.conf_dir),
            "agent.runDir": str(node.work / "run-flatnet"),
            "agent.stateDir": str(node.work / "state"),
            "network.master": "eth0",
            "network.serviceCidrs": [SERVICE_CIDR],
            "pools": [POOL],
            # Helm merges maps into the defaults: null drops the default etcd endpoints
            "store": {"type": "sqlite", "path": "/var/lib/flatnet/ipam.db", "endpoints": None},
        },
        namespace="kube-system",
    )


def _ping(node: CriNode, ip: str) -> bool:
    for _ in range(3):
        proc = subprocess.run(
            ["ip", "netns", "exec", node.vm, "ping", "-n", "-c", "1", "-W", "2", ip],
            capture_output=True,
            timeout=15,
            check=False,
        )
        if proc.returncode == 0:
            return True
    return False


def _leases(node: CriNode) -> dict[str, str]:
    """ip -> owner pod, read from the store the agent keeps in the node's state dir."""
    proc = flatnet_cli(
        "ipam",
        "ls",
        "--json",
        "--store",
        f"sqlite:{node.work / 'state' / 'ipam.db'}",
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return {l["address"].split("/")[0]: l["pod"] or l["container"] for l in json.loads(proc.stdout)["leases"]}


def _network_ready(node: CriNode, timeout: float = 60.0) -> bool:
    """containerd reloads /etc/cni/net.d on its own (fsnotify): wait until it reports it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.cri is not None and node.cri.conditions()["NetworkReady"][0]:
            return True
        time.sleep(0.2)
    return False


def _say(msg: str) -> None:
    print(f"[daemonset] {msg}", flush=True)


def test_daemonset_installs_serves_restarts_upgrades_and_uninstalls() -> None:
    require_tools()
    image = ensure_image()
    _say(
        f"image {image.ref}: {image.info['rootfs_bytes'] / 2**20:.1f} MiB rootfs, "
        f"{image.info['layer_compressed'] / 2**20:.1f} MiB compressed"
    )
    with CriNode(network="none", prefix=f"fnk-{os.getpid() % 100000:05d}") as node:
        assert node.cri is not None
        node.containerd.import_image(image.archive)
        assert not (node.bin_dir / "flatnet").exists() and not list(node.conf_dir.iterdir())

        ds = DaemonSetPod(node, _render(node), node_name=f"{node.prefix}-node", period_scale=0.2)
        ds.start()
        assert ds.wait_ready(120), ds.events
        conflist = json.loads((node.conf_dir / "00-flatnet.conflist").read_text())
        assert conflist["cniVersion"] == "1.0.0"  # what containerd 1.6 accepts
        fwd = (node.bin_dir / "flatnet").read_bytes()
        assert fwd[:4] == b"\x7fELF" and fwd == plugin_path().read_bytes()  # the static forwarder
        _say(
            f"DaemonSet pod up: {ds.events}; node has {sorted(p.name for p in node.conf_dir.iterdir())}"
            f" and bin/flatnet ({len(fwd)} bytes, static)"
        )

        assert _network_ready(node), node.cri.conditions()
        web0, _ = node.run_pod("web-0", "shop")
        ip0 = node.cri.pod_status(web0).ip
        assert ipaddress.ip_address(ip0) in ipaddress.ip_network(POOL["subnet"])
        assert _ping(node, ip0), f"VM cannot reach pod {ip0}"
        _say(f"sandbox shop/web-0 got {ip0} from the agent; the VM reaches it")

        # a wedged agent: liveness fails failureThreshold times, kubelet restarts it;
        # readiness is false while it cannot serve
        os.kill(ds.container_pid(), signal.SIGSTOP)
        seen_unready = False
        deadline = time.monotonic() + 180
        while ds.containers[0].restarts == 0 and time.monotonic() < deadline:
            ds.sync()
            seen_unready |= not ds.containers[0].ready
            time.sleep(ds.period())
        assert ds.containers[0].restarts == 1 and seen_unready, ds.events
        assert ds.wait_ready(120), ds.events
        _say(f"wedged agent (SIGSTOP): {ds.events[-4:]}; readiness was false meanwhile; ready again")

        # upgrade: the same image under a new version tag, the old pod stopped, the new started
        new_ref = image.ref.rsplit(":", 1)[0] + ":0.1.0-fnk2"
        node.containerd.ctr("images", "tag", "--force", image.ref, new_ref)
        ds.stop()
        ds2 = DaemonSetPod(node, _render(node, tag="0.1.0-fnk2"), node_name=f"{node.prefix}-node", period_scale=0.2)
        ds2.start()
        assert ds2.wait_ready(120), ds2.events
        assert ds2.containers[0].spec["image"] == new_ref
        assert _ping(node, ip0), "the running pod lost its network across the upgrade"
        assert _leases(node).get(ip0) == "shop/web-0", f"lease of {ip0} lost: {_leases(node)}"
        assert _network_ready(node), node.cri.conditions()
        web1, _ = node.run_pod("web-1", "shop")
        ip1 = node.cri.pod_status(web1).ip
        assert ip1 and ip1 != ip0 and _ping(node, ip1)
        _say(f"upgraded to {new_ref}: web-0 {ip0} still reachable, its lease kept; web-1 got {ip1}")

        for pod_id in (web0, web1):
            node.cri.stop_remove(pod_id)
        assert ip0 not in _leases(node) and ip1 not in _leases(node)

        # uninstall: the chart's cleanup path (preStop) and the agent's exit
        ds2.stop()
        left = [p.name for p in node.conf_dir.iterdir()] + [p.name for p in (node.work / "run-flatnet").glob("*.sock")]
        assert not (node.bin_dir / "flatnet").exists() and not left, left
        _say(f"uninstalled: {ds2.events[-1]}; no conflist, no bin/flatnet, no socket")
