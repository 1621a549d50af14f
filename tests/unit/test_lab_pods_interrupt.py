"""A lab pod whose ADD is interrupted (Ctrl-C while the plugin runs) is DELed, as a runtime
DELs an ADD it gave up on: the agent may have finished it, and its lease and host routes would
wait for the leak reconciliation. A failed ADD (the plugin answered) gets no DEL."""

from __future__ import annotations

from typing import Any

import pytest

from flatnet.errors import FlatnetError
from flatnet_lab.lab import pods


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(pods, "_node_config", lambda node, network: {"name": network})
    monkeypatch.setattr(pods, "_record_path", lambda name: str(tmp_path / f"{name}.json"))
    monkeypatch.setattr(pods.labnet, "ensure_netns", lambda ns: seen.append(("ensure", ns)))
    monkeypatch.setattr(pods.labnet, "remove_netns", lambda ns: seen.append(("remove", ns)))
    return seen


def test_an_interrupted_add_is_deleted_then_its_netns_removed(
    calls: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def plugin(command: str, pod: pods.Pod, conf: dict[str, Any]) -> dict[str, Any]:
        calls.append((command, pod.container_id))
        if command == "ADD":
            raise KeyboardInterrupt
        return {}

    monkeypatch.setattr(pods, "_exec_plugin", plugin)
    with pytest.raises(KeyboardInterrupt):
        pods.add_pod("node1", "p1", "flat")
    (_, ns), (add, cid), (dele, cid2), (rm, ns2) = calls
    assert (add, dele, rm) == ("ADD", "DEL", "remove") and cid == cid2 and ns == ns2 == "fnlab-pod-p1"


def test_a_failed_add_is_not_deleted(calls: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    def plugin(command: str, pod: pods.Pod, conf: dict[str, Any]) -> dict[str, Any]:
        calls.append((command, pod.container_id))
        raise FlatnetError("no free address")

    monkeypatch.setattr(pods, "_exec_plugin", plugin)
    with pytest.raises(FlatnetError):
        pods.add_pod("node1", "p1", "flat")
    assert [c for c, _ in calls] == ["ensure", "ADD", "remove"]
