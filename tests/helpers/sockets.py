"""Scripted one-shot unix-socket servers: each plays one connection as a test tells it to."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

Behaviour = Callable[[socket.socket], None]


@contextmanager
def scripted_servers(tmp_dir: Path, prefix: str, backlog: int) -> Iterator[Callable[[Behaviour], str]]:
    """Yield ``make(behaviour) -> socket path``; ``behaviour(conn)`` plays the peer once.

    Sockets are ``tmp_dir / f"{prefix}{n}.sock"``; every server is closed and its thread
    joined on exit.
    """
    servers: list[tuple[socket.socket, threading.Thread]] = []

    def make(behaviour: Behaviour) -> str:
        path = str(tmp_dir / f"{prefix}{len(servers)}.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(backlog)
        srv.settimeout(20)

        def serve() -> None:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                behaviour(conn)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        servers.append((srv, t))
        return path

    try:
        yield make
    finally:
        for srv, t in servers:
            srv.close()
            t.join(10)
