"""A secured etcd, for real: Debian's etcd with TLS + client-certificate auth, and with
etcd users (auth enabled, root role). Right settings work; a wrong CA, a missing or foreign
client certificate, a wrong password or a user without a role each give an error that
names the problem — at the store, through the agent's CNI handler and through the plugin
exec'd against a real agent process — promptly (a hang trips pytest-timeout), and the
password never appears in any message."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from flatnet.agent import Service
from flatnet.cni import dispatch
from flatnet.datapath.fake import FakeDatapath
from flatnet.errors import INVALID_CONFIG, StoreAccessDenied, StoreUnavailable
from flatnet.ipam import Ipam, Owner, PoolSpec
from flatnet.ipam.store import open_store
from flatnet_lab.launch import agent_argv, child_env, spawn, stop_proc
from tests.helpers.certs import make_pki
from tests.helpers.etcd import EtcdServer

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]

PASSWORD = "fne-S3cret-pw-do-not-log"
POOL = PoolSpec(name="fne-sec", subnet=__import__("ipaddress").ip_network("198.18.120.0/24"))


@pytest.fixture(scope="module")
def pki() -> Iterator[dict[str, str]]:
    d = Path(tempfile.mkdtemp(prefix="fne-pki-"))
    try:
        yield make_pki(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_etcd(pki: dict[str, str]) -> Iterator[EtcdServer]:
    d = Path(tempfile.mkdtemp(prefix="fne-etcd-tls-"))
    server = EtcdServer(d, tls=pki, name="fne-tls")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def auth_etcd() -> Iterator[tuple[EtcdServer, Path]]:
    """etcd with auth enabled: root (root role) and fne-norole (no role at all)."""
    d = Path(tempfile.mkdtemp(prefix="fne-etcd-auth-"))
    server = EtcdServer(d, name="fne-auth")
    try:
        server.start()
        server.etcdctl("role", "add", "root")
        server.etcdctl("user", "add", "root", "--new-user-password", PASSWORD)
        server.etcdctl("user", "grant-role", "root", "root")
        server.etcdctl("user", "add", "fne-norole", "--new-user-password", PASSWORD)
        server.etcdctl("auth", "enable")
        yield server, d
    finally:
        server.stop()
        shutil.rmtree(d, ignore_errors=True)


def _files(d: Path, user: str, password: str) -> dict[str, str]:
    """Fresh files per call: a store that re-reads them (new token) never sees another test's."""
    tag = os.urandom(4).hex()
    (d / f"{user}-{tag}.user").write_text(user + "\n")
    (d / f"{user}-{tag}.pw").write_text(password + "\n")
    return {"usernameFile": str(d / f"{user}-{tag}.user"), "passwordFile": str(d / f"{user}-{tag}.pw")}


def _allocate(cfg: dict) -> str:
    store = open_store(cfg)
    try:
        lease = Ipam(store).allocate([POOL], Owner(f"fne-{os.urandom(4).hex()}", "eth0"))[0]
        return str(lease.address)
    finally:
        store.close()


def _refused(cfg: dict) -> StoreAccessDenied:
    with pytest.raises(StoreAccessDenied) as info:
        _allocate(cfg)
    err = info.value
    assert err.code == INVALID_CONFIG
    assert PASSWORD not in err.msg + err.details
    return err


# ---- TLS + client certificates --------------------------------------------------------
def _mtls_cfg(tls_etcd, pki) -> dict:
    """The TLS etcd with the right CA and client certificate."""
    return {
        "type": "etcd",
        "endpoints": [tls_etcd.endpoint],
        "prefix": "/fne-mtls/",
        "caFile": pki["ca"],
        "certFile": pki["client_cert"],
        "keyFile": pki["client_key"],
    }


def test_mtls_with_the_right_ca_and_client_certificate_allocates(tls_etcd, pki) -> None:
    cfg = _mtls_cfg(tls_etcd, pki)
    assert _allocate(cfg).startswith("198.18.120.")
    assert "fne-mtls" in tls_etcd.etcdctl("get", "--prefix", "/fne-mtls/", "--keys-only")


@pytest.mark.parametrize(
    "change, words",
    [
        ({"caFile": "other_ca"}, ["is not trusted by caFile", "other-ca.crt", "set ipam.store.caFile"]),
        ({"certFile": None, "keyFile": None}, ["requires a client certificate", "certFile"]),
        ({"certFile": "stranger_cert", "keyFile": "stranger_key"}, ["rejected the client certificate", "stranger.crt"]),
    ],
)
def test_mtls_refusals_name_the_setting(tls_etcd, pki, change, words) -> None:
    cfg = _mtls_cfg(tls_etcd, pki)
    for k, v in change.items():
        if v is None:
            cfg.pop(k)
        else:
            cfg[k] = pki[v]
    err = _refused(cfg)
    for w in words:
        assert w in err.msg, err.msg


def test_http_endpoint_against_a_tls_etcd_hints_at_https(tls_etcd) -> None:
    url = tls_etcd.endpoint.replace("https://", "http://")
    with pytest.raises(StoreUnavailable) as info:  # etcd just hangs up: could be a restart
        _allocate({"type": "etcd", "endpoints": [url]})
    assert "use an https:// endpoint" in info.value.msg, info.value.msg


# ---- etcd users ------------------------------------------------------------------------
def test_auth_right_password_works_and_survives_an_etcd_restart(auth_etcd) -> None:
    server, d = auth_etcd
    cfg = {"type": "etcd", "endpoints": [server.endpoint], "prefix": "/fne-auth/", **_files(d, "root", PASSWORD)}
    store = open_store(cfg)
    try:
        ipam = Ipam(store)
        first = ipam.allocate([POOL], Owner("fne-a", "eth0"))[0]
        server.stop()  # simple tokens die with the member: the store must log in again
        server.start()
        second = ipam.allocate([POOL], Owner("fne-b", "eth0"))[0]
        assert first.address != second.address
    finally:
        store.close()


def test_auth_wrong_password_names_the_files_not_the_password(auth_etcd) -> None:
    server, d = auth_etcd
    files = _files(d, "root", PASSWORD + "-wrong")
    err = _refused({"type": "etcd", "endpoints": [server.endpoint], **files})
    assert "rejected the user name or password" in err.msg
    assert files["passwordFile"] in err.msg and "-wrong" not in err.msg + err.details


def test_auth_without_credentials_says_which_settings(auth_etcd) -> None:
    server, _ = auth_etcd
    err = _refused({"type": "etcd", "endpoints": [server.endpoint]})
    assert "requires authentication" in err.msg and "usernameFile" in err.msg, err.msg


def test_auth_user_without_a_role_is_told_to_grant_one(auth_etcd) -> None:
    server, d = auth_etcd
    err = _refused(
        {"type": "etcd", "endpoints": [server.endpoint], "prefix": "/fne-x/", **_files(d, "fne-norole", PASSWORD)}
    )
    assert "grant it a role" in err.msg and "/fne-x/" in err.msg, err.msg


# ---- the CNI paths -----------------------------------------------------------------------
def _conf(store: dict, sock: str | None = None) -> dict:
    conf = {
        "cniVersion": "1.1.0",
        "name": "fne-sec",
        "type": "flatnet",
        "master": "fne-none",
        "ipam": {"pools": [{"subnet": "198.18.121.0/24"}], "store": store},
    }
    if sock:
        conf["agentSocket"] = sock
    return conf


def _env(cid: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": f"/run/netns/{cid}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
    }


def test_agent_handler_answers_a_cni_error_naming_the_ca(tls_etcd, pki, tmp_path) -> None:
    dp = FakeDatapath()
    service = Service(node="fne-n1", lock_dir=str(tmp_path / "locks"), datapath_factory=lambda mode: dp)
    store = {
        "type": "etcd",
        "endpoints": [tls_etcd.endpoint],
        "caFile": pki["other_ca"],
        "certFile": pki["client_cert"],
        "keyFile": pki["client_key"],
    }
    out = io.StringIO()
    code = dispatch(service, _env("fne-c1"), json.dumps(_conf(store)).encode(), out, io.StringIO())
    res = json.loads(out.getvalue())
    assert code == 1 and res["code"] == INVALID_CONFIG, res
    assert "caFile" in res["msg"] and "not trusted" in res["msg"], res
    assert dp.attachments == {}


@pytest.fixture
def agent(tmp_path) -> Iterator[tuple[str, Path]]:
    """A real `flatnet agent` process on a socket in tmp (no kernel work is reached)."""
    sock, log = str(tmp_path / "fne-agent.sock"), tmp_path / "agent.log"
    argv = agent_argv(
        sock, node="fne-n1", lock_dir=str(tmp_path / "locks"), reconcile_every=0, state_dir=str(tmp_path / "state")
    )
    proc = spawn(argv, str(log), env=child_env())
    try:
        for _ in range(200):
            if os.path.exists(sock) or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert os.path.exists(sock), log.read_text()
        yield sock, log
    finally:
        stop_proc(proc, signal.SIGTERM, timeout=10)


def test_plugin_through_a_real_agent_names_the_password_file(auth_etcd, agent) -> None:
    server, d = auth_etcd
    sock, log = agent
    files = _files(d, "root", PASSWORD + "-wrong")
    store = {"type": "etcd", "endpoints": [server.endpoint], **files}
    res = subprocess.run(
        ["/opt/cni/bin/flatnet"],
        input=json.dumps(_conf(store, sock)),
        env={**os.environ, **_env("fne-c2")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode != 0, res.stdout
    err = json.loads(res.stdout)
    assert err["code"] == INVALID_CONFIG, err
    assert "rejected the user name or password" in err["msg"] and files["passwordFile"] in err["msg"]
    everything = res.stdout + res.stderr + log.read_text()
    assert PASSWORD not in everything, "the password leaked into an answer or a log line"


# ---- several endpoints -------------------------------------------------------------------
class Silent:
    """Accepts connections and never answers: a member that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: connection refused


def test_failover_skips_dead_and_hanging_members(etcd_shared, etcd_prefix) -> None:
    silent = Silent()
    try:
        cfg = {
            "type": "etcd",
            "endpoints": [_dead_url(), silent.url, etcd_shared.endpoint],
            "prefix": etcd_prefix,
            "timeout": 1,
        }
        store = open_store(cfg)
        try:
            ipam = Ipam(store)
            got = [ipam.allocate([POOL], Owner(f"fne-f{i}", "eth0"))[0] for i in range(30)]
            assert len({l.address for l in got}) == 30
            # the hanging member cost one call's timeout, then was put last: the other 29
            # allocations (~90 calls) never waited on it again
            assert len(silent.accepted) == 1, len(silent.accepted)
            # every call of the first allocation went past the dead member, the hanging one
            # once: what flatnet_store_internal_retries_total exports
            assert store.retries >= 2, store.retries
        finally:
            store.close()
    finally:
        silent.close()
