"""The forwarder and a real agent, exec'd as runtimes exec it, for every CNI version we speak.

The agent is the real AgentServer + Service + dispatcher with a FakeDatapath and a memory
store (tests/helpers/forwarder.py); real namespaces are plumbed through the same forwarder
by tests/integration/test_cni_exec.py. The hypothesis run feeds arbitrary bytes and
environments: always one JSON document (or, where the spec says so, nothing) on stdout,
the spec's code, never a crash or a hang.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flatnet import SUPPORTED_VERSIONS
from tests.helpers.forwarder import Agent, cni_env, conf, forwarder_path, one_json, run, running_agent

SPEC_CODES = {1, 2, 3, 4, 5, 6, 7, 11, 50, 51, *range(101, 109)}  # 100 = internal error: a bug
CHECK_FROM, GC_FROM = "0.4.0", "1.1.0"


def at_least(version: str, minimum: str) -> bool:
    return tuple(map(int, version.split("."))) >= tuple(map(int, minimum.split(".")))


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Agent]]:
    with running_agent(tmp_path_factory.mktemp("fnf-proto")) as pa:
        yield pa


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_every_verb_of_every_version(agent: tuple[str, Agent], version: str) -> None:
    path, a = agent
    cid = f"fnf-{version.replace('.', '')}"
    body = conf(version, agentSocket=path)
    raw = json.dumps(body).encode()

    proc = run({"CNI_COMMAND": "VERSION"}, json.dumps({"cniVersion": version}).encode())
    assert proc.returncode == 0
    assert one_json(proc) == {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}

    netns = f"/run/netns/{cid}"
    proc = run(cni_env("ADD", cid, CNI_NETNS=netns), raw)
    res = one_json(proc)
    assert proc.returncode == 0, res
    assert res["cniVersion"] == version and res["ips"][0]["address"].startswith("198.18.100.")
    assert (netns, "eth0") in a.dp.attachments
    with_prev = json.dumps({**body, "prevResult": res}).encode()

    proc = run(cni_env("CHECK", cid, CNI_NETNS=netns), with_prev)
    if at_least(version, CHECK_FROM):
        assert proc.returncode == 0 and proc.stdout == b"", proc.stdout
    else:
        assert one_json(proc)["code"] == 1 and proc.returncode == 1  # "does not allow CHECK"

    for verb in ("GC", "STATUS"):
        gc_body = {**body, "cni.dev/valid-attachments": [{"containerID": cid, "ifname": "eth0"}]}
        proc = run(cni_env(verb, ""), json.dumps(gc_body if verb == "GC" else body).encode())
        if at_least(version, GC_FROM):
            assert proc.returncode == 0 and proc.stdout == b"", proc.stdout
        else:
            doc = one_json(proc)
            assert proc.returncode == 1 and doc["code"] == 1 and doc["cniVersion"] == version, doc

    proc = run(cni_env("DEL", cid, CNI_NETNS=netns), with_prev)
    assert proc.returncode == 0 and proc.stdout == b""
    assert (netns, "eth0") not in a.dp.attachments
    proc = run(cni_env("DEL", cid, CNI_NETNS=netns), with_prev)  # idempotent
    assert proc.returncode == 0 and proc.stdout == b""


def test_gc_releases_what_the_runtime_no_longer_holds(agent: tuple[str, Agent]) -> None:
    path, a = agent
    body = conf("1.1.0", agentSocket=path)
    from flatnet.cni import parse_netconf

    def holders() -> set[str]:
        return {lease.owner.container_id for lease in a.service.ipam(parse_netconf(json.dumps(body).encode())).leases()}

    for cid in ("fnf-gc-keep", "fnf-gc-drop"):
        assert run(cni_env("ADD", cid, CNI_NETNS=f"/run/netns/{cid}"), json.dumps(body).encode()).returncode == 0
    assert {"fnf-gc-keep", "fnf-gc-drop"} <= holders()
    gc = {**body, "cni.dev/valid-attachments": [{"containerID": "fnf-gc-keep", "ifname": "eth0"}]}
    assert run(cni_env("GC", ""), json.dumps(gc).encode()).returncode == 0
    assert "fnf-gc-keep" in holders() and "fnf-gc-drop" not in holders()
    assert (
        run(cni_env("DEL", "fnf-gc-keep", CNI_NETNS="/run/netns/fnf-gc-keep"), json.dumps(body).encode()).returncode
        == 0
    )


# ---- hypothesis: arbitrary bytes and environments ----
VERBS = st.sampled_from(["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", "", "FROB", "add"])
ENV_TEXT = st.binary(max_size=40).map(lambda b: b.replace(b"\x00", b""))
CNI_KEYS = st.sampled_from(
    [
        b"CNI_CONTAINERID",
        b"CNI_NETNS",
        b"CNI_IFNAME",
        b"CNI_ARGS",
        b"CNI_PATH",
        b"CNI_X",
        b"FLATNET_AGENT_TIMEOUT",
        b"OTHER",
    ]
)
JSON_ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=8,
)


def _stdins(path: str) -> st.SearchStrategy[bytes]:
    good = conf("1.1.0", agentSocket=path)
    mutated = st.dictionaries(st.sampled_from(list(good) + ["cniVersion", "x"]), JSON_ANY, max_size=3).map(
        lambda over: json.dumps({**good, **over}).encode()
    )
    return st.one_of(
        st.binary(max_size=300),
        JSON_ANY.map(lambda v: json.dumps(v).encode()),
        mutated,
        st.sampled_from([b"{not json", b"\xff", b"", b"{}", json.dumps(good).encode()]),
    )


def _expect(stdin: bytes) -> tuple[bool, Any]:
    """(decodes as a JSON object, the value) as the forwarder must judge it."""
    try:
        doc = json.loads(stdin.decode("utf-8"), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False, None
    return isinstance(doc, dict), doc


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data(), verb=VERBS, extra=st.dictionaries(CNI_KEYS, ENV_TEXT, max_size=5))
def test_arbitrary_input_always_one_json_and_the_right_code(
    agent: tuple[str, Agent], data: st.DataObject, verb: str, extra: dict[bytes, bytes]
) -> None:
    path, _ = agent
    stdin = data.draw(_stdins(path))
    env = {b"PATH": os.environ.get("PATH", "/usr/bin:/bin").encode(), b"FLATNET_AGENT_SOCKET": path.encode(), **extra}
    if verb:
        env[b"CNI_COMMAND"] = verb.encode()
    proc = subprocess.run([forwarder_path()], input=stdin, env=env, capture_output=True, timeout=60)
    assert proc.returncode in (0, 1), proc  # never a signal
    assert b"Traceback" not in proc.stdout + proc.stderr
    if not verb:
        assert proc.returncode == 0 and proc.stdout == b""
        return
    if proc.returncode == 0 and proc.stdout == b"":
        assert verb in ("DEL", "CHECK", "GC", "STATUS")  # success without a result
        return
    doc = one_json(proc)
    assert proc.stdout.count(b"\n") <= proc.stdout.rstrip(b"\n").count(b"\n") + 1
    if verb == "VERSION":
        assert proc.returncode == 0 and doc["supportedVersions"] == list(SUPPORTED_VERSIONS)
        return
    is_obj, value = _expect(stdin)
    if proc.returncode == 0:
        assert verb == "ADD" and is_obj and "ips" in doc
        return
    assert doc["code"] in SPEC_CODES and isinstance(doc["msg"], str) and doc["msg"], doc
    if not is_obj:
        assert doc["code"] == 6, doc
    elif value.get("cniVersion") not in (None, "", *SUPPORTED_VERSIONS):
        assert doc["code"] == 1, doc
