"""The agent's heartbeats: one ``NodeHeartbeat`` (``heartbeat.py``) per etcd store it serves."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from flatnet.agent.heartbeat import DEFAULT_GRACE, DEFAULT_TTL, NodeHeartbeat
from flatnet.errors import FlatnetError
from flatnet.ipam import records as r

log = logging.getLogger("flatnet.agent")


class Heartbeats:
    """The agent's heartbeats: one ``NodeHeartbeat`` per etcd store it serves.

    ``store_opened`` is the ``Service`` hook for every store the agent opens; etcd store
    configs are also remembered in ``<state_dir>/agent-stores.<node>.json`` so that a restarted
    agent beats again at once (``resume``), before any CNI request names the store —
    otherwise a quiet node would be reclaimed after an agent upgrade.
    """

    def __init__(
        self, service: Any, ttl: int = DEFAULT_TTL, grace: float = DEFAULT_GRACE, state_dir: str | None = None
    ) -> None:
        self.service, self.ttl, self.grace, self.state_dir = service, ttl, grace, state_dir
        self.beats: dict[str, NodeHeartbeat] = {}

    def _path(self) -> str | None:
        if not self.state_dir:
            return None
        return os.path.join(self.state_dir, f"agent-stores.{r.q(self.service.node)}.json")

    def store_opened(self, cfg: dict[str, Any]) -> None:
        if cfg.get("type") != "etcd":
            return
        key = json.dumps(cfg, sort_keys=True)
        if key in self.beats:
            return
        hb = NodeHeartbeat(
            self.service, cfg, self.ttl, self.grace, self.state_dir, on_announced=lambda: self._remember(cfg)
        )
        self.beats[key] = hb
        hb.start()

    def _remember(self, cfg: dict[str, Any]) -> None:
        """Called once a heartbeat got into etcd: a config that never worked is not kept."""
        path = self._path()
        if path:
            known = self._known()
            if cfg not in known:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path + ".tmp", "w", encoding="utf-8") as fh:
                    json.dump(known + [cfg], fh)
                os.replace(path + ".tmp", path)

    def _known(self) -> list[dict[str, Any]]:
        path = self._path()
        try:
            with open(path or "", encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return []
        return [c for c in data if isinstance(c, dict)] if isinstance(data, list) else []

    def resume(self) -> None:
        for cfg in self._known():
            try:
                self.service.open_store_config(cfg)
            except FlatnetError as exc:
                log.warning("heartbeat: cannot open remembered store: %s", exc.msg)

    def stop(self) -> None:
        for hb in self.beats.values():
            hb.stop()
