"""Chaos harness: CNI load across nodes with faults injected, then invariant checks.

A run drives N CNI operations (ADD/DEL through the real plugin executable), C at a time,
on nodes built from network namespaces (prefix ``fnk-``) with one agent each, over SQLite
or etcd, while faults strike: agents SIGKILLed and restarted, etcd stopped and started, a
SQLite writer SIGKILLed inside its transaction, a node lost without DEL (then the CNI GC
verb). After each scenario the invariants are checked: every address is held by exactly
one live attachment or free, and no interface, host route or nft rule is left in a node
netns for a container that no longer exists.

Public API::

    run(profile: Profile, stores: list[str]) -> list[ScenarioResult]
    PROFILES["smoke" | "full"]        render(results) -> rich Table

Entry: ``python -m flatnet_lab.chaos [--smoke] [--store sqlite|etcd|both]``.
"""

from flatnet_lab.chaos.report import ScenarioResult, render
from flatnet_lab.chaos.scenarios import PROFILES, Profile, run

__all__ = ["run", "Profile", "PROFILES", "ScenarioResult", "render"]
