"""``rtnl.Handle`` leaves a namespace exactly as pyroute2 does, and fails the same way.

Two fresh network namespaces get the same script of link, address, route and neighbour calls:
one through the handle's typed verbs (``netns.open_ipr``), one as the same calls to pyroute2's
``IPRoute``. Then both are read back with pyroute2 and compared; no call of the script may
have left the short path. What the verbs read (links, addresses, routes) is compared with
pyroute2's reading of the same namespace.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from typing import Any, Callable, Iterator

import pytest

from flatnet.datapath import links, netns, rtnl, rtnlreq
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


def script(h: rtnl.Handle) -> None:
    """The calls a pod ADD and DEL make, with every argument shape the datapath uses (the verbs)."""
    h.add_veth("p0", "p1", mtu=1450)
    p0, p1 = _index(h, "p0"), _index(h, "p1")
    h.set_link(p0, up=True)
    h.set_link(p1, up=True)
    h.add_child("macvlan", "m0", p0, mtu=1400, mac=MAC)
    m0 = _index(h, "m0")
    h.set_link(m0, name="eth7")
    h.set_link(m0, mtu=1300)
    h.set_link(m0, up=True)
    h.add_child("macvlan", "m1", p0)
    h.del_link(_index(h, "m1"))
    h.add_addr(m0, "198.18.5.1/24", broadcast="198.18.5.255")
    h.add_addr(m0, "198.18.9.9/32")
    h.add_addr(m0, "198.18.9.10/32")
    h.del_addr(m0, "198.18.9.10/32")
    h.add_addr(m0, "2001:db8:5::1/64", flags=2)
    h.add_route(rtnl.Route("198.18.6.0/24", oif=m0, scope=253))
    h.add_route(rtnl.Route("0.0.0.0/0", oif=m0, gateway="198.18.5.254"))
    h.add_route(rtnl.Route("198.18.64.0/24", oif=m0, gateway="198.18.77.1", flags=4))  # onlink
    h.add_route(rtnl.Route("198.18.65.0/24", oif=m0, gateway="198.18.5.254", priority=50, prefsrc="198.18.5.1"))
    h.add_route(rtnl.Route("::/0", oif=m0, gateway="2001:db8:5::fe"))
    for host in ("198.18.7.1/32", "198.18.7.2/32"):
        h.replace_route(rtnl.Route(host, oif=p1, proto=201, scope=253))
    h.replace_route(rtnl.Route("2001:db8:7::1/128", oif=p1, proto=201))
    h.replace_route(rtnl.Route("2001:db8:7::2/128", oif=p1, proto=201))
    h.del_route(rtnl.Route("198.18.7.2/32", proto=201, scope=253))
    h.del_route(rtnl.Route("2001:db8:7::2/128", proto=201))
    h.del_route(rtnl.Route("198.18.6.0/24", oif=m0, scope=253))
    h.add_neigh(rtnl.Neigh(p1, "2001:db8:5::9", flags=0x08))  # proxy NDP (the shim's)
    for dst in ("198.18.7.1", "198.18.7.3", "2001:db8:7::1"):
        h.replace_neigh(rtnl.Neigh(p1, dst, lladdr=MAC))
    h.replace_neigh(rtnl.Neigh(p1, "198.18.7.1", lladdr="02:00:5e:00:53:08"))
    for n in h.dump_neighs(2):
        if n.dst == "198.18.7.3" and n.state & 0x80:
            h.del_neigh(n.ifindex, n.dst)


def _index(h: rtnl.Handle, name: str) -> int:
    found = h.get_link(name)
    assert found is not None
    return found.index


def script_pyroute2(ip: Any) -> None:
    """``script`` as the same calls to pyroute2's ``IPRoute``."""
    ip.link("add", ifname="p0", kind="veth", mtu=1450, peer={"ifname": "p1", "mtu": 1450})
    p0 = ip.link("get", ifname="p0")[0]["index"]
    p1 = ip.link("get", ifname="p1")[0]["index"]
    ip.link("set", index=p0, state="up")
    ip.link("set", index=p1, state="up")
    ip.link("add", ifname="m0", kind="macvlan", link=p0, macvlan_mode="bridge", mtu=1400, address=MAC)
    m0 = ip.link("get", ifname="m0")[0]["index"]
    ip.link("set", index=m0, ifname="eth7")
    ip.link("set", index=m0, mtu=1300)
    ip.link("set", index=m0, state="up")
    ip.link("add", ifname="m1", kind="macvlan", link=p0, macvlan_mode="bridge")
    ip.link("del", index=ip.link("get", ifname="m1")[0]["index"])
    ip.addr("add", index=m0, address="198.18.5.1", prefixlen=24, broadcast="198.18.5.255")
    ip.addr("add", index=m0, address="198.18.9.9", prefixlen=32)
    ip.addr("add", index=m0, address="198.18.9.10", prefixlen=32)
    ip.addr("del", index=m0, address="198.18.9.10", prefixlen=32)
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
    ip.neigh("add", dst="2001:db8:5::9", ifindex=p1, flags=0x08)
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
        with rtnl.watch() as tally:
            script(handle)
        assert handle.counts["pyroute2"] == 0 and tally.escapes == [], (
            "a pod ADD/DEL's calls never leave the short path"
        )
        assert handle.counts["short"] > 20 and tally.short == handle.counts["short"]
        with netns._pyroute2(fast_ns) as ip:  # the neighbour verbs read what pyroute2 reads
            mine = [
                (n.family, n.ifindex, n.dst, n.lladdr, n.state) for n in handle.dump_neighs() if n.family in (2, 10)
            ]
            theirs = [
                (m["family"], m["ifindex"], m.get("dst"), m.get("lladdr"), m["state"])
                for m in ip.neigh("dump")
                if m["family"] in (2, 10)
            ]
            assert sorted(mine, key=repr) == sorted(theirs, key=repr) and len(mine) >= 2
    finally:
        handle.close()
    with netns._pyroute2(slow_ns) as ip:
        script_pyroute2(ip)
    fast, slow = state(fast_ns), state(slow_ns)
    assert fast == slow
    assert fast["mac"] == [MAC] and ("eth7", "macvlan", 1300, 1, "p0") in fast["links"]
    assert any(r[1] == "198.18.7.1" and r[3] == 201 for r in fast["routes"])
    assert not any(r[1] in ("198.18.7.2", "2001:db8:7::2", "198.18.6.0") for r in fast["routes"])
    assert not any(a[4] == "198.18.9.10" for a in fast["addrs"])
    assert [n[1:3] for n in fast["neigh"] if n[0] == 2] == [("198.18.7.1", "02:00:5e:00:53:08")]
    assert "2001:db8:5::9" in fast["proxies"]


def _errno(call: Callable[[], Any]) -> int:
    with pytest.raises(NetlinkError) as exc:
        call()
    return int(exc.value.code)


def _pyroute2_link(m: Any) -> rtnl.LinkInfo:
    """pyroute2's reading of a link message, as the verbs' ``LinkInfo``."""
    data = m.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
    kind = m.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    return rtnl.LinkInfo(
        index=m["index"],
        name=m.get("ifname"),
        kind=kind,
        mtu=m.get("mtu"),
        mac=m.get("address") or "",
        master=m.get("master") or None,
        up=bool(m["flags"] & 1),
        parent=m.get("link"),
        port_state=m.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA", "IFLA_BRPORT_STATE"),
        vlan_filtering=bool(data.get("IFLA_BR_VLAN_FILTERING")) if kind == "bridge" else None,
    )


def test_errors_and_reads_match_pyroute2(two_netns: tuple[str, str]) -> None:
    fast_ns, _ = two_netns
    handle = netns.open_ipr(fast_ns)
    try:
        handle.add_veth("p0", "p1")
        assert _errno(lambda: handle.request(rtnlreq.get_link(name="nope0"))) == errno.ENODEV
        assert handle.get_link("nope0") is None and links.find(handle, "nope0") is None
        assert _errno(lambda: handle.add_veth("p0", "p2")) == errno.EEXIST
        assert _errno(lambda: handle.del_link(9999)) == errno.ENODEV
        assert _errno(lambda: handle.del_route(rtnl.Route("198.18.99.0/24", proto=201))) == errno.ESRCH
        assert _errno(lambda: handle.del_addr(9999, "198.18.5.1/24")) in (errno.ENODEV, errno.EADDRNOTAVAIL)
        index = _index(handle, "p0")
        handle.set_link(index, up=True)
        handle.set_link(_index(handle, "p1"), up=True)
        handle.add_addr(index, "198.18.5.1/24")
        assert _errno(lambda: handle.add_addr(index, "198.18.5.1/24")) == errno.EEXIST
        handle.add_route(rtnl.Route("198.18.6.0/24", oif=index, gateway="198.18.5.9", priority=7))
        assert handle.counts["pyroute2"] == 0
        with netns._pyroute2(fast_ns) as ip:
            assert handle.dump_links() == [_pyroute2_link(m) for m in ip.link("dump")]
            assert [(a.address, a.prefixlen, a.scope) for a in handle.dump_addrs(index)] == [
                (m.get("address"), m["prefixlen"], m["scope"]) for m in ip.addr("dump", index=index)
            ]
            mine = [
                (r.dst, r.oif, r.gateway, r.priority, r.proto, r.scope) for r in handle.dump_routes() if r.table == 254
            ]
            theirs = [
                (f"{m.get('dst') or '0.0.0.0'}/{m['dst_len']}", m.get("oif"), m.get("gateway"), m.get("priority"))
                + (m["proto"], m["scope"])
                for m in ip.route("dump", table=254)
            ]
            assert mine == theirs and any(r[0] == "198.18.6.0/24" and r[3] == 7 for r in mine)
        # what the verbs do not make is asked of pyroute2 by name, counted, errors translated
        with rtnl.watch() as tally:
            handle.pyroute2().link("add", ifname="br0", kind="bridge")  # vlan_filtering: not here
            assert _errno(lambda: handle.pyroute2().link("add", ifname="br0", kind="bridge")) == errno.EEXIST
            assert _errno(lambda: handle.pyroute2().get_links(99999)) == errno.ENODEV
        assert tally.escapes == ["link add", "link add", "get_links"] and handle.counts["pyroute2"] == 3
        assert not hasattr(handle, "link") and not hasattr(handle, "get_links"), "no silent fallback to pyroute2"
        # a bridge port's state and a bridge's vlan_filtering, read here as pyroute2 reads them
        bridge, p1 = _index(handle, "br0"), _index(handle, "p1")
        handle.set_link(index, master=bridge)
        for up in (bridge, p1, index):
            handle.set_link(up, up=True)
        assert links.await_forwarding(handle, index, timeout=5.0)
        with netns._pyroute2(fast_ns) as ip:
            for i in (index, bridge, p1):
                assert handle.get_link(i) == _pyroute2_link(ip.link("get", index=i)[0])
        port, br = handle.get_link(index), handle.get_link(bridge)
        assert port is not None and port.port_state == links.BR_STATE_FORWARDING and port.master == bridge
        assert br is not None and br.vlan_filtering is False and br.kind == "bridge"
        assert handle.get_link(p1) is not None and handle.get_link(p1).port_state is None  # type: ignore[union-attr]
    finally:
        handle.close()
