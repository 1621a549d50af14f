"""The CRI test-bed's pure parts: OCI archives it builds, CRI requests it encodes."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

from flatnet_lab.testbed.cri import PodSpec, PortMap, image
from flatnet_lab.testbed.cri.client import CriClient


def test_oci_archive_is_self_consistent(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "hello").write_text("hi\n")
    out = image.oci_archive(root, "docker.io/flatnet/t:1", ["/bin/hello"], tmp_path / "t.tar")
    with tarfile.open(out) as tar:
        blobs = {m.name.split("/")[-1]: tar.extractfile(m).read() for m in tar if m.name.startswith("blobs/")}
        index = json.loads(tar.extractfile("index.json").read())
        assert json.loads(tar.extractfile("oci-layout").read()) == {"imageLayoutVersion": "1.0.0"}
    for digest, data in blobs.items():
        assert hashlib.sha256(data).hexdigest() == digest
    desc = index["manifests"][0]
    assert desc["annotations"]["io.containerd.image.name"] == "docker.io/flatnet/t:1"
    manifest = json.loads(blobs[desc["digest"].split(":")[1]])
    config = json.loads(blobs[manifest["config"]["digest"].split(":")[1]])
    layer = blobs[manifest["layers"][0]["digest"].split(":")[1]]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/bin/hello"]


def test_sandbox_config_carries_what_kubelet_sends() -> None:
    cri = CriClient("/nonexistent/containerd.sock")  # no connection is made until a call
    try:
        spec = PodSpec(
            name="redis-0",
            namespace="db",
            uid="u-1",
            attempt=2,
            port_mappings=[PortMap(6379, 30079, "udp")],
            labels={"app": "redis"},
        )
        raw = cri.sandbox_config(spec).SerializeToString()
        back = cri.pb.PodSandboxConfig.FromString(raw)
        assert (back.metadata.name, back.metadata.namespace, back.metadata.uid, back.metadata.attempt) == (
            "redis-0",
            "db",
            "u-1",
            2,
        )
        pm = back.port_mappings[0]
        assert (pm.container_port, pm.host_port, pm.protocol) == (6379, 30079, cri.pb.UDP)
        assert back.hostname == "redis-0" and dict(back.labels) == {"app": "redis"}
        host = cri.sandbox_config(PodSpec(name="ds", host_network=True))
        assert host.linux.security_context.namespace_options.network == cri.pb.NODE
    finally:
        cri.close()
