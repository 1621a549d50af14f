"""What ``flatnet lab redis --runtime cri`` prints, and what it counts as a failure.

``problems`` is the model of the flat network through a real runtime: the VM follows the
failover to a new master, ``redis-0`` comes back on the node of its PV at the same address
with its pre-crash keys and rejoins, every acknowledged write is on every Redis, and the
seed's hand-typed PV leaves its pod Pending with the doctor naming the case mismatch.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from flatnet_lab.lab.redis_cri import CriOutcome
from flatnet_lab.testbed.cri.cluster import VM_ADDR

VM_IP = VM_ADDR.split("/")[0]


def problems(out: CriOutcome) -> list[str]:
    """What did not match the model (empty: the scenario showed its point)."""
    if out.error:
        return [out.error]
    bad = []
    if not out.master_after or out.master_after == out.master_before:
        bad.append("the VM did not follow a failover to a new master")
    if out.redis0_ip_after != out.ips.get("redis-0"):
        bad.append(f"redis-0 came back at {out.redis0_ip_after}, not {out.ips.get('redis-0')}")
    if out.redis0_node_after != out.placement.get("redis-0"):
        bad.append(f"redis-0 came back on {out.redis0_node_after}, not on its PV's node")
    if out.vm_seen_as != VM_IP:
        bad.append(f"the new master saw the VM's connection come from {out.vm_seen_as!r}, not {VM_IP} (NAT?)")
    if f"{out.redis0_ip_after}:6379" not in out.replicas_seen:
        bad.append(f"the master lists replicas {out.replicas_seen}, not redis-0 at {out.redis0_ip_after}")
    if out.on_volume != out.acked_at_kill:
        bad.append(f"redis-0 found {out.on_volume} of its {out.acked_at_kill} keys on its volume")
    # Redis replicates asynchronously: a write the master acknowledged before any replica had
    # it (WAIT said 0) may be lost in a failover; one a replica had may not
    must = out.replicated
    redis = sorted(p for p in out.placement if p.startswith("redis-"))
    if sorted(out.present) != redis:
        bad.append(f"keys were counted on {sorted(out.present)}, not on every Redis ({redis})")
    for pod, n in sorted(out.present.items()):
        if n < must or n > out.acked:
            bad.append(f"{pod} holds {n} of the {out.acked} acknowledged keys ({must} confirmed by a replica)")
    s = out.seed
    if s.node or "didn't find available persistent volumes to bind" not in s.pending or s.sandboxes != 0:
        bad.append(f"the hand-typed PV did not leave {s.pod} Pending (placed on {s.node!r}: {s.pending!r})")
    if not any(
        f.get("code") == "pv-hostname-case" and f.get("object") == f"PersistentVolume/{s.pv}" for f in s.findings
    ):
        bad.append(f"flatnet doctor cluster did not name the case mismatch of {s.pv}")
    if s.errors_after_fix != 0 or not s.fixed_node:
        bad.append("the doctor's fix did not let the pod be placed")
    return bad


def summary(out: CriOutcome) -> Table:
    t = Table("", "measured from the VM", title="Redis through containerd's CRI (flat network)", title_justify="left")
    rows = [
        (
            "placement (node of each PV)",
            ", ".join(f"{p}@{n}" for p, n in out.placement.items() if p.startswith("redis")),
        ),
        ("sentinels (pod addresses)", ", ".join(out.sentinels)),
        ("master before / after", f"{out.master_before} / {out.master_after}"),
        (
            "failover seen by the VM",
            f"{out.failover_s:.2f} s from the kill to the first write acknowledged by the new master",
        ),
        ("client errors during it", f"{out.client_errors} (then Sentinel asked again; no announce-ip, no NAT)"),
        ("the new master sees the VM as", out.vm_seen_as),
        (
            "redis-0 address before / after",
            f"{out.ips.get('redis-0', '-')} / {out.redis0_ip_after} ({out.redis0_node_after})",
        ),
        ("redis-0 recreated", f"answers the VM {out.recreate_s:.2f} s after its new pod object"),
        ("redis-0 keys on its volume", f"{out.on_volume} of the {out.acked_at_kill} acknowledged before the kill"),
        ("redis-0 rejoined", f"synced replica of {out.master_after} {out.rejoin_s:.2f} s after it was recreated"),
        ("replicas of the new master", ", ".join(out.replicas_seen)),
        ("writes acknowledged", f"{out.acked} ({out.replicated} with a replica's WAIT)"),
        ("writes present after", ", ".join(f"{p} {n}" for p, n in sorted(out.present.items()))),
    ]
    for label, value in rows:
        t.add_row(label, value)
    return t


def seed_table(out: CriOutcome) -> Table:
    s = out.seed
    t = Table("", "", title="the seed's failure: a PV typed by hand", title_justify="left")
    t.add_row("PersistentVolume", f"{s.pv}: nodeAffinity kubernetes.io/hostname In [{s.typed}]")
    t.add_row(f"pod {s.pod}", f"Pending, {s.sandboxes} sandbox(es): {s.pending}")
    for f in s.findings:
        t.add_row(
            f"doctor: {f.get('severity')} {f.get('code')}", f"{f.get('object')}: {f.get('what')}\nfix: {f.get('fix')}"
        )
    t.add_row(
        "after the fix",
        f"PV rewritten by pvgen: {s.pod} placed on {s.fixed_node or '-'}; {s.errors_after_fix} doctor error(s)",
    )
    return t


def show(console: Console, out: CriOutcome) -> list[str]:
    """The two tables (the timeline was printed as it happened); returns the problems."""
    if out.master_before:
        console.print(summary(out))
    if out.seed.pv:
        console.print(seed_table(out))
    bad = problems(out)
    for line in bad:
        console.print(f"[bold red]cri: {line}[/bold red]")
    return bad
