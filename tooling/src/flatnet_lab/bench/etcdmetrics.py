"""What an etcd cluster says about its own load: its ``/metrics`` and its lease list.

The scale run (``scale.py``) counts requests where etcd counts them, not in the client:
``grpc_server_started_total`` by ``grpc_method`` (every client request, the JSON gateway's
included, is one gRPC call on the member that served it), the MVCC counters, the
database size and the members' own CPU seconds.
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass, field

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="([^"]*)"')

#: the gRPC methods a flatnet agent uses, in the order the report shows them
METHODS = ("Range", "Txn", "Put", "DeleteRange", "LeaseGrant", "LeaseKeepAlive", "LeaseRevoke", "Watch")


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text format: (name, labels, value) per sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), value))
    return out


#: etcd's MVCC operation counters (each member counts what it applied or served)
_MVCC = {f"etcd_debugging_mvcc_{k}_total": k for k in ("range", "put", "delete", "txn")}


@dataclass
class Snapshot:
    """One moment of the cluster: counters summed over members, gauges at their maximum."""

    grpc: dict[str, float] = field(default_factory=dict)  # method -> calls started
    mvcc: dict[str, float] = field(default_factory=dict)  # range/put/delete/txn (summed)
    cpu: float = 0.0  # CPU seconds of every member together
    db_bytes: float = 0.0
    db_in_use: float = 0.0
    keys: float = 0.0
    leases: int = 0
    sent_bytes: float = 0.0  # what the members sent their clients (gRPC, the gateway's included)


def snapshot(endpoints: list[str], timeout: float = 5.0) -> Snapshot:
    snap = Snapshot()
    for ep in endpoints:
        with urllib.request.urlopen(ep + "/metrics", timeout=timeout) as resp:
            samples = parse(resp.read().decode())
        for name, labels, value in samples:
            if name == "grpc_server_started_total" and labels.get("grpc_type") is not None:
                method = labels.get("grpc_method", "?")
                snap.grpc[method] = snap.grpc.get(method, 0.0) + value
            elif name in _MVCC and not labels:
                snap.mvcc[_MVCC[name]] = snap.mvcc.get(_MVCC[name], 0.0) + value
            elif name == "etcd_network_client_grpc_sent_bytes_total":
                snap.sent_bytes += value
            elif name == "process_cpu_seconds_total":
                snap.cpu += value
            elif name == "etcd_mvcc_db_total_size_in_bytes":
                snap.db_bytes = max(snap.db_bytes, value)
            elif name == "etcd_mvcc_db_total_size_in_use_in_bytes":
                snap.db_in_use = max(snap.db_in_use, value)
            elif name == "etcd_debugging_mvcc_keys_total":
                snap.keys = max(snap.keys, value)
    snap.leases = lease_count(endpoints[0], timeout)
    return snap


def lease_count(endpoint: str, timeout: float = 5.0) -> int:
    """Leases alive now (``/v3/lease/leases``)."""
    req = urllib.request.Request(endpoint + "/v3/lease/leases", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return len(json.loads(resp.read()).get("leases") or [])


@dataclass
class Rates:
    """What happened between two snapshots, per second."""

    seconds: float
    grpc: dict[str, float]
    mvcc: dict[str, float]
    cpu_cores: float
    sent_bytes: float  # per second

    @property
    def total(self) -> float:
        return sum(self.grpc.values())


def rates(a: Snapshot, b: Snapshot, seconds: float, own_calls: dict[str, float] | None = None) -> Rates:
    """Per-second deltas; ``own_calls``: calls the measuring itself made (subtracted)."""
    own = own_calls or {}
    grpc = {m: max(0.0, b.grpc.get(m, 0.0) - a.grpc.get(m, 0.0) - own.get(m, 0.0)) / seconds for m in b.grpc}
    grpc = {m: v for m, v in grpc.items() if v > 0}
    mvcc = {k: (b.mvcc.get(k, 0.0) - a.mvcc.get(k, 0.0)) / seconds for k in b.mvcc}
    return Rates(seconds, grpc, mvcc, (b.cpu - a.cpu) / seconds, (b.sent_bytes - a.sent_bytes) / seconds)
