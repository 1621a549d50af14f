"""Address conflicts after ADD: another MAC claims one of this node's live pods' addresses.

The ADD-time probe (``conflicts.py``) only sees hosts that answer while a pod is plumbed.
This watcher keeps listening, on every node link the agent's flat networks use, for ARP
senders and neighbour advertisements (``flatnet.datapath.claims``) that claim a live pod's
address from a MAC that is not the pod's. Each one is counted
(``flatnet_address_conflicts_total`` by pool, through ``on_conflict``), logged at warning
with both MACs (once a minute per address and MAC), and kept in ``recent`` — written to
``conflicts.json`` beside the agent socket so ``flatnet ipam ls`` and ``flatnet doctor``
can show it.

Which addresses and links to watch is re-read from the leases every ``refresh`` seconds;
each poll waits at most ``poll`` seconds, so ``stop`` ends the thread within that bound.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from flatnet.datapath import claims, modes
from flatnet.datapath import pod as dpod
from flatnet.datapath.common import vlan_ifname

log = logging.getLogger("flatnet.agent")
STATE_NAME = "conflicts.json"
LOG_EVERY = 60.0


@dataclass(frozen=True)
class Watched:
    pool: str
    mac: str
    container_id: str
    network: str


Conflict = Callable[[str, str, str, str], None]  # (pool, address, pod mac, other mac)


def link_of(conf: Any, vlan: int | None) -> str | None:
    """The node link where a flat network's pods' neighbours are heard."""
    if conf.mode == "bridge":
        return str(conf.bridge) if vlan is None or conf.bridge else f"fnbr{vlan}"
    if not conf.master:
        return None
    return vlan_ifname(conf.master, vlan) if vlan is not None else str(conf.master)


class ClaimWatch:
    """A daemon thread; ``refresh_now``/``poll_once`` are the steps the tests drive."""

    def __init__(
        self,
        service: Any,
        on_conflict: Conflict | None = None,
        state_path: str | None = None,
        refresh: float = 30.0,
        poll: float = 0.5,
    ) -> None:
        self.service, self.on_conflict, self.state_path = service, on_conflict, state_path
        self.refresh, self.poll = refresh, poll
        self.watched: dict[str, Watched] = {}
        self.sockets: dict[tuple[str | None, str], claims.ClaimSocket] = {}
        self.recent: dict[str, dict[str, Any]] = {}  # address -> last conflict seen
        self.total = 0
        self._logged: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and self.refresh > 0:
            self._thread = threading.Thread(target=self._run, name="claim-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll + 2)
        for sock in self.sockets.values():
            sock.close()
        self.sockets = {}

    def _run(self) -> None:
        next_refresh = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_refresh:
                try:
                    self.refresh_now()
                except Exception as exc:  # noqa: BLE001 - the store may be down: retry later
                    log.warning("claim watch: refresh failed: %s", exc)
                next_refresh = time.monotonic() + self.refresh
            if not self.sockets:
                self._stop.wait(min(self.refresh, 5.0))
                continue
            self.poll_once()

    def refresh_now(self) -> None:
        """Re-read which addresses (live leases of this node) and which links to watch."""
        watched: dict[str, Watched] = {}
        wanted: set[tuple[str | None, str]] = set()
        for conf in self.service.served_networks():
            found = modes.find(conf.mode)
            if found is None or found.overlay:
                continue
            host_ns = conf.host_netns or self.service.host_netns
            for lease in self.service.ipam(conf).leases():
                o = lease.owner
                if o.network != conf.name or o.node != self.service.node or not o.netns:
                    continue
                mac = dpod.link_mac(o.netns, o.ifname)
                link = link_of(conf, lease.vlan if lease.vlan is not None else conf.vlan)
                if mac is None or link is None:
                    continue
                watched[str(lease.address.ip)] = Watched(lease.pool, mac, o.container_id, conf.name)
                wanted.add((host_ns, link))
        for key in set(self.sockets) - wanted:
            self.sockets.pop(key).close()
        for key in wanted - set(self.sockets):
            try:
                self.sockets[key] = claims.ClaimSocket(*key)
            except OSError as exc:
                log.warning("claim watch: cannot listen on %s: %s", key[1], exc)
        self.watched = watched

    def poll_once(self) -> int:
        """Listen once on every link (``poll`` seconds in all); returns conflicts handled."""
        n = 0
        each = self.poll / max(1, len(self.sockets))
        for sock in list(self.sockets.values()):
            for claim in sock.poll(each):
                n += self.handle(claim)
        return n

    def handle(self, claim: claims.Claim) -> int:
        w = self.watched.get(str(claim.address))
        if w is None or claim.mac == w.mac:
            return 0
        self.total += 1
        addr = str(claim.address)
        if self.on_conflict is not None:
            self.on_conflict(w.pool, addr, w.mac, claim.mac)
        now = time.time()
        entry = self.recent.get(addr, {"count": 0})
        entry.update(
            pool=w.pool, network=w.network, address=addr, pod_mac=w.mac, other_mac=claim.mac,
            container_id=w.container_id, link=claim.link, last_seen=now, count=int(entry["count"]) + 1,
        )  # fmt: skip
        self.recent[addr] = entry
        if now - self._logged.get((addr, claim.mac), 0.0) >= LOG_EVERY:
            self._logged[(addr, claim.mac)] = now
            log.warning(
                "address conflict: %s of pod %s (pool %s, MAC %s) is claimed by MAC %s on %s",
                addr, w.container_id[:12], w.pool, w.mac, claim.mac, claim.link,
            )  # fmt: skip
        self._write()
        return 1

    def _write(self) -> None:
        if not self.state_path:
            return
        try:
            tmp = f"{self.state_path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"conflicts": sorted(self.recent.values(), key=lambda e: e["address"])}, fh)
            os.replace(tmp, self.state_path)
        except OSError as exc:
            log.warning("claim watch: cannot write %s: %s", self.state_path, exc)


def load(path: str) -> list[dict[str, Any]]:
    """The conflicts an agent recorded (``flatnet ipam ls``, doctor); [] when none."""
    try:
        with open(path, encoding="utf-8") as fh:
            return list(json.load(fh).get("conflicts", []))
    except (OSError, ValueError):
        return []


def state_path(socket_path: str) -> str:
    """``conflicts.json`` beside the agent socket."""
    return os.path.join(os.path.dirname(os.path.abspath(socket_path)), STATE_NAME)
