"""iperf3 between two namespaces: TCP with 1 or N streams, and UDP, always time-bounded.

``flatnet.lab.probe.bandwidth`` measures one TCP stream; the bench also needs parallel
streams and UDP, so this runs iperf3 with those options. The server is one-off (``-1``)
and is killed in ``finally`` whatever happens; the client has a hard subprocess timeout.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from flatnet.datapath.netns import run_in
from flatnet.errors import FlatnetError
from flatnet.lab.probe import listening

IPERF3 = "/usr/bin/iperf3"
UDP_LEN = 1300  # fits every tunnel's MTU here (vxlan, the userspace tunnel): no fragments


def version() -> str:
    try:
        out = subprocess.run([IPERF3, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except OSError:
        return "not installed"
    return out.split()[1] if out.split() else "unknown"


def _gbps(data: dict[str, Any], udp: bool) -> float:
    end = data["end"]
    if "sum_received" in end:
        return float(end["sum_received"]["bits_per_second"]) / 1e9
    s = end["sum"]  # UDP on iperf3 3.12: sender rate and the receiver's loss
    return float(s["bits_per_second"]) * (1 - float(s.get("lost_percent", 0)) / 100) / 1e9


def throughput(src_ns: str | None, dst_ns: str | None, ip: str, seconds: int = 2,
               streams: int = 1, udp: bool = False, port: int = 5201) -> float:
    """Gbit/s received at ``ip`` (in ``dst_ns``) from a client in ``src_ns``."""
    server = run_in(dst_ns, subprocess.Popen, [IPERF3, "-s", "-1", "-p", str(port)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5.0
        while not run_in(dst_ns, listening, port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise FlatnetError(f"iperf3 server did not start in {dst_ns} on port {port}",
                                   "is the port free there?")
            time.sleep(0.05)
        argv = [IPERF3, "-c", ip, "-p", str(port), "-t", str(max(1, int(seconds))), "-J",
                "-P", str(streams), "--connect-timeout", "2000"]
        if udp:
            argv += ["-u", "-b", "0", "-l", str(UDP_LEN)]
        proc = run_in(src_ns, subprocess.run, argv, capture_output=True, text=True,
                      timeout=seconds + 20, check=False)
        data: dict[str, Any] = json.loads(proc.stdout or "{}")
        if proc.returncode != 0 or "error" in data:
            raise FlatnetError(f"iperf3 {src_ns} -> {ip} failed: "
                               f"{data.get('error') or proc.stderr.strip()}",
                               "check reachability first: flatnet check reach")
        return _gbps(data, udp)
    except (subprocess.TimeoutExpired, json.JSONDecodeError, KeyError) as exc:
        raise FlatnetError(f"iperf3 {src_ns} -> {ip} gave no result: {exc}",
                           "retry; the machine may be overloaded") from exc
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=5)
