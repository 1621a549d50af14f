"""The seed's Redis as containers through containerd's CRI, on node-local volumes (issue 24).

Three nodes (a containerd each, in its own netns, with the flatnet agent; one VLAN; one
sticky pool), a VM outside the cluster, the Redis image built from Debian's packages
(scripts/image/redis.sh, cached). ``flatnet_lab.lab.redis_cri`` runs what ``flatnet lab redis
--runtime cri`` runs, with fewer writes per step: the VM's client follows a Sentinel
failover after the master's container and sandbox are killed; redis-0, recreated on the node
of its local PV, gets its sticky address and its data back and rejoins; every acknowledged
write is on every Redis; a PV typed with the node's name in another case leaves its pod
Pending and ``flatnet doctor cluster`` names the mismatch and the fix. The run leaves no
namespace, mount or shim behind.
"""

from __future__ import annotations

import os

import pytest

from flatnet_lab.lab.redis_cri import NODE_NAMES, run_cri
from flatnet_lab.lab.redis_cri_report import problems

from .conftest import require_tools

pytestmark = [pytest.mark.netns, pytest.mark.cri, pytest.mark.slow, pytest.mark.timeout(1800)]


def _ours_left(prefix: str) -> list[str]:
    netns = [n for n in os.listdir("/run/netns") if n.startswith(prefix)] if os.path.isdir("/run/netns") else []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        mounts = [ln.split()[4] for ln in fh if f"/{prefix}" in ln.split()[4]]
    return netns + mounts


def test_redis_sentinel_failover_through_cri_seen_from_a_vm() -> None:
    require_tools()
    out = run_cri(keys=150, say=lambda m: print(f"[redis-cri] {m}", flush=True))
    print(f"\n[redis-cri] addresses before: {out.ips}")
    print(f"[redis-cri] master {out.master_before} -> {out.master_after}; VM's failover {out.failover_s:.2f} s")
    print(f"[redis-cri] the new master sees the VM as {out.vm_seen_as}; its replicas: {out.replicas_seen}")
    print(
        f"[redis-cri] redis-0 {out.ips.get('redis-0')}@{out.placement.get('redis-0')} -> "
        f"{out.redis0_ip_after}@{out.redis0_node_after}; answers {out.recreate_s:.2f} s after its new pod object, "
        f"{out.on_volume}/{out.acked_at_kill} keys on its volume, synced replica after {out.rejoin_s:.2f} s"
    )
    print(f"[redis-cri] keys acknowledged {out.acked} ({out.replicated} with a replica's WAIT); present {out.present}")
    print(f"[redis-cri] seed: {out.seed.pod} Pending: {out.seed.pending}")
    print(out.seed.doctor_text)
    assert problems(out) == [], "\n".join(problems(out))
    assert out.placement["redis-0"] == NODE_NAMES[0] and len({out.placement[f"redis-{k}"] for k in range(3)}) == 3
    assert out.failover_s > 0 and out.acked > 3 * 150
    assert out.seed.doctor_exit == 2 and out.seed.typed == "KeluDev05"
    assert _ours_left("fnr-") == [], _ours_left("fnr-")
