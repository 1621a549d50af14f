"""Real-traffic probes between network namespaces, measured in-process.

A socket belongs to the network namespace of the thread that created it, for its whole
life. So a probe creates its server socket on a thread that joined the destination netns
and its client socket on one that joined the source netns (``run_in``), and then drives
both from ordinary threads. The server records the peer address it *saw*: that is how the
matrix proves SNAT (the seen source is the node) or its absence (the seen source is the pod).

Every probe is bounded in count and time; nothing here loops until success.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from flatnet.datapath.netns import iproute, run_in
from flatnet.errors import FlatnetError

PING = "/usr/bin/ping"
IPERF3 = "/usr/bin/iperf3"


@dataclass(frozen=True)
class ProbeResult:
    """One TCP connection attempt and what the server side observed.

    ``seen_src_ip``/``seen_src_port`` are the peer as the server saw it;
    ``client_src_port`` the local port the client had. They differ under NAT.
    ``rtt`` is connect + one 1-byte echo, in seconds (None when it failed).
    """

    ok: bool
    seen_src_ip: str | None = None
    seen_src_port: int | None = None
    client_src_ip: str | None = None
    client_src_port: int | None = None
    rtt: float | None = None
    error: str = ""


@dataclass(frozen=True)
class Latency:
    """Request/response latency over one TCP connection, in microseconds."""

    p50_us: float
    p99_us: float
    samples: int


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET


def _socket_in(ns: str | None, family: socket.AddressFamily) -> socket.socket:
    """A TCP socket that lives in ``ns`` (created on a thread that joined it)."""
    return run_in(ns, socket.socket, family, socket.SOCK_STREAM)


def _listener(ns: str | None, family: socket.AddressFamily, port: int) -> socket.socket:
    """A listening socket on the wildcard address of ``ns``; names the clash on EADDRINUSE."""
    srv = _socket_in(ns, family)
    try:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        srv.listen(4)
    except OSError as exc:
        srv.close()
        raise FlatnetError(
            f"probe: cannot listen on port {port} in {ns}: {exc.strerror}",
            "pick another port or stop what listens there",
        ) from exc
    return srv


class _Server(threading.Thread):
    """Accept one connection (bounded), record the peer, echo until EOF or deadline."""

    def __init__(self, srv: socket.socket, timeout: float) -> None:
        super().__init__(daemon=True, name="probe-server")
        self.srv, self.timeout = srv, timeout
        self.peer: tuple[str, int] | None = None

    def run(self) -> None:
        self.srv.settimeout(self.timeout)
        try:
            conn, addr = self.srv.accept()
        except OSError:
            return
        self.peer = (str(addr[0]), int(addr[1]))
        deadline = time.monotonic() + self.timeout
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while time.monotonic() < deadline:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data = conn.recv(4096)
                    if not data:
                        return
                    conn.sendall(data)
                except OSError:
                    return


def _unmap(ip: str) -> str:
    """``::ffff:1.2.3.4`` -> ``1.2.3.4`` so seen addresses compare with pod addresses."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)
    return str(mapped or addr)


def tcp_probe(
    src_ns: str | None, dst_ns: str | None, dst_ip: str, port: int, timeout: float = 1.0, listen_port: int | None = None
) -> ProbeResult:
    """Connect from ``src_ns`` to ``dst_ip:port``; a server in ``dst_ns`` answers.

    ``listen_port`` (default ``port``) differs from ``port`` when a DNAT sits in between
    (a Service VIP, a node's hostPort). ``ok`` is True only when the connection reached
    *our* server and a byte came back.
    """
    family = _family(dst_ip)
    srv = _listener(dst_ns, family, listen_port or port)
    server = _Server(srv, timeout + 1.0)
    server.start()
    cli = _socket_in(src_ns, family)
    ok = False
    t0 = time.perf_counter()
    try:
        cli.settimeout(timeout)
        cli.connect((dst_ip, port))
        local = cli.getsockname()
        cli.sendall(b"p")
        ok = cli.recv(1) == b"p"
        rtt = time.perf_counter() - t0
    except OSError as exc:
        return ProbeResult(False, error=_reason(exc))
    finally:
        cli.close()
        _stop(srv, server, abort=not ok, timeout=timeout + 2.0)
    peer = server.peer
    if not ok or peer is None:
        return ProbeResult(False, error="connected, but not to the probe's server")
    return ProbeResult(True, _unmap(peer[0]), peer[1], _unmap(local[0]), int(local[1]), rtt)


def _reason(exc: OSError) -> str:
    """A short cause: 'timed out', 'No route to host', 'Connection refused'."""
    if isinstance(exc, TimeoutError) or isinstance(exc, socket.timeout):
        return "timed out"
    return exc.strerror or type(exc).__name__


def _stop(srv: socket.socket, server: threading.Thread, abort: bool, timeout: float) -> None:
    """End the server: after a failed connect, shutdown() wakes the blocked accept()."""
    if abort:
        try:
            srv.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    server.join(timeout)
    srv.close()


def ping(src_ns: str | None, ip: str, count: int = 1, timeout: int = 1) -> bool:
    """ICMP echo from ``src_ns`` with the ping binary (bounded: count x timeout)."""
    argv = [PING, "-n", "-q", "-c", str(count), "-W", str(timeout), ip]
    try:
        proc = run_in(src_ns, subprocess.run, argv, capture_output=True, timeout=count * (timeout + 1) + 5, check=False)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def rr_latency(
    src_ns: str | None, dst_ns: str | None, ip: str, n: int = 200, port: int = 5299, timeout: float = 5.0
) -> Latency:
    """Round trips of 1-byte messages over one TCP connection: p50 and p99 (µs).

    One connection, so the handshake is not measured; TCP_NODELAY, so Nagle does not add
    delay. Bounded by ``n`` and ``timeout`` for the whole run.
    """
    family = _family(ip)
    srv = _listener(dst_ns, family, port)
    server = _Server(srv, timeout)
    server.start()
    cli = _socket_in(src_ns, family)
    samples: list[float] = []
    deadline = time.monotonic() + timeout
    try:
        cli.settimeout(min(timeout, 2.0))
        cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cli.connect((ip, port))
        for _ in range(n):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            cli.sendall(b"r")
            if cli.recv(1) != b"r":
                break
            samples.append((time.perf_counter() - t0) * 1e6)
    except OSError as exc:
        raise FlatnetError(
            f"latency probe {src_ns} -> {ip}:{port} failed: {exc.strerror}",
            "check reachability first: flatnet check reach",
        ) from exc
    finally:
        cli.close()
        _stop(srv, server, abort=not samples, timeout=timeout + 1.0)
    if not samples:
        raise FlatnetError(f"latency probe {src_ns} -> {ip}: no answer", "check reachability")
    return Latency(statistics.median(samples), _percentile(samples, 99.0), len(samples))


def _percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: a p99 is a sample that happened)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def listening(port: int) -> bool:
    """Is something listening on TCP ``port`` in this thread's netns? (/proc/thread-self)."""
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/thread-self/net/{name}", encoding="ascii") as fh:
                next(fh)
                for line in fh:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except FileNotFoundError:
            continue
    return False


UDP_LEN = 1300  # fits every tunnel's MTU here (vxlan, the userspace tunnel): no fragments


def _gbps(data: dict[str, Any], udp: bool) -> float:
    end = data["end"]
    if "sum_received" in end:
        return float(end["sum_received"]["bits_per_second"]) / 1e9
    s = end["sum"]  # UDP on iperf3 3.12: sender rate and the receiver's loss
    return float(s["bits_per_second"]) * (1 - float(s.get("lost_percent", 0)) / 100) / 1e9


def iperf3(
    src_ns: str | None,
    dst_ns: str | None,
    ip: str,
    seconds: float = 2.0,
    streams: int = 1,
    udp: bool = False,
    port: int = 5201,
    timeout_pad: float = 20.0,
) -> float:
    """Gbit/s received at ``ip`` (in ``dst_ns``) from an iperf3 client in ``src_ns``.

    The server runs one-off (``-s -1``) in ``dst_ns`` and is always killed afterwards; the
    client has a hard subprocess timeout of ``seconds + timeout_pad``.
    """
    server = run_in(
        dst_ns,
        subprocess.Popen,
        [IPERF3, "-s", "-1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5.0
        while not run_in(dst_ns, listening, port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise FlatnetError(
                    f"iperf3 server did not start in {dst_ns} on port {port}",
                    f"is port {port} free there? is {IPERF3} installed?",
                )
            time.sleep(0.05)
        argv = [
            IPERF3,
            "-c",
            ip,
            "-p",
            str(port),
            "-t",
            str(max(1, int(seconds))),
            "-J",
            "-P",
            str(streams),
            "--connect-timeout",
            "2000",
        ]
        if udp:
            argv += ["-u", "-b", "0", "-l", str(UDP_LEN)]
        proc = run_in(
            src_ns, subprocess.run, argv, capture_output=True, text=True, timeout=seconds + timeout_pad, check=False
        )
        data: dict[str, Any] = json.loads(proc.stdout or "{}")
        if proc.returncode != 0 or "error" in data:
            raise FlatnetError(
                f"iperf3 {src_ns} -> {ip} failed: {data.get('error') or proc.stderr.strip()}",
                "check reachability first: flatnet check reach",
            )
        return _gbps(data, udp)
    except (subprocess.TimeoutExpired, json.JSONDecodeError, KeyError) as exc:
        raise FlatnetError(
            f"iperf3 {src_ns} -> {ip} gave no result: {exc}", "retry; the machine may be overloaded"
        ) from exc
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=5)


def bandwidth(src_ns: str | None, dst_ns: str | None, ip: str, seconds: float = 2.0, port: int = 5201) -> float:
    """TCP throughput ``src_ns`` -> ``ip`` in Gbit/s, measured by iperf3 (one stream)."""
    return iperf3(src_ns, dst_ns, ip, seconds, port=port, timeout_pad=15.0)


def count_routes(ns: str | None, devices: tuple[str, ...] | None = None) -> dict[str, int]:
    """Routes in the main table of ``ns`` by family, plus how many are host (/32, /128).

    ``devices``: count only routes leaving through links whose name starts with one of
    these prefixes (one network's share of the node's table). Read only; the demo's
    "routes per node" table is this count, not a model of it.
    """
    out = {"v4": 0, "v6": 0, "host": 0}
    with iproute(ns) as ip:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") or "" for link in ip.get_links()}
        for family, key, full in ((socket.AF_INET, "v4", 32), (socket.AF_INET6, "v6", 128)):
            for route in ip.get_routes(family=family, table=254):
                dst_len = route.get("dst_len")
                if family == socket.AF_INET6 and _is_v6_noise(route):
                    continue
                if devices is not None and not names.get(route.get_attr("RTA_OIF"), "").startswith(devices):
                    continue
                out[key] += 1
                if dst_len == full:
                    out["host"] += 1
    return out


def _is_v6_noise(route: Any) -> bool:
    """fe80::/64 link-local and multicast routes every link gets: not routing state."""
    dst = route.get_attr("RTA_DST") or ""
    return str(dst).startswith(("fe80:", "ff00:")) or route.get("type") != 1
