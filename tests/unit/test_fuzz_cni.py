"""Fuzz: hostile CNI env and configs through ``flatnet.cni.dispatch`` with the real Service.

The Service runs over a memory store and the FakeDatapath and already holds one live
attachment. Every generated case carries at least one defect by construction, so every
case must end as: exit 1, exactly one CNI error JSON with a spec code, no traceback and
no "internal error" (that would be an unexpected exception, i.e. a bug), and the leases
and plumbing exactly as before.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flatnet.agent.service import Service
from flatnet.cni import dispatch
from flatnet.datapath.fake import FakeDatapath
from flatnet.ipam.store import open_store

SPEC_CODES = {1, 2, 3, 4, 5, 6, 7, 11, 50, 51, *range(100, 109)}
VALID_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
BASE_CONF: dict[str, Any] = {
    "cniVersion": "1.1.0",
    "name": "flat",
    "type": "flatnet",
    "mode": "macvlan",
    "master": "vlan100",
    "ipam": {
        "pools": [
            {
                "name": "v4",
                "subnet": "198.18.100.0/24",
                "rangeStart": "198.18.100.32",
                "rangeEnd": "198.18.100.40",
                "gateway": "198.18.100.1",
            }
        ],
        "store": {"type": "memory"},
    },
}
BASE_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "fuzz1",
    "CNI_IFNAME": "eth0",
    "CNI_NETNS": "/run/netns/fuzzpod",
    "CNI_PATH": "/opt/cni/bin",
    "CNI_ARGS": "",
}


class World:
    """One Service with one live attachment; snapshots prove a case changed nothing."""

    def __init__(self) -> None:
        self.dp = FakeDatapath(masters={"vlan100"})
        self.store = open_store({"type": "memory"})
        self.svc = Service(
            node="node1",
            lock_dir=tempfile.mkdtemp(prefix="fnk-fuzz-locks-"),
            datapath_factory=lambda mode: self.dp,
            store_factory=lambda cfg: self.store,
        )
        code, out = self.run(dict(BASE_ENV, CNI_CONTAINERID="live0"), json.dumps(BASE_CONF).encode())
        assert code == 0, out

    def run(self, env: dict[str, str], stdin: bytes) -> tuple[int, str]:
        out = io.StringIO()
        code = dispatch(self.svc, env, stdin, out, io.StringIO())
        return code, out.getvalue()

    def snapshot(self) -> tuple[Any, Any]:
        return ([(e.key, e.value, e.version) for e in self.store.range("")], sorted(self.dp.attachments))


_world: World | None = None


def world() -> World:
    global _world
    if _world is None:
        _world = World()
    return _world


def assert_clean_error(env: dict[str, str], stdin: bytes) -> None:
    w = world()
    before = w.snapshot()
    code, out = w.run(env, stdin)
    assert code == 1, f"accepted a defective case: env={env!r} stdin={stdin[:200]!r} -> {out}"
    assert "Traceback" not in out
    doc = json.loads(out)  # exactly one JSON document
    assert isinstance(doc, dict) and set(doc) <= {"cniVersion", "code", "msg", "details"}
    assert doc["code"] in SPEC_CODES and isinstance(doc["msg"], str) and doc["msg"]
    assert not doc["msg"].startswith("internal error"), f"unexpected exception: {doc['msg']}"
    assert w.snapshot() == before, "a refused request changed leases or plumbing"


junk = st.text(min_size=0, max_size=40)
shellish = st.text(alphabet=";|&$`'\"\\<>(){}[]*?!~#\n\t /", min_size=1, max_size=8)
bad_ids = st.one_of(st.just(""), st.builds(lambda a, b: a + b, junk, shellish)).filter(lambda s: not VALID_ID.match(s))
bad_ifnames = st.one_of(
    st.just(""),
    st.just("."),
    st.just(".."),
    st.text(min_size=16, max_size=40),
    st.builds(lambda a, b: a + b, st.text(max_size=5), st.sampled_from(["/", " ", ":", "\t", "\n"])),
)
bad_commands = st.text(max_size=12).filter(lambda s: s not in ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", ""))


def _is_ip(text: str) -> bool:
    """A well-formed address is a valid IP= argument (DEL ignores it): not a defect to draw."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


bad_args = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.from_regex(r"\A[a-z][a-z0-9$;`|]{0,10}\Z"), junk).filter(
        lambda s: ";" not in s.split("=")[0]
    ),
    st.builds(lambda s: "K8S_POD_NAME=ok;" + s, shellish.filter(lambda s: "=" not in s and s.strip(";"))),
    st.builds(lambda s: "IP=" + s, st.text(alphabet="0123456789.:$;`x", min_size=1, max_size=20)).filter(
        lambda s: "=" not in s[3:] and ";" not in s and "," not in s and not _is_ip(s[3:])
    ),
)
verbs = st.sampled_from(["ADD", "DEL", "CHECK", "GC", "STATUS"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(["CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_ARGS", "missing"]), data=st.data())
def test_bad_env_is_refused_cleanly(key: str, data: st.DataObject) -> None:
    env = dict(BASE_ENV, CNI_CONTAINERID="fuzz" + data.draw(st.sampled_from(["1", "2", "live0"])))
    verb = data.draw(st.sampled_from(["ADD", "DEL", "CHECK"]))
    env["CNI_COMMAND"] = verb
    if key == "CNI_COMMAND":
        env[key] = data.draw(bad_commands)
    elif key == "CNI_CONTAINERID":
        env[key] = data.draw(bad_ids)
    elif key == "CNI_IFNAME":
        env[key] = data.draw(bad_ifnames)
    elif key == "CNI_ARGS":
        env[key] = data.draw(bad_args)
    else:
        del env[data.draw(st.sampled_from(["CNI_CONTAINERID", "CNI_IFNAME"]))]
    conf = dict(BASE_CONF, cniVersion="1.1.0")
    if verb == "CHECK":
        conf["prevResult"] = {"cniVersion": "1.1.0", "interfaces": [], "ips": []}
    assert_clean_error(env, json.dumps(conf).encode())


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), junk)
json_any = st.recursive(
    json_leaf, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(junk, c, max_size=4)), max_leaves=12
)
BAD_FIELDS: dict[str, Any] = {
    "cniVersion": st.one_of(
        st.text(max_size=8).filter(lambda v: v not in ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")),
        st.integers(),
        st.none(),
    ),
    "name": st.one_of(bad_ids, st.integers(), st.none(), st.lists(junk, max_size=2)),
    "mode": st.one_of(
        st.text(min_size=1, max_size=10).filter(lambda v: v not in ("macvlan", "ipvlan", "bridge", "vxlan")),
        st.integers(),
        st.lists(junk, max_size=2),
    ),
    "master": st.one_of(bad_ifnames.filter(bool), st.integers(), st.dictionaries(junk, junk, max_size=2)),
    "mtu": st.one_of(st.integers(max_value=67), st.integers(min_value=65536), junk, st.booleans()),
    "vlan": st.one_of(st.integers(max_value=0), st.integers(min_value=4095), junk),
    "ipam": st.one_of(
        json_leaf,
        st.fixed_dictionaries(
            {
                "pools": st.one_of(
                    json_leaf,
                    st.lists(
                        st.fixed_dictionaries(
                            {
                                "subnet": st.one_of(
                                    junk, st.integers(), st.just("198.18.100.0/33"), st.just("198.18.100.7/24")
                                )
                            }
                        ),
                        min_size=1,
                        max_size=2,
                    ),
                )
            }
        ),
    ),
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(BAD_FIELDS)), verb=verbs, data=st.data())
def test_bad_config_field_is_refused_cleanly(field: str, verb: str, data: st.DataObject) -> None:
    conf = json.loads(json.dumps(BASE_CONF))
    conf[field] = data.draw(BAD_FIELDS[field])
    if field == "ipam" and isinstance(conf[field], dict):
        conf[field]["store"] = {"type": "memory"}
    if field == "ipam" and verb in ("DEL", "CHECK", "GC", "STATUS"):
        verb = "ADD"  # DEL & co. need no pools: a bad pool list only has to fail ADD
    env = dict(BASE_ENV, CNI_COMMAND=verb, CNI_CONTAINERID="fuzz2")
    assert_clean_error(env, json.dumps(conf).encode())


@settings(max_examples=150, deadline=None)
@given(
    verb=verbs,
    stdin=st.one_of(
        st.binary(max_size=300),
        json_any.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
        st.dictionaries(junk, json_any, max_size=5).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_garbage_stdin_is_refused_cleanly(verb: str, stdin: bytes) -> None:
    assert_clean_error(dict(BASE_ENV, CNI_COMMAND=verb), stdin)


def test_deeply_nested_config_is_refused_cleanly() -> None:
    """JSON nested deeper than the parser's recursion limit is bad input, not a crash."""
    for verb in ("ADD", "DEL"):
        assert_clean_error(dict(BASE_ENV, CNI_COMMAND=verb), b"[" * 100_000 + b"]" * 100_000)
        deep = b'{"cniVersion":"1.1.0","name":"flat","type":"flatnet","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        assert_clean_error(dict(BASE_ENV, CNI_COMMAND=verb), deep)


def test_forwarder_survives_deep_nesting(tmp_path: Any) -> None:
    """The forwarder's own reading of stdin must not crash on it either (one JSON, code 6)."""
    from tests.helpers.forwarder import one_json, run

    proc = run(dict(BASE_ENV, FLATNET_AGENT_SOCKET=str(tmp_path / "none.sock")), b"[" * 100_000 + b"]" * 100_000)
    doc = one_json(proc)
    assert proc.returncode == 1 and doc["code"] == 6, doc
