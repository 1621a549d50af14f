"""Per-container locks exclude threads and processes, and survive lock-file removal."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from typing import Any

import pytest

from flatnet.agent.locks import ContainerLocks
from flatnet.errors import FlatnetError


def test_threads_exclude_each_other(tmp_path: Any) -> None:
    locks = ContainerLocks(str(tmp_path))
    inside, peak = [0], [0]
    guard = threading.Lock()

    def work() -> None:
        with locks.hold("c1"):
            with guard:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.02)
            with guard:
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak[0] == 1


def test_different_containers_do_not_block(tmp_path: Any) -> None:
    locks = ContainerLocks(str(tmp_path), timeout=5)
    entered = []
    with locks.hold("a"):
        with locks.hold("b", timeout=0):  # one try: raises if "a" held it up
            entered.append("b")
        with pytest.raises(FlatnetError) as info:  # while the same container does block
            with locks.hold("a", timeout=0):
                entered.append("a again")
    assert entered == ["b"] and info.value.code == 11


def _hold_in_child(directory: str, ready: Any, release: Any) -> None:
    with ContainerLocks(directory).hold("shared"):
        ready.set()
        release.wait(20)


def test_process_holding_lock_blocks_us_until_timeout(tmp_path: Any) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_in_child, args=(str(tmp_path), ready, release))
    child.start()
    try:
        assert ready.wait(20)
        with pytest.raises(FlatnetError) as info:
            with ContainerLocks(str(tmp_path), timeout=0.3).hold("shared"):
                pass
        assert info.value.code == 11 and "busy" in info.value.msg
    finally:
        release.set()
        child.join(20)
    with ContainerLocks(str(tmp_path), timeout=5).hold("shared"):
        pass


def test_remove_unlinks_and_waiter_relocks(tmp_path: Any) -> None:
    locks = ContainerLocks(str(tmp_path), timeout=10)
    got = threading.Event()

    def waiter() -> None:
        with locks.hold("c9"):
            got.set()

    with locks.hold("c9", remove=True):
        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.05)
        assert not got.is_set()
    t.join(10)
    assert got.is_set()
    assert os.listdir(tmp_path) == ["c9.lock"]  # the waiter's fresh file, unlocked now
