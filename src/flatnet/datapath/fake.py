"""An in-memory Datapath for unit tests of the agent.

It keeps the same contract as the real modes (``datapath.api.Datapath``) so the agent's
orchestration — rollback, idempotent DEL, GC — can be tested fast and without root:
duplicate interfaces raise ``InterfaceExists``, a missing master raises ``ParentMissing``,
and a test can make the next ``add``/``delete``/``check``/``status`` fail on purpose.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

from flatnet.datapath.api import AttachSpec, Attachment
from flatnet.errors import DatapathError, InterfaceExists, ParentMissing, STATE_MISMATCH


def _mac_for(key: str) -> str:
    """A stable locally-administered unicast MAC derived from the attachment key."""
    digest = hashlib.sha1(key.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


@dataclass
class FakeDatapath:
    """Records attachments keyed by (container netns, ifname), like the kernel would.

    ``masters`` (when not None) lists the parent links that exist, so ParentMissing can be
    tested; ``fail_add`` / ``fail_delete`` / ``fail_check`` / ``fail_status`` hold an
    exception to raise on the next call of that verb (one-shot), to test rollback.
    """

    masters: set[str] | None = None
    mtu: int = 1500
    attachments: dict[tuple[str, str], AttachSpec] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    fail_add: BaseException | None = None
    fail_delete: BaseException | None = None
    fail_check: BaseException | None = None
    fail_status: BaseException | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _take(self, name: str) -> None:
        exc = getattr(self, name)
        if exc is not None:
            setattr(self, name, None)
            raise exc

    def add(self, spec: AttachSpec) -> Attachment:
        with self._lock:
            self.calls.append(("add", spec.container_id, spec.ifname))
            self._take("fail_add")
            if self.masters is not None and spec.master and spec.master not in self.masters:
                raise ParentMissing(
                    f"parent link {spec.master!r} not found", "create it or fix 'master' in the network config"
                )
            key = (spec.netns, spec.ifname)
            if key in self.attachments:
                raise InterfaceExists(
                    f"interface {spec.ifname!r} already exists in {spec.netns}",
                    "choose another CNI_IFNAME or DEL the old attachment",
                )
            self.attachments[key] = spec
            return Attachment(
                ifname=spec.ifname,
                mac=spec.mac or _mac_for(f"{spec.netns}/{spec.ifname}"),
                sandbox=spec.netns,
                mtu=spec.mtu or self.mtu,
            )

    def _find(self, spec: AttachSpec) -> tuple[str, str] | None:
        """DEL may come without a netns: then match on container id + ifname."""
        if (spec.netns, spec.ifname) in self.attachments:
            return (spec.netns, spec.ifname)
        for key, held in self.attachments.items():
            if held.container_id == spec.container_id and held.ifname == spec.ifname:
                return key
        return None

    def delete(self, spec: AttachSpec) -> None:
        with self._lock:
            self.calls.append(("delete", spec.container_id, spec.ifname))
            self._take("fail_delete")
            key = self._find(spec)
            if key is not None:
                del self.attachments[key]

    def check(self, spec: AttachSpec) -> None:
        with self._lock:
            self.calls.append(("check", spec.container_id, spec.ifname))
            self._take("fail_check")
            key = self._find(spec)
            if key is None:
                raise DatapathError(f"interface {spec.ifname!r} not found in {spec.netns}", code=STATE_MISMATCH)
            held = self.attachments[key]
            if set(held.addresses) != set(spec.addresses):
                raise DatapathError(
                    f"addresses on {spec.ifname} are {sorted(map(str, held.addresses))}, "
                    f"expected {sorted(map(str, spec.addresses))}",
                    code=STATE_MISMATCH,
                )

    def status(self, spec: AttachSpec) -> None:
        with self._lock:
            self.calls.append(("status", spec.container_id, spec.ifname))
            self._take("fail_status")
            if self.masters is not None and spec.master and spec.master not in self.masters:
                raise ParentMissing(f"parent link {spec.master!r} not found")

    def remove_address(self, netns: str, ifname: str, address: object) -> None:
        """Simulate someone deleting an address by hand (for CHECK tests)."""
        with self._lock:
            held = self.attachments[(netns, ifname)]
            rest = tuple(a for a in held.addresses if a != address)
            self.attachments[(netns, ifname)] = AttachSpec(**{**held.__dict__, "addresses": rest})


__all__ = ["FakeDatapath"]
