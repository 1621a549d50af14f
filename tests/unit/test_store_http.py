"""The etcd store's small HTTP/1.1 client against a scripted server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from typing import Callable, Iterator

import pytest

from flatnet.errors import ConfigError
from flatnet.ipam.store._http import HttpEndpoint

Reply = Callable[[int], bytes | None]  # request number -> raw answer (None: close the connection)


class Server:
    """Answers each request on a connection with ``reply(n)``; counts connections."""

    def __init__(self, reply: Reply) -> None:
        self.reply, self.n, self.conns = reply, 0, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        f = conn.makefile("rb")
        with conn:
            while True:
                length = 0
                line = f.readline()
                if not line:
                    return
                while (h := f.readline()) not in (b"\r\n", b""):
                    if h.lower().startswith(b"content-length:"):
                        length = int(h.split(b":")[1])
                f.read(length)
                self.n += 1
                out = self.reply(self.n)
                if out is None:
                    return
                conn.sendall(out)


@pytest.fixture
def serve() -> Iterator[Callable[[Reply], Server]]:
    servers: list[Server] = []

    def _make(reply: Reply) -> Server:
        servers.append(Server(reply))
        return servers[-1]

    yield _make
    for s in servers:
        s.sock.close()


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_content_length_answers_reuse_one_connection(serve: Callable[[Reply], Server]) -> None:
    srv = serve(lambda n: ok(b'{"n":%d}' % n))
    ep = HttpEndpoint(srv.url, 2.0)
    assert [ep.post("/x", b"{}") for _ in range(3)] == [(200, b'{"n":%d}' % i) for i in (1, 2, 3)]
    assert srv.conns == 1
    ep.close()


def test_chunked_answer(serve: Callable[[Reply], Server]) -> None:
    body = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n6;x=y\r\n:12345\r\n1\r\n}\r\n0\r\n\r\n'
    srv = serve(lambda n: body)
    ep = HttpEndpoint(srv.url, 2.0)
    assert ep.post("/x", b"{}") == (200, b'{"a":12345}')
    assert ep.post("/x", b"{}") == (200, b'{"a":12345}')
    assert srv.conns == 1


def test_connection_closed_by_the_server_is_reopened(serve: Callable[[Reply], Server]) -> None:
    # every connection answers once, then is closed on the next request: a stale keep-alive
    srv = serve(lambda n: ok(b"{}") if n % 2 else None)
    ep = HttpEndpoint(srv.url, 2.0)
    for _ in range(3):
        assert ep.post("/x", b"{}") == (200, b"{}")
    assert srv.conns == 3


def test_connection_close_header_is_honoured(serve: Callable[[Reply], Server]) -> None:
    srv = serve(lambda n: b"HTTP/1.1 503 No\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno")
    ep = HttpEndpoint(srv.url, 2.0)
    assert ep.post("/x", b"{}") == (503, b"no")
    assert ep.post("/x", b"{}") == (503, b"no")
    assert srv.conns == 2


def test_fresh_connection_closed_without_answer_is_an_error(serve: Callable[[Reply], Server]) -> None:
    srv = serve(lambda n: None)
    with pytest.raises(ConnectionError):
        HttpEndpoint(srv.url, 2.0).post("/x", b"{}")


def test_timeout_and_refused_are_oserrors(serve: Callable[[Reply], Server]) -> None:
    hang = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) but never answers
    try:
        with pytest.raises(OSError):
            HttpEndpoint(f"http://127.0.0.1:{hang.getsockname()[1]}", 0.3).post("/x", b"{}")
    finally:
        hang.close()
    with pytest.raises(OSError):
        HttpEndpoint("http://127.0.0.1:1", 0.3).post("/x", b"{}")


def test_bad_endpoint_url() -> None:
    with pytest.raises(ConfigError):
        HttpEndpoint("127.0.0.1:2379", 1.0)
