"""docs/PODMAN.md's walk, run verbatim: every ```sh block of the file, in order, as one script.

The walk is written for a fresh Debian 12 host: it writes /etc/containers/containers.conf.d,
/etc/cni/net.d, /var/lib/flatnet, makes a veth and a netns, and runs podman with the host's
own storage. Here it runs as written but inside a sandbox the test builds, so nothing of
the machine changes:

- network: a netns the test creates plays the host (``fnw-<tag>-host``). Its "own NIC"
  ``eth0`` (198.19.77.10/24, default route via 198.19.77.1) is a veth to a second test
  netns, so the host has a main address outside the pool, as a real one does.
- files: a private mount namespace (``unshare --mount``) where /etc/containers (a copy),
  /etc/cni/net.d, /var/lib/flatnet, /var/lib/cni, /var/lib/containers, /run/containers,
  /run/libpod, /run/netns, /opt/cni/bin (this tree's plugin) and /usr/local/bin (what
  ``make setup`` links: ``flatnet`` and ``flatnet-inprocess`` of this tree) are the test's
  own directories; $HOME is one too.

What ``make setup`` does first (apt packages, the venv) is assumed done on this machine.
The walk's transcript (``bash -v``: each line as it runs, then its output) is printed,
and kept in the test's temp dir as walk.log.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from flatnet_lab.testbed import net as labnet
from tests.helpers.cnirun import install_forwarder, tree_inprocess_entry

pytestmark = [pytest.mark.podman, pytest.mark.netns, pytest.mark.timeout(600)]

DOC = Path(__file__).resolve().parents[2] / "docs" / "PODMAN.md"
WALK_TIMEOUT = 480.0
#: directory in the walk -> the test's directory bound over it (created if missing)
PRIVATE = (
    "/etc/cni/net.d",
    "/var/lib/flatnet",
    "/var/lib/cni",
    "/var/lib/containers",
    "/run/containers",
    "/run/libpod",
    "/opt/cni/bin",
    "/usr/local/bin",
)


def shell_blocks(markdown: str) -> list[str]:
    """The ```sh blocks of ``markdown``, in order (other fences are prose)."""
    return re.findall(r"^```sh\n(.*?)^```$", markdown, flags=re.S | re.M)


def test_the_doc_has_a_walk() -> None:
    blocks = shell_blocks(DOC.read_text())
    assert len(blocks) >= 8, "docs/PODMAN.md lost its walk"
    walk = "\n".join(blocks)
    for step in ("podman run -d --name web", "flatnet network check", "podman stop web", "flatnet ipam ls"):
        assert step in walk


def _flatnet_launcher(bindir: Path, entry: str) -> None:
    """``flatnet`` of this tree, as make setup's /usr/local/bin link provides it."""
    python = Path(entry).read_text().splitlines()[0][2:]
    src = re.search(r"sys.path.insert\(0, '([^']+)'\)", Path(entry).read_text()).group(1)  # type: ignore[union-attr]
    (bindir / "flatnet").write_text(
        f"#!{python}\nimport sys\nsys.path.insert(0, {src!r})\nfrom flatnet.cli.main import main\nsys.exit(main())\n"
    )
    (bindir / "flatnet").chmod(0o755)


def _runner(work: Path, walk: Path) -> str:
    binds = "\n".join(
        f"mkdir -p {d} {work / 'private' / d.strip('/')}\nmount --bind {work / 'private' / d.strip('/')} {d}"
        for d in PRIVATE
    )
    return f"""set -euo pipefail
mount --make-rprivate /
{binds}
mount --bind {work / "etc-containers"} /etc/containers
mount -t tmpfs -o mode=0755 tmpfs /run/netns
export HOME={work / "home"} PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cd "$HOME"
cleanup() {{
  set +e
  podman rm -a -f -t 0 >/dev/null 2>&1
  for ns in $(ip netns list | cut -d' ' -f1); do ip netns del "$ns"; done
}}
trap cleanup EXIT
bash -euo pipefail -v {walk} 2>&1
"""


def test_the_podman_walk_runs_verbatim(tmp_path: Path) -> None:
    if shutil.which("podman") is None or os.geteuid() != 0:
        pytest.skip("needs podman and root")
    walk = tmp_path / "walk.sh"
    walk.write_text("\n".join(shell_blocks(DOC.read_text())))
    private = tmp_path / "private"
    shutil.copytree("/etc/containers", tmp_path / "etc-containers", symlinks=True)
    (tmp_path / "home").mkdir()
    entry = tree_inprocess_entry(str(private / "usr/local/bin"))
    _flatnet_launcher(private / "usr/local/bin", entry)
    install_forwarder(str(private / "opt/cni/bin"))
    for plugin in ("loopback",):  # what /opt/cni/bin usually holds beside ours (libcni asks for none)
        if os.path.exists(f"/usr/lib/cni/{plugin}"):
            shutil.copy2(f"/usr/lib/cni/{plugin}", private / "opt/cni/bin" / plugin)
    runner = tmp_path / "runner.sh"
    runner.write_text(_runner(tmp_path, walk))

    missing = [d for d in PRIVATE if not os.path.isdir(d)]  # made as mount points: removed after
    tag = secrets.token_hex(3)
    host, up = f"fnw-{tag}-host", f"fnw-{tag}-up"
    try:
        for ns in (host, up):
            labnet.ensure_netns(ns)
        labnet.ensure_veth(host, "eth0", up, "up0")
        labnet.ensure_addresses(host, "eth0", ["198.19.77.10/24"])
        labnet.ensure_addresses(up, "up0", ["198.19.77.1/24"])
        labnet.ensure_route(host, "0.0.0.0/0", "198.19.77.1")
        proc = subprocess.run(
            # nsenter, not `ip netns exec`: that remounts /sys, and runc needs the host's cgroup mounts
            [
                "nsenter",
                f"--net=/run/netns/{host}",
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "bash",
                str(runner),
            ],
            capture_output=True,
            text=True,
            timeout=WALK_TIMEOUT,
        )
    finally:
        for ns in (host, up):
            try:
                labnet.remove_netns(ns)
            except Exception:  # noqa: BLE001 - the other still goes
                pass
        for d in missing:
            try:
                os.rmdir(d)  # only if still empty: never anything someone else put there
            except OSError:
                pass
    log = proc.stdout + proc.stderr
    (tmp_path / "walk.log").write_text(log)
    print(log)
    assert proc.returncode == 0, log[-6000:]
    # what the walk shows, checked (the script's own `test` lines check the sticky address)
    assert re.search(r"web has 198\.18\.100\.(5\d|[6-9]\d)\b", log), log[-3000:]
    assert "hello from a flatnet container" in log
    assert "2 packets transmitted, 2 packets received" in log or "2 received" in log
    assert re.search(r"dev fns-[0-9a-f]{8} .*src 198\.19\.77\.10", log), "host -> pod from the host's own address"
    assert "no shim left" in log
    assert "forgot sticky address of prod/redis-0" in log
