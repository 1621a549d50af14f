"""Render a run: a rich table for the terminal and docs/BENCHMARKS.md for the repository.

Both come from the same ``Results``; the Markdown file is written by the command, never
by hand, so every number in it was measured by the run it describes.
"""

from __future__ import annotations

from typing import Iterable

from rich.table import Table

from flatnet_lab.bench.results import BASELINES, Measurement, Results
from flatnet_lab.bench.targets import Target

SECTIONS = ("control plane", "cri", "ipam", "etcd client", "data plane", "routes")
TITLES = {
    "control plane": "Control plane",
    "cri": "CRI (containerd)",
    "ipam": "IPAM",
    "etcd client": "etcd client (per call)",
    "data plane": "Data plane",
    "routes": "Routes per node",
}


def fmt(v: float) -> str:
    """Three significant figures, no exponent for the ranges a bench produces."""
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def _ratio(r: Results, m: Measurement) -> str:
    q = r.ratio_to_baseline(m)
    return "" if q is None else f"{q:.2f}x"


def rows(r: Results) -> Iterable[tuple[str, ...]]:
    """(section, subject, metric, min, median, max, unit, vs baseline) per measurement."""
    for section in SECTIONS:
        for m in (m for m in r.measurements if m.section == section):
            s = m.summary
            if s is None:
                yield (section, m.subject, m.metric, "", m.unavailable, "", "", "")
            else:
                yield (section, m.subject, m.metric, fmt(s.min), fmt(s.median), fmt(s.max), m.unit, _ratio(r, m))


def rich_tables(r: Results) -> list[Table]:
    """One table per section (narrow enough for an 80-column terminal)."""
    tables = []
    for section in SECTIONS:
        body = [row[1:] for row in rows(r) if row[0] == section]
        if not body:
            continue
        base = BASELINES.get(section)
        t = Table(title=f"{section}" + (f" (baseline: {base})" if base else ""), title_justify="left")
        for col, just in (
            ("subject", "left"),
            ("metric", "left"),
            ("min", "right"),
            ("median", "right"),
            ("max", "right"),
            ("unit", "left"),
            ("ratio", "right"),
        ):
            t.add_column(col, justify=just)  # type: ignore[arg-type]
        last = None
        for row in body:
            if last is not None and row[0] != last:
                t.add_section()
            last = row[0]
            t.add_row(*row)
        tables.append(t)
    return tables


def _md_table(header: tuple[str, ...], body: Iterable[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
    return lines


def markdown(
    r: Results, machine: dict[str, str], command: str, date: str, targets: list[Target], charts: list[str], profile: str
) -> str:
    out = [
        "# flatnet benchmarks",
        "",
        f"Written by `{command}` on {date} (profile `{profile}`). Do not edit by hand:",
        "run the command again. Every subject was measured in the same run; ratios are",
        "the median against the section's baseline measured in that run "
        f"({', '.join(f'{k}: {v}' for k, v in BASELINES.items() if v)}).",
        "",
        "## Machine",
        "",
    ]
    out += _md_table(("", ""), machine.items())
    out += ["", "## Targets", ""]
    out += _md_table(
        ("goal", "measured", "holds"),
        ((t.goal, t.measured, {True: "yes", False: "**no**", None: "n/a"}[t.holds]) for t in targets),
    )
    for section in SECTIONS:
        body = [row[1:] for row in rows(r) if row[0] == section]
        if not body:
            continue
        out += ["", f"## {TITLES[section]}", ""]
        out += _md_table(("subject", "metric", "min", "median", "max", "unit", "vs baseline"), body)
    if r.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    if charts:
        out += ["", "## Charts", ""] + [f"![{c}](benchmarks/{c})" for c in charts]
    out += ["", "## How it was measured", "", METHOD]
    return "\n".join(out) + "\n"


METHOD = """\
- Control plane: every subject is exec'd as a runtime does (`ip netns exec <node> <plugin>`,
  CNI_* environment, config on stdin) against a pod netns created beforehand (not timed).
  `flatnet (agent)` is the native forwarder (`/opt/cni/bin/flatnet`, static C) handing the
  call to a running `flatnet agent`; `flatnet (in-process)` is the same forwarder finding no
  agent and exec'ing `flatnet-inprocess`, which runs the service itself; `bridge+host-local` are the reference plugins from
  /usr/lib/cni (bridge `fnbb0` in the bench's node netns, host-local data in a tmp dir).
  Sequential: ADD then DEL per pod, p50/p99 per repeat. Burst: all pods ADDed at once from a
  thread pool (one exec each), total wall time, then all DELed at once. Agent RSS is VmRSS
  from /proc/<pid>/status. `exec floor`: the same `ip netns exec` of `/bin/true` and of the
  Python interpreter doing nothing (`python -I -S -c pass`) -- what the in-process mode
  pays before its first line, to read the ADD rows against. `VERSION p50`: the same exec
  of a VERSION call, which each plugin answers by itself (its bare start-up).
- CRI (containerd): a private containerd 1.6 per subject (`flatnet_lab.testbed.cri`), each in its
  own node netns with the same chain shape (main plugin + portmap) and a locally built pause
  image. Per repeat and subject, pods one after the other: RunPodSandbox timed (it answers once
  the network is up), then StopPodSandbox + RemovePodSandbox timed together; p50 per repeat.
  Subjects alternate order between repeats; two untimed pods per node first.
- IPAM: clients are forked processes, each with its own store connection, started together
  by a barrier; rate = allocations / wall time from the first to the last. Pools are IPv6
  ranges of 256 to 1,000,000 addresses, fresh per measurement, each in its own /104 (an
  address is held once per segment, whatever the pool); each client is one simulated node's
  allocator (Owner.node), one allocation after another (until issue 21 a row's clients shared
  100 simulated nodes, so a 1k pool was parked in 100 nodes' chunks). Each client makes its
  first allocation before the clock starts (connected, the pool's definition read, its first
  chunk claimed: a running agent); the 1k pool at 32 clients is measured once more from a
  cold start ("cold start" rows: every allocation timed; `ipambench --matrix --cold`). "put
  ceiling" is etcd's own rate in the same run: 32 processes committing one-key txns through
  the store's client, each connected by one put before the clock starts; "etcd requests/alloc" is counted by etcd itself (its
  `grpc_server_handled_total`, Range + Txn, before and after the row). The duplicate check
  spreads the pods over 100 simulated nodes (Owner.node) with 8 processes, each the only
  allocator of its own nodes (nodes w, w+8, ...), as each node's agent is in a cluster, then
  compares the addresses handed out and the leases in the store. It runs twice: one
  allocation after another per process, then with each process as its nodes' agent serving
  `dup_threads` (16) ADDs at once, node after node, as kubelet sends a node's pods together
  (concurrent allocations of one pool and node share a txn: `flatnet.ipam._batch`); issue
  21's 10k-pods goal is judged on the second. (Until stop 10 every process
  allocated for every node, a shape no cluster produces in which every node chunk a process
  cached was always stale; `python -m flatnet_lab.bench.ipambench --mixed` still runs it.) etcd is a private single-member etcd
  with its data in the run's tmp dir (on disk, fsync on). Those rows alone, with the CPU per
  allocation of the clients and of etcd: `python -m flatnet_lab.bench.ipambench`
  (`--threads 16` for the agents' shape, `--matrix` for every pool x clients row).
  Issue 21's "alloc/s does not fall as clients are added" is judged as written, and once more
  against the 1M pool's fall in the same run: a 1M pool's nodes share no key (each one's
  first chunk of 64 lasts its whole share), so its fall from 32 to 128 client processes is
  what this machine does with them (on 2 cores they share the CPU with etcd); the 1k pool's
  fall beyond it is what its shared keys cost.
- etcd client (per call): which client the etcd store uses is decided by these rows
  (`flatnet_lab.bench.etcdclients`; alone: `python -m flatnet_lab.bench.etcdclients`). Against the
  same private etcd, each candidate reads one 200-byte key sequentially over one kept-alive
  connection (after a warm-up) and decodes it: the store's own `_http` client, the standard
  library's `http.client`, `httpx`, `etcd3gw` (JSON gateway over requests) and `aetcd`
  (asyncio gRPC). `client CPU per call` is this process's CPU time (all threads) per call --
  what a node pays. etcd's own work is the same for the JSON-gateway clients; gRPC skips the
  gateway (on the 2-core bench machine etcd spent ~0.43 ms of CPU per read over gRPC against
  ~0.8 ms through the gateway, while the gRPC client spent ~2x more). The store keeps the
  cheapest client.
- Data plane: on the lab (`flatnet lab`), node1 -> node2. iperf3 (one-off server, bounded
  duration), UDP with 1300-byte datagrams at unlimited rate (received rate reported); RR =
  1-byte request/response over one TCP connection (TCP_NODELAY), p50/p99. The userspace
  UDP tunnel is a Python TUN<->UDP forwarder in each node (flannel's old udp backend).
  `flat bridge (br_netfilter off)` is the flat bridge pods again with
  `net.bridge.bridge-nf-call-{iptables,ip6tables,arptables}` = 0 in both lab nodes (restored
  after): the kernel's default (1, when br_netfilter is loaded) sends every bridged frame
  through the IP netfilter hooks; `flatnet doctor node` explains when turning it off is safe.
  `flat macvlan (first-hop filter off)` is the macvlan pods again with their first-hop filters
  (table `flatnet_firsthop` in each pod's netns) taken out for the measurement and put back
  after. `flat macvlan (N other pods' filters on the node)` is the filtered macvlan pods again
  once N more macvlan pods, each with its own filter, were ADDed on node1 through its agent
  (lab network `flat-wide`: the parent and filter of `flat`, a pool wide enough for them),
  deleted after; a note says how long making them took.
- Routes: routes in node1's main table (IPv4 + IPv6, link-local and multicast excluded)
  after every node got N pods of the network.
"""
