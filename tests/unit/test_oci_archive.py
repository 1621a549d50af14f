"""scripts/image/oci.py: the OCI archive writer behind ``make image``, on a tiny rootfs."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("fnm_oci", ROOT / "scripts" / "image" / "oci.py")
assert _spec and _spec.loader
oci = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oci)


def _rootfs(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, kind in (
            ("./", tarfile.DIRTYPE),
            ("./dev", tarfile.DIRTYPE),
            ("./dev/null", tarfile.CHRTYPE),
            ("./usr", tarfile.DIRTYPE),
            ("./usr/bin", tarfile.DIRTYPE),
        ):
            info = tarfile.TarInfo(name)
            info.type, info.mode = kind, 0o755
            if kind == tarfile.CHRTYPE:
                info.devmajor, info.devminor = 1, 3
            tar.addfile(info)
        data = b"#!/bin/sh\necho hi\n"
        info = tarfile.TarInfo("./usr/bin/hello")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("./usr/bin/hi")
        link.type, link.linkname = tarfile.SYMTYPE, "hello"
        tar.addfile(link)
    return path


def _read(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def _build(tmp: Path, name: str, ref: str = "example.test/fnm/flatnet:9.9.9") -> dict[str, bytes]:
    out = tmp / name
    oci.build(
        _rootfs(tmp / "rootfs.tar"),
        out,
        ref,
        cmd=["flatnet", "agent"],
        env={"A": "1"},
        labels={"l": "v"},
        mtime=1700000000,
    )
    return _read(out)


def test_archive_is_a_consistent_oci_layout(tmp_path: Path) -> None:
    files = _build(tmp_path, "img.tar")
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():  # every blob is named by its own digest
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    index = json.loads(files["index.json"])
    (desc,) = index["manifests"]
    assert desc["annotations"] == {
        "org.opencontainers.image.ref.name": "example.test/fnm/flatnet:9.9.9",
        "io.containerd.image.name": "example.test/fnm/flatnet:9.9.9",
    }
    assert desc["platform"] == {"architecture": "amd64", "os": "linux"}
    manifest = json.loads(files["blobs/sha256/" + desc["digest"].split(":")[1]])
    assert desc["size"] == len(files["blobs/sha256/" + desc["digest"].split(":")[1]])
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["config"]["Cmd"] == ["flatnet", "agent"]
    assert "A=1" in config["config"]["Env"] and config["config"]["Labels"] == {"l": "v"}
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == oci.MT_LAYER
    raw = gzip.decompress(files["blobs/sha256/" + layer["digest"].split(":")[1]])
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = {m.name: m for m in tar}
    assert "./dev" in names and "./dev/null" not in names  # the runtime makes /dev
    assert names["./usr/bin/hi"].issym() and names["./usr/bin/hi"].linkname == "hello"


def test_same_inputs_give_the_same_digests(tmp_path: Path) -> None:
    a, b = _build(tmp_path, "a.tar"), _build(tmp_path, "b.tar")
    assert a == b
    c = _build(tmp_path, "c.tar", ref="example.test/fnm/flatnet:9.9.10")
    assert json.loads(c["index.json"]) != json.loads(a["index.json"])


def test_cli_rejects_a_bad_cmd_and_bad_labels(tmp_path: Path) -> None:
    rootfs = _rootfs(tmp_path / "rootfs.tar")
    with pytest.raises(SystemExit, match="JSON array"):
        oci.main([str(rootfs), str(tmp_path / "x.tar"), "--ref", "r:t", "--cmd", '"flatnet"'])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        oci.main([str(rootfs), str(tmp_path / "x.tar"), "--ref", "r:t", "--label", "novalue"])
    assert not (tmp_path / "x.tar").exists()
