"""A private, throw-away podman for the end-to-end test.

Everything podman keeps lives under one temporary directory: storage (``--root``,
``--runroot``, vfs driver), libpod's tmpdir, its containers.conf (CNI backend, runc,
our network_config_dir and plugin dirs) and a busybox rootfs (no registry access here:
containers run with ``--rootfs``). So the test never sees or changes the machine's own
podman state, and ``close`` can remove all of it.

Findings this is built on (podman 4.3.1, Debian 12):
- crun fails on setrlimit here and runc does too unless the limits podman asks for are
  not above the caller's (no CAP_SYS_RESOURCE in this VM): ``default_ulimits`` pins them.
- podman's libcni (1.1.x) validates a conflist by calling the plugin's VERSION and cannot
  convert 1.1.0 results, so the conflist says ``cniVersion: "1.0.0"``.
- podman passes ``CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=<container name>`` and appends
  the pairs found in its own ``CNI_ARGS`` environment (containers/common
  libnetwork/cni/run.go getRuntimeConfig); DEL reuses the args cached at ADD.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

APPLETS = ("sh", "ip", "ping", "nc", "sleep", "httpd", "cat", "hostname")
TIMEOUT = 90.0


def build_rootfs(dest: Path, busybox: str, token: str) -> Path:
    """A minimal busybox root filesystem; ``/www/index.html`` holds ``token``."""
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp", "www"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    for applet in APPLETS:
        (dest / "bin" / applet).symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    (dest / "www" / "index.html").write_text(token + "\n")
    return dest


def containers_conf(path: Path, net_dir: Path, plugin_dirs: Sequence[str]) -> Path:
    """Write a containers.conf selecting the CNI backend, runc and our config dir."""
    dirs = ", ".join(json.dumps(d) for d in plugin_dirs)
    path.write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
        "[network]\n"
        'network_backend = "cni"\n'
        f"cni_plugin_dirs = [{dirs}]\n"
        f"network_config_dir = {json.dumps(str(net_dir))}\n"
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    return path


class Podman:
    """Runs podman against the private state under ``work``; every call is bounded."""

    def __init__(self, work: Path, conf: Path, env: Mapping[str, str] | None = None) -> None:
        self.work = work
        self.base = [
            "podman",
            "--root",
            str(work / "storage"),
            "--runroot",
            str(work / "run"),
            "--tmpdir",
            str(work / "libpod"),
            "--storage-driver",
            "vfs",
        ]
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf), **(env or {})}

    def __call__(
        self, *args: str, env: Mapping[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.base, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def run_detached(
        self,
        name: str,
        network: str,
        rootfs: Path,
        cmd: Sequence[str],
        env: Mapping[str, str] | None = None,
    ) -> str:
        """``podman run -d`` and return the full container id."""
        proc = self("run", "-d", "--name", name, "--network", network, "--rootfs", str(rootfs), *cmd, env=env)
        return proc.stdout.strip().splitlines()[-1]

    def address(self, name: str, network: str) -> str:
        """The IPv4 address podman recorded from the CNI result for ``network``."""
        out = self("inspect", "--format", "{{json .NetworkSettings.Networks}}", name).stdout
        return json.loads(out)[network]["IPAddress"]

    def stop_rm(self, name: str) -> None:
        self("stop", "-t", "0", name)
        self("rm", name)

    def close(self) -> None:
        """Remove every container of this private podman and unmount what it left."""
        try:
            self("rm", "-f", "-a", "-t", "0", check=False)
        except subprocess.TimeoutExpired:
            pass
        mine = str(self.work)
        with open("/proc/self/mountinfo") as f:
            points = [ln.split()[4] for ln in f if ln.split()[4].startswith(mine)]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
