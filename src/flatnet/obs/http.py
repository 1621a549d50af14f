"""The agent's HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz`` (stdlib http.server, one thread).

``/healthz`` (liveness) sends a STATUS request through the agent's own unix socket, so it
fails when the serving loop is wedged, not merely when the process is gone. ``/readyz``
(readiness) is liveness plus every store the agent uses answering a read: then ADD can be
served. Both answer 200 ``ok`` or 503 with the reason, within ``probe_timeout`` seconds.

The listening socket is made in the node's network namespace (the agent's ``--netns``)
when one is given, so a lab node's agent serves on that node's own address.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flatnet import defaults
from flatnet.errors import ConfigError
from flatnet.obs.logs import redact

#: the chart's documented port (charts/flatnet values agent.metricsPort)
DEFAULT_PORT = defaults.METRICS_PORT

#: a check returns None when healthy, else the reason
Check = Callable[[], "str | None"]


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` / ``[V6]:PORT`` -> (host, port); ConfigError naming the fix."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        if not sep or not host:
            raise ValueError
        ipaddress.ip_address(host)
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"--metrics-address {text!r} is not HOST:PORT",
            f"give an IP address and a port, e.g. 0.0.0.0:{DEFAULT_PORT}, "
            f"198.18.100.11:{DEFAULT_PORT} or [::]:{DEFAULT_PORT}",
        ) from None
    return host, number


def listen(host: str, port: int, netns: str | None = None) -> socket.socket:
    """A listening TCP socket on host:port, created inside ``netns`` (None: our own)."""
    from flatnet.datapath import netns as ns_mod

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return ns_mod.run_in(netns, socket.create_server, (host, port), family=family, backlog=64)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        owner = self.server.owner
        if path == "/metrics":
            self._send(200, generate_latest(owner.registry), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/livez"):
            self._verdict(owner.run_checks(owner.liveness))
        elif path == "/readyz":
            self._verdict(owner.run_checks(owner.liveness + owner.readiness))
        else:
            self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

    def _verdict(self, problem: str | None) -> None:
        if problem is None:
            self._send(200, b"ok\n")
        else:
            self._send(503, redact(problem).encode() + b"\n")

    def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not news
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: "MetricsServer"


class MetricsServer:
    """Serves ``registry`` and the health checks on a background thread until ``stop``."""

    def __init__(
        self,
        registry: Any,
        host: str,
        port: int,
        netns: str | None = None,
        liveness: list[Check] | None = None,
        readiness: list[Check] | None = None,
        probe_timeout: float = 4.0,
    ) -> None:
        self.registry = registry
        self.liveness = list(liveness or [])
        self.readiness = list(readiness or [])
        self.probe_timeout = probe_timeout
        sock = listen(host, port, netns)
        self._httpd = _Server((host, port), _Handler, bind_and_activate=False)
        self._httpd.socket.close()
        self._httpd.socket = sock
        self._httpd.server_address = sock.getsockname()[:2]
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> "MetricsServer":
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="metrics-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def run_checks(self, checks: list[Check]) -> str | None:
        """The first failing check's reason; a check that takes too long fails (bounded wait)."""
        for check in checks:
            box: dict[str, Any] = {}

            def run(check: Check = check, box: dict[str, Any] = box) -> None:
                try:
                    box["r"] = check()
                except Exception as exc:  # noqa: BLE001 - any failure is the answer
                    box["r"] = f"{type(exc).__name__}: {exc}"

            worker = threading.Thread(target=run, name="health-check", daemon=True)
            worker.start()
            worker.join(self.probe_timeout)
            if worker.is_alive():
                return f"{getattr(check, '__name__', 'check')}: no answer within {self.probe_timeout:g}s"
            if box.get("r") is not None:
                return str(box["r"])
        return None
