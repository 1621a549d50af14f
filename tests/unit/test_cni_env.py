"""parse_env: required variables per verb, spec charsets, CNI_ARGS."""

from __future__ import annotations

import ipaddress

import pytest

from flatnet.cni import parse_env
from flatnet.cni.env import REQUIRED, parse_cni_args
from flatnet.errors import EnvError

FULL = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c0ffee_1.a-b",
    "CNI_NETNS": "/run/netns/fnt-1",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
    "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=redis-0",
}


def env(**changes: str | None) -> dict[str, str]:
    out = dict(FULL)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def test_add_with_everything() -> None:
    cmd = parse_env(FULL)
    assert (cmd.command, cmd.container_id, cmd.netns, cmd.ifname) == ("ADD", "c0ffee_1.a-b", "/run/netns/fnt-1", "eth0")
    assert cmd.args == {"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "redis-0"}
    assert (cmd.pod_namespace, cmd.pod_name) == ("default", "redis-0")
    assert cmd.path_dirs == ["/opt/cni/bin", "/usr/lib/cni"]
    assert cmd.conf is None


@pytest.mark.parametrize("verb, var", [(verb, var) for verb, names in REQUIRED.items() for var in names])
def test_each_required_variable_is_named_when_missing(verb: str, var: str) -> None:
    with pytest.raises(EnvError) as info:
        parse_env(env(CNI_COMMAND=verb, **{var: None}))
    assert var in info.value.msg and verb in info.value.msg
    assert info.value.code == 4


def test_required_sets_follow_the_spec() -> None:
    assert set(REQUIRED["ADD"]) == set(REQUIRED["CHECK"]) == {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"}
    assert "CNI_NETNS" not in REQUIRED["DEL"]


def test_del_without_netns_is_fine() -> None:
    assert parse_env(env(CNI_COMMAND="DEL", CNI_NETNS="", CNI_PATH=None)).netns == ""


@pytest.mark.parametrize("verb", ["GC", "STATUS", "VERSION"])
def test_verbs_without_a_container_need_nothing_else(verb: str) -> None:
    cmd = parse_env({"CNI_COMMAND": verb, "CNI_IFNAME": "this is ignored"})
    assert cmd.command == verb and cmd.container_id == "" and cmd.ifname == ""


@pytest.mark.parametrize("command", ["", "add", "GET", "DELETE"])
def test_missing_or_unknown_command(command: str) -> None:
    with pytest.raises(EnvError, match="CNI_COMMAND") as info:
        parse_env(env(CNI_COMMAND=command))
    assert "ADD, DEL, CHECK, GC, STATUS, VERSION" in info.value.msg


@pytest.mark.parametrize("cid", ["-abc", "_abc", ".abc", "a b", "a/b", "a;b", "abc\n", "ä1"])
def test_container_id_charset(cid: str) -> None:
    with pytest.raises(EnvError, match="CNI_CONTAINERID"):
        parse_env(env(CNI_CONTAINERID=cid))


@pytest.mark.parametrize("name", [".", "..", "a" * 16, "et/h0", "eth:0", "eth 0", "eth\t0"])
def test_ifname_rules(name: str) -> None:
    with pytest.raises(EnvError, match="CNI_IFNAME"):
        parse_env(env(CNI_IFNAME=name))


def test_ifname_of_15_characters_is_allowed() -> None:
    assert parse_env(env(CNI_IFNAME="a" * 15)).ifname == "a" * 15


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", {}),
        ("IP=198.18.100.40", {"IP": "198.18.100.40"}),
        ("IgnoreUnknown=1;FOO=bar;", {"IgnoreUnknown": "1", "FOO": "bar"}),
        (
            "IgnoreUnknown=true;K8S_POD_UID=u-1;K8S_POD_INFRA_CONTAINER_ID=abc",
            {"IgnoreUnknown": "true", "K8S_POD_UID": "u-1", "K8S_POD_INFRA_CONTAINER_ID": "abc"},
        ),
    ],
)
def test_cni_args_parse(text: str, expected: dict[str, str]) -> None:
    assert parse_cni_args(text) == expected


@pytest.mark.parametrize(
    "text, where",
    [
        ("FOO", "malformed pair 'FOO'"),
        ("=x", "malformed pair '=x'"),
        ("A=b=c", "malformed pair 'A=b=c'"),
        ("FOO=bar", "key 'FOO' is unknown"),
        ("IgnoreUnknown=0;FOO=bar", "add IgnoreUnknown=1"),
        ("IgnoreUnknown=yes", "IgnoreUnknown='yes'"),
        ("IP=198.18.100.400", "CNI_ARGS IP has '198.18.100.400'"),
    ],
)
def test_cni_args_errors(text: str, where: str) -> None:
    with pytest.raises(EnvError) as info:
        parse_env(env(CNI_ARGS=text))
    assert where in info.value.msg and "CNI_ARGS" in info.value.msg


def test_env_ips_comma_separated_with_or_without_prefix() -> None:
    cmd = parse_env(env(CNI_ARGS="IP=198.18.100.40,2001:db8:100::1000/64"))
    assert cmd.env_ips() == [ipaddress.ip_address("198.18.100.40"), ipaddress.ip_interface("2001:db8:100::1000/64")]
    assert cmd.requested_ips() == cmd.env_ips()
