"""Container images made on the spot (no registry is reachable here), as OCI archives.

``pause_rootfs`` compiles a tiny static pause program (musl-gcc, Debian's musl-tools);
``busybox_rootfs`` lays out busybox-static with a few applets (sh, httpd, nc, ip, sleep) for
containers that must do something. ``oci_archive`` packs any root directory into an OCI
image-layout tar that ``ctr images import`` reads; the image name goes into the index's
annotations, so the imported image is known by that name.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Sequence

PAUSE_C = r"""
/* flatnet test-bed pause: hold the pod's namespaces until SIGTERM/SIGINT; reap zombies. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"""
BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")
APPLETS = ("sh", "httpd", "nc", "ip", "sleep", "cat", "echo", "ping", "hostname", "ls")


class ImageError(RuntimeError):
    pass


def pause_rootfs(dest: Path, cc: str = "musl-gcc") -> Path:
    """``dest``/pause: a static pause binary (about 10 KiB with musl)."""
    if shutil.which(cc) is None:
        raise ImageError(f"{cc} not found: apt-get install musl-tools (scripts/setup.sh does)")
    dest.mkdir(parents=True, exist_ok=True)
    src = dest.parent / "pause.c"
    src.write_text(PAUSE_C)
    proc = subprocess.run(
        [cc, "-static", "-Os", "-s", "-o", str(dest / "pause"), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    src.unlink()
    if proc.returncode != 0:
        raise ImageError(f"compiling pause failed: {proc.stderr.strip()}")
    return dest


def busybox_rootfs(dest: Path, files: dict[str, str] | None = None) -> Path:
    """A busybox-static root: /bin/busybox + applet links, /etc/passwd, plus ``files``."""
    busybox = next((b for b in BUSYBOX if os.path.exists(b)), None)
    if busybox is None:
        raise ImageError("no static busybox: apt-get install busybox-static (scripts/setup.sh does)")
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp", "www"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    for applet in APPLETS:
        link = dest / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    for rel, text in (files or {}).items():
        p = dest / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return dest


def _layer(rootfs: Path) -> bytes:
    """An uncompressed tar of ``rootfs`` with root ownership and fixed mtimes (reproducible)."""
    buf = io.BytesIO()

    def norm(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        return info

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(str(entry), arcname=entry.name, filter=norm)
    return buf.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest.split(":", 1)[1])
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    return digest, len(data)


def oci_archive(
    rootfs: Path, name: str, entrypoint: Sequence[str], out: Path, env: Sequence[str] = ("PATH=/bin",)
) -> Path:
    """Write ``rootfs`` as a one-layer linux/amd64 OCI image named ``name`` to ``out`` (a tar)."""
    layer = _layer(rootfs)
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Entrypoint": list(entrypoint), "Env": list(env), "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    with tarfile.open(out, "w") as tar:
        ldig, lsize = _blob(tar, layer)
        cdig, csize = _blob(tar, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": csize},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ldig, "size": lsize}],
        }
        mdig, msize = _blob(tar, json.dumps(manifest).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": mdig,
                    "size": msize,
                    "platform": {"architecture": arch, "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                    },
                }
            ],
        }
        for fname, doc in (("oci-layout", {"imageLayoutVersion": "1.0.0"}), ("index.json", index)):
            data = json.dumps(doc).encode()
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out
