"""What the data-plane bench puts on the lab goes away network by network, and only that."""

from __future__ import annotations

from typing import Any

import pytest

from flatnet.errors import ConfigError
from flatnet_lab.bench import labsetup
from flatnet_lab.bench.nsenv import Scratch
from flatnet_lab.lab.topology import default_topology


def test_delete_pods_takes_only_that_networks_pods(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "bench-flat-" starts the names of flat-wide's pods as well as flat's."""
    added, deleted = [], []

    def get_pod(name: str) -> Any:
        raise ConfigError(f"no lab pod {name!r}")

    def add_pod(node: str, name: str, network: str, **_: Any) -> str:
        added.append(name)
        return name

    monkeypatch.setattr(labsetup.pods, "get_pod", get_pod)
    monkeypatch.setattr(labsetup.pods, "add_pod", add_pod)
    monkeypatch.setattr(labsetup.pods, "del_pod", deleted.append)
    setup = labsetup.LabSetup(default_topology(2), Scratch(), "/nonexistent")
    for network in ("flat", "flat-wide"):
        for k in (1, 2):
            setup.pod(network, "node1", k)
    progress: list[tuple[int, int]] = []
    setup.delete_pods("flat-wide", lambda k, n: progress.append((k, n)))
    assert deleted == ["bench-flat-wide-node1-1", "bench-flat-wide-node1-2"]
    assert progress == [(1, 2), (2, 2)]
    assert list(setup.made) == ["bench-flat-node1-1", "bench-flat-node1-2"]  # left for close()
    setup.delete_pods("flat")
    assert deleted[2:] == ["bench-flat-node1-1", "bench-flat-node1-2"] and list(setup.made) == []


def test_a_crashed_runs_pod_is_made_anew_and_removed_with_this_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod of the bench's name that this run did not make (a run that crashed left it) is
    deleted and made again, so close() removes it; a pod this run made is reused as it is."""
    existing = {"bench-flat-node1-1"}  # left by a crashed run
    added, deleted = [], []

    def get_pod(name: str) -> Any:
        if name not in existing:
            raise ConfigError(f"no lab pod {name!r}")
        return name

    def add_pod(node: str, name: str, network: str, **_: Any) -> str:
        added.append(name)
        existing.add(name)
        return name

    def del_pod(name: str) -> None:
        deleted.append(name)
        existing.discard(name)

    monkeypatch.setattr(labsetup.pods, "get_pod", get_pod)
    monkeypatch.setattr(labsetup.pods, "add_pod", add_pod)
    monkeypatch.setattr(labsetup.pods, "del_pod", del_pod)
    setup = labsetup.LabSetup(default_topology(2), Scratch(), "/nonexistent")
    assert setup.pod("flat", "node1", 1) == "bench-flat-node1-1"
    assert deleted == ["bench-flat-node1-1"] and added == ["bench-flat-node1-1"]
    assert setup.pod("flat", "node1", 1) == "bench-flat-node1-1"  # this run's: reused
    assert added == ["bench-flat-node1-1"] and deleted == ["bench-flat-node1-1"]
    assert list(setup.made) == ["bench-flat-node1-1"]
