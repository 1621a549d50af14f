"""bridge mode's VLAN-aware shape: one bridge with vlan_filtering, the NIC a trunk port.

Where the kernel has bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING, as Debian's stock
kernel does), a node needs one bridge however many VLANs its pods use, as a real switch
would have: the node's NIC (``master``) is a trunk port carrying each pods' VLAN tagged, and
a pod's veth port is an access port, untagged in its VLAN (PVID) and in no other, so the
bridge itself drops anything a pod sends tagged, before the anti-spoofing rules even look.
The node's own address stays untagged on the bridge (VLAN 1, the default PVID).

Without VLAN filtering (this project's development machines) bridge mode keeps its older
shape: one plain bridge per VLAN, ``fnbr<vlan>``, holding the 802.1Q sub-interface
``<master>.<vlan>`` (datapath/bridge.py). Which shape a node has is decided when its bridge
is created and read back afterwards: a bridge made plain stays plain.
"""

from __future__ import annotations

import errno


from flatnet.datapath.rtnl import Handle, NetlinkError
from flatnet.datapath import links
from flatnet.datapath.links import LinkInfo

DEFAULT_VID = 1  # the bridge's default PVID: what untagged frames of the node's NIC belong to
_NO_FILTERING = (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL)


def filtering(ip: Handle, bridge: LinkInfo) -> bool:
    """True when ``bridge`` has vlan_filtering on."""
    found = ip.get_link(bridge.index)  # the short path reads a bridge's vlan_filtering
    return bool(found is not None and found.vlan_filtering)


def _create_filtering(ip: Handle, name: str) -> bool:
    """Try to create bridge ``name`` with vlan_filtering; False (nothing made) if the kernel
    cannot. Not through links.ensure: its EOPNOTSUPP means "no bridge at all" there."""
    try:
        ip.pyroute2().link("add", ifname=name, kind="bridge", br_vlan_filtering=1)
    except NetlinkError as exc:
        if exc.code in _NO_FILTERING:
            return False
        if exc.code != errno.EEXIST:
            raise
    return True


def ensure_aware(ip: Handle, name: str) -> bool:
    """True if bridge ``name`` is (or could now be made) VLAN-aware; nothing made otherwise."""
    found = links.find(ip, name)
    if found is not None:
        return filtering(ip, found)
    return _create_filtering(ip, name)


def ensure(ip: Handle, name: str) -> tuple[LinkInfo, bool]:
    """Bridge ``name`` (up), made VLAN-aware if the kernel allows; (bridge, has vlan_filtering).

    An existing bridge is taken as it is (its shape was chosen when it was made).
    """
    found = links.find(ip, name)
    if found is None:
        _create_filtering(ip, name)
    bridge, _ = links.ensure(ip, "bridge", name)  # plain if the above made nothing; up
    return bridge, filtering(ip, bridge)


def trunk(ip: Handle, port: LinkInfo, vid: int) -> None:
    """Let ``port`` (the uplink) carry VLAN ``vid`` tagged (idempotent)."""
    _vlan(ip, "add", port.index, vid, access=False)


def access(ip: Handle, port: LinkInfo, vid: int) -> None:
    """Make ``port`` (a pod's veth) an access port: untagged in ``vid`` only."""
    _vlan(ip, "add", port.index, vid, access=True)
    if vid != DEFAULT_VID:
        try:
            _vlan(ip, "del", port.index, DEFAULT_VID, access=True)
        except NetlinkError as exc:
            if exc.code != errno.ENOENT:
                raise


def _vlan(ip: Handle, command: str, index: int, vid: int, access: bool) -> None:
    info: dict[str, object] = {"vid": vid}
    if access:
        info["flags"] = ["pvid", "untagged"]
    ip.pyroute2().vlan_filter(command, index=index, vlan_info=info)
