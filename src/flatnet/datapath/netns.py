"""Network namespaces: name/path resolution, netlink handles and running code inside one.

Everything flatnet does to the kernel happens in an explicit namespace: the node's
("host") netns is a parameter so one process can serve several lab nodes, and the
container's netns comes from CNI_NETNS. ``run_in`` executes a function on a fresh OS
thread that has joined the target namespace (setns affects only the calling thread),
so the caller's own namespace never changes.
"""

from __future__ import annotations

import ctypes
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from pyroute2 import IPRoute

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def ns_path(ns: str | None) -> str | None:
    """Map a netns name ("fn-node1") or path ("/proc/123/ns/net") to a path; None stays None."""
    if ns is None or ns == "":
        return None
    if "/" in ns:
        return ns
    return os.path.join(NETNS_RUN_DIR, ns)


def exists(ns: str | None) -> bool:
    path = ns_path(ns)
    return path is None or os.path.exists(path)


@contextmanager
def ipr(ns: str | None = None) -> Iterator[IPRoute]:
    """A netlink handle bound to ``ns`` (None: the caller's own netns)."""
    path = ns_path(ns)
    handle = IPRoute(netns=path) if path else IPRoute()
    try:
        yield handle
    finally:
        handle.close()


def run_in(ns: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` inside netns ``ns`` on a dedicated thread; return its result."""
    path = ns_path(ns)
    if path is None:
        return fn(*args, **kwargs)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({path}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"netns:{path}", daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
