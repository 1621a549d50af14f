"""Per-netns sysctls, written through /proc/sys from a thread that joined the netns.

/proc/sys/net resolves against the calling *thread's* network namespace, so ``run_in`` is
enough; no process needs to move. Keys are slash paths relative to /proc/sys
("net/ipv6/conf/eth0/accept_dad") because interface names may contain dots (eth0.100).
"""

from __future__ import annotations

import os

from flatnet import errors
from flatnet.datapath import netns
from flatnet.datapath.common import ns_label

PROC_SYS = "/proc/sys"


def _write_all(values: dict[str, str], missing_ok: bool) -> None:
    """Write each value that differs from what the kernel has.

    Reading is cheap; writing is not always: the kernel takes the RTNL lock for some keys
    (disable_ipv6, forwarding, proxy_ndp) and, when another thread holds it, restarts the
    write until it gets it -- a burst of ADDs rewriting values already set only fights
    over that lock.
    """
    for key, value in values.items():
        path = os.path.join(PROC_SYS, key)
        try:
            with open(path, "r+") as fh:
                if fh.read().strip() == value:
                    continue
                fh.seek(0)
                fh.write(value)
        except FileNotFoundError:
            if not missing_ok:
                raise


def set_many(ns: str | None, values: dict[str, str], missing_ok: bool = False) -> None:
    """Write every ``key: value`` in netns ``ns`` (one thread, in order)."""
    try:
        netns.run_in(ns, _write_all, values, missing_ok)
    except OSError as exc:
        raise errors.DatapathError(
            f"writing sysctl {exc.filename or ''} in {ns_label(ns)} failed: {exc.strerror}"
        ) from exc


def get(ns: str | None, key: str) -> str | None:
    """Read sysctl ``key`` in netns ``ns``; None if it does not exist."""

    def read() -> str | None:
        try:
            with open(os.path.join(PROC_SYS, key)) as fh:
                return fh.read().strip()
        except FileNotFoundError:
            return None

    return netns.run_in(ns, read)


def pod_iface(ifname: str) -> dict[str, str]:
    """Sysctls for a pod interface: IPv6 on, no DAD wait, announce address changes."""
    return {
        "net/ipv6/conf/all/disable_ipv6": "0",
        f"net/ipv6/conf/{ifname}/disable_ipv6": "0",
        f"net/ipv6/conf/{ifname}/accept_dad": "0",
        f"net/ipv4/conf/{ifname}/arp_notify": "1",
    }


def shim_iface(ifname: str) -> dict[str, str]:
    """Sysctls for the node's shim link: no DAD, and proxy NDP for the node's own v6 addresses.

    IPv6 neighbour solicitations are answered only for addresses on the receiving link, and
    the node's address lives on the parent, which never sees its macvlan children's frames.
    A proxy entry on the shim (needs per-link forwarding + proxy_ndp) answers for it, with no
    artificial proxy delay.
    """
    return {
        f"net/ipv6/conf/{ifname}/accept_dad": "0",
        f"net/ipv6/conf/{ifname}/forwarding": "1",
        f"net/ipv6/conf/{ifname}/proxy_ndp": "1",
        f"net/ipv6/neigh/{ifname}/proxy_delay": "0",
    }
