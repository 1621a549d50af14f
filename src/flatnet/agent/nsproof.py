"""Proof that a container's netns is gone, valid whatever PID and mount namespace we run in.

A CNI_NETNS path means something only in the namespaces of whoever reads it. ``/proc/<pid>/ns/net``
names a process by its number in the PID namespace that ``/proc`` shows: an agent in a
DaemonSet without ``hostPID`` sees its own PID namespace there, where the pod's pause process
has no number at all (or the number of some other process). A ``/run/netns/<name>`` bind
mount is only visible in a mount namespace that receives the host's mounts of that directory.
Deciding "gone" from what the path shows *now* therefore reclaims live pods whenever the
agent's view differs from the runtime's.

So the process that serves ADD records what the path showed it (``record``), and the leak
reconciler decides "gone" only when its own view is provably that same view (``gone``):

- ``/proc/<pid>/ns/net``: ``proc:<PID namespace that /proc shows>:<the netns>``. Gone when
  /proc now shows the very same PID namespace (same nsfs device and inode) and either
  ``/proc/<pid>`` does not exist (the process exited) or its netns is another one (the number
  went to a new process). A zombie, an unreadable link, another PID namespace: not gone.
- any other path (a bind mount under /run/netns, a file): ``file:<its directory>:<the file>``.
  Gone when the directory is the very same directory (device and inode are those of the
  directory itself, whatever mount namespace or bind mount shows it) and the path is missing
  from it.

No record (a lease written before this existed, or a path that could not be read at ADD)
decides nothing: such a lease is left to the runtime's DEL / GC.
"""

from __future__ import annotations

import errno
import os


def _ident(path: str) -> str | None:
    """``dev.ino`` of what ``path`` resolves to; None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_dev}.{st.st_ino}"


def _proc_view() -> str | None:
    """Identity of the PID namespace whose numbers /proc shows; None when it cannot be told.

    /proc shows our own PID namespace exactly when our ``NSpid`` there has one entry (a
    procfs of an ancestor namespace lists our number in each namespace down to ours); ours
    is then ``/proc/self/ns/pid``, which a process may always read (pid 1's may be closed
    to us even as root).
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            nspid = next((line.split()[1:] for line in fh if line.startswith("NSpid:")), None)
    except OSError:
        return None
    if nspid is None or len(nspid) != 1:
        return None
    return _ident("/proc/self/ns/pid")


def _proc_pid(path: str) -> str | None:
    """The pid of a ``/proc/<pid>/ns/net`` path, else None."""
    parts = path.split("/")
    if (
        len(parts) == 5
        and parts[0] == ""
        and parts[1] == "proc"
        and parts[3] == "ns"
        and parts[4] == "net"
        and parts[2].isdigit()
    ):
        return parts[2]
    return None


def record(path: str | None) -> str | None:
    """What ``path`` shows this process now, for ``gone`` to compare with later."""
    if not path or not path.startswith("/"):
        return None
    pid = _proc_pid(path)
    if pid is not None:
        view, net = _proc_view(), _ident(path)
        return f"proc:{view}:{net}" if view and net else None
    d, f = _ident(os.path.dirname(path)), _ident(path)
    return f"file:{d}:{f}" if d and f else None


def gone(path: str | None, recorded: str | None) -> bool:
    """True only when our view is the recorded one and the netns is provably not there."""
    if not path or not recorded or not path.startswith("/"):
        return False
    kind, _, rest = recorded.partition(":")
    view, _, then = rest.partition(":")
    if not view or not then:
        return False
    pid = _proc_pid(path)
    if kind == "proc" and pid is not None:
        if _proc_view() != view:
            return False  # another PID namespace's numbers: they say nothing about the pod
        try:
            os.stat(f"/proc/{pid}")
        except FileNotFoundError:
            return True  # the process exited
        except OSError:
            return False
        now = _ident(path)
        return now is not None and now != then  # its number now names a process in another netns
    if kind == "file" and pid is None:
        if _ident(os.path.dirname(path)) != view:
            return False  # not the directory the runtime used (another mount, not propagated)
        try:
            os.stat(path)
        except OSError as exc:
            return exc.errno == errno.ENOENT
        return False
    return False
