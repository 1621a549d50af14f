"""The VM's application: a Sentinel-aware client that writes continuously (bounded), and its log.

It knows only the Sentinels' addresses. It asks them for the master, connects, and writes
key after key (``SET`` then ``WAIT 1``, so an acknowledgement also says whether a replica
had the write); on any error it drops the connection and asks Sentinel again. Nothing in it
knows about a failover: following one is what the flat network must make work without
``announce-ip`` or NAT. Runs on a thread inside the VM's netns (``spawn_in``); bounded by a
key count and a deadline, and stopped early by ``stop``. Keys are contiguous (key i is
retried until acknowledged), so "present after" is a count of keys 0..acked-1.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from flatnet_lab.lab import redis_client as rc

CONNECT_TIMEOUT = 1.0
WAIT_MS = 200
PAUSE = 0.003  # between writes: a steady stream that leaves the two cores to the cluster


@dataclass
class Ack:
    key: int
    at: float  # time.monotonic()
    master: str
    replicated: bool  # WAIT 1 answered >= 1: a replica had it when the client was told OK


@dataclass
class WriterLog:
    acks: list[Ack] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    masters: list[tuple[float, str]] = field(default_factory=list)  # (when, master) each time Sentinel was asked

    def acked(self) -> int:
        return len(self.acks)

    def since(self, t: float) -> list[Ack]:
        return [a for a in self.acks if a.at >= t]


def write_continuously(
    sentinels: list[rc.Addr], log: WriterLog, stop: threading.Event, max_keys: int, deadline: float
) -> WriterLog:
    """Write keys 0.. until ``stop``, ``max_keys`` or ``deadline`` (monotonic); fills ``log``."""
    conn: rc.Conn | None = None
    master = ""
    i = 0
    while not stop.is_set() and i < max_keys and time.monotonic() < deadline:
        if conn is None:
            try:
                addr, _ = rc.ask_master(sentinels)
                master = str(addr)
                log.masters.append((time.monotonic(), master))
                conn = rc.Conn(addr, timeout=CONNECT_TIMEOUT)
            except OSError as exc:
                log.errors.append((time.monotonic(), f"{master or 'sentinel'}: {exc}"[:120]))
                time.sleep(0.05)
                continue
        try:
            set_reply, waited = conn.pipeline([("SET", rc.key(i), rc.value(i)), ("WAIT", 1, WAIT_MS)])
        except (OSError, ConnectionError) as exc:
            log.errors.append((time.monotonic(), f"{master}: {exc}"[:120]))
            conn.close()
            conn = None
            continue
        if set_reply != "OK":  # READONLY: Sentinel's answer was stale, this is a replica now
            log.errors.append((time.monotonic(), f"{master}: {set_reply}"[:120]))
            conn.close()
            conn = None
            time.sleep(0.05)
            continue
        log.acks.append(Ack(i, time.monotonic(), master, isinstance(waited, int) and waited >= 1))
        i += 1
        time.sleep(PAUSE)
    if conn is not None:
        conn.close()
    return log
