"""Kernel feature probes for ``flatnet doctor node``: try it for real, in a throwaway netns.

Reading /proc/config.gz or lsmod only hints at what the kernel can do (modules may be
missing from disk, configs may be absent); the only sure answer is to create the link.
Every probe runs inside a fresh namespace ``fnd-<hex>`` that is removed whatever happens,
so nothing ever appears in the node's own namespace. Parents for macvlan/ipvlan/vlan are
a veth pair made inside that namespace.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from pyroute2 import netns as pr_netns

from flatnet.datapath import kernel
from flatnet.datapath.netns import iproute, run_in
from flatnet.datapath.rtnl import Pyroute2

NFT = "/usr/sbin/nft"
#: what the doctor asks about (datapath/kernel.py); "bridge_vlan_filtering" is a bridge option
LINK_FEATURES = kernel.PROBED


@dataclass(frozen=True)
class ProbeResult:
    """``ok`` True/False for a definite answer; ``detail`` is the kernel's own words."""

    feature: str
    ok: bool
    detail: str = ""


@contextmanager
def throwaway_netns(prefix: str = "fnd-") -> Iterator[str]:
    """Create ``fnd-<6 hex>`` and always remove it, even if the body raises."""
    name = f"{prefix}{secrets.token_hex(3)}"
    pr_netns.create(name)
    try:
        yield name
    finally:
        try:
            pr_netns.remove(name)
        except OSError:
            pass


def _parent(ip: Pyroute2) -> int:
    """A veth pair inside the probe netns; returns the index of one end."""
    ip.link("add", ifname="fndp0", kind="veth", peer="fndp1")
    return int(ip.link_lookup(ifname="fndp0")[0])


def _try(ip: Pyroute2, feature: str, make: Callable[[Pyroute2], None]) -> ProbeResult:
    try:
        make(ip)
    except Exception as exc:  # noqa: BLE001 - any refusal is the answer we are after
        return ProbeResult(feature, False, _words(exc))
    return ProbeResult(feature, True, "created in a throwaway netns")


def _words(exc: BaseException) -> str:
    """NetlinkError prints as (95, 'Operation not supported'); keep it readable."""
    args: tuple[object, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return f"errno {args[0]}: {args[1]}"
    return f"{type(exc).__name__}: {exc}"


def _bridge_vlan_filtering(ip: Pyroute2) -> None:
    """Ask for vlan_filtering=1, then read it back: some kernels accept and ignore it."""
    ip.link("add", ifname="fndbrv", kind="bridge")
    idx = ip.link_lookup(ifname="fndbrv")[0]
    ip.link("set", index=idx, kind="bridge", br_vlan_filtering=1)
    link = ip.link("get", index=idx)[0]
    info = link.get_attr("IFLA_LINKINFO")
    data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
    value = data.get_attr("IFLA_BR_VLAN_FILTERING") if data is not None else None
    if value != 1:
        raise OSError(95, "bridge accepted vlan_filtering=1 but reports it off (CONFIG_BRIDGE_VLAN_FILTERING not set)")


def _makers(parent: int) -> dict[str, Callable[[Pyroute2], None]]:
    return {
        "macvlan": lambda ip: ip.link("add", ifname="fndmv", kind="macvlan", link=parent, macvlan_mode="bridge"),
        "ipvlan": lambda ip: ip.link("add", ifname="fndiv", kind="ipvlan", link=parent, ipvlan_mode=0),
        "vxlan": lambda ip: ip.link("add", ifname="fndvx", kind="vxlan", vxlan_id=4242, vxlan_port=4789),
        "8021q": lambda ip: ip.link("add", ifname="fndvl", kind="vlan", link=parent, vlan_id=100),
        "bridge": lambda ip: ip.link("add", ifname="fndbr", kind="bridge"),
        "bridge_vlan_filtering": _bridge_vlan_filtering,
    }


def probe_links(features: tuple[str, ...] = LINK_FEATURES) -> dict[str, ProbeResult]:
    """Try to create each link kind in a throwaway netns; feature -> result."""
    unknown = [f for f in features if f not in LINK_FEATURES]
    if unknown:
        raise ValueError(f"unknown features {unknown}; known: {', '.join(LINK_FEATURES)}")
    with throwaway_netns() as ns, iproute(ns) as ip:
        makers = _makers(_parent(ip))
        return {f: _try(ip, f, makers[f]) for f in features}


def probe_nftables(nft: str = NFT) -> ProbeResult:
    """The nft binary exists and the kernel accepts a table (inside a throwaway netns)."""
    if not os.access(nft, os.X_OK):
        return ProbeResult("nftables", False, f"{nft} not found")
    ruleset = "table inet fnd_probe {\n chain c { type filter hook input priority 0; }\n}\n"

    def apply() -> subprocess.CompletedProcess[str]:
        return subprocess.run([nft, "-f", "-"], input=ruleset, capture_output=True, text=True, timeout=10, check=False)

    with throwaway_netns() as ns:
        proc = run_in(ns, apply)
    if proc.returncode != 0:
        return ProbeResult("nftables", False, (proc.stderr or proc.stdout).strip()[:300])
    return ProbeResult("nftables", True, "table created in a throwaway netns")


def probe_netdev_egress(nft: str = NFT) -> ProbeResult:
    """nftables' netdev egress hook (Linux >= 5.16, CONFIG_NETFILTER_EGRESS): what every flat
    pod's first-hop filter hangs on (datapath/firsthop.py). Tried on a veth in a throwaway netns."""
    if not os.access(nft, os.X_OK):
        return ProbeResult("netdev-egress", False, f"{nft} not found")
    ruleset = (
        'table netdev fnd_probe {\n chain e { type filter hook egress device "fndp0" priority 0; '
        "policy accept; ether type != { ip, ip6, arp } drop; }\n}\n"
    )

    def apply() -> subprocess.CompletedProcess[str]:
        return subprocess.run([nft, "-f", "-"], input=ruleset, capture_output=True, text=True, timeout=10, check=False)

    with throwaway_netns() as ns:
        with iproute(ns) as ip:
            _parent(ip)
        proc = run_in(ns, apply)
    if proc.returncode != 0:
        return ProbeResult("netdev-egress", False, (proc.stderr or proc.stdout).strip()[:300])
    return ProbeResult("netdev-egress", True, "egress chain created on a veth in a throwaway netns")
