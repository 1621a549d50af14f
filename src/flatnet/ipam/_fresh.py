"""Where the next never-used address comes from: one strategy, two sources.

``PoolOps.take_next`` asks a ``FreshSource`` first (``take``), then the pool's FIFO of
released addresses, then the source again for never-used addresses parked elsewhere
(``leftover``). Two sources exist:

- ``CursorSource`` (here): the pool's ``state`` cursor, one txn per address. Small pools,
  and owners without a node name.
- ``ChunkSource`` (``flatnet.ipam._chunks``): the node's chunk of a large pool, so nodes do
  not all contend on the one ``state`` key; its leftovers are other nodes' unused chunk ends.

Both commit through ``Txns.commit_claim`` and loop through ``Txns.retry``.
"""

from __future__ import annotations

from typing import Protocol

from flatnet.ipam import records as r
from flatnet.ipam._txn import Outcome, Step, Txns
from flatnet.ipam.api import Compare, Lease, Owner
from flatnet.ipam.pool import PoolRange


class FreshSource(Protocol):
    def take(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        """The next never-used address; None when this source has none left."""
        ...

    def leftover(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        """After released addresses: a never-used one parked elsewhere; None when none is."""
        ...


class CursorSource:
    """The pool's cursor: offsets handed out in order, each once (``pools/<pool>/state``)."""

    def __init__(self, txns: Txns) -> None:
        self.txns = txns

    def take(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        store, name = self.txns.store, pr.spec.name
        skey = r.pool_key(name, "state")

        def step() -> Step[Lease]:
            st = store.get(skey)
            state = r.state_of(st.value if st else None)
            off = pr.next_usable(state["cursor"])
            if off is None:
                return Outcome.EMPTY, None
            ip = pr.address(off)
            new_state = r.dumps({"cursor": off + 1, "seq": state["seq"]})
            guard = Compare(skey, st.version if st else 0)
            outcome, lease = self.txns.commit_claim(
                pr, ip, owner, [guard, Compare(r.ip_key(name, ip), 0)], {skey: new_state}, [], sticky_absent
            )
            holder = self.txns.taken(pr, ip) if outcome is Outcome.LOST else None
            if holder is not None:
                # an explicit request (or another pool of the segment) took this one ahead
                # of the cursor: step over it
                self.txns.step_over(pr, holder, [guard], {skey: new_state})
                return Outcome.STEPPED, None
            return outcome, lease

        return self.txns.retry(f"allocating from pool {name!r}", step)

    def leftover(self, pr: PoolRange, owner: Owner, sticky_absent: bool) -> Lease | None:
        return None  # everything the cursor passed is held, reserved or in the FIFO
