"""Run kubectl for a JSON dump, with errors that say what to do instead."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any, Sequence

from flatnet.errors import FlatnetError, IO_FAILURE


def kubectl_json(args: Sequence[str], timeout: float = 60.0) -> Any:
    """``kubectl ARGS`` parsed as JSON; FlatnetError if kubectl is missing or fails."""
    exe = shutil.which("kubectl")
    if exe is None:
        raise FlatnetError(
            "kubectl not found in PATH",
            "install kubectl, or dump elsewhere with 'kubectl "
            + " ".join(args)
            + " > dump.json' and pass --from dump.json",
            code=IO_FAILURE,
        )
    try:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise FlatnetError(
            f"kubectl {' '.join(args)} did not answer in {timeout:.0f}s",
            "check the cluster is reachable (kubectl cluster-info)",
            code=IO_FAILURE,
        ) from None
    if proc.returncode != 0:
        raise FlatnetError(
            f"kubectl {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()[:300]}",
            "check KUBECONFIG / kubectl cluster-info, or pass --from FILE",
            code=IO_FAILURE,
        )
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:
        raise FlatnetError(f"kubectl printed no JSON: {exc}", code=IO_FAILURE) from None
