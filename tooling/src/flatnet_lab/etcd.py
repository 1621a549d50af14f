"""The tooling's one etcd launcher: a member on loopback ports, alone or in a cluster.

The lab, the bench, the chaos harness and the tests' fixtures (tests/helpers/etcd.py) all run
Debian's etcd-server the same way: free ports on 127.0.0.1, a data dir of their own, the log
in a file, started in its own session and only ever signalled by the pid it got. ``stop`` then
``start`` keeps the data dir and ports (a restart, not a new member).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.request

from flatnet.errors import FlatnetError
from flatnet.ipam.store.etcd_setup import endpoint_health
from flatnet_lab.launch import free_port, log_tail, spawn, stop_proc, wait_until

ETCD_BIN = "/usr/bin/etcd"
INSTALL_HINT = "apt-get install etcd-server (scripts/setup.sh), or use --store sqlite"


def etcd_binary() -> str:
    """The etcd binary (PATH first, then Debian's); FlatnetError naming the package if none."""
    binary = shutil.which("etcd") or ETCD_BIN
    if not os.access(binary, os.X_OK):
        raise FlatnetError(f"etcd is not installed ({ETCD_BIN} not found)", INSTALL_HINT)
    return binary


def version() -> str:
    """``etcd --version``'s first line, or "not installed"."""
    try:
        binary = etcd_binary()
    except FlatnetError:
        return "not installed"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    return out.splitlines()[0].split(":", 1)[-1].strip() if out else "unknown"


class EtcdMember:
    """One etcd process named ``name`` with its data in ``data_dir`` and its log in ``log``.

    ``tls`` ({"cert", "key", "ca", "client_cert", "client_key"}) makes the client side https with
    client-certificate auth; ``loaded``: wider heartbeat/election timeouts than the 1 s default
    (a leader that does not flap on a loaded 2-core machine, where the faults are kills, not
    slowness). ``cluster`` and ``token`` are set by ``EtcdCluster`` for a multi-member start.
    """

    def __init__(
        self,
        data_dir: str,
        name: str,
        log: str | None = None,
        *,
        tls: dict[str, str] | None = None,
        loaded: bool = False,
        log_level: str = "warn",
    ) -> None:
        self.binary = etcd_binary()
        self.name, self.data_dir, self.tls = name, data_dir, tls
        self.log = log or f"{data_dir}.log"
        self.new_ports()
        self.token: str | None = None
        self.loaded, self.log_level = loaded, log_level
        self.proc: subprocess.Popen[bytes] | None = None

    def new_ports(self) -> None:
        """Pick its client and peer ports (again: a member that never formed a cluster)."""
        self.client_port, self.peer_port = free_port(), free_port()
        self.endpoint = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"
        self.peer_url = f"http://127.0.0.1:{self.peer_port}"
        self.cluster = f"{self.name}={self.peer_url}"

    def argv(self) -> list[str]:
        """etcd's command line (the lab spawns it itself, to keep a pid file)."""
        argv = [
            self.binary,
            "--name",
            self.name,
            "--data-dir",
            self.data_dir,
            "--listen-client-urls",
            self.endpoint,
            "--advertise-client-urls",
            self.endpoint,
            "--listen-peer-urls",
            self.peer_url,
            "--initial-advertise-peer-urls",
            self.peer_url,
            "--initial-cluster",
            self.cluster,
            "--log-level",
            self.log_level,
        ]
        if self.token:
            argv += ["--initial-cluster-token", self.token]
        if self.loaded:
            argv += ["--heartbeat-interval", "200", "--election-timeout", "2000"]
        if self.tls:
            argv += ["--cert-file", self.tls["cert"], "--key-file", self.tls["key"]]
            argv += ["--trusted-ca-file", self.tls["ca"], "--client-cert-auth"]
        return argv

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the process (no wait: a cluster's members need each other to become healthy)."""
        self.proc = spawn(self.argv(), self.log)
        return self.proc

    def healthy(self) -> bool:
        """Its /health answers ok (a member needs a leader it can see for that)."""
        cfg = None
        if self.tls:
            cfg = {"caFile": self.tls["ca"], "certFile": self.tls["client_cert"], "keyFile": self.tls["client_key"]}
        return endpoint_health(self.endpoint, 1.0, cfg) is None

    @property
    def endpoints(self) -> list[str]:
        """The store's endpoint list (one member: its own)."""
        return [self.endpoint]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Launch and return once healthy; stopped again and FlatnetError (log tail) if it is not
        healthy within ``timeout`` seconds or exits first."""
        proc = self.launch()
        wait_until(lambda: proc.poll() is not None or self.healthy(), timeout, 0.1)
        if proc.poll() is None and self.healthy():
            return
        self.stop()
        raise FlatnetError(
            f"etcd {self.name} did not become healthy within {timeout:.0f}s", f"log {self.log}: {log_tail(self.log)}"
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """``sig`` (SIGKILL after 10 s); the data dir and ports stay for a restart."""
        stop_proc(self.proc, sig)
        self.proc = None


class EtcdCluster:
    """``size`` members (``<name>0``..) on loopback, started together; ``endpoints`` lists all."""

    def __init__(
        self, workdir: str, size: int = 3, name: str = "fnk", token: str = "fnk", **member_opts: object
    ) -> None:
        self.members = [
            EtcdMember(os.path.join(workdir, f"{name}{i}"), f"{name}{i}", **member_opts)  # type: ignore[arg-type]
            for i in range(size)
        ]
        self.token = f"{name}-{token}"
        self._formed = False  # healthy once: from then on a start is a restart, same ports and data
        self._wire()

    def _wire(self) -> None:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.cluster, m.token = initial, self.token
        self.endpoints = [m.endpoint for m in self.members]
        self.endpoint = self.endpoints[0]

    def healthy(self) -> bool:
        """Every member up and healthy."""
        return all(m.running and m.healthy() for m in self.members)

    def _exited(self) -> list[EtcdMember]:
        return [m for m in self.members if m.proc is not None and m.proc.poll() is not None]

    def start(self, timeout: float = 60.0) -> None:
        """Start every member that is not running; wait (bounded) until all are healthy.

        A new cluster whose member exits before it ever formed (most often: a port picked free
        was taken before etcd bound it) starts once more as a new cluster on new ports."""
        fresh = not self._formed
        for attempt in (1, 2):
            for m in self.members:
                if not m.running:
                    m.launch()
            wait_until(lambda: self.healthy() or (fresh and bool(self._exited())), timeout, 0.2)
            if self.healthy():
                self._formed = True
                return
            if not (fresh and self._exited() and attempt == 1):
                break
            self.stop()
            for m in self.members:
                shutil.rmtree(m.data_dir, ignore_errors=True)
                m.new_ports()
            self._wire()
        tails = "; ".join(f"{m.log}: {log_tail(m.log)}" for m in self.members)
        raise FlatnetError(f"etcd cluster did not become healthy in {timeout:.0f} s", f"logs: {tails}"[:2000])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for m in self.members:
            m.stop(sig)

    def leader(self) -> EtcdMember | None:
        """The member that says it leads (None if no answer)."""
        for m in self.members:
            if m.running and _says_it_leads(m.endpoint):
                return m
        return None


def _says_it_leads(endpoint: str) -> bool:
    req = urllib.request.Request(endpoint + "/v3/maintenance/status", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=2.0) as resp:
            st = json.loads(resp.read())
    except (OSError, ValueError):
        return False
    return bool(st.get("leader")) and st.get("leader") == (st.get("header") or {}).get("member_id")
