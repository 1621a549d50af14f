"""A minimal HTTP/1.1 client for the etcd JSON gateway: POST a body, read the answer.

Why not httpx or ``http.client``: an allocation costs one to three store calls, and the
client's own CPU per call was most of it on a busy node: httpx ~0.6 ms, ``http.client``
~0.18 ms (mostly parsing headers with the ``email`` package), this ~0.04 ms. All it
has to speak is one request shape to one kind of server: keep-alive connections, a
``Content-Length`` or chunked answer, nothing else (no redirects, no proxies, no
compression, no ``Expect``).

Connections are pooled, one per call in flight: an agent that serves each request on a
new thread keeps as many as calls ever ran at once, and a forked child never reuses its
parent's. Errors are ``OSError`` (``ConnectionError`` for protocol trouble, ``TimeoutError``
for timeouts) so the caller has one thing to catch.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flatnet.errors import ConfigError

_MAX_IDLE = 16
_MAX_LINE = 65536

if TYPE_CHECKING:  # ssl is imported where a TLS context is made: ~14 ms less per plugin call
    import ssl


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()


class _Stale(ConnectionError):
    """A kept-alive connection was closed by the server before it answered anything."""


class HttpEndpoint:
    """One ``http(s)://host:port`` endpoint; ``post`` is safe to call from many threads."""

    def __init__(
        self, url: str, timeout: float, ssl_context: ssl.SSLContext | None = None, connect_timeout: float | None = None
    ) -> None:
        """``connect_timeout`` (default ``timeout``) bounds TCP connect + TLS handshake, so a
        dead member is skipped quickly while a slow answer still gets ``timeout``."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"etcd store: endpoint {url!r} is not an http(s)://host:port URL")
        self.url, self.timeout = url, timeout
        self.connect_timeout = min(timeout, connect_timeout or timeout)
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base = parts.path.rstrip("/")
        self._ssl = None
        if parts.scheme == "https":
            import ssl

            self._ssl = ssl_context or ssl.create_default_context()
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self._head = f"Host: {netloc}\r\nContent-Type: application/json\r\nContent-Length: "
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _connect(self) -> _Conn:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.timeout)
        except BaseException:
            sock.close()
            raise
        return _Conn(sock)

    def _take(self) -> tuple[_Conn | None, bool]:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._pid, self._idle = os.getpid(), []
            if self._idle:
                return self._idle.pop(), True
        return None, False

    def _give(self, conn: _Conn) -> None:
        with self._lock:
            if self._pid == os.getpid() and len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def post(self, path: str, body: bytes, headers: str = "") -> tuple[int, bytes]:
        """(status, body) of ``POST path``; a stale kept-alive connection is retried once.

        ``headers``: extra header lines, each ending in CRLF (the etcd auth token).
        """
        request = f"POST {self.base}{path} HTTP/1.1\r\n{headers}{self._head}{len(body)}\r\n\r\n".encode() + body
        while True:
            conn, reused = self._take()
            if conn is None:
                conn = self._connect()
            try:
                status, data, keep = self._exchange(conn, request, reused)
            except _Stale:
                conn.close()
                continue  # only ever raised for a reused connection: the next is new or idle
            except BaseException:
                conn.close()
                raise
            if keep:
                self._give(conn)
            else:
                conn.close()
            return status, data

    def close(self) -> None:
        """Close the idle connections (a later call simply opens a new one)."""
        with self._lock:
            conns, self._idle = self._idle, []
        for conn in conns:
            conn.close()

    @staticmethod
    def _exchange(conn: _Conn, request: bytes, reused: bool) -> tuple[int, bytes, bool]:
        try:
            conn.sock.sendall(request)
            line = conn.rfile.readline(_MAX_LINE)
        except (BrokenPipeError, ConnectionResetError) as exc:
            if reused:
                raise _Stale() from exc
            raise
        if not line:
            if reused:
                raise _Stale()
            raise ConnectionError("the server closed the connection without answering")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ConnectionError(f"not an HTTP answer: {line[:80]!r}")
        status = int(parts[1])
        length, chunked, keep = None, False, parts[0] == b"HTTP/1.1"
        while True:
            h = conn.rfile.readline(_MAX_LINE)
            if h in (b"\r\n", b"\n"):
                break
            if not h:
                raise ConnectionError("the connection closed inside the answer's headers")
            name, _, value = h.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                v = value.strip().lower()
                keep = v == b"keep-alive" or (keep and v != b"close")
        if chunked:
            data = _read_chunked(conn)
        elif length is not None:
            data = _read_exact(conn, length)
        else:  # until the server closes (HTTP/1.0 style)
            data, keep = conn.rfile.read(), False
        return status, data, keep


def _read_exact(conn: _Conn, n: int) -> bytes:
    data = conn.rfile.read(n)
    if len(data) != n:
        raise ConnectionError(f"the answer ended after {len(data)} of {n} bytes")
    return data


def _read_chunked(conn: _Conn) -> bytes:
    out: list[bytes] = []
    while True:
        size_line = conn.rfile.readline(_MAX_LINE)
        if not size_line:
            raise ConnectionError("the connection closed inside a chunked answer")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while conn.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(out)
        out.append(_read_exact(conn, size))
        _read_exact(conn, 2)  # CRLF after each chunk
