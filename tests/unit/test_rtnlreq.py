"""The short path's requests decode, with pyroute2's own message classes, to what was asked.

The kernel-backed check (``tests/integration/test_rtnl.py``) compares what each request leaves
in a namespace with what pyroute2's leaves; this one pins the encoding of each verb, and the reading of a reply.
"""

from __future__ import annotations

import socket

import pytest

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
    req = rq.add_child("macvlan", "tmp0", 7, mtu=1400, netns_fd=9)
    kind, flags, _ = req
    assert kind == rq.RTM_NEWLINK and flags == rq.F_REQUEST | rq.F_ACK | rq.F_CREATE | rq.F_EXCL
    msg = _decode(ifinfmsg, req)
    assert msg.get("ifname") == "tmp0" and msg.get("link") == 7 and msg.get("mtu") == 1400  # type: ignore[attr-defined]
    assert msg.get("net_ns_fd") == 9  # type: ignore[attr-defined]
    assert msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "macvlan"  # type: ignore[attr-defined]
    data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")  # type: ignore[attr-defined]
    assert data.get("IFLA_MACVLAN_MODE") == "bridge"  # MACVLAN_MODE_BRIDGE, 4, as pyroute2 reads it


def test_ipvlan_child_in_l2_mode() -> None:
    msg = _decode(ifinfmsg, rq.add_child("ipvlan", "tmp1", 3, mtu=1500))
    assert msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "ipvlan"  # type: ignore[attr-defined]
    assert msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA").get("IFLA_IPVLAN_MODE") == 0  # type: ignore[attr-defined]
    assert msg.get("address") is None  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        rq.add_child("bridge", "br0", 3)  # type: ignore[arg-type]


def test_veth_peer_and_link_set() -> None:
    req = rq.add_veth("h0", "p0", mtu=1450, peer_netns_fd=11)
    peer = _decode(ifinfmsg, req).get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA").get("VETH_INFO_PEER")  # type: ignore[attr-defined]
    assert peer.get("ifname") == "p0" and peer.get("mtu") == 1450 and peer.get("net_ns_fd") == 11
    up = rq.set_link(5, up=True, name="eth0", mac="02:00:00:00:00:07")
    msg = _decode(ifinfmsg, up)
    assert msg["index"] == 5 and msg["flags"] & 1 and msg["change"] & 1  # type: ignore[index]
    assert msg.get("ifname") == "eth0" and msg.get("address") == "02:00:00:00:00:07"  # type: ignore[attr-defined]
    master = _decode(ifinfmsg, rq.set_link(5, master=9))
    assert master.get("master") == 9 and master["change"] == 0  # type: ignore[attr-defined,index]
    down = _decode(ifinfmsg, rq.set_link(5, up=False))
    assert down["flags"] & 1 == 0 and down["change"] & 1  # type: ignore[index]


def test_addresses_as_pyroute2_sends_them() -> None:
    v4 = rq.add_addr(3, "198.18.5.1", 24, broadcast="198.18.5.255")
    msg = _decode(ifaddrmsg, v4)
    assert (msg["family"], msg["prefixlen"], msg["index"]) == (socket.AF_INET, 24, 3)  # type: ignore[index]
    assert msg.get("address") == msg.get("local") == "198.18.5.1"  # type: ignore[attr-defined]
    assert msg.get("broadcast") == "198.18.5.255"  # type: ignore[attr-defined]
    v6 = rq.add_addr(3, "2001:db8::1", 64, flags=2)
    msg = _decode(ifaddrmsg, v6)
    assert msg["family"] == socket.AF_INET6 and msg.get("flags") == 2 and msg.get("local") is None  # type: ignore[index,attr-defined]
    gone = rq.del_addr(3, "198.18.5.1", 24)
    assert gone[0] == rq.RTM_DELADDR and not gone[1] & rq.F_CREATE
    msg = _decode(ifaddrmsg, gone)
    assert msg.get("address") == msg.get("local") == "198.18.5.1" and msg["prefixlen"] == 24  # type: ignore[attr-defined,index]


def test_routes_as_pyroute2_sends_them() -> None:
    host = rq.route("replace", "198.18.7.1/32", oif=4, proto=201, scope=253)
    assert host[1] & rq.F_REPLACE and not host[1] & rq.F_EXCL
    msg = _decode(rtmsg, host)
    assert (msg["dst_len"], msg["proto"], msg["scope"], msg["type"], msg["table"]) == (32, 201, 253, 1, 254)  # type: ignore[index]
    assert msg.get("dst") == "198.18.7.1" and msg.get("oif") == 4  # type: ignore[attr-defined]
    default = rq.route("add", "0.0.0.0/0", oif=4, gateway="198.18.5.254", flags=4)
    msg = _decode(rtmsg, default)
    assert msg["dst_len"] == 0 and msg.get("dst") is None and msg.get("gateway") == "198.18.5.254"  # type: ignore[index,attr-defined]
    assert msg["flags"] == 4 and msg["proto"] == rq.RTPROT_STATIC  # type: ignore[index]
    gone = rq.route("del", "2001:db8:1::1/128", proto=201)
    assert gone[0] == rq.RTM_DELROUTE
    msg = _decode(rtmsg, gone)
    assert (msg["family"], msg["type"], msg["scope"], msg.get("table")) == (socket.AF_INET6, 0, 0, 254)  # type: ignore[index,attr-defined]
    assert msg["proto"] == 201  # type: ignore[index]
    dump = _decode(rtmsg, rq.dump_routes(socket.AF_INET))
    assert dump["family"] == socket.AF_INET  # type: ignore[index]


def test_neighbours_as_pyroute2_sends_them() -> None:
    from pyroute2.netlink.rtnl.ndmsg import ndmsg

    static = rq.neigh("replace", 4, "198.18.7.1", lladdr="02:00:5e:00:53:07")
    assert static[1] & rq.F_REPLACE
    msg = _decode(ndmsg, static)
    assert (msg["family"], msg["ifindex"], msg["state"]) == (socket.AF_INET, 4, 0x80)  # type: ignore[index]
    assert msg.get("dst") == "198.18.7.1" and msg.get("lladdr") == "02:00:5e:00:53:07"  # type: ignore[attr-defined]
    proxy = rq.neigh("add", 4, "2001:db8::9", flags=0x08)
    assert proxy[1] & rq.F_EXCL
    msg = _decode(ndmsg, proxy)
    assert msg["family"] == socket.AF_INET6 and msg["flags"] == 0x08  # type: ignore[index]
    gone = _decode(ndmsg, rq.del_neigh(4, "2001:db8::9"))
    assert gone["family"] == socket.AF_INET6 and gone.get("dst") == "2001:db8::9"  # type: ignore[index,attr-defined]


def test_replies_read_as_pyroute2_reads_them() -> None:
    """A link message pyroute2 encodes, read back by the short path's parser."""
    from flatnet.datapath import rtnl

    msg = ifinfmsg()
    msg["index"], msg["flags"] = 12, 1
    msg["attrs"] = [
        ("IFLA_IFNAME", "eth0"),
        ("IFLA_MTU", 1400),
        ("IFLA_ADDRESS", "02:00:5e:00:53:07"),
        ("IFLA_MASTER", 3),
        ("IFLA_LINK", 2),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "macvlan")]}),
    ]
    msg.encode()
    link = rtnl._link(bytes(msg.data))
    assert link == rtnl.LinkInfo(12, "eth0", "macvlan", 1400, "02:00:5e:00:53:07", 3, True, parent=2)
