"""The short path's requests decode, with pyroute2's own message classes, to what was asked.

The kernel-backed check (``tests/integration/test_rtnl.py``) compares what each request leaves
in a namespace with what pyroute2's leaves; this one pins the encoding and the choice of path.
"""

from __future__ import annotations

import socket

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from flatnet.datapath import rtnlreq as rq


def _decode(cls: type, req: rq.Request) -> object:
    kind, flags, body = req
    raw = rq.NLMSGHDR.pack(rq.NLMSGHDR.size + len(body), kind, flags, 1, 0) + body
    msg = cls(raw)
    msg.decode()
    return msg


def test_macvlan_child_born_in_another_netns() -> None:
    req = rq.link_request(
        "add",
        {"ifname": "tmp0", "kind": "macvlan", "link": 7, "macvlan_mode": "bridge", "mtu": 1400, "net_ns_fd": 9},
    )
    assert req is not None
    kind, flags, _ = req
    assert kind == rq.RTM_NEWLINK and flags == rq.F_REQUEST | rq.F_ACK | rq.F_CREATE | rq.F_EXCL
    msg = _decode(ifinfmsg, req)
    assert msg.get("ifname") == "tmp0" and msg.get("link") == 7 and msg.get("mtu") == 1400  # type: ignore[attr-defined]
    assert msg.get("net_ns_fd") == 9  # type: ignore[attr-defined]
    assert msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "macvlan"  # type: ignore[attr-defined]
    data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")  # type: ignore[attr-defined]
    assert data.get("IFLA_MACVLAN_MODE") == "bridge"  # MACVLAN_MODE_BRIDGE, 4, as pyroute2 reads it


def test_veth_peer_and_link_set() -> None:
    req = rq.link_request("add", {"ifname": "h0", "kind": "veth", "mtu": 1450, "peer": {"ifname": "p0", "mtu": 1450}})
    assert req is not None
    peer = _decode(ifinfmsg, req).get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA").get("VETH_INFO_PEER")  # type: ignore[attr-defined]
    assert peer.get("ifname") == "p0" and peer.get("mtu") == 1450
    up = rq.link_request("set", {"index": 5, "state": "up", "ifname": "eth0", "address": "02:00:00:00:00:07"})
    assert up is not None
    msg = _decode(ifinfmsg, up)
    assert msg["index"] == 5 and msg["flags"] & 1 and msg["change"] & 1  # type: ignore[index]
    assert msg.get("ifname") == "eth0" and msg.get("address") == "02:00:00:00:00:07"  # type: ignore[attr-defined]


def test_addresses_as_pyroute2_sends_them() -> None:
    v4 = rq.addr_request("add", {"index": 3, "address": "198.18.5.1", "prefixlen": 24, "broadcast": "198.18.5.255"})
    assert v4 is not None
    msg = _decode(ifaddrmsg, v4)
    assert (msg["family"], msg["prefixlen"], msg["index"]) == (socket.AF_INET, 24, 3)  # type: ignore[index]
    assert msg.get("address") == msg.get("local") == "198.18.5.1"  # type: ignore[attr-defined]
    assert msg.get("broadcast") == "198.18.5.255"  # type: ignore[attr-defined]
    v6 = rq.addr_request("add", {"index": 3, "address": "2001:db8::1", "prefixlen": 64, "flags": 2})
    assert v6 is not None
    msg = _decode(ifaddrmsg, v6)
    assert msg["family"] == socket.AF_INET6 and msg.get("flags") == 2 and msg.get("local") is None  # type: ignore[index,attr-defined]


def test_routes_as_pyroute2_sends_them() -> None:
    host = rq.route_request("replace", {"dst": "198.18.7.1/32", "oif": 4, "proto": 201, "scope": 253})
    assert host is not None and host[1] & rq.F_REPLACE and not host[1] & rq.F_EXCL
    msg = _decode(rtmsg, host)
    assert (msg["dst_len"], msg["proto"], msg["scope"], msg["type"], msg["table"]) == (32, 201, 253, 1, 254)  # type: ignore[index]
    assert msg.get("dst") == "198.18.7.1" and msg.get("oif") == 4  # type: ignore[attr-defined]
    default = rq.route_request("add", {"dst": "0.0.0.0/0", "oif": 4, "gateway": "198.18.5.254", "flags": 4})
    assert default is not None
    msg = _decode(rtmsg, default)
    assert msg["dst_len"] == 0 and msg.get("dst") is None and msg.get("gateway") == "198.18.5.254"  # type: ignore[index,attr-defined]
    assert msg["flags"] == 4 and msg["proto"] == rq.RTPROT_STATIC  # type: ignore[index]
    gone = rq.route_request("del", {"dst": "2001:db8:1::1/128", "proto": 201, "table": 254})
    assert gone is not None and gone[0] == rq.RTM_DELROUTE
    msg = _decode(rtmsg, gone)
    assert (msg["family"], msg["type"], msg["scope"], msg.get("table")) == (socket.AF_INET6, 0, 0, 254)  # type: ignore[index,attr-defined]


def test_what_the_short_path_leaves_to_pyroute2() -> None:
    assert rq.link_request("add", {"ifname": "br0", "kind": "bridge"}) is None
    assert rq.link_request("add", {"ifname": "m0", "kind": "macvlan", "link": 2, "macvlan_mode": "vepa"}) is None
    assert rq.link_request("add", {"ifname": "m0", "kind": "macvlan", "link": 2, "net_ns_fd": "/run/netns/x"}) is None
    assert rq.link_request("set", {"index": 2, "kind": "bridge", "br_vlan_filtering": 1}) is None
    assert rq.link_request("get", {"ifname": "eth0", "index": 2}) is None
    assert rq.addr_request("del", {"index": 2, "address": "198.18.0.1", "prefixlen": 24}) is None
    assert rq.route_request("dump", {"table": 254}) is None
    assert rq.route_request("add", {"dst": "198.18.0.0/24", "oif": 2, "table": 100}) is None
    assert rq.route_request("add", {"dst": "default", "oif": 2}) is None


def test_neighbours_as_pyroute2_sends_them() -> None:
    from pyroute2.netlink.rtnl.ndmsg import ndmsg

    static = rq.neigh_request(
        "replace", {"dst": "198.18.7.1", "lladdr": "02:00:5e:00:53:07", "ifindex": 4, "state": 0x80, "family": 2}
    )
    assert static is not None and static[1] & rq.F_REPLACE
    msg = _decode(ndmsg, static)
    assert (msg["family"], msg["ifindex"], msg["state"]) == (socket.AF_INET, 4, 0x80)  # type: ignore[index]
    assert msg.get("dst") == "198.18.7.1" and msg.get("lladdr") == "02:00:5e:00:53:07"  # type: ignore[attr-defined]
    proxy = rq.neigh_request("add", {"dst": "2001:db8::9", "ifindex": 4, "flags": 0x08})
    assert proxy is not None and proxy[1] & rq.F_EXCL
    msg = _decode(ndmsg, proxy)
    assert msg["family"] == socket.AF_INET6 and msg["flags"] == 0x08  # type: ignore[index]
    assert rq.neigh_request("dump", {"family": 10, "flags": 0x08}) is None  # a proxy dump: pyroute2's


def test_names_and_words_go_to_pyroute2() -> None:
    """pyroute2 takes words where the kernel wants numbers; the short path leaves those to it."""
    assert (
        rq.neigh_request("add", {"dst": "198.18.0.9", "ifindex": 2, "lladdr": "02:00:00:00:00:01", "state": "stale"})
        is None
    )
    assert rq.route_request("add", {"dst": "198.18.0.0/24", "oif": 2, "scope": "link"}) is None
    assert rq.route_request("add", {"dst": "198.18.0.0/24", "oif": 2, "proto": "static"}) is None
    assert rq.addr_request("add", {"index": "eth0", "address": "198.18.0.1", "prefixlen": 24}) is None
    assert rq.link_request("set", {"index": 2, "master": "br0"}) is None
