"""A minimal Redis/Sentinel client (RESP2 over a plain socket) for the lab's Redis scenario.

Why not redis-py: the lab must not grow dependencies, and the scenario needs very little
(SET/MGET/WAIT/INFO and one SENTINEL question). Why in-process rather than ``redis-cli``:
a socket belongs to the network namespace of the thread that created it, so calling these
functions through ``flatnet.datapath.netns.run_in(ns, ...)`` makes them run *as an
application on that host* (the VM, or a pod for the in-cluster view) with every attempt
bounded by a socket timeout, and failures come back as values the report can show.

The client knows only the sentinel addresses; it asks them for the master every time it
(re)connects, which is exactly what a Sentinel-aware application does.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Sequence

TIMEOUT = 2.0
BATCH = 100
WAIT_MS = 5000
MASTER_NAME = "mymaster"


class ReplyError(Exception):
    """The server answered with a RESP error (e.g. READONLY on a replica)."""


@dataclass(frozen=True)
class Addr:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def key(i: int) -> str:
    return f"flatnet:key:{i}"


def value(i: int) -> str:
    return f"value-{i}"


class Conn:
    """One connection; ``call`` and ``pipeline`` send commands and parse RESP2 replies."""

    def __init__(self, addr: Addr, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((addr.host, addr.port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.rfile = self.sock.makefile("rb")

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _encode(args: Sequence[Any]) -> bytes:
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(parts)

    def _read(self) -> Any:
        line = self.rfile.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed by the server")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return ReplyError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rfile.read(n + 2)
            return data[:-2].decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError(f"unexpected RESP reply {line[:40]!r}")

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send every command, then read every reply (errors are returned, not raised)."""
        self.sock.sendall(b"".join(self._encode(c) for c in commands))
        return [self._read() for _ in commands]

    def call(self, *args: Any) -> Any:
        reply = self.pipeline([args])[0]
        if isinstance(reply, ReplyError):
            raise reply
        return reply


def ask_master(sentinels: Sequence[Addr], name: str = MASTER_NAME) -> tuple[Addr, Addr]:
    """(master, the sentinel that answered): the first sentinel that answers wins.

    Raises OSError naming every sentinel tried when none answers.
    """
    errors = []
    for s in sentinels:
        try:
            with Conn(s) as c:
                reply = c.call("SENTINEL", "get-master-addr-by-name", name)
        except (OSError, ReplyError) as exc:
            errors.append(f"{s}: {exc}")
            continue
        if reply:
            return Addr(reply[0], int(reply[1])), s
        errors.append(f"{s}: does not know {name}")
    raise OSError("no sentinel answered: " + "; ".join(errors))


def write_keys(master: Addr, start: int, count: int, replicas: int = 0) -> int:
    """SET keys start..start+count-1; then WAIT for ``replicas`` acks. Returns keys stored."""
    ok = 0
    with Conn(master) as c:
        for lo in range(start, start + count, BATCH):
            hi = min(lo + BATCH, start + count)
            replies = c.pipeline([("SET", key(i), value(i)) for i in range(lo, hi)])
            bad = [r for r in replies if r != "OK"]
            if bad:
                raise ReplyError(str(bad[0]))
            ok += len(replies)
        if replicas:  # so a read from a replica right after sees every key
            c.sock.settimeout(WAIT_MS / 1000 + TIMEOUT)
            c.call("WAIT", replicas, WAIT_MS)
    return ok


def count_keys(addr: Addr, start: int, count: int) -> int:
    """How many of keys start..start+count-1 hold their expected value on ``addr``."""
    found = 0
    with Conn(addr) as c:
        for lo in range(start, start + count, BATCH):
            hi = min(lo + BATCH, start + count)
            got = c.call("MGET", *(key(i) for i in range(lo, hi)))
            found += sum(1 for i, v in zip(range(lo, hi), got, strict=False) if v == value(i))
    return found


def replication(addr: Addr) -> dict[str, str]:
    """``INFO replication`` as a dict (role, master_host, master_link_status, ...)."""
    with Conn(addr) as c:
        text = c.call("INFO", "replication")
    out = {}
    for line in str(text).splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def sentinel_view(sentinel: Addr, name: str = MASTER_NAME) -> dict[str, int]:
    """How many replicas and other sentinels ``sentinel`` knows for ``name``."""
    with Conn(sentinel) as c:
        replicas = c.call("SENTINEL", "replicas", name)
        others = c.call("SENTINEL", "sentinels", name)
    return {"replicas": len(replicas or []), "sentinels": len(others or [])}


def ping(addr: Addr) -> bool:
    """True when something at ``addr`` answers PONG within the timeout."""
    try:
        with Conn(addr) as c:
            return c.call("PING") == "PONG"
    except (OSError, ReplyError):
        return False
