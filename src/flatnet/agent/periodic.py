"""A background duty of the agent: ``tick()`` every ``interval`` seconds on a daemon thread."""

from __future__ import annotations

import threading


class Periodic:
    """Subclasses name their thread and implement ``tick``; ``interval`` <= 0 never starts.

    The first tick comes one ``interval`` after ``start``; ``stop`` ends the loop at the next
    wake-up (the thread is a daemon, so an agent exiting does not wait for it).
    """

    thread_name = "periodic"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def tick(self) -> None:
        raise NotImplementedError
