"""The store registry (flatnet/ipam/store/__init__.py): config, URL, build and health per store."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import types
from pathlib import Path
from typing import Any, Iterator

import pytest

from flatnet import defaults
from flatnet.cni import parse_netconf
from flatnet.errors import ConfigError
from flatnet.ipam import Ipam, PoolSpec
from flatnet.ipam.store import STORES, MemoryStore, open_store, store_config, store_from_url, store_health
from flatnet.ipam.store.etcd_setup import endpoint_health


def test_every_store_module_offers_the_registry_functions() -> None:
    for name, module in STORES.items():
        for attr in ("KEYS", "URL_EXAMPLE", "from_config", "from_url", "build", "health"):
            assert hasattr(module, attr), f"{name} store lacks {attr}"
        assert store_from_url(module.URL_EXAMPLE)["type"] == name


def test_defaults_come_from_one_module() -> None:
    assert store_config(None) == {"type": "sqlite", "path": defaults.SQLITE_PATH}
    assert store_from_url(f"sqlite:{defaults.SQLITE_PATH}")["path"] == defaults.SQLITE_PATH
    with pytest.raises(ConfigError) as exc:
        store_from_url("bogus:x")
    assert exc.value.details == (f"use sqlite:{defaults.SQLITE_PATH}, etcd:{defaults.ETCD_ENDPOINT} or memory")


def test_the_same_rules_wherever_the_config_comes_from() -> None:
    bad = {"type": "sqlite", "path": "rel.db"}
    with pytest.raises(ConfigError, match="ipam.store.path 'rel.db' must be an absolute path"):
        open_store(bad)
    with pytest.raises(ConfigError, match="ipam.store.path 'rel.db' must be an absolute path"):
        store_config(bad)
    with pytest.raises(ConfigError, match=r"ipam.store.endpoints\[0\] '198.18.0.1:2379' must be a URL"):
        open_store({"type": "etcd", "endpoints": ["198.18.0.1:2379"]})


def test_a_new_store_is_one_module_and_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[dict] = []
    fake = types.SimpleNamespace(
        KEYS=(),
        URL_EXAMPLE="fnamem",
        from_config=lambda d, where: {},
        from_url=lambda rest: {} if rest == "" else None,
        build=lambda cfg: built.append(cfg) or MemoryStore(),
        health=lambda cfg, timeout: ("ok", "test store"),
    )
    monkeypatch.setitem(STORES, "fnamem", fake)
    assert store_from_url("fnamem") == {"type": "fnamem"}
    assert isinstance(open_store({"type": "fnamem", "timeout": 3}), MemoryStore)
    assert built == [{"type": "fnamem", "timeout": 3.0}]
    assert store_health({"type": "fnamem"}) == ("ok", "test store")
    conf = parse_netconf(
        json.dumps(
            {
                "cniVersion": "1.1.0",
                "name": "n",
                "type": "flatnet",
                "master": "eth1",
                "ipam": {"pools": [{"subnet": "198.18.9.0/24"}], "store": {"type": "fnamem"}},
            }
        ).encode()
    )
    assert conf.store == {"type": "fnamem"}


def test_sqlite_health(tmp_path: Path) -> None:
    db = tmp_path / "fna-ipam.db"
    assert store_health({"type": "sqlite", "path": str(db)})[0] == "absent"
    store = open_store({"type": "sqlite", "path": str(db)})
    store.txn([], {"k": "v"})
    store.close()
    assert store_health({"type": "sqlite", "path": str(db)}) == ("ok", str(db))
    junk = tmp_path / "fna-junk.db"
    junk.write_bytes(b"not a database" * 100)
    state, detail = store_health({"type": "sqlite", "path": str(junk)})
    assert state == "broken" and str(junk) in detail
    assert store_health({"type": "memory"})[0] == "ok"
    assert store_health({"type": "redis"}) == ("broken", "unknown store type 'redis'")


class _Health(http.server.BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        code, body = self.answers.get(self.path, (404, b"no"))
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_etcd_health_over_http(health_server: str) -> None:
    _Health.answers = {
        "/ok/health": (200, b'{"health":"true","reason":""}'),
        "/sick/health": (200, b'{"health":"false","reason":"NOSPACE"}'),
        "/down/health": (503, b'{"health":"false"}'),
    }
    assert endpoint_health(health_server + "/ok", 2.0) is None
    assert "NOSPACE" in str(endpoint_health(health_server + "/sick", 2.0))
    assert str(endpoint_health(health_server + "/down", 2.0)).startswith("HTTP 503")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    state, detail = store_health({"type": "etcd", "endpoints": [closed, health_server + "/down"]})
    assert state == "broken" and closed in detail and "HTTP 503" in detail
    cfg = {"type": "etcd", "endpoints": [health_server + "/sick", health_server + "/ok"]}
    assert store_health(cfg) == ("ok", health_server + "/ok")


def test_ipam_lists_the_pools_it_knows() -> None:
    import ipaddress

    ipam = Ipam(MemoryStore())
    assert ipam.pools() == []
    spec = PoolSpec(name="fna-p", subnet=ipaddress.ip_network("198.18.5.0/29"))
    from flatnet.ipam import Owner

    ipam.allocate([spec], Owner("c1", "eth0", "n"), [])
    assert [p.name for p in ipam.pools()] == ["fna-p"] and ipam.pools()[0].subnet == spec.subnet
