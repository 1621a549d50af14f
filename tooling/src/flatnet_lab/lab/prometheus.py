"""A real Prometheus (Debian's ``prometheus``) inside the lab, scraping the nodes' agents.

It runs in the lab's ``vm2`` namespace (a "monitoring VM" on the VLAN-100 plane) with its own
config and data directory under ``LAB_DIR/prometheus`` and a short scrape and rule
evaluation interval, and reaches each agent at ``<node address>:9631`` (see
``manager.metrics_address``). Its HTTP API listens on 127.0.0.1 of that namespace; the
client here connects through a socket made inside it. ``lab down`` stops it with the
namespace.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import time
import urllib.parse
from typing import Any

from flatnet.errors import FlatnetError
from flatnet_lab.lab import procs
from flatnet_lab.lab.topology import PREFIX, Topology

PROM_BIN = "/usr/bin/prometheus"
PROM_NS = f"{PREFIX}vm2"
API_PORT = 9090
READY_TIMEOUT = 60.0


class LabPrometheus:
    """Start, query and stop the lab's Prometheus."""

    def __init__(self, topo: Topology, scrape_interval: float = 1.0, ns: str = PROM_NS) -> None:
        self.topo = topo
        self.ns = ns
        self.scrape_interval = scrape_interval
        self.dir = procs.path("prometheus")
        self.proc: Any = None

    # ---- lifecycle ----
    def config(self, rule_files: list[str]) -> dict[str, Any]:
        from flatnet_lab.lab.manager import metrics_address

        interval = f"{int(self.scrape_interval * 1000)}ms"
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
            "rule_files": rule_files,
            "scrape_configs": [
                {
                    "job_name": "flatnet-agent",
                    "static_configs": [
                        {"targets": [metrics_address(n)], "labels": {"node": n.name}} for n in self.topo.nodes
                    ],
                }
            ],
        }

    def start(self, rules: dict[str, Any] | None = None) -> "LabPrometheus":
        """Write config (+ rule file), start Prometheus, wait (bounded) until its API is ready."""
        if not os.access(PROM_BIN, os.X_OK):
            raise FlatnetError(f"{PROM_BIN} not found", "apt-get install prometheus (scripts/setup.sh does)")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "data"))
        rule_files = []
        if rules is not None:
            rule_path = os.path.join(self.dir, "flatnet-rules.yaml")
            with open(rule_path, "w", encoding="utf-8") as fh:
                json.dump(rules, fh, indent=1)  # JSON is YAML: Prometheus reads it as its rule file
            rule_files.append(rule_path)
        cfg_path = os.path.join(self.dir, "prometheus.yml")
        with open(cfg_path, "w", encoding="utf-8") as fh:
            json.dump(self.config(rule_files), fh, indent=1)
        from flatnet_lab.testbed import net as labnet

        log = open(procs.path("prometheus.log"), "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = labnet.spawn(
                self.ns,
                [
                    PROM_BIN,
                    f"--config.file={cfg_path}",
                    f"--storage.tsdb.path={self.dir}/data",
                    f"--web.listen-address=127.0.0.1:{API_PORT}",
                    "--storage.tsdb.retention.time=1d",
                    "--log.level=warn",
                ],
                stdin=open(os.devnull, "rb"),
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            log.close()
        with open(procs.path("prometheus.pid"), "w", encoding="ascii") as fh:
            fh.write(str(self.proc.pid))
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise FlatnetError("the lab's Prometheus exited at start", procs.log_tail("prometheus"))
            try:
                if self._get("/-/ready")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise FlatnetError(
            f"the lab's Prometheus was not ready within {READY_TIMEOUT:.0f}s", procs.log_tail("prometheus")
        )

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop_pid(self.proc.pid, marker=self.dir)
            self.proc = None
        try:
            os.unlink(procs.path("prometheus.pid"))
        except FileNotFoundError:
            pass

    def __enter__(self) -> "LabPrometheus":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- HTTP API ----
    def _get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        from flatnet.datapath import netns

        conn = http.client.HTTPConnection("127.0.0.1", API_PORT, timeout=timeout)
        conn.sock = netns.run_in(self.ns, socket.create_connection, ("127.0.0.1", API_PORT), timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def api(self, endpoint: str, **params: Any) -> Any:
        """``GET /api/v1/<endpoint>?params``; the ``data`` of a success, else FlatnetError."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        status, body = self._get(f"/api/v1/{endpoint}" + (f"?{query}" if query else ""))
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise FlatnetError(f"Prometheus {endpoint} {params}: {doc.get('error', status)}")
        return doc["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's vector: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        return self.api("query", query=expr, time=at)["result"]

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of an instant query (None when the vector is empty)."""
        result = self.query(expr, at)
        if not result:
            return None
        if len(result) > 1:
            raise FlatnetError(f"{expr} gave {len(result)} series; aggregate it to one")
        return float(result[0]["value"][1])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return self.api("query_range", query=expr, start=start, end=end, step=step)["result"]

    def alerts(self) -> list[dict[str, Any]]:
        return self.api("alerts")["alerts"]

    def targets_up(self) -> int:
        return sum(1 for t in self.api("targets")["activeTargets"] if t.get("health") == "up")

    def wait_for(self, what: str, predicate: Any, timeout: float = 60.0) -> Any:
        """Poll ``predicate()`` until it returns a truthy value (bounded); FlatnetError after."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(self.scrape_interval / 2)
        raise FlatnetError(
            f"Prometheus: {what} not seen within {timeout:.0f}s (last: {last!r})", procs.log_tail("prometheus")
        )
