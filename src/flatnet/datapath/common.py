"""Small shared pieces of the flat datapath: names, error translation, the undo stack.

Every mode plans ADD as a list of kernel steps; each done step pushes its inverse on an
``Undo`` stack so a failure part-way leaves nothing half-plumbed (the success-flag pattern
of containernetworking/plugins). Netlink errors are turned into flatnet errors here, in one
place, so every message names the netns and the object involved.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


from flatnet.datapath.rtnl import NetlinkError
from flatnet import errors
from flatnet.datapath import netns
from flatnet.datapath.api import AttachSpec

log = logging.getLogger("flatnet.datapath")

# Route protocol number flatnet stamps on the host routes it installs (RTPROT_* < 256 that
# no routing daemon uses), so DEL and CHECK can tell our routes from the operator's.
RTPROT_FLATNET = 201
IFNAMSIZ = 15  # usable characters of a Linux interface name


_own_netns_label = "the agent's own netns"


def set_own_netns_label(label: str) -> None:
    """How messages name the caller's own netns (the no-agent entry point is no agent)."""
    global _own_netns_label
    _own_netns_label = label


def ns_label(ns: str | None) -> str:
    """How a netns is named in messages: the caller's own netns has no path."""
    return ns if ns else _own_netns_label


def host_veth_name(container_id: str, ifname: str) -> str:
    """Deterministic host-side veth name, so DEL can find it without any stored state."""
    digest = hashlib.sha1(f"{container_id}/{ifname}".encode()).hexdigest()
    return "fn" + digest[:11]


def shim_name(parent: str) -> str:
    """Name of the host-side sibling ("shim") link that lets the node reach its pods."""
    return "fns-" + hashlib.sha1(parent.encode()).hexdigest()[:8]


TMP_PREFIX = "fntmp"


def tmp_name(container_id: str, ifname: str) -> str:
    """The short-lived name of a link before it is renamed inside the container.

    Deterministic per attachment (like the host veth name) so that when the agent is killed
    between creating the link and renaming it, the runtime's DEL — or the retried ADD, which
    holds the same per-container lock — finds the half-made link by name and removes it.
    """
    digest = hashlib.sha1(f"tmp/{container_id}/{ifname}".encode()).hexdigest()
    return TMP_PREFIX + digest[:10]


def vlan_ifname(master: str, vlan: int) -> str:
    """The 802.1Q sub-interface name ``<master>.<vlan>`` (must fit IFNAMSIZ)."""
    name = f"{master}.{vlan}"
    if len(name) > IFNAMSIZ:
        raise errors.ConfigError(
            f"vlan sub-interface name {name!r} is longer than {IFNAMSIZ} characters; use a shorter master link name"
        )
    return name


def validate_spec(spec: AttachSpec) -> None:
    """Reject specs no mode can plumb before any kernel step is taken."""
    if not spec.ifname or len(spec.ifname) > IFNAMSIZ or "/" in spec.ifname or " " in spec.ifname:
        raise errors.ConfigError(
            f"ifname {spec.ifname!r} is not a valid Linux interface name (1-{IFNAMSIZ} characters, no '/' or spaces)"
        )
    if spec.vlan is not None and not 1 <= spec.vlan <= 4094:
        raise errors.ConfigError(f"vlan {spec.vlan} is out of range; use 1-4094")
    if spec.mtu is not None and not 68 <= spec.mtu <= 65535:
        raise errors.ConfigError(f"mtu {spec.mtu} is out of range; use 68-65535")


def require_container_netns(spec: AttachSpec) -> str:
    """The container netns path for ADD/CHECK; it must exist."""
    path = netns.ns_path(spec.netns)
    if not path or not os.path.exists(path):
        raise errors.DatapathError(
            f"container netns {spec.netns!r} does not exist; is the container running and CNI_NETNS correct?",
            code=errors.UNKNOWN_CONTAINER,
        )
    return path


def require_host_netns(spec: AttachSpec) -> None:
    """The node's netns must exist (a lab node may have been torn down)."""
    if not netns.exists(spec.host_netns):
        raise errors.DatapathError(
            f"host netns {spec.host_netns!r} does not exist; check the network config's hostNetns "
            f"(or the agent's --netns / FLATNET_HOST_NETNS when the config has none)"
        )


def is_errno(exc: BaseException, *codes: int) -> bool:
    """True if ``exc`` is a netlink/OS error carrying one of ``codes``."""
    code = getattr(exc, "code", None) if isinstance(exc, NetlinkError) else getattr(exc, "errno", None)
    return code in codes


@contextmanager
def translate(what: str, ns: str | None) -> Iterator[None]:
    """Turn netlink/OS failures inside the block into a DatapathError naming ``what`` and ``ns``."""
    try:
        yield
    except errors.FlatnetError:
        raise
    except (NetlinkError, OSError) as exc:
        code = getattr(exc, "code", None) if isinstance(exc, NetlinkError) else exc.errno
        reason = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)
        raise errors.DatapathError(f"{what} in {ns_label(ns)} failed: {reason}") from exc


def feature_missing(kind: str, config: str, module: str) -> errors.KernelFeatureMissing:
    """The error for a link type this kernel cannot create."""
    return errors.KernelFeatureMissing(
        f"this kernel cannot create {kind} links: it lacks {config}; "
        f"try `modprobe {module}` or use a kernel built with {config}=m/y"
    )


_infra_locks: dict[str | None, threading.Lock] = {}
_infra_guard = threading.Lock()


@contextmanager
def infra_lock(host_ns: str | None) -> Iterator[None]:
    """Serialise creation of shared node infrastructure (bridge, shim, VLAN link) per node.

    The agent runs concurrent ADDs for different containers; two of them must not both try
    to create (or re-home addresses onto) the same bridge. Kernel EEXIST is still tolerated
    for the cross-process case.
    """
    with _infra_guard:
        lock = _infra_locks.setdefault(netns.ns_path(host_ns), threading.Lock())
    with lock:
        yield


class Undo:
    """A stack of inverse steps, run newest-first when ADD fails part-way.

    Undo steps must not raise over each other: a failing inverse is logged and the rest
    still run, because leaving less behind is always better than stopping half-way.
    """

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, fn: Callable[[], object]) -> None:
        self._steps.append((what, fn))

    def run(self) -> None:
        while self._steps:
            what, fn = self._steps.pop()
            try:
                fn()
            except Exception:  # noqa: BLE001 - best effort, keep undoing the rest
                log.warning("undo step failed: %s", what, exc_info=True)

    def clear(self) -> None:
        self._steps.clear()


@contextmanager
def undo_on_error() -> Iterator[Undo]:
    """Yield an Undo stack that is unwound if the block raises, discarded if it succeeds."""
    undo = Undo()
    try:
        yield undo
    except BaseException:
        undo.run()
        raise
    undo.clear()
