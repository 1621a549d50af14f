"""Bounded traffic from a namespace: ping, one HTTP GET (the pods run busybox httpd)."""

from __future__ import annotations

import socket
import subprocess
import time

from flatnet.datapath.netns import run_in


def ping(ns: str, addr: str, attempts: int = 5) -> bool:
    """True when ``addr`` answers one ping from ``ns`` within ``attempts`` tries."""
    for _ in range(attempts):
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "1", addr],
            capture_output=True,
            timeout=10,
            check=False,
        )
        if proc.returncode == 0:
            return True
    return False


def http_get(ns: str, addr: str, port: int, attempts: int = 30) -> str:
    """The body of GET / from ``ns``; retried (bounded, ~15 s) while the server starts."""
    last: Exception | None = None
    for _ in range(attempts):
        sock = run_in(ns, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(3)
        try:
            sock.connect((addr, port))
            sock.sendall(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip()
        except OSError as exc:
            last = exc
            time.sleep(0.5)
        finally:
            sock.close()
    return f"(no answer: {last})"


def httpd_args(token: str, port: int) -> list[str]:
    """A busybox container command: serve ``token`` at / on ``port``."""
    return ["/bin/sh", "-c", f"echo {token} > /www/index.html && exec httpd -f -p {port} -h /www"]
