"""deploy/, the Helm chart and examples/redis validated against the Kubernetes schemas.

The chart is linted and rendered by real Helm (tests/helpers/chart.py; the binary comes from
scripts/install-k8s-tools.sh). deploy/ is what scripts/render-deploy.sh writes: ``helm template``
with the default values plus ``createNamespace=true`` into namespace flatnet; a test renders it
again and fails while deploy/ differs. Schemas ship inside the kubernetes-validate package: no
network at test time. PrometheusRule is a CRD (not in those schemas): promtool checks its rules
(tests/unit/test_manifests_obs.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
kv = pytest.importorskip("kubernetes_validate")

from tests.helpers import chart  # noqa: E402  (needs yaml)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flatnet"
DEPLOY = ROOT / "deploy"
REDIS = ROOT / "examples" / "redis"
K8S_VERSIONS = ("1.28.0", "1.33.0")
#: kinds from CRDs (not in the Kubernetes schemas): checked by their own tests below
CRD_KINDS = {"PrometheusRule"}
#: what deploy/ is: the defaults, and the Namespace made by the manifests themselves
DEPLOY_OVERRIDES = {"createNamespace": True}
RENDER_DEPLOY = ROOT / "scripts" / "render-deploy.sh"


def render_chart(overrides: dict[str, Any] | None = None, namespace: str = "flatnet") -> list[dict[str, Any]]:
    """The chart's objects for ``overrides`` ("a.b": value), from ``helm template -n NS``."""
    return chart.docs(overrides, namespace=namespace)


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
    assert {k for k, _ in map(_key, docs)} == {"ServiceAccount", "Secret", "ConfigMap", "DaemonSet"}
    _validate_all(docs)


def test_namespace_is_created_only_when_asked_and_everything_goes_to_the_release_namespace() -> None:
    docs = render_chart(namespace="kube-flat")
    assert "Namespace" not in {d["kind"] for d in docs}  # helm install --create-namespace makes it
    assert {d["metadata"]["namespace"] for d in docs} == {"kube-flat"}
    docs = render_chart({"createNamespace": True}, namespace="kube-flat")
    ns = next(d for d in docs if d["kind"] == "Namespace")
    assert ns["metadata"]["name"] == "kube-flat"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_helm_is_the_pinned_binary_setup_installs() -> None:
    """The helm the tests run is the one scripts/k8s-tools.sha256 names (not any on PATH)."""
    import hashlib

    sums = dict(reversed(line.split()) for line in (ROOT / "scripts" / "k8s-tools.sha256").read_text().splitlines())
    digest = hashlib.sha256(Path(chart.helm()).read_bytes()).hexdigest()
    assert digest == sums["helm"], f"{chart.helm()} is not the pinned helm: run scripts/install-k8s-tools.sh"
    out = subprocess.run([chart.helm(), "version", "--short"], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.startswith("v4."), out.stdout


def test_helm_lint_strict_passes_with_default_and_non_default_values() -> None:
    for overrides in ({}, NON_DEFAULT):
        report = chart.lint(overrides)
        assert "0 chart(s) failed" in report, report


def test_helm_lint_fails_a_broken_chart(tmp_path: Path) -> None:
    """helm lint must reject what helm install would (else the test above proves nothing)."""
    import shutil

    broken = tmp_path / "flatnet"
    shutil.copytree(CHART, broken)
    ds = broken / "templates" / "daemonset.yaml"
    ds.write_text(ds.read_text().replace("{{- end }}", "", 1))  # an unclosed {{ if }}
    proc = subprocess.run([chart.helm(), "lint", str(broken)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "daemonset.yaml" in proc.stdout + proc.stderr, proc.stdout


def test_deploy_validates_and_is_what_render_deploy_writes(tmp_path: Path) -> None:
    deployed = load_dir(DEPLOY)
    _validate_all(deployed)
    assert "Namespace" in {d["kind"] for d in deployed}  # kubectl apply -f deploy/ needs it
    assert sorted(deployed, key=_key) == sorted(render_chart(DEPLOY_OVERRIDES), key=_key)
    out = tmp_path / "deploy"
    subprocess.run(
        [str(RENDER_DEPLOY), str(out)], check=True, timeout=120, env={"HELM": chart.helm(), "PATH": "/usr/bin:/bin"}
    )
    want = {f.name: f.read_text() for f in out.glob("*.yaml")}
    have = {f.name: f.read_text() for f in DEPLOY.glob("*.yaml")}
    assert set(want) == set(have), f"deploy/ has other files than the chart renders: run {RENDER_DEPLOY.name}"
    for name in want:
        assert have[name] == want[name], f"deploy/{name} drifted from the chart: run scripts/render-deploy.sh"


#: every value a user is likely to change, set to something other than its default at once
NON_DEFAULT: dict[str, Any] = {
    "createNamespace": True,
    "image.tag": "0.1.0-custom",
    "image.pullPolicy": "Always",
    "cni.cniVersion": "1.1.0",
    "cni.uninstall": False,
    "network.mode": "ipvlan",
    "network.master": "bond0.100",
    "network.mtu": 9000,
    "network.serviceCidrs": ["198.19.128.0/24", "2001:db8:128::/112"],
    "agent.metricsPort": 9700,
    "agent.logFormat": "json",
    "agent.resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    "prometheusRule.enabled": True,
    "prometheusRule.labels": {"release": "kube-prometheus-stack"},
    "prometheusRule.poolUsageThreshold": 0.8,
    "prometheusRule.for": "10m",
    "prometheusRule.severity": "critical",
}


def test_chart_with_non_default_values_validates_and_carries_them() -> None:
    """etcd TLS and users, dual-stack service CIDRs, metrics port and log format, the
    PrometheusRule: every object validated against the Kubernetes schemas, the values seen."""
    from flatnet.cni.config import parse_netconf

    docs = render_chart({**NON_DEFAULT, "store": TLS_STORE, "etcdSecret": {"ca.crt": "PEM", "password": "pw"}})
    _validate_all(docs)
    kinds = {d["kind"] for d in docs}
    assert kinds == {"Namespace", "ServiceAccount", "Secret", "ConfigMap", "DaemonSet", "PrometheusRule"}
    conflist = _installed_conflist(docs)
    plugin = next(p for p in conflist["plugins"] if p["type"] == "flatnet")
    conf = parse_netconf(json.dumps({"cniVersion": conflist["cniVersion"], "name": "flat", **plugin}).encode())
    assert (conf.mode, conf.options["serviceCidrs"]) == ("ipvlan", NON_DEFAULT["network.serviceCidrs"])
    assert conf.store["caFile"] == TLS_STORE["caFile"]
    agent = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "metrics", "containerPort": 9700, "protocol": "TCP"} in agent["ports"]
    assert agent["command"][agent["command"].index("--log-format") + 1] == "json"
    assert agent["image"] == "ghcr.io/flatnet/flatnet:0.1.0-custom" and "lifecycle" not in agent
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    # Helm merges maps into the defaults (the hand-written renderer replaced them)
    assert rule["metadata"]["labels"] == {"app.kubernetes.io/name": "flatnet", "release": "kube-prometheus-stack"}
    alert = rule["spec"]["groups"][0]["rules"][0]
    assert (alert["for"], alert["labels"]["severity"], alert["expr"].endswith("> 0.8")) == ("10m", "critical", True)


def test_schema_validation_catches_a_broken_manifest() -> None:
    """The validator must reject what the API server would (else the tests above prove nothing)."""
    ds = next(d for d in render_chart() if d["kind"] == "DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPropagaton"] = "x"
    with pytest.raises(kv.ValidationError):
        kv.validate(ds, K8S_VERSIONS[-1], strict=True)


def test_agent_gets_no_rbac_and_no_token_because_no_code_calls_the_api_server() -> None:
    """RBAC holds only what code uses: nothing in flatnet's runtime talks to the API server
    (pods are identified by CNI_ARGS, addresses live in etcd; only `flatnet doctor cluster`,
    run by a person, shells out to kubectl)."""
    docs = render_chart()
    assert not {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"} & {d["kind"] for d in docs}
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    assert ds["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    runtime = [
        p
        for p in (ROOT / "src" / "flatnet").rglob("*.py")
        if not {"doctor", "lab", "bench", "chaos", "testbed"} & set(p.parts)
    ]
    for path in runtime:
        text = path.read_text()
        for needle in ("KUBERNETES_SERVICE_HOST", "/var/run/secrets/kubernetes.io", "/api/v1/"):
            assert needle not in text, f"{path} talks to the API server: the chart needs RBAC for it"


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


def _host_paths(docs: list[dict[str, Any]]) -> dict[str, str]:
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    return {v["name"]: v["hostPath"]["path"] for v in ds["spec"]["template"]["spec"]["volumes"] if "hostPath" in v}


def test_node_paths_are_values_and_the_conflist_finds_the_agent_there() -> None:
    assert _host_paths(render_chart()) == {
        "run-flatnet": "/run/flatnet",
        "state": "/var/lib/flatnet",
        "cni-bin": "/opt/cni/bin",
        "cni-conf": "/etc/cni/net.d",
        "netns": "/run/netns",
    }
    docs = render_chart({"cni.binDir": "/k3s/bin", "cni.confDir": "/k3s/net.d", "agent.runDir": "/k3s/run/flatnet"})
    paths = _host_paths(docs)
    assert (paths["cni-bin"], paths["cni-conf"], paths["run-flatnet"]) == ("/k3s/bin", "/k3s/net.d", "/k3s/run/flatnet")
    plugin = next(p for p in _installed_conflist(docs)["plugins"] if p["type"] == "flatnet")
    assert plugin["agentSocket"] == "/k3s/run/flatnet/agent.sock"  # the forwarder runs on the host


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_conflist_cni_version_is_1_0_0_by_default_and_a_value(version: str) -> None:
    """containerd 1.6/1.7 and podman's libcni reject a 1.1.0 conflist's results."""
    from flatnet.cni.config import parse_netconf

    overrides = {} if version == "1.0.0" else {"cni.cniVersion": version}
    conflist = _installed_conflist(render_chart(overrides))
    assert conflist["cniVersion"] == version
    plugin = next(p for p in conflist["plugins"] if p["type"] == "flatnet")
    parse_netconf(json.dumps({"cniVersion": version, "name": "flat", **plugin}).encode())


def test_conflist_name_sorts_before_other_cnis_and_is_installed_and_removed_by_that_name() -> None:
    docs = render_chart()
    name = yaml.safe_load((CHART / "values.yaml").read_text())["cni"]["confName"]
    others = [
        "05-cilium.conflist",
        "10-calico.conflist",
        "10-flannel.conflist",
        "10-weave.conflist",
        "10-antrea.conflist",
        "01-kube-ovn.conflist",
        "10-canal.conflist",
    ]
    assert sorted([*others, name])[0] == name
    ds = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    install = ds["initContainers"][0]["command"]
    assert install[:2] == ["flatnet", "install-cni"] and install[install.index("--name") + 1] == name
    pre_stop = ds["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[:2] == ["flatnet", "uninstall-cni"] and pre_stop[pre_stop.index("--name") + 1] == name
    # preStop also runs on a liveness restart: postStart puts the files back for the new agent
    post_start = ds["containers"][0]["lifecycle"]["postStart"]["exec"]["command"]
    assert post_start[:2] == ["flatnet", "install-cni"] and post_start[post_start.index("--name") + 1] == name
    off = next(d for d in render_chart({"cni.uninstall": False}) if d["kind"] == "DaemonSet")
    assert "lifecycle" not in off["spec"]["template"]["spec"]["containers"][0]


def test_service_cidrs_are_a_value_that_reaches_the_conflist() -> None:
    from flatnet.cni.config import parse_netconf

    for cidrs in (["10.96.0.0/12"], ["198.19.128.0/24", "2001:db8:128::/112"], []):
        conflist = _installed_conflist(render_chart({"network.serviceCidrs": cidrs}))
        plugin = next(p for p in conflist["plugins"] if p["type"] == "flatnet")
        conf = parse_netconf(json.dumps({"cniVersion": "1.0.0", "name": "flat", **plugin}).encode())
        assert conf.options["serviceCidrs"] == cidrs


def _checksums(overrides: dict[str, Any]) -> dict[str, str]:
    ds = next(d for d in render_chart(overrides) if d["kind"] == "DaemonSet")
    notes = ds["spec"]["template"]["metadata"]["annotations"]
    return {k: v for k, v in notes.items() if k.startswith("checksum/")}


def test_a_config_change_rolls_the_daemonset_and_nothing_else_does() -> None:
    """The checksum annotations are part of the pod template: a new conflist or Secret
    changes the template, so the DaemonSet controller replaces the agents."""
    import hashlib

    base = _checksums({})
    cm_text = chart.template_body("cni-config.yaml")
    assert base["checksum/cni-config"] == hashlib.sha256(cm_text.encode()).hexdigest()
    mtu = _checksums({"network.mtu": 9000})
    assert mtu["checksum/cni-config"] != base["checksum/cni-config"]
    assert mtu["checksum/store"] == base["checksum/store"]
    secret = _checksums({"etcdSecret": {"password": "fne-new"}})
    assert secret["checksum/store"] != base["checksum/store"]
    assert _checksums({"agent.resources": {"limits": {"memory": "1Gi"}}}) == base


def _installed_conflist(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the init container writes: the ConfigMap's conflist as is."""
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    return json.loads(cm["data"]["conflist"])


TLS_STORE = {
    "type": "etcd",
    "endpoints": ["https://198.18.0.10:2379", "https://198.18.0.11:2379"],
    "caFile": "/etc/flatnet/etcd/ca.crt",
    "certFile": "/etc/flatnet/etcd/client.crt",
    "keyFile": "/etc/flatnet/etcd/client.key",
    "usernameFile": "/etc/flatnet/etcd/username",
    "passwordFile": "/etc/flatnet/etcd/password",
}


def test_etcd_credentials_are_files_of_the_secret_mounted_in_the_agent() -> None:
    """What the chart's comments promise: the store names files that the agent can read
    from the Secret flatnet-etcd, and no credential is in the ConfigMap."""
    from flatnet.cni.config import parse_netconf

    secret_data = {
        "ca.crt": "PEM",
        "client.crt": "PEM",
        "client.key": "PEM",
        "username": "flatnet",
        "password": "fne-pw-not-in-configmap",
    }
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


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "network.mode": "ipvlan",
            "network.master": "bond0",
            "store.endpoints": ["http://198.18.0.10:2379", "http://198.18.0.11:2379"],
        },
    ],
)
def test_installed_conflist_is_accepted_by_flatnet(overrides: dict[str, Any]) -> None:
    from flatnet.cni.config import parse_netconf

    docs = render_chart(overrides)
    _validate_all(docs)
    conflist = _installed_conflist(docs)
    plugin = next(p for p in conflist["plugins"] if p["type"] == "flatnet")
    conf = parse_netconf(
        json.dumps({"cniVersion": conflist["cniVersion"], "name": conflist["name"], **plugin}).encode()
    )
    assert conf.mode == overrides.get("network.mode", "macvlan")
    assert plugin["ipam"]["store"]["endpoints"] == overrides.get("store.endpoints", ["http://198.18.0.10:2379"])


def test_image_is_named_by_repository_and_pyproject_version_everywhere() -> None:
    """One version: pyproject's. The chart, its image tag and deploy/ must all say it."""
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == version, (
        "Chart.yaml version and appVersion must equal pyproject.toml's version"
    )
    assert values["image"]["tag"] == "", "image.tag defaults to the chart's appVersion: leave it empty"
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
