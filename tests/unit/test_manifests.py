"""deploy/, the Helm chart and examples/redis validated against the Kubernetes schemas.

Helm is not installable from Debian or PyPI here, so the chart is written with plain
``{{ .Values.x }}`` placeholders (plus ``| toJson`` / ``| quote``) and rendered by the
small renderer below; a test fails if a template grows anything else, which keeps
this renderer honest. deploy/ must equal the chart rendered with its default values:
regenerate with ``.venv/bin/python tests/unit/test_manifests.py --write-deploy``.
Schemas ship inside the kubernetes-validate package: no network at test time.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
kv = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flatnet"
DEPLOY = ROOT / "deploy"
REDIS = ROOT / "examples" / "redis"
K8S_VERSIONS = ("1.28.0", "1.33.0")
#: kinds from CRDs (not in the Kubernetes schemas): checked by their own tests below
CRD_KINDS = {"PrometheusRule"}
#: ``{{- if .Values.x }} ... {{- end }}`` (no nesting, no else): a template switched by a value
IF_BLOCK = re.compile(r"\{\{-?\s*if\s+\.Values\.([A-Za-z0-9_.]+)\s*-?\}\}\n?(.*?)\{\{-?\s*end\s*-?\}\}\n?", re.S)
PLACEHOLDER = re.compile(r"\{\{\s*\.Values\.([A-Za-z0-9_.]+)\s*((?:\|\s*(?:toJson|quote)\s*)*)\}\}")


def _lookup(values: dict[str, Any], path: str) -> Any:
    cur: Any = values
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(f".Values.{path} is not in values.yaml")
        cur = cur[part]
    return cur


def render_text(text: str, values: dict[str, Any]) -> str:
    """Helm's meaning for the subset used: if-blocks on a value, value as text, toJson, quote."""
    text = IF_BLOCK.sub(lambda m: m.group(2) if _lookup(values, m.group(1)) else "", text)

    def sub(m: re.Match[str]) -> str:
        value: Any = _lookup(values, m.group(1))
        pipes = [p.strip() for p in m.group(2).split("|") if p.strip()]
        for pipe in pipes:
            if pipe == "toJson":
                value = json.dumps(value, sort_keys=True, separators=(",", ":"))
            elif pipe == "quote":
                value = json.dumps(str(value))
        return str(value).lower() if isinstance(value, bool) else str(value)

    out = PLACEHOLDER.sub(sub, text)
    if "{{" in out:
        raise AssertionError(f"template uses more than plain placeholders: {out[out.index('{{'):][:60]}")
    return out


def render_chart(overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path, value in (overrides or {}).items():
        *head, last = path.split(".")
        parent = _lookup(values, ".".join(head)) if head else values
        parent[last] = value
    docs = []
    for tpl in sorted((CHART / "templates").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(render_text(tpl.read_text(), values)) if d)
    return docs


def load_dir(path: Path) -> list[dict[str, Any]]:
    docs = []
    for f in sorted(path.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(f.read_text()) if d)
    return docs


def _key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def _validate_all(docs: list[dict[str, Any]]) -> None:
    assert docs
    for version in K8S_VERSIONS:
        for doc in docs:
            if doc["kind"] not in CRD_KINDS:
                kv.validate(doc, version, strict=True)  # raises ValidationError naming the field


def test_chart_renders_and_validates() -> None:
    docs = render_chart()
    assert {k for k, _ in map(_key, docs)} == {
        "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret",
        "ConfigMap", "DaemonSet"}
    _validate_all(docs)


def test_deploy_validates_and_equals_rendered_chart() -> None:
    deployed = load_dir(DEPLOY)
    _validate_all(deployed)
    assert sorted(deployed, key=_key) == sorted(render_chart(), key=_key), (
        "deploy/ drifted from the chart: run .venv/bin/python tests/unit/test_manifests.py --write-deploy")


def test_schema_validation_catches_a_broken_manifest() -> None:
    """The validator must reject what the API server would (else the tests above prove nothing)."""
    ds = next(d for d in render_chart() if d["kind"] == "DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPropagaton"] = "x"
    with pytest.raises(kv.ValidationError):
        kv.validate(ds, K8S_VERSIONS[-1], strict=True)


def test_agent_rbac_is_read_only_nodes_and_pods() -> None:
    role = next(d for d in render_chart() if d["kind"] == "ClusterRole")
    assert {r for rule in role["rules"] for r in rule["resources"]} == {"nodes", "pods"}
    assert {v for rule in role["rules"] for v in rule["verbs"]} <= {"get", "list", "watch"}


def test_daemonset_mounts_what_the_agent_needs() -> None:
    ds = next(d for d in render_chart() if d["kind"] == "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    agent = spec["containers"][0]
    assert agent["securityContext"].get("privileged") is True
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    for path in ("/run/flatnet", "/var/lib/flatnet", "/opt/cni/bin", "/etc/cni/net.d", "/run/netns"):
        assert path in mounts, path
    assert mounts["/run/netns"].get("mountPropagation") in ("HostToContainer", "Bidirectional")
    assert spec["initContainers"][0]["name"] == "install-cni"


def _installed_conflist(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the init container writes: the ConfigMap's conflist as is."""
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    return json.loads(cm["data"]["10-flatnet.conflist"])


TLS_STORE = {"type": "etcd", "endpoints": ["https://198.18.0.10:2379", "https://198.18.0.11:2379"],
             "caFile": "/etc/flatnet/etcd/ca.crt", "certFile": "/etc/flatnet/etcd/client.crt",
             "keyFile": "/etc/flatnet/etcd/client.key",
             "usernameFile": "/etc/flatnet/etcd/username",
             "passwordFile": "/etc/flatnet/etcd/password"}


def test_etcd_credentials_are_files_of_the_secret_mounted_in_the_agent() -> None:
    """What the chart's comments promise: the store names files that the agent can read
    from the Secret flatnet-etcd, and no credential is in the ConfigMap."""
    from flatnet.cni.config import parse_netconf

    secret_data = {"ca.crt": "PEM", "client.crt": "PEM", "client.key": "PEM",
                   "username": "flatnet", "password": "fne-pw-not-in-configmap"}
    docs = render_chart({"store": TLS_STORE, "etcdSecret": secret_data})
    _validate_all(docs)
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert "fne-pw-not-in-configmap" not in json.dumps(cm)
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "flatnet-etcd")
    assert secret["stringData"] == secret_data
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    vol = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "flatnet-etcd")
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == vol["name"])
    plugin = next(p for p in _installed_conflist(docs)["plugins"] if p["type"] == "flatnet")
    conf = parse_netconf(json.dumps({"cniVersion": "1.1.0", "name": "flat", **plugin}).encode())
    for key in ("caFile", "certFile", "keyFile", "usernameFile", "passwordFile"):
        path = conf.store[key]
        assert path.startswith(mount["mountPath"] + "/"), (key, path)
        assert path.rsplit("/", 1)[1] in secret_data, (key, path)


@pytest.mark.parametrize("overrides", [
    {},
    {"network.mode": "ipvlan", "network.master": "bond0",
     "store.endpoints": ["http://198.18.0.10:2379", "http://198.18.0.11:2379"]},
])
def test_installed_conflist_is_accepted_by_flatnet(overrides: dict[str, Any]) -> None:
    from flatnet.cni.config import parse_netconf

    docs = render_chart(overrides)
    _validate_all(docs)
    conflist = _installed_conflist(docs)
    plugin = next(p for p in conflist["plugins"] if p["type"] == "flatnet")
    conf = parse_netconf(json.dumps({"cniVersion": conflist["cniVersion"],
                                     "name": conflist["name"], **plugin}).encode())
    assert conf.mode == overrides.get("network.mode", "macvlan")
    assert plugin["ipam"]["store"]["endpoints"] == overrides.get(
        "store.endpoints", ["http://198.18.0.10:2379"])


def test_image_is_named_by_repository_and_pyproject_version_everywhere() -> None:
    """One version: pyproject's. The chart, its image tag and deploy/ must all say it."""
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == values["image"]["tag"] == version, (
        "Chart.yaml version/appVersion and values.yaml image.tag must equal pyproject.toml's version")
    want = f"{values['image']['repository']}:{version}"
    for docs in (load_dir(DEPLOY), render_chart()):
        ds = next(d for d in docs if d["kind"] == "DaemonSet")
        spec = ds["spec"]["template"]["spec"]
        assert {c["image"] for c in spec["initContainers"] + spec["containers"]} == {want}


def test_redis_example_manifests_validate() -> None:
    docs = load_dir(REDIS / "manifests")
    kinds = {d["kind"] for d in docs}
    assert "StorageClass" in kinds
    _validate_all(docs)
    sc = next(d for d in docs if d["kind"] == "StorageClass")
    assert sc["metadata"]["name"] == "local-storage-redis"
    assert sc["provisioner"] == "kubernetes.io/no-provisioner"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"


def test_redis_values_use_sticky_flatnet_addresses() -> None:
    """Sentinel announces pod IPs; that only works because flatnet pools keep them sticky."""
    values = yaml.safe_load((REDIS / "redis-values.yaml").read_text())
    assert values["master"]["persistence"]["storageClass"] == "local-storage-redis"
    assert values["master"]["persistence"]["size"] == "8Gi"
    assert values["sentinel"]["enabled"] is True
    assert values["useHostnames"] is False  # consumers outside the cluster get routable IPs
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert all(p.get("sticky") is True for p in chart_values["pools"])


def write_deploy() -> None:
    """Regenerate deploy/ from the chart's templates and default values (one file each)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for tpl in sorted((CHART / "templates").glob("*.yaml")):
        header = f"# Generated from charts/flatnet/templates/{tpl.name} with default values.\n"
        text = render_text(tpl.read_text(), values)
        if any(yaml.safe_load_all(text)):  # a template switched off renders nothing
            (DEPLOY / tpl.name).write_text(header + text)


if __name__ == "__main__" and "--write-deploy" in sys.argv:
    DEPLOY.mkdir(exist_ok=True)
    write_deploy()
