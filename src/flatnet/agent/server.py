"""The agent's unix-socket server: one JSON request and one JSON response per connection.

The messages and framing are ``flatnet.agent.protocol``'s. Only root peers (SO_PEERCRED)
are served: the agent plumbs kernel interfaces on behalf of whoever asks, so the socket
is root's alone (mode 0600 in a 0700 directory as well).
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import socketserver
import stat
import struct
import threading
import time
from typing import TYPE_CHECKING, Any

from flatnet.agent.protocol import (
    MAX_REQUEST,
    PROTOCOL_VERSION,
    ProtocolError,
    decode_request,
    encode_response,
    error_response,
)
from flatnet import defaults
from flatnet.errors import AGENT_PROTOCOL
from flatnet.obs.metrics import AgentMetrics
from flatnet.obs.requests import RequestObserver

if TYPE_CHECKING:
    from flatnet.cni.skel import Handler

__all__ = ["MAX_REQUEST", "PROTOCOL_VERSION", "AgentServer", "serve_until_signal"]
log = logging.getLogger("flatnet.agent")


_error_response = error_response


class _Handler(socketserver.BaseRequestHandler):
    server: "AgentServer"

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(self.server.io_timeout)
        try:
            uid = peer_uid(conn)
            if uid not in self.server.allowed_uids:
                self.server.metrics.rejected.inc()
                self._send(_error_response(AGENT_PROTOCOL, f"uid {uid} may not use the flatnet agent; run as root"))
                return
            response = self.server.handle_bytes(self._read())
        except _TooLarge:
            response = _error_response(AGENT_PROTOCOL, f"request larger than {MAX_REQUEST} bytes")
        except (socket.timeout, TimeoutError):
            response = _error_response(
                AGENT_PROTOCOL, "request not completed in time (send one JSON object, then shut down the write side)"
            )
        except OSError:
            return  # peer went away; nothing to answer
        self._send(response)

    def _read(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = self.request.recv(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_REQUEST:
                raise _TooLarge()
            chunks.append(chunk)

    def _send(self, response: dict[str, Any]) -> None:
        """Answer, then drain what the peer still sends (bounded).

        Closing a socket with unread input makes the kernel send RST, which can destroy
        the answer before the peer reads it — exactly when the answer is an error about
        that input (too large, refused peer).
        """
        conn: socket.socket = self.request
        try:
            conn.sendall(encode_response(response))
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(2.0)
            drained = 0
            while drained < 8 * MAX_REQUEST:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass


class _TooLarge(Exception):
    pass


def peer_uid(conn: socket.socket) -> int:
    """The connecting process's uid, from the kernel (SO_PEERCRED), not from the request."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid: int
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class AgentServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Serves a ``Service`` on a unix socket; one thread per connection."""

    daemon_threads = True
    allow_reuse_address = False
    # socketserver's default backlog (5) refuses connects with EAGAIN as soon as a few
    # plugins arrive at once (found by the chaos harness / socket fuzzing)
    request_queue_size = 128

    def __init__(
        self,
        path: str,
        service: Handler,
        allowed_uids: frozenset[int] = frozenset({0}),
        io_timeout: float = 10.0,
        max_parallel: int = defaults.AGENT_MAX_PARALLEL,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.path = path
        self.service = service
        self.allowed_uids = allowed_uids
        self.io_timeout = io_timeout
        #: CNI requests served at once; the others wait their turn asleep. Every request has
        #: its thread, but a storm of ADDs all working at once spent the CPU in contention for
        #: the GIL and the kernel's locks (bench burst of 100 ADD+DEL: ~30% more agent CPU
        #: with 100 at once than with 4)
        self._slots = threading.BoundedSemaphore(max(1, max_parallel))
        #: the agent's one counter system (Prometheus collectors; the status op reads them)
        self.metrics = metrics if metrics is not None else AgentMetrics()
        #: hears every answered CNI request: the log line and the request metrics
        #: (flatnet.obs); returns the answer with secrets masked
        self.observer = RequestObserver(self.metrics)
        _prepare_path(path)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others connect
        try:
            super().__init__(path, _Handler)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)

    def handle_bytes(self, data: bytes) -> dict[str, Any]:
        """Decode one request and answer it (also the unit of the protocol tests)."""
        try:
            req = decode_request(data)
        except ProtocolError as exc:
            return _error_response(exc.code, exc.msg)
        if req.get("op") == "status":
            return {"exit": 0, "stdout": json.dumps(self.metrics.snapshot()), "metrics": self.metrics.snapshot()}
        env, stdin = req["env"], req.get("stdin", "")
        return self.run_cni(env, stdin.encode("utf-8"))

    def run_cni(self, env: dict[str, str], stdin: bytes) -> dict[str, Any]:
        from flatnet.cni.skel import serve

        out, err = io.StringIO(), io.StringIO()
        self.metrics.in_flight.inc()
        started = time.monotonic()
        try:
            with self._slots:
                outcome = serve(self.service, env, stdin, out, err)
        finally:
            self.metrics.in_flight.dec()
        stdout = self.observer(env, outcome, out.getvalue(), time.monotonic() - started)
        return {"exit": outcome.code, "stdout": stdout}

    def server_activate(self) -> None:
        super().server_activate()
        # serve_forever accepts only after poll says a connection waits, but a blocking
        # accept() that finds the queue empty after all (the kernel is free to) would hold
        # the serving thread, and with it shutdown(), until the next connect: never block
        self.socket.setblocking(False)

    def server_close(self) -> None:
        super().server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _prepare_path(path: str) -> None:
    """Make the 0700 directory; replace a stale socket, refuse if an agent answers on it."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        # only a directory we create is tightened: chmod-ing an existing one (say /tmp)
        # would break its other users; the socket itself is 0600 and peers are checked
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket; remove it or choose another --socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listening: left over from a crashed agent
        return
    finally:
        probe.close()
    raise OSError(f"another agent is already serving {path}; stop it or choose another --socket")


def serve_until_signal(server: AgentServer) -> None:
    """Serve in the foreground until SIGTERM/SIGINT; then stop, close stores, remove the socket.

    ``shutdown()`` waits for ``serve_forever`` to return, so it cannot run on the serving
    thread: the signal handler hands it to a helper thread.
    """
    import signal

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: shutting down", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()
        close = getattr(server.service, "close", None)
        if callable(close):
            close()
