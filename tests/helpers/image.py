"""flatnet's OCI image for the tests: built (or found cached) by scripts/image/build.sh.

``ensure_image()`` runs the same script as ``make image``; with nothing changed it only
checks the cache, so every test module that needs the image can ask for it. The build
needs root (mmdebstrap) and network access to Debian's mirror and PyPI on a fresh machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "scripts" / "image" / "build.sh"
OUT = ROOT / "build" / "image"
BUILD_TIMEOUT = 1500.0  # a fresh build downloads ~150 packages and the wheels


@dataclass(frozen=True)
class Image:
    ref: str
    archive: Path
    manifest: str  # sha256:... of the manifest (containerd's image "digest")
    config: str  # sha256:... of the config (podman's image id)
    info: dict
    output: str  # what build.sh printed


def pyproject_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def ensure_image(tag: str | None = None, env: dict[str, str] | None = None) -> Image:
    """Build (or find cached) the image; ``tag`` overrides the version tag (IMAGE_TAG)."""
    run_env = {**os.environ, "PY": sys.executable, **(env or {})}
    if tag:
        run_env["IMAGE_TAG"] = tag
    proc = subprocess.run(
        ["bash", str(BUILD)], capture_output=True, text=True, env=run_env, timeout=BUILD_TIMEOUT, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"scripts/image/build.sh failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    name = tag or pyproject_version()
    info = json.loads((OUT / f"flatnet-{name}.json").read_text())
    return Image(
        ref=info["ref"],
        archive=OUT / f"flatnet-{name}.oci.tar",
        manifest=info["manifest"],
        config=info["config"],
        info=info,
        output=proc.stdout + proc.stderr,
    )
