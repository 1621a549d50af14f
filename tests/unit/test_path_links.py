"""scripts/path-links.sh (run by make setup): flatnet on PATH, never over someone else's file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "path-links.sh"


def links(root: Path, bindir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), str(root), str(bindir)], capture_output=True, text=True, timeout=30, check=True)


def test_links_are_made_once_and_lead_to_the_venv(tmp_path: Path) -> None:
    root, bindir = tmp_path / "tree", tmp_path / "bin"
    (root / ".venv" / "bin").mkdir(parents=True)
    for cmd in ("flatnet", "flatnet-inprocess"):
        (root / ".venv" / "bin" / cmd).write_text(f'#!/bin/sh\necho {cmd} "$@"\n')
        (root / ".venv" / "bin" / cmd).chmod(0o755)
    assert "flatnet ->" in links(root, bindir).stdout
    assert links(root, bindir).stdout == ""  # idempotent: nothing to say the second time
    out = subprocess.run(
        ["flatnet", "version"], env={"PATH": f"{bindir}:/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert out.stdout == "flatnet version\n"
    assert os.readlink(bindir / "flatnet-inprocess") == str(root / ".venv" / "bin" / "flatnet-inprocess")


def test_someone_elses_file_is_left_alone_and_a_dangling_link_replaced(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "flatnet").write_text("#!/bin/sh\necho theirs\n")
    (bindir / "flatnet-inprocess").symlink_to(tmp_path / "removed-tree" / ".venv" / "bin" / "flatnet-inprocess")
    out = links(tmp_path / "tree", bindir).stdout
    assert f"left alone: run {tmp_path / 'tree' / '.venv' / 'bin' / 'flatnet'}" in out
    assert (bindir / "flatnet").read_text() == "#!/bin/sh\necho theirs\n"
    assert os.readlink(bindir / "flatnet-inprocess") == str(tmp_path / "tree" / ".venv" / "bin" / "flatnet-inprocess")
