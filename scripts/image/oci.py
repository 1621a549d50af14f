#!/usr/bin/env python3
"""Write an OCI image archive (an OCI image layout in a tar) from a root-filesystem tarball.

    oci.py ROOTFS.tar OUT.tar --ref REPO:TAG [--cmd JSON] [--label K=V]... [--env K=V]...

One layer (the rootfs, gzip), one config, one manifest, and an index.json whose manifest
carries the reference both ways the loaders read it: ``org.opencontainers.image.ref.name``
(podman load, skopeo) and ``io.containerd.image.name`` (ctr images import). Stdlib only and
deterministic: the same rootfs, reference and SOURCE_DATE_EPOCH give the same digests.
Device nodes under /dev are dropped: the runtime makes /dev in every container.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class _Hashing(io.RawIOBase):
    """A write-through file that hashes and counts what passes."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink, self.sha, self.size = sink, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.sha.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)


def _keep(member: tarfile.TarInfo) -> bool:
    name = member.name.lstrip("./")
    return not (name.startswith("dev/") and not member.isdir())


def write_layer(rootfs: Path, out: BinaryIO, mtime: int) -> tuple[str, str, int]:
    """Gzip the rootfs (minus /dev nodes) into ``out``: (diff_id, digest, compressed size)."""
    compressed = _Hashing(out)
    with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=6, mtime=mtime) as gz:
        raw = _Hashing(gz)  # type: ignore[arg-type]
        with tarfile.open(rootfs, "r:*") as src, \
                tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as dst:  # type: ignore[call-overload]
            for member in src:
                if not _keep(member):
                    continue
                data = src.extractfile(member) if member.isreg() else None
                dst.addfile(member, data)
    return "sha256:" + raw.sha.hexdigest(), "sha256:" + compressed.sha.hexdigest(), compressed.size


def _blob(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, path: Path | None = None,
         mtime: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.mode = mtime, 0o644
    if path is not None:
        info.size = path.stat().st_size
        with path.open("rb") as f:
            tar.addfile(info, f)
    else:
        assert data is not None
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def build(rootfs: Path, out: Path, ref: str, *, cmd: list[str], env: dict[str, str],
          labels: dict[str, str], mtime: int) -> dict[str, Any]:
    """Write the archive; returns what a caller prints (digests and sizes)."""
    created = datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".fnm-layer.", delete=False) as lf:
        layer_path = Path(lf.name)
        diff_id, layer_digest, layer_size = write_layer(rootfs, lf, mtime)  # type: ignore[arg-type]
    try:
        config = _blob({
            "created": created, "architecture": "amd64", "os": "linux",
            "config": {"Env": [f"{k}={v}" for k, v in {"PATH": DEFAULT_PATH, **env}.items()],
                       "Cmd": cmd, "WorkingDir": "/", "Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "scripts/image/build.sh (mmdebstrap)"}],
        })
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        manifest = _blob({
            "schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": MT_LAYER, "digest": layer_digest, "size": layer_size}],
            "annotations": {"org.opencontainers.image.created": created},
        })
        manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        index = _blob({
            "schemaVersion": 2, "mediaType": MT_INDEX,
            "manifests": [{
                "mediaType": MT_MANIFEST, "digest": manifest_digest, "size": len(manifest),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"org.opencontainers.image.ref.name": ref,
                                "io.containerd.image.name": ref}}],
        })
        tmp = out.with_name(f".{out.name}.tmp")
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, "oci-layout", _blob({"imageLayoutVersion": "1.0.0"}), mtime=mtime)
            _add(tar, "index.json", index, mtime=mtime)
            for digest, data in ((manifest_digest, manifest), (config_digest, config)):
                _add(tar, "blobs/sha256/" + digest.split(":")[1], data, mtime=mtime)
            _add(tar, "blobs/sha256/" + layer_digest.split(":")[1], path=layer_path, mtime=mtime)
        os.replace(tmp, out)
    finally:
        layer_path.unlink(missing_ok=True)
    return {"ref": ref, "manifest": manifest_digest, "config": config_digest,
            "layer_compressed": layer_size, "rootfs_bytes": rootfs.stat().st_size,
            "archive_bytes": out.stat().st_size}


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"oci.py: --{what} {item!r} is not KEY=VALUE")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rootfs", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--ref", required=True, help="REPO:TAG the loaders name the image")
    p.add_argument("--cmd", default='["/bin/sh"]', help="default command, as a JSON array")
    p.add_argument("--label", action="append", default=[], metavar="K=V")
    p.add_argument("--env", action="append", default=[], metavar="K=V")
    a = p.parse_args(argv)
    cmd = json.loads(a.cmd)
    if not (isinstance(cmd, list) and all(isinstance(c, str) for c in cmd)):
        raise SystemExit("oci.py: --cmd must be a JSON array of strings")
    info = build(a.rootfs, a.out, a.ref, cmd=cmd, env=_pairs(a.env, "env"),
                 labels=_pairs(a.label, "label"),
                 mtime=int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    json.dump(info, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
