"""Group commit: a process's concurrent allocations from one node's chunk, in one txn.

When kubelet starts many pods of a node at once, the node's agent serves their ADDs on as
many threads, and each allocation used to be a txn of its own: the store's per-request cost,
paid once per pod. Here the first caller for a (pool, node) commits at once; callers arriving
while its txn is in flight queue, and the next of them commits for all of them together, up
to ``MAX_BATCH`` addresses in one txn. Nobody waits for a timer or for a batch to fill: a lone
ADD is committed at once, as before, so a quiet node sees no extra latency.

Only the common case is batched (``Ipam.allocate`` decides): one pool, no requested address,
no sticky record to write, a node-named owner of a chunked pool. A batched txn compares the
node's chunk and creates every address's ``ips/``, ``seg/`` and ``owners/`` keys (create-only),
so it is all or nothing. When it fails (a lost race, an attachment that already holds a
lease, an address taken ahead of the chunk), each of its callers takes the single path, which
sorts its case out as it always did; the same happens when the chunk has nothing left.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Generic, Hashable, TypeVar

#: addresses in one txn: each costs 3 puts and 3 compares, and etcd refuses a txn of more
#: than 128 operations of either kind by default (``--max-txn-ops``)
MAX_BATCH = 32

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class _Call(Generic[In, Out]):
    item: In
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # woken to commit the next batch, not with a result
    result: Out | None = None
    error: BaseException | None = None


class Combiner(Generic[In, Out]):
    """Callers with the same key are served in batches: one caller at a time runs ``run`` on
    everything queued for its key (at most ``limit``), then hands the turn to the next queued
    caller. ``run`` returns one result per item, or raises for all of them."""

    def __init__(self, run: Callable[[list[In]], list[Out]], limit: int = MAX_BATCH) -> None:
        self._run, self._limit = run, limit
        self._lock = threading.Lock()
        self._queues: dict[Hashable, list[_Call[In, Out]]] = {}
        self._busy: set[Hashable] = set()
        #: batches committed and the calls in them (for tests and the bench)
        self.batches = 0
        self.calls = 0

    def submit(self, key: Hashable, item: In) -> Out:
        call: _Call[In, Out] = _Call(item)
        with self._lock:
            self._queues.setdefault(key, []).append(call)
            leader = key not in self._busy
            self._busy.add(key)
        if not leader:
            call.done.wait()
            if not call.lead:
                return self._answer(call)
        self._serve(key)
        call.done.wait()  # served in the batch just run (or an earlier one)
        return self._answer(call)

    def _serve(self, key: Hashable) -> None:
        """Run one batch of ``key``'s queue, then pass the turn on (or end it)."""
        with self._lock:
            queue = self._queues.get(key, [])
            batch, rest = queue[: self._limit], queue[self._limit :]
            if rest:
                self._queues[key] = rest
            else:
                self._queues.pop(key, None)
            self.batches += 1
            self.calls += len(batch)
        try:
            results = self._run([c.item for c in batch])
            for c, res in zip(batch, results, strict=True):
                c.result = res
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets it
            for c in batch:
                c.error = exc
        finally:
            with self._lock:
                nxt = self._queues.get(key)
                if nxt:
                    nxt[0].lead = True  # it commits the next batch, its own among them
                    nxt[0].done.set()
                else:
                    self._busy.discard(key)
            for c in batch:
                c.lead = False
                c.done.set()

    @staticmethod
    def _answer(call: _Call[In, Out]) -> Out:
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result
