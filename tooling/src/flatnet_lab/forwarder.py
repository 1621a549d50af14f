"""Where the CNI plugin executable is, for everything in Python that execs it.

The plugin runtimes exec is the native forwarder (native/forwarder/flatnet.c). The lab,
chaos, bench and tests exec the forwarder built from this source tree when there is one
(``make -C native/forwarder``, a no-op when up to date), so they test the code they ship
with; an installed package without the tree uses /opt/cni/bin/flatnet. $FLATNET_FORWARDER
overrides both. ``inprocess_entry`` names the no-agent entry point (``flatnet-inprocess``)
for $FLATNET_INPROCESS.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from flatnet.errors import FlatnetError

SOURCE = Path(__file__).resolve().parents[3] / "native" / "forwarder"
INSTALLED = "/opt/cni/bin/flatnet"
_built: str | None = None
_build_lock = threading.Lock()  # callers on many threads (chaos load) must not run make at once


def path() -> str:
    """The forwarder executable to exec (built from the tree first when the tree is here)."""
    override = os.environ.get("FLATNET_FORWARDER")
    if override:
        return override
    if not (SOURCE / "Makefile").is_file():
        return INSTALLED
    with _build_lock:
        return _build()


def _build() -> str:
    global _built
    if _built is None:
        proc = subprocess.run(
            ["make", "-s", "-C", str(SOURCE)], capture_output=True, text=True, timeout=300, check=False
        )
        binary = SOURCE / "build" / "flatnet"
        if proc.returncode != 0 or not binary.is_file():
            raise FlatnetError(
                f"cannot build the CNI forwarder in {SOURCE}: {(proc.stderr or proc.stdout).strip()[-400:]}",
                "install musl-tools (scripts/setup.sh does) and run make -C native/forwarder",
            )
        _built = str(binary)
    return _built


def inprocess_entry() -> str:
    """The ``flatnet-inprocess`` executable next to this interpreter (the venv's bin/).

    A venv installed before the entry point existed lacks it: in a source tree, a
    two-line launcher for this interpreter is written next to the built forwarder.
    """
    candidate = os.path.join(os.path.dirname(sys.executable), "flatnet-inprocess")
    if os.access(candidate, os.X_OK):
        return candidate
    if not (SOURCE / "Makefile").is_file():
        raise FlatnetError(f"{candidate} is missing", "reinstall flatnet (make setup, or pip install -e .)")
    launcher = SOURCE / "build" / "flatnet-inprocess"
    text = (
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(SOURCE.parents[1] / 'src')!r})\n"
        "from flatnet.agent.inprocess import main\nmain()\n"
    )
    if not launcher.is_file() or launcher.read_text() != text:
        launcher.parent.mkdir(parents=True, exist_ok=True)
        tmp = launcher.with_name(f".flatnet-inprocess.{os.getpid()}")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(launcher)
    return str(launcher)
