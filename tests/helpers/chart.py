"""charts/flatnet rendered and linted by real Helm, for the tests.

``helm`` is the binary scripts/install-k8s-tools.sh installs (scripts/setup.sh runs it) from a
pinned, checksummed npm package: this tree's ``.venv/bin/helm``, else the one beside the running
Python (the venv pytest runs from), else the one on PATH. Without it the tests fail naming that
script: rendering the chart is what they check, so they never skip it.

Overrides are given as ``{"a.b": value}`` (or nested maps) and passed to Helm as a values file,
so lists and strings reach the templates exactly as typed (no ``--set`` parsing).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flatnet"
RELEASE = "flatnet"
TIMEOUT = 120.0


class HelmError(RuntimeError):
    """helm refused the chart or the values: its own message, as is."""


def helm() -> str:
    """Path of the real helm binary (see the module docstring for the search order)."""
    for candidate in (ROOT / ".venv" / "bin" / "helm", Path(sys.executable).parent / "helm"):
        if candidate.is_file() and candidate.stat().st_mode & 0o111:
            return str(candidate)
    found = shutil.which("helm")
    if not found:
        raise HelmError("no helm: run scripts/install-k8s-tools.sh (scripts/setup.sh does)")
    return found


def nested(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``{"a.b": 1, "c": {...}}`` -> ``{"a": {"b": 1}, "c": {...}}``: a Helm values document."""
    out: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


def _run(args: list[str], overrides: dict[str, Any] | None) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="flatnet-values-") as values:
        json.dump(nested(overrides), values)  # JSON is YAML: exact types, no --set parsing
        values.flush()
        proc = subprocess.run(
            [helm(), *args, "--values", values.name],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    if proc.returncode != 0:
        raise HelmError(f"helm {args[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def template(overrides: dict[str, Any] | None = None, namespace: str = "flatnet", show_only: str | None = None) -> str:
    """``helm template flatnet charts/flatnet -n NAMESPACE`` with ``overrides``: the manifests' text."""
    args = ["template", RELEASE, str(CHART), "--namespace", namespace]
    if show_only:
        args += ["--show-only", show_only]
    return _run(args, overrides)


def docs(overrides: dict[str, Any] | None = None, namespace: str = "flatnet") -> list[dict[str, Any]]:
    """The chart's objects for ``overrides``, as ``helm template -n NAMESPACE`` prints them."""
    return [d for d in yaml.safe_load_all(template(overrides, namespace)) if d]


def template_body(name: str, overrides: dict[str, Any] | None = None, namespace: str = "flatnet") -> str:
    """One template's output as ``include`` sees it: without helm's ``---`` and ``# Source:`` lines."""
    text = template(overrides, namespace, show_only=f"templates/{name}")
    head = f"---\n# Source: {RELEASE}/templates/{name}\n"
    if not text.startswith(head):
        raise HelmError(f"unexpected helm output for templates/{name}: {text[:80]!r}")
    return text[len(head) :]


def lint(overrides: dict[str, Any] | None = None, namespace: str = "flatnet") -> str:
    """``helm lint --strict`` (warnings are failures) with ``overrides``: its report."""
    return _run(["lint", "--strict", str(CHART), "--namespace", namespace], overrides)
