"""The etcd store's TLS / credential settings: shape checks in the network config, in
``open_store`` and on the command line, with messages that name the field and the fix."""

from __future__ import annotations

import pytest

from flatnet.cli.common import parse_store_url
from flatnet.cni.ipamconf import parse_ipam
from flatnet.errors import ConfigError
from flatnet.ipam.store import open_store
from flatnet.ipam.store._etcdconf import redact

POOLS = [{"subnet": "198.18.100.0/24"}]


def _store(**kw: object) -> dict:
    return parse_ipam({"pools": POOLS, "store": {"type": "etcd", **kw}}, "n", "macvlan")[1]


def test_files_are_kept_as_paths() -> None:
    got = _store(
        endpoints=["https://198.18.0.10:2379", "https://198.18.0.11:2379"],
        caFile="/etc/fne/ca.crt",
        certFile="/etc/fne/c.crt",
        keyFile="/etc/fne/c.key",
        usernameFile="/etc/fne/user",
        passwordFile="/etc/fne/pw",
    )
    assert got == {
        "type": "etcd",
        "endpoints": ["https://198.18.0.10:2379", "https://198.18.0.11:2379"],
        "caFile": "/etc/fne/ca.crt",
        "certFile": "/etc/fne/c.crt",
        "keyFile": "/etc/fne/c.key",
        "usernameFile": "/etc/fne/user",
        "passwordFile": "/etc/fne/pw",
    }


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"endpoints": ["https://h:1"], "certFile": "/c"}, "certFile and ipam.store.keyFile go together"),
        ({"endpoints": ["https://h:1"], "passwordFile": "/p"}, "usernameFile and ipam.store.passwordFile"),
        ({"endpoints": ["http://h:1"], "caFile": "/ca"}, "caFile is set but the endpoints are http://"),
        ({"endpoints": ["https://h:1"], "caFile": "ca.crt"}, "caFile must be an absolute file path"),
        ({"endpoints": ["http://h:1", "https://h:2"]}, "mixes http:// and https://"),
        ({"endpoints": ["http://root:hunter2@h:1"]}, "carries credentials in the URL"),
        ({"endpoints": ["https://h:1"], "caFlie": "/x"}, "caFlie"),
    ],
)
def test_bad_settings_name_the_field(kw: dict, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        _store(**kw)
    assert words in info.value.msg
    assert "hunter2" not in info.value.msg + info.value.details


def test_tls_keys_on_a_sqlite_store_are_refused() -> None:
    with pytest.raises(ConfigError, match="applies to an etcd store only"):
        parse_ipam({"pools": POOLS, "store": {"type": "sqlite", "caFile": "/ca"}}, "n", "macvlan")


def test_open_store_reads_the_ca_and_names_a_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"caFile '/nonexistent/fne-ca.crt' cannot be used"):
        open_store({"type": "etcd", "endpoints": ["https://127.0.0.1:1"], "caFile": "/nonexistent/fne-ca.crt"})
    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="cannot be used as a CA bundle"):
        open_store({"type": "etcd", "endpoints": ["https://127.0.0.1:1"], "caFile": str(bad)})


def test_cli_store_takes_the_json_form() -> None:
    cfg = parse_store_url('{"type": "etcd", "endpoints": ["https://h:1"], "caFile": "/ca"}')
    assert cfg["caFile"] == "/ca"
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_store_url("{nope")


def test_redact() -> None:
    assert redact("http://u:p@h:1/x") == "http://***@h:1/x"
    assert redact("http://h:1") == "http://h:1"
