"""``make image``: flatnet's OCI image built here from Debian's packages and PyPI.

The image is built once (scripts/image/build.sh, cached by a hash of its inputs) and then
checked as an operator would: a valid OCI archive named by the chart's repository and
pyproject's version, holding flatnet, nft, ip and the CNI plugin, and nothing of a build
(compilers, apt lists, docs); it runs under podman; a second build is a cache hit.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.helpers.image import ROOT, Image, ensure_image, pyproject_version

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# a regression guard on what ships (today ~42 MiB): not a timing, a size
MAX_COMPRESSED_MIB = 60
# podman 4.3 + runc here: limits podman asks for must not exceed the caller's (see e2e/podmanctl.py)
PODMAN_RUN = [
    "podman",
    "run",
    "--rm",
    "--network",
    "none",
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
]


@pytest.fixture(scope="module")
def image() -> Image:
    if os.geteuid() != 0:
        pytest.fail("make image needs root (mmdebstrap): run the tests as root (make test does)")
    for tool in ("mmdebstrap", "podman"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: scripts/setup.sh installs it")
    return ensure_image()


def _blobs(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def _layer_names(files: dict[str, bytes]) -> set[str]:
    index = json.loads(files["index.json"])
    manifest = json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
    layer = gzip.decompress(files["blobs/sha256/" + manifest["layers"][0]["digest"][7:]])
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        return {m.name.removeprefix("./") for m in tar}


def test_image_is_named_by_the_chart_repository_and_pyproject_version(image: Image) -> None:
    values = yaml.safe_load((ROOT / "charts" / "flatnet" / "values.yaml").read_text())
    assert image.ref == f"{values['image']['repository']}:{pyproject_version()}"
    files = _blobs(image.archive)
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1], name
    (desc,) = json.loads(files["index.json"])["manifests"]
    assert desc["digest"] == image.manifest
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == image.ref
    assert "rootfs" in image.output and "MiB compressed" in image.output  # the size is printed


def test_image_holds_flatnet_and_the_tools_and_nothing_of_a_build(image: Image) -> None:
    names = _layer_names(_blobs(image.archive))
    for need in ("usr/local/bin/flatnet", "opt/flatnet/bin/flatnet", "usr/sbin/nft", "usr/bin/ip", "usr/bin/python3"):
        assert need in names, need
    assert any(n.startswith("usr/local/lib/python3.11/dist-packages/pyroute2/") for n in names)
    tools = {"gcc", "cc", "cpp", "c++", "g++", "ld", "as", "make", "apt", "apt-get", "pip", "pip3"}
    bad = sorted(
        n
        for n in names
        if (n.startswith(("usr/bin/", "usr/sbin/", "usr/local/bin/")) and n.rsplit("/", 1)[-1] in tools)
        or n.startswith(
            ("usr/lib/gcc/", "usr/share/man/", "usr/share/info/", "usr/share/locale/", "var/cache/apt/", "usr/include/")
        )
        or (
            n.startswith("var/lib/apt/lists/")
            and n.rstrip("/") not in {"var/lib/apt/lists", "var/lib/apt/lists/partial"}
        )
        or (n.startswith("usr/share/doc/") and n.count("/") > 3 and not n.endswith("/copyright"))
    )
    assert not bad, f"the image ships build leftovers: {bad[:10]}"
    assert image.info["layer_compressed"] < MAX_COMPRESSED_MIB * 2**20


def test_image_runs_flatnet_nft_ip_and_the_plugin(image: Image) -> None:
    script = (
        "flatnet version --json && nft --version >/dev/null && ip -V >/dev/null && "
        "CNI_COMMAND=VERSION /opt/flatnet/bin/flatnet </dev/null"
    )
    proc = subprocess.run(
        [*PODMAN_RUN, image.ref, "sh", "-ec", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    version_line, plugin_line = proc.stdout.strip().splitlines()[-2:]
    assert json.loads(version_line)["version"] == pyproject_version()
    assert "1.0.0" in json.loads(plugin_line)["supportedVersions"]


def test_second_build_with_nothing_changed_is_a_cache_hit(image: Image) -> None:
    before = image.archive.stat().st_mtime_ns
    again = ensure_image()
    assert "is up to date" in again.output and "already loaded" in again.output
    assert again.archive.stat().st_mtime_ns == before and again.manifest == image.manifest
