"""Per-container locks that hold across threads AND processes.

The agent serves requests on many threads, and a plugin whose agent is down runs the
same service in its own process; both must serialize ADD/DEL/CHECK of one container.
``flock`` on a file per container does both: locks belong to an open file description,
so two threads with their own ``open()`` exclude each other just like two processes, and
the kernel drops the lock if the holder dies (no stale lock after a crash).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager
from typing import Iterator

from flatnet import defaults
from flatnet.errors import TRY_AGAIN_LATER, FlatnetError

DEFAULT_LOCK_DIR = defaults.LOCK_DIR


class ContainerLocks:
    """``with locks.hold(container_id): ...`` — wait (bounded) for the container's lock."""

    def __init__(self, directory: str = DEFAULT_LOCK_DIR, timeout: float = 60.0) -> None:
        self.directory = directory
        self.timeout = timeout

    def _path(self, container_id: str) -> str:
        # container ids are validated by the env parser (letters, digits, _ . -), but a
        # lock path must never escape the directory whatever it is given
        safe = container_id.replace("/", "_") or "_"
        if safe in (".", ".."):
            safe = f"_{safe}"
        return os.path.join(self.directory, f"{safe}.lock")

    @contextmanager
    def hold(self, container_id: str, remove: bool = False, timeout: float | None = None) -> Iterator[None]:
        """Hold the lock; with ``remove`` the lock file is unlinked before release (DEL).

        ``timeout`` overrides the instance's wait (0: one try); past it, TRY_AGAIN_LATER.

        Unlinking while holding is safe because a waiter re-checks after locking that the
        file it locked is still the one at the path, and retries otherwise.
        """
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        path = self._path(container_id)
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        delay = 0.005
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise FlatnetError(
                        f"container {container_id} is busy: another operation holds its lock for more than {wait:.0f}s",
                        "try again later",
                        code=TRY_AGAIN_LATER,
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed it; lock the new file instead
                os.close(fd)
                continue
            break
        try:
            yield
        finally:
            if remove:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            os.close(fd)
