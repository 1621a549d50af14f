"""``rtnl.Handle`` leaves a namespace exactly as pyroute2 does, and fails the same way.

Two fresh network namespaces get the same script of link, address and route calls: one
through the short path (``netns.open_ipr``), one through pyroute2's ``IPRoute``. Then both are
read back with pyroute2 and compared; every call of the script must have taken the short path.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from typing import Any, Callable, Iterator

import pytest

from flatnet.datapath import links, netns
from flatnet.datapath.rtnl import NetlinkError

MAC = "02:00:5e:00:53:07"


@pytest.fixture
def two_netns() -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:6]
    names = (f"fnrt-{tag}-a", f"fnrt-{tag}-b")
    try:
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True, timeout=15)
        yield tuple(f"/run/netns/{n}" for n in names)  # type: ignore[misc]
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, timeout=15)


def script(ip: Any) -> None:
    """The calls a pod ADD and DEL make, with every argument shape the datapath uses."""
    ip.link("add", ifname="p0", kind="veth", mtu=1450, peer={"ifname": "p1", "mtu": 1450})
    p0 = ip.link("get", ifname="p0")[0]["index"]
    p1 = ip.link("get", ifname="p1")[0]["index"]
    ip.link("set", index=p0, state="up")
    ip.link("set", index=p1, state="up")
    ip.link("add", ifname="m0", kind="macvlan", link=p0, macvlan_mode="bridge", mtu=1400, address=MAC)
    m0 = ip.link("get", index=ip.link("get", ifname="m0")[0]["index"])[0]["index"]
    ip.link("set", index=m0, ifname="eth7")
    ip.link("set", index=m0, mtu=1300)
    ip.link("set", index=m0, state="up")
    ip.link("add", ifname="m1", kind="macvlan", link=p0, macvlan_mode="bridge")
    ip.link("del", index=ip.link("get", ifname="m1")[0]["index"])
    ip.addr("add", index=m0, address="198.18.5.1", prefixlen=24, broadcast="198.18.5.255")
    ip.addr("add", index=m0, address="198.18.9.9", prefixlen=32)
    ip.addr("add", index=m0, address="2001:db8:5::1", prefixlen=64, flags=2)
    ip.route("add", dst="198.18.6.0/24", oif=m0, scope=253)
    ip.route("add", dst="0.0.0.0/0", oif=m0, gateway="198.18.5.254")
    ip.route("add", dst="198.18.64.0/24", oif=m0, gateway="198.18.77.1", flags=4)  # onlink
    ip.route("add", dst="198.18.65.0/24", oif=m0, gateway="198.18.5.254", priority=50, prefsrc="198.18.5.1")
    ip.route("add", dst="::/0", oif=m0, gateway="2001:db8:5::fe")
    for host in ("198.18.7.1/32", "198.18.7.2/32"):
        ip.route("replace", dst=host, oif=p1, proto=201, scope=253)
    ip.route("replace", dst="2001:db8:7::1/128", oif=p1, proto=201)
    ip.route("replace", dst="2001:db8:7::2/128", oif=p1, proto=201)
    ip.route("del", dst="198.18.7.2/32", proto=201, table=254, scope=253)
    ip.route("del", dst="2001:db8:7::2/128", proto=201, table=254)
    ip.route("del", dst="198.18.6.0/24", oif=m0, scope=253)
    ip.neigh("add", dst="2001:db8:5::9", ifindex=p1, flags=0x08)  # proxy NDP (the shim's)
    for dst, fam in (("198.18.7.1", 2), ("198.18.7.3", 2), ("2001:db8:7::1", 10)):
        ip.neigh("replace", dst=dst, lladdr=MAC, ifindex=p1, state=0x80, family=fam)
    ip.neigh("replace", dst="198.18.7.1", lladdr="02:00:5e:00:53:08", ifindex=p1, state=0x80, family=2)
    for msg in ip.neigh("dump", family=2):
        if msg.get("dst") == "198.18.7.3" and msg.get("state") & 0x80:
            ip.neigh("del", dst="198.18.7.3", ifindex=msg.get("ifindex"), family=2)


def state(path: str) -> dict[str, Any]:
    """What a namespace holds, read by pyroute2, with link indexes replaced by names."""
    with netns._pyroute2(path) as ip:
        names = {m["index"]: m.get("ifname") for m in ip.link("dump")}
        got: dict[str, Any] = {
            "links": sorted(
                (  # repr: None and text sort together
                    (
                        m.get("ifname"),
                        m.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
                        m.get("mtu"),
                        m["flags"] & 1,
                        names.get(m.get("link")) if m.get("ifname") != "lo" else None,
                    )
                    for m in ip.link("dump")
                ),
                key=repr,
            ),
            "mac": [m.get("address") for m in ip.link("dump") if m.get("ifname") == "eth7"],
            "addrs": sorted(
                (
                    (
                        names[m["index"]],
                        m["family"],
                        m["prefixlen"],
                        m["scope"],
                        m.get("address"),
                        m.get("broadcast"),
                        m.get("flags"),
                    )
                    for m in ip.addr("dump")
                    if not str(m.get("address")).startswith("fe80")
                ),
                key=repr,
            ),
            "routes": sorted(
                (
                    (
                        m["family"],
                        m.get("dst"),
                        m["dst_len"],
                        m["proto"],
                        m["scope"],
                        m["type"],
                        m["flags"],
                        names.get(m.get("oif")),
                        m.get("gateway"),
                        m.get("priority"),
                        m.get("prefsrc"),
                    )
                    for m in ip.route("dump", table=254)
                ),
                key=repr,
            ),
            "neigh": sorted(
                (m["family"], m.get("dst"), m.get("lladdr"), m["state"], names.get(m["ifindex"]))
                for m in ip.neigh("dump")
                if m["state"] & 0x80
            ),
        }
    ns = os.path.basename(path)
    proxies = subprocess.run(
        ["ip", "-n", ns, "-6", "neigh", "show", "proxy"], capture_output=True, text=True, timeout=15
    )
    got["proxies"] = proxies.stdout.split()
    return got


def test_short_path_leaves_what_pyroute2_leaves(two_netns: tuple[str, str]) -> None:
    fast_ns, slow_ns = two_netns
    handle = netns.open_ipr(fast_ns)
    try:
        script(handle)
        assert handle.counts["slow"] == 0, "every call of a pod ADD/DEL takes the short path"
        assert handle.counts["fast"] > 20
    finally:
        handle.close()
    with netns._pyroute2(slow_ns) as ip:
        script(ip)
    fast, slow = state(fast_ns), state(slow_ns)
    assert fast == slow
    assert fast["mac"] == [MAC] and ("eth7", "macvlan", 1300, 1, "p0") in fast["links"]
    assert any(r[1] == "198.18.7.1" and r[3] == 201 for r in fast["routes"])
    assert not any(r[1] in ("198.18.7.2", "2001:db8:7::2", "198.18.6.0") for r in fast["routes"])
    assert [n[1:3] for n in fast["neigh"] if n[0] == 2] == [("198.18.7.1", "02:00:5e:00:53:08")]
    assert "2001:db8:5::9" in fast["proxies"]


def _errno(call: Callable[[], Any]) -> int:
    with pytest.raises(NetlinkError) as exc:
        call()
    return int(exc.value.code)


def test_errors_and_reads_match_pyroute2(two_netns: tuple[str, str]) -> None:
    fast_ns, _ = two_netns
    handle = netns.open_ipr(fast_ns)
    try:
        handle.link("add", ifname="p0", kind="veth", peer={"ifname": "p1"})
        assert _errno(lambda: handle.link("get", ifname="nope0")) == errno.ENODEV
        assert links.find(handle, "nope0") is None  # what the datapath builds on
        assert _errno(lambda: handle.link("add", ifname="p0", kind="veth", peer={"ifname": "p2"})) == errno.EEXIST
        assert _errno(lambda: handle.link("del", index=9999)) == errno.ENODEV
        assert _errno(lambda: handle.route("del", dst="198.18.99.0/24", proto=201, table=254)) == errno.ESRCH
        index = links.lookup(handle, "p0")
        assert index is not None
        handle.addr("add", index=index, address="198.18.5.1", prefixlen=24)
        assert _errno(lambda: handle.addr("add", index=index, address="198.18.5.1", prefixlen=24)) == errno.EEXIST
        assert handle.counts["slow"] == 0
        with netns._pyroute2(fast_ns) as ip:
            for mine, theirs in zip(handle.link("dump"), ip.link("dump"), strict=True):
                assert links._info(mine) == links._info(theirs)
                assert mine.get("operstate") == theirs.get("operstate")  # decoded by pyroute2 on demand
                assert mine.get_attr("IFLA_IFNAME") == theirs.get_attr("IFLA_IFNAME")
            assert [(m.get("address"), m["prefixlen"]) for m in handle.addr("dump", index=index)] == [
                (m.get("address"), m["prefixlen"]) for m in ip.addr("dump", index=index)
            ]
        handle.link("add", ifname="br0", kind="bridge")  # not a pod call: pyroute2 makes it
        assert handle.counts["slow"] == 1 and links.find(handle, "br0") is not None
        handle.neigh("dump")  # anything else too, with pyroute2's errors translated:
        assert _errno(lambda: handle.link("add", ifname="br0", kind="bridge")) == errno.EEXIST
        assert _errno(lambda: handle.get_links(99999)) == errno.ENODEV
        # a bridge port's state, read here as pyroute2 reads it (bridge mode awaits forwarding)
        bridge, p1 = links.lookup(handle, "br0"), links.lookup(handle, "p1")
        assert bridge is not None and p1 is not None
        handle.link("set", index=index, master=bridge)
        for up in (bridge, p1, index):
            handle.link("set", index=up, state="up")
        assert links.await_forwarding(handle, index, timeout=5.0)
        port = ("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA", "IFLA_BRPORT_STATE")
        with netns._pyroute2(fast_ns) as ip:
            assert handle.link("get", index=index)[0].get_nested(*port) == ip.link("get", index=index)[0].get_nested(
                *port
            )
        assert handle.link("get", index=p1)[0].get_nested(*port) is None  # not a port
    finally:
        handle.close()
