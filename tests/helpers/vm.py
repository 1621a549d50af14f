"""Boot Debian's stock kernel under qemu (TCG) and run one job inside it.

The boot files (``vmlinuz`` and the root filesystem as an initramfs, see scripts/vm/build.sh)
are cached by a hash of their inputs. Each run appends a second, small cpio archive to that
initramfs (the kernel unpacks concatenated archives in order): this worktree's ``src/`` and
``tests/``, flatnet's Python dependencies from ``.venv`` (Python 3.11 like Debian's python3, so the
same ABI and bytecode), and ``/opt/flatnet/job``, the shell script the VM's /init runs. The whole filesystem
lives in RAM: no disk image, no 9p/virtiofs modules to load before the root exists.

The job's console is the first serial port (kept in ``console``); it writes its results to
the second one, which qemu writes to a file (``result``). The VM has no network device at
all (``-nodefaults -nic none``): nothing it does can reach the machine's interfaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / ".cache" / "vm-logs"
# big packages that only the host's tests use (charts, manifest schemas) and tooling
SKIP_SITE = (
    "numpy",
    "matplotlib",
    "PIL",
    "pillow",
    "fontTools",
    "fonttools",
    "contourpy",
    "kiwisolver",
    "kubernetes_validate",
    "kubernetes-validate",
    "pip",
    "setuptools",
    "_distutils_hack",
    "pkg_resources",
    "__editable__",
    "flatnet",
    "mypy",
    "ruff",
    "grpc",
)
# compiled files are kept (site-packages) or made (src, tests) on the host: the same Debian
# python3 runs inside, and compiling every import under TCG costs most of a minute
SKIP_TREE = shutil.ignore_patterns(".hypothesis", ".pytest_cache")


class VmError(RuntimeError):
    """The VM could not be built or booted, or it did not finish its job."""


@dataclass
class VmRun:
    console: str
    result: str
    seconds: float
    kernel: str


def boot_files() -> Path:
    """The cache directory holding vmlinuz + rootfs.cpio, built first if its inputs changed."""
    if shutil.which("qemu-system-x86_64") is None:
        raise VmError("qemu-system-x86_64 is not installed: run scripts/setup.sh (apt-get install qemu-system-x86)")
    out = subprocess.run(["bash", str(ROOT / "scripts/vm/build.sh")], capture_output=True, text=True, timeout=1500)
    if out.returncode != 0:
        raise VmError(f"scripts/vm/build.sh failed:\n{out.stderr[-4000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def _site_packages() -> Path:
    found = sorted((ROOT / ".venv" / "lib").glob("python3*/site-packages"))
    if not found:
        raise VmError(f"no {ROOT}/.venv: run scripts/setup.sh first")
    return found[0]


def _stage(stage: Path, job: str, files: dict[str, str]) -> None:
    app = stage / "opt" / "flatnet"
    wt = app / "wt"
    for part in ("src", "tests", "tooling/src"):
        shutil.copytree(ROOT / part, wt / part, ignore=SKIP_TREE)
    shutil.copy2(ROOT / "pyproject.toml", wt / "pyproject.toml")
    site = _site_packages()
    (app / "site").mkdir(parents=True)
    for entry in site.iterdir():
        if entry.name.startswith(SKIP_SITE) or entry.suffix == ".pth":
            continue
        if entry.is_dir():
            shutil.copytree(entry, app / "site" / entry.name, ignore=SKIP_TREE)
        else:
            shutil.copy2(entry, app / "site" / entry.name)
    subprocess.run(
        [shutil.which("python3") or "python3", "-m", "compileall", "-q", "-j", "0", str(wt)],
        check=False,
        capture_output=True,
    )
    for name, text in files.items():
        (app / name).write_text(text)
    (app / "job").write_text("#!/bin/sh\n" + job)
    (app / "job").chmod(0o755)


def run(job: str, files: dict[str, str] | None = None, timeout: float = 900, memory_mb: int = 2048) -> VmRun:
    """Boot the VM, run ``job`` (sh) as /opt/flatnet/job, return its console and result."""
    boot = boot_files()
    tmp = Path(tempfile.mkdtemp(prefix="fnv-vm-"))
    try:
        _stage(tmp / "stage", job, files or {})
        initrd = tmp / "initrd.cpio"
        with open(initrd, "wb") as fh:
            with open(boot / "rootfs.cpio", "rb") as base:
                shutil.copyfileobj(base, fh, 1 << 20)
            fh.flush()
            listing = subprocess.run(["find", "."], cwd=tmp / "stage", capture_output=True, check=True)
            subprocess.run(
                ["cpio", "-o", "-H", "newc", "--quiet"], cwd=tmp / "stage", input=listing.stdout, stdout=fh, check=True
            )
        console, result = tmp / "console.log", tmp / "result.out"
        cmd = [
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            str(memory_mb),
            "-nodefaults",
            "-nic",
            "none",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            str(boot / "vmlinuz"),
            "-initrd",
            str(initrd),
            "-append",
            "console=ttyS0 panic=-1 random.trust_cpu=on rdinit=/init"
            + ("" if os.environ.get("FLATNET_VM_VERBOSE") else " quiet"),
            "-serial",
            f"file:{console}",
            "-serial",
            f"file:{result}",
        ]
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            qout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise VmError(f"the VM did not finish within {timeout:.0f} s; console tail:\n" + _tail(console)) from None
        finally:  # also on KeyboardInterrupt or a pytest-timeout: never leave qemu running
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
        seconds = time.monotonic() - start
        text = console.read_text(errors="replace") if console.exists() else ""
        _keep_log(text)
        if proc.returncode != 0:
            raise VmError(f"qemu exited {proc.returncode}: {qout.strip()}\nconsole tail:\n{text[-3000:]}")
        res = result.read_text(errors="replace") if result.exists() else ""
        return VmRun(text, res, seconds, (boot / "kernel").read_text().strip())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no console output)"


def _keep_log(text: str) -> None:
    """The last run's console stays in .cache/vm-logs/ (gitignored) for a person to read."""
    try:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        (LOG_DIR / "console.log").write_text(text)
    except OSError:
        pass


if __name__ == "__main__":  # a quick manual boot: python -m tests.helpers.vm 'uname -a'
    import sys

    r = run(" ".join(sys.argv[1:]) or "uname -a; ip -d link add t0 type dummy && ip -d link show t0", timeout=300)
    print(r.console)
    print(f"--- {r.kernel}: {r.seconds:.1f} s; result: {r.result!r}", file=sys.stderr)
    os._exit(0)
