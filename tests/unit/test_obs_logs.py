"""No secret in a log line or an error message; the metrics address is checked up front."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest

from flatnet.errors import ConfigError
from flatnet.obs.http import parse_address
from flatnet.obs.logs import redact, remember_config_secrets, setup_logging
from tests.helpers.cli import flatnet_cli

SECRET = "fno-Pa55w0rd-7c1e"
FILE_SECRET = "fno-from-a-file-93b2"


def _add_request(stdin: str) -> bytes:
    """The agent request a forwarder sends for ``CNI_COMMAND=ADD`` with ``stdin``."""
    return json.dumps(
        {
            "v": 1,
            "stdin": stdin,
            "env": {
                "CNI_COMMAND": "ADD",
                "CNI_CONTAINERID": "c1",
                "CNI_IFNAME": "eth0",
                "CNI_NETNS": "/run/netns/x",
                "CNI_PATH": "/bin",
            },
        }
    ).encode()


def test_known_and_secret_looking_values_are_masked(tmp_path: Path) -> None:
    pw_file = tmp_path / "etcd-password"
    pw_file.write_text(FILE_SECRET + "\n")
    remember_config_secrets(
        {"type": "etcd", "username": "flatnet", "password": SECRET, "tls": {"passwordFile": str(pw_file)}}
    )
    text = redact(f"cannot log in as flatnet with {SECRET}; file said {FILE_SECRET} ({pw_file})")
    assert SECRET not in text and FILE_SECRET not in text
    assert str(pw_file) in text  # the path to a secret is no secret
    assert "s3" not in redact('{"client_secret": "s3kr1t-xyz", "token": "abc.def"}')
    assert "abc.def" not in redact("token=abc.def&x=1")
    assert "hunter2" not in redact("http://root:hunter2@127.0.0.1:2379/v3/kv")
    assert redact("pool flat-v4 has 3 free addresses") == "pool flat-v4 has 3 free addresses"


def test_agent_never_logs_or_answers_a_store_password(tmp_path: Path) -> None:
    """A store that fails with its config in the message: the log and the answer are masked."""
    from flatnet.agent.server import AgentServer
    from flatnet.agent.service import Service
    from flatnet.datapath.fake import FakeDatapath
    from flatnet.errors import StoreUnavailable
    from flatnet.obs.agent import instrument
    from flatnet.obs.metrics import AgentMetrics
    from flatnet.obs.store import instrumented_factory

    def leaky_open(cfg: dict) -> None:
        raise StoreUnavailable(
            f"etcd login failed with config {json.dumps(cfg)} at http://flatnet:{cfg['password']}@127.0.0.1:1/"
        )

    metrics = AgentMetrics()
    factory = instrumented_factory(metrics, opener=leaky_open)  # type: ignore[arg-type]
    default_store = {"type": "etcd", "endpoints": ["http://127.0.0.1:1"], "password": "fno-NeverSeen-5d1"}
    svc = Service(
        node="n1",
        lock_dir=str(tmp_path / "locks"),
        store_factory=factory,
        default_store=default_store,
        datapath_factory=lambda m: FakeDatapath(masters={"vlan100"}),
    )
    server = AgentServer(str(tmp_path / "run" / "a.sock"), svc, allowed_uids=frozenset({os.getuid()}), metrics=metrics)
    instrument(server, svc)
    stdin = json.dumps(
        {
            "cniVersion": "1.1.0",
            "name": "fno-net",
            "type": "flatnet",
            "master": "vlan100",
            "ipam": {"pools": [{"name": "p", "subnet": "198.18.7.0/29"}]},
        }
    )
    for fmt in ("json", "text"):
        buf = io.StringIO()
        handler = setup_logging(fmt, logging.INFO, buf)
        try:
            reply = server.handle_bytes(_add_request(stdin))
        finally:
            logging.getLogger().removeHandler(handler)
        assert reply["exit"] == 1 and "etcd login failed" in reply["stdout"]
        assert "fno-NeverSeen-5d1" not in reply["stdout"]
        assert "etcd login failed" in buf.getvalue()
        assert "fno-NeverSeen-5d1" not in buf.getvalue(), buf.getvalue()
    server.server_close()


def test_etcd_credential_files_never_reach_a_log_or_answer(tmp_path: Path) -> None:
    """The real etcd store, configured with credential files, failing to reach its endpoint."""
    from flatnet.agent.server import AgentServer
    from flatnet.agent.service import Service
    from flatnet.datapath.fake import FakeDatapath
    from flatnet.obs.agent import instrument
    from flatnet.obs.metrics import AgentMetrics
    from flatnet.obs.store import instrumented_factory

    (tmp_path / "user").write_text("flatnet\n")
    (tmp_path / "password").write_text("fno-EtcdPass-4a7e\n")
    (tmp_path / "client.key").write_text(
        "-----BEGIN PRIVATE KEY-----\nfnoKEYBODYLINE0123456789\n-----END PRIVATE KEY-----\n"
    )
    store = {
        "type": "etcd",
        "endpoints": ["https://127.0.0.1:1"],
        "timeout": 1,
        "usernameFile": str(tmp_path / "user"),
        "passwordFile": str(tmp_path / "password"),
        "keyFile": str(tmp_path / "client.key"),
        "certFile": str(tmp_path / "client.key"),
    }
    metrics = AgentMetrics()
    svc = Service(
        node="n1",
        lock_dir=str(tmp_path / "locks"),
        store_factory=instrumented_factory(metrics),
        datapath_factory=lambda m: FakeDatapath(masters={"vlan100"}),
    )
    server = AgentServer(str(tmp_path / "run" / "a.sock"), svc, allowed_uids=frozenset({os.getuid()}), metrics=metrics)
    instrument(server, svc)
    stdin = json.dumps(
        {
            "cniVersion": "1.1.0",
            "name": "fno-net",
            "type": "flatnet",
            "master": "vlan100",
            "ipam": {"pools": [{"name": "p", "subnet": "198.18.7.0/29"}], "store": store},
        }
    )
    buf = io.StringIO()
    handler = setup_logging("json", logging.DEBUG, buf)
    try:
        reply = server.handle_bytes(_add_request(stdin))
    finally:
        logging.getLogger().removeHandler(handler)
        server.server_close()
    assert reply["exit"] == 1, reply
    seen = reply["stdout"] + buf.getvalue()
    assert '"verb": "ADD"' in buf.getvalue()
    for secret in ("fno-EtcdPass-4a7e", "fnoKEYBODYLINE0123456789"):
        assert secret not in seen, seen


def test_cli_error_lines_mask_secrets() -> None:
    proc = flatnet_cli(
        "ipam",
        "ls",
        "--store",
        "etcd:http://root:fno-CliSecret-11@127.0.0.1:1",
        check=False,
    )
    assert proc.returncode != 0
    assert "fno-CliSecret-11" not in proc.stderr + proc.stdout, proc.stderr


@pytest.mark.parametrize(
    "text,want",
    [("127.0.0.1:9631", ("127.0.0.1", 9631)), ("[::]:0", ("::", 0)), ("198.18.100.11:1", ("198.18.100.11", 1))],
)
def test_metrics_address_parses(text: str, want: tuple[str, int]) -> None:
    assert parse_address(text) == want


@pytest.mark.parametrize("text", ["9631", "localhost:9631", "1.2.3.4:99999", "1.2.3.4:", ":9631"])
def test_metrics_address_errors_name_the_fix(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_address(text)
    assert "--metrics-address" in err.value.msg and "e.g." in err.value.details


def test_agent_refuses_a_bad_metrics_address_before_starting(tmp_path: Path) -> None:
    proc = flatnet_cli(
        "agent",
        "--socket",
        str(tmp_path / "a.sock"),
        "--store",
        "memory",
        "--metrics-address",
        "nohost",
        check=False,
    )
    assert proc.returncode != 0 and "--metrics-address" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "a.sock").exists()
