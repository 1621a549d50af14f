"""Run a command beside a "system" etcd, containerd and Prometheus, then say whether they survived.

Run as ``unshare --mount --net --propagation private python -m tests.helpers.system_services
WORKDIR -- CMD...`` (``run_beside_services`` does): inside its own mount and network namespace
it starts the three real daemons where a Debian host runs them — etcd on 127.0.0.1:2379/2380,
containerd on /run/containerd/containerd.sock, Prometheus on 127.0.0.1:9090 — and puts a
fake ``systemctl`` first on PATH that reports each one active and enabled, records every call,
and does what systemd would do for ``stop``/``disable --now``/``restart``/``mask``: it stops
the daemon. Then it runs CMD and prints one JSON line: CMD's exit code and output, the
recorded systemctl calls, and whether each daemon still answers.

Nothing leaks to the host: the ports are the namespace's own, /run/containerd and
/opt/cni/bin are tmpfs mounts private to the namespace (an empty /run/containerd directory
made on the host for the mount point is removed afterwards by the caller), and every
daemon's state lives under WORKDIR.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

READY_TIMEOUT = 60.0
CONTAINERD_SOCK = "/run/containerd/containerd.sock"

FAKE_SYSTEMCTL = """#!/bin/bash
# a stand-in for systemctl: records the call; answers from the daemons' pid files
echo "$*" >> {work}/systemctl.log
args=(); now=0
for a in "$@"; do case $a in --now) now=1;; -*) ;; *) args+=("$a");; esac; done
verb=${{args[0]:-}}; unit=${{args[1]:-}}; unit=${{unit%.service}}
pidf={work}/$unit.pid
# alive: the process exists and is not a zombie (the driver reaps its children later)
alive() {{ [ -f "$pidf" ] && [ -e /proc/"$(cat "$pidf")" ] && ! grep -q '^[0-9]* ([^)]*) Z' /proc/"$(cat "$pidf")"/stat; }}
# stop: like systemd, signal the daemon and return once it has exited (bounded: 30 s)
stop() {{ alive || return 0; kill "$(cat "$pidf")"; for _ in $(seq 300); do alive || return 0; sleep 0.1; done; }}
case $verb in
  is-active|is-enabled|status) alive; exit $?;;
  stop|kill|restart|try-restart|reload-or-restart|mask) stop; exit 0;;
  disable) [ $now = 1 ] && stop; exit 0;;
  *) exit 0;;
esac
"""

PROM_CONFIG = "global: {scrape_interval: 60s}\nscrape_configs: []\n"
CONTAINERD_CONFIG = """version = 2
root = "{work}/containerd-root"
state = "/run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
"""


def _etcd(work: Path) -> list[str]:
    return [
        "etcd",
        "--name",
        "system",
        "--data-dir",
        str(work / "etcd"),
        "--listen-client-urls",
        "http://127.0.0.1:2379",
        "--advertise-client-urls",
        "http://127.0.0.1:2379",
        "--listen-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-cluster",
        "system=http://127.0.0.1:2380",
    ]


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - a fixed local URL
            return bool(resp.status == 200)
    except OSError:
        return False


def _containerd_ok() -> bool:
    if not os.path.exists(CONTAINERD_SOCK):
        return False
    try:
        proc = subprocess.run(
            ["ctr", "-a", CONTAINERD_SOCK, "--connect-timeout", "2s", "version"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


CHECKS = {
    "etcd": lambda: _http_ok("http://127.0.0.1:2379/health"),
    "containerd": _containerd_ok,
    "prometheus": lambda: _http_ok("http://127.0.0.1:9090/-/ready"),
}


def _start(work: Path) -> dict[str, subprocess.Popen[bytes]]:
    (work / "containerd.toml").write_text(CONTAINERD_CONFIG.format(work=work, sock=CONTAINERD_SOCK))
    (work / "prometheus.yml").write_text(PROM_CONFIG)
    argv = {
        "etcd": _etcd(work),
        "containerd": ["containerd", "--config", str(work / "containerd.toml")],
        "prometheus": [
            "prometheus",
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'prometheus'}",
            "--web.listen-address=127.0.0.1:9090",
        ],
    }
    procs = {}
    for name, args in argv.items():
        with open(work / f"{name}.log", "ab") as log:
            procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        (work / f"{name}.pid").write_text(str(procs[name].pid))
    deadline = time.monotonic() + READY_TIMEOUT
    for name, check in CHECKS.items():
        while not check():
            if procs[name].poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"system {name} did not start: {(work / f'{name}.log').read_text()[-2000:]}")
            time.sleep(0.2)
    return procs


def main(argv: list[str]) -> int:
    work = Path(argv[0]).resolve()
    cmd = argv[argv.index("--") + 1 :]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for mnt in ("/run/containerd", "/opt/cni/bin"):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", mnt], check=True)
    fakebin = work / "bin"
    fakebin.mkdir(exist_ok=True)
    (fakebin / "systemctl").write_text(FAKE_SYSTEMCTL.format(work=work))
    (fakebin / "systemctl").chmod(0o755)
    procs = _start(work)
    try:
        env = {**os.environ, "PATH": f"{fakebin}:{os.environ['PATH']}"}
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500, check=False)
        log = work / "systemctl.log"
        result = {
            "rc": run.returncode,
            "output": (run.stdout + run.stderr)[-4000:],
            "systemctl": log.read_text().splitlines() if log.exists() else [],
            "running": {name: procs[name].poll() is None for name in procs},
            "answering": {name: check() for name, check in CHECKS.items()},
        }
        if os.environ.get("FNT_LIST_IMAGE"):
            images = subprocess.run(
                ["ctr", "-a", CONTAINERD_SOCK, "-n", "k8s.io", "images", "ls", "-q"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            result["images"] = images.stdout.split()
        print(json.dumps(result))
        return 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def run_beside_services(work: Path, cmd: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``cmd`` in a private mount+network namespace beside the three system daemons."""
    made = not os.path.exists("/run/containerd")
    os.makedirs("/run/containerd", exist_ok=True)  # the mount point; the tmpfs is the namespace's
    try:
        proc = subprocess.run(
            ["unshare", "--mount", "--net", "--propagation", "private", sys.executable, "-m", __name__, str(work), "--"]
            + cmd,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, **(env or {})},
        )
    finally:
        if made:
            try:
                os.rmdir("/run/containerd")
            except OSError:
                pass  # something else made it meanwhile: leave it
    if proc.returncode != 0 or not proc.stdout.strip():
        raise AssertionError(f"system services driver failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
