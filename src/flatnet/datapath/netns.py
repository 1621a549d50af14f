"""Network namespaces: name/path resolution, netlink handles and running code inside one.

Everything flatnet does to the kernel happens in an explicit namespace: the node's
("host") netns is a parameter so one process can serve several lab nodes, and the
container's netns comes from CNI_NETNS. ``run_in`` executes a function on a fresh OS
thread that has joined the target namespace (setns affects only the calling thread),
so the caller's own namespace never changes.

Opening a netlink handle in another netns is the datapath's main fixed cost: pyroute2's own
``IPRoute(netns=...)`` forks a helper process to create the socket there (~7 ms). flatnet
instead creates the socket on a short-lived thread that has joined the netns (a socket stays
in the netns it was created in) and wraps it in an ``rtnl.Handle``: the calls of a pod ADD/DEL
are its typed verbs on that socket; what they do not cover goes to a pyroute2 ``IPRoute``
opened on first explicit need (``Handle.pyroute2()``, or ``iproute()`` for tools and tests).
And inside ``session()`` (one CNI operation) each netns gets one handle, reused by every step.
"""

from __future__ import annotations

import contextvars
import ctypes
import os
import socket
import threading
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

if TYPE_CHECKING:
    from flatnet.datapath.rtnl import Handle, Pyroute2

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


NETLINK_ROUTE = 0
# the handles of the current session() (one per netns path; "" is the caller's own netns)
_session: contextvars.ContextVar[dict[str, Handle] | None] = contextvars.ContextVar(
    "flatnet_netns_session", default=None
)


def _netlink_fd() -> int:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
    return sock.detach()


def open_ipr(path: str | None) -> Handle:
    """A netlink handle whose socket was created inside netns ``path`` (None: our own).

    A ``rtnl.Handle``: its verbs go straight to the socket; ``handle.pyroute2()`` opens a
    pyroute2 ``IPRoute`` in the same netns on first use (``_pyroute2``).
    """
    from flatnet.datapath.rtnl import Handle

    fd = run_in(path, _netlink_fd) if path else _netlink_fd()
    try:
        return Handle(fd, lambda: _pyroute2(path))
    except BaseException:
        os.close(fd)
        raise


def _pyroute2(path: str | None) -> Any:
    """pyroute2's handle in netns ``path``, its socket made on a thread that joined the netns
    (``run_in``); an ``IPRoute()`` constructed on such a thread would *not* do: pyroute2
    creates its socket later, elsewhere."""
    from pyroute2 import IPRoute  # here, not at the top: a plugin run need not load pyroute2

    if not path:
        return IPRoute()
    fd = run_in(path, _netlink_fd)
    try:
        return IPRoute(fileno=fd)
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def session() -> Iterator[None]:
    """Reuse one netlink handle per netns for every ``ipr()`` in this block (same thread).

    The agent wraps each CNI operation in one; nested sessions join the outer one. Handles
    are closed when the outermost block ends, also on error.
    """
    if _session.get() is not None:
        yield
        return
    handles: dict[str, Handle] = {}
    token = _session.set(handles)
    try:
        yield
    finally:
        _session.reset(token)
        for handle in handles.values():
            handle.close()


@contextmanager
def ipr(ns: str | None = None) -> Iterator[Handle]:
    """A netlink handle bound to ``ns`` (None: the caller's own netns)."""
    path = ns_path(ns)
    handles = _session.get()
    if handles is not None:
        handle = handles.get(path or "")
        if handle is None:
            handle = handles[path or ""] = open_ipr(path)
        yield handle
        return
    handle = open_ipr(path)
    try:
        yield handle
    finally:
        handle.close()


@contextmanager
def iproute(ns: str | None = None) -> Iterator[Pyroute2]:
    """pyroute2's ``IPRoute`` API in ``ns`` (errors as ``rtnl.NetlinkError``), for tools and
    tests that want pyroute2's calls; the datapath uses ``ipr()``'s typed verbs."""
    with ipr(ns) as handle:
        yield handle.pyroute2()


def _enter(path: str) -> None:
    """Move the calling thread into the netns at ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in(ns: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` inside netns ``ns`` on a dedicated thread; return its result."""
    return run_in_then(ns, fn, None, *args, **kwargs)


def run_in_then(ns: str | None, fn: Callable[..., T], tail: Callable[[T], None] | None, *args: Any, **kwargs: Any) -> T:
    """Like ``run_in``, then ``tail(result)`` on the same thread *after* the caller has the result.

    For work whose cleanup is slow and of no interest to the caller: closing a packet socket
    waits for an RCU grace period (~10-20 ms), and an ADD need not wait for that. Errors in
    ``tail`` are ignored (it is cleanup).
    """
    if ns_path(ns) is None and tail is None:
        return fn(*args, **kwargs)
    return spawn_in(ns, fn, tail, *args, **kwargs).result()


def spawn_in(
    ns: str | None, fn: Callable[..., T], tail: Callable[[T], None] | None, *args: Any, **kwargs: Any
) -> Future[T]:
    """Start ``fn(*args, **kwargs)`` inside netns ``ns`` on a new thread; its result as a Future.

    The caller goes on meanwhile (the conflict probe waits for the wire while ADD plumbs).
    ``tail(result)`` runs on that thread once the Future is resolved (see ``run_in_then``).
    """
    path = ns_path(ns)
    future: Future[T] = Future()
    future.set_running_or_notify_cancel()

    def target() -> None:
        try:
            if path is not None:
                _enter(path)
            result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            future.set_exception(exc)
            return
        future.set_result(result)
        if tail is not None:
            try:
                tail(result)
            except Exception:  # noqa: BLE001 - cleanup only
                pass

    threading.Thread(target=target, name=f"netns:{path or 'own'}", daemon=True).start()
    return future
