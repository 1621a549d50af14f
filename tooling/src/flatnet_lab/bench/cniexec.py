"""Exec a CNI plugin exactly as a runtime would (CNI_* env, config on stdin), and time it.

Every control-plane subject (flatnet with its agent, flatnet in-process, the reference
bridge + host-local plugins) goes through ``exec_plugin`` with ``ip netns exec <node>``,
so they pay the same process start and the reference plugins act on the bench's node
namespace, never on the machine's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from flatnet_lab import forwarder
from flatnet.errors import INTERNAL, FlatnetError

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "/sbin/ip"
REF_CNI_DIR = "/usr/lib/cni"
PLUGIN_TIMEOUT = 120.0


@dataclass(frozen=True)
class Call:
    """One attachment: which container, which pod netns, which interface."""

    container_id: str
    netns: str  # name under /run/netns
    ifname: str = "eth0"
    pod: str = ""


def install_forwarder(directory: str) -> str:
    """``directory``/flatnet: a copy of the CNI forwarder built from this tree.

    The bench times the plugin of the code it ships with (not whatever /opt/cni/bin
    holds), exec'd the way a runtime execs a plugin: one static executable.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "flatnet")
    shutil.copyfile(forwarder.path(), path)
    os.chmod(path, 0o755)
    return path


def exec_plugin(
    binary: str,
    command: str,
    call: Call,
    conf: dict[str, Any],
    node_ns: str,
    cni_path: str,
    extra_env: dict[str, str] | None = None,
) -> tuple[float, dict[str, Any]]:
    """Run one verb; return (seconds it took, parsed stdout). FlatnetError on failure."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": call.container_id,
        "CNI_NETNS": f"/run/netns/{call.netns}",
        "CNI_IFNAME": call.ifname,
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={call.pod}" if call.pod else "",
        "CNI_PATH": cni_path,
        **(extra_env or {}),
    }
    argv = [IP, "netns", "exec", node_ns, binary]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            argv, input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=PLUGIN_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise FlatnetError(
            f"bench: {os.path.basename(binary)} {command} took over {PLUGIN_TIMEOUT:.0f}s",
            "the machine may be overloaded",
        ) from None
    elapsed = time.perf_counter() - t0
    out = proc.stdout.decode(errors="replace")
    doc: Any = None
    if out.strip():
        try:
            doc = json.loads(out)
        except ValueError:
            doc = None
    if proc.returncode != 0:
        msg = doc.get("msg") if isinstance(doc, dict) else None
        raise FlatnetError(
            f"bench: {os.path.basename(binary)} {command} failed: "
            f"{msg or (proc.stderr.decode(errors='replace') or out).strip()[-400:]}",
            "see the message; the bench cleans up its namespaces",
            code=INTERNAL,
        )
    return elapsed, doc if isinstance(doc, dict) else {}
