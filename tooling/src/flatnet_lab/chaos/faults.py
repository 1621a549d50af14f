"""Fault injectors, each a thread that strikes when the load passes op-count thresholds.

Thresholds are random points spread over the run (not a timer), so faults land at random
moments of the load whatever the machine's speed. Every injector counts what it did.
"""

from __future__ import annotations

import ipaddress
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

from flatnet_lab.chaos.cluster import NETWORK, Cluster
from flatnet_lab.chaos.load import Counters
from flatnet.ipam import records as rec

#: the key a killed writer tries to commit: a lease for an address nobody allocated
POISON_IP = "198.18.200.77"
POISON_CID = "fnkpoison"

_WRITER = r"""
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("PRAGMA busy_timeout = 30000")
conn.execute("BEGIN IMMEDIATE")
for key in sys.argv[2:]:
    conn.execute("INSERT OR REPLACE INTO kv(key, value, version) VALUES (?, ?, 1)", (key, '{"poison": true}'))
print("in-transaction", flush=True)
time.sleep(60)  # SIGKILLed long before: the COMMIT never comes
conn.execute("COMMIT")
"""


def thresholds(count: int, ops: int) -> list[int]:
    """The call counts at which ``count`` faults strike: random, between 5% and 75% of the
    load. The last quarter is left for strikes that fall behind (an agent kill waits up to
    0.5 s for the restart): with points up to 95%, bunched points near the end let a smoke
    run's 120 calls finish before the last strikes (3 of 5 struck, seen in a CI rehearsal)."""
    return sorted(random.randint(max(1, ops // 20), max(2, ops * 3 // 4)) for _ in range(count))


class Injector(threading.Thread):
    """Runs ``strike()`` once per threshold; stops early when ``done`` is set."""

    def __init__(
        self, counters: Counters, points: list[int], strike: Callable[[], None], done: threading.Event
    ) -> None:
        super().__init__(daemon=True)
        self.counters, self.points, self.strike, self.done = counters, points, strike, done
        self.count = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for point in self.points:
                while self.counters.ops < point and not self.done.is_set():
                    time.sleep(0.02)
                if self.done.is_set():
                    return
                self.strike()
                self.count += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the scenario
            self.error = exc


def kill_agent(cluster: Cluster) -> Callable[[], None]:
    """SIGKILL a random live node's agent, restart it after 0-0.5 s."""

    def strike() -> None:
        node = random.choice([n for n in cluster.nodes if not n.lost])
        cluster.kill_agent(node)
        time.sleep(random.uniform(0.0, 0.5))
        cluster.start_agent(node)

    return strike


def bounce_etcd(cluster: Cluster) -> Callable[[], None]:
    """SIGKILL etcd, keep it down 1-3 s, start it again (same data, same ports)."""

    def strike() -> None:
        assert cluster.etcd is not None
        cluster.etcd.stop(signal.SIGKILL)
        time.sleep(random.uniform(1.0, 3.0))
        cluster.etcd.start()

    return strike


def kill_member(cluster: Cluster, counters: Counters, window: int, notes: list[str]) -> Callable[[], None]:
    """SIGKILL one member of the three-member etcd (the leader first, then followers) and
    start it again once the load has made ``window`` more calls (at most 20 s later)."""
    strikes = [0]

    def strike() -> None:
        from flatnet_lab.etcd import EtcdCluster

        at, t0 = counters.ops, time.monotonic()
        etcd = cluster.etcd
        assert isinstance(etcd, EtcdCluster)
        leader = etcd.leader()
        running = [m for m in etcd.members if m.running]
        victim = (
            leader
            if (strikes[0] % 2 == 0 and leader is not None)
            else random.choice([m for m in running if m is not leader] or running)
        )
        strikes[0] += 1
        victim.stop(signal.SIGKILL)
        killed_at, t1 = counters.ops, time.monotonic()
        deadline = t1 + 20.0
        while counters.ops < killed_at + window and time.monotonic() < deadline:
            time.sleep(0.05)
        served, down = counters.ops - killed_at, time.monotonic() - t1
        etcd.start()
        notes.append(
            f"SIGKILLed {victim.name}{' (leader)' if victim is leader else ''} at call "
            f"{killed_at} (struck at {at}, {t1 - t0:.1f} s to pick it); {served} calls "
            f"made in the {down:.1f} s it was down; restarted"
        )

    return strike


def kill_sqlite_writer(cluster: Cluster, problems: list[str]) -> Callable[[], None]:
    """A child takes the write lock, writes a poison lease, and is SIGKILLed before COMMIT."""
    db = cluster.store_config()["path"]
    keys = [rec.ip_key(NETWORK, ipaddress.ip_address(POISON_IP)), rec.owner_key(POISON_CID, "eth0", NETWORK)]

    def strike() -> None:
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, db, *keys], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            if line != "in-transaction":
                problems.append(f"sqlite writer never got its transaction: {line!r}")
                return
            time.sleep(random.uniform(0.05, 0.8))  # others queue behind its write lock meanwhile
        finally:
            child.kill()
            child.wait(10)

    return strike
