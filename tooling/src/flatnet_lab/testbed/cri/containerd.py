"""A private containerd (Debian's 1.6) with its own root, state, socket, config and CNI dirs.

Started inside a network namespace the caller made, with ``nsenter --net=/run/netns/NS``:
``ip netns exec`` would also remount /sys, which hides the cgroup mounts runc needs. The
CRI plugin runs with ``restrict_oom_score_adj`` (no CAP_SYS_RESOURCE here, so runc cannot
give the pause process its negative oom_score_adj) and the ``native`` snapshotter (plain
copies: works on any filesystem, and the test images are tiny). Pod sandboxes' "host" is
that namespace; containerd execs CNI plugins from ``bin_dir`` with configs from ``conf_dir``.

Only processes this object started are stopped: containerd by its Popen, and the shims it
spawned by pid, recognised by their ``-address <our socket>`` argument.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from flatnet_lab.launch import stop_proc

CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"
RUNC = "/usr/sbin/runc"
K8S_NS = "k8s.io"
READY_TIMEOUT = 30.0

CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  level = "{log_level}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin_dir}"
    conf_dir = "{conf_dir}"
    max_conf_num = 1
"""


class ContainerdError(RuntimeError):
    pass


class Containerd:
    """``Containerd(workdir, netns, bin_dir, conf_dir, sandbox_image)``; ``start()``/``stop()``.

    Everything lives under ``workdir``: config.toml, root/, state/, containerd.sock and
    containerd.log. ``stop()`` leaves pods running (shims survive, like a daemon restart);
    ``shutdown()`` stops containerd and then the shims it left.
    """

    def __init__(
        self,
        workdir: Path,
        netns: str,
        bin_dir: Path,
        conf_dir: Path,
        sandbox_image: str,
        log_level: str = "warn",
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.netns = netns
        self.bin_dir, self.conf_dir = bin_dir, conf_dir
        self.sandbox_image = sandbox_image
        self.socket = str(workdir / "containerd.sock")
        self.config = workdir / "config.toml"
        self.log = workdir / "containerd.log"
        self.proc: subprocess.Popen | None = None
        self.env = {**os.environ, **(env or {})}  # CNI plugins inherit containerd's environment
        self.config.write_text(
            CONFIG.format(
                root=workdir / "root",
                state=workdir / "state",
                sock=self.socket,
                runc=RUNC,
                sandbox_image=sandbox_image,
                bin_dir=bin_dir,
                conf_dir=conf_dir,
                log_level=log_level,
            )
        )

    def start(self) -> None:
        """Start containerd in the namespace; return when its CRI answers (bounded)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        log = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{self.netns}", CONTAINERD, "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self.env,
            )
        finally:
            log.close()
        from flatnet_lab.testbed.cri.client import CriClient, CriError  # grpc only when used

        deadline = time.monotonic() + READY_TIMEOUT
        with CriClient(self.socket, timeout=2.0) as cri:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise ContainerdError(f"containerd exited at start ({self.proc.returncode}):\n" + self.log_tail())
                if os.path.exists(self.socket):
                    try:
                        cri.version()
                        return
                    except CriError:
                        pass
                time.sleep(0.1)
        raise ContainerdError(
            f"containerd did not answer on {self.socket} within {READY_TIMEOUT:.0f}s:\n{self.log_tail()}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Stop the daemon only (its shims, so the pods, keep running)."""
        proc, self.proc = self.proc, None
        stop_proc(proc, sig, timeout, kill_wait=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def shim_pids(self) -> list[int]:
        """Pids of the containerd-shim-runc-v2 processes this containerd started."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    argv = fh.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and self.socket.encode() in argv:
                pids.append(int(entry))
        return pids

    def shutdown(self) -> None:
        """Stop containerd, then kill its shims (and so their containers); unmount our dirs."""
        self.stop()
        shims = self.shim_pids()
        for pid in [*_children(shims), *shims]:  # containers first, then their shims
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while self.shim_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.unmount()

    def unmount(self) -> None:
        """Lazy-unmount whatever containerd left mounted under ``workdir`` (deepest first)."""
        mine = str(self.workdir)
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            points = [ln.split()[4] for ln in fh if ln.split()[4].startswith(mine)]
        for point in sorted(set(points), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30, check=False)

    def ctr(self, *args: str, timeout: float = 120.0) -> str:
        """Run ``ctr`` against this containerd in the k8s.io namespace; its stdout."""
        proc = subprocess.run(
            [CTR, "-a", self.socket, "-n", K8S_NS, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise ContainerdError(f"ctr {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def import_image(self, archive: Path) -> None:
        """Import an OCI archive (unpacked for the native snapshotter, as CRI needs)."""
        self.ctr("images", "import", "--snapshotter", "native", "--no-unpack=false", str(archive))

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no containerd log)"


def _children(parents: list[int]) -> list[int]:
    """Pids whose parent is one of ``parents`` (a shim is its containers' subreaper)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid in parents:
            out.append(int(entry))
    return out
