"""Random allocate / request / release sequences on a small pool, checked against a model.

Properties: no address is ever held twice, and no address leaks: every usable address
is exactly one of held, waiting in the reuse FIFO, or not yet reached by the cursor.
"""

from __future__ import annotations

import ipaddress
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flatnet.errors import AddressUnavailable, PoolExhausted
from flatnet.ipam import Ipam, Owner, PoolRange, PoolSpec
from flatnet.ipam.store import MemoryStore

POOL = PoolSpec(
    "m",
    ipaddress.ip_network("198.18.3.0/28"),
    range_end=ipaddress.ip_address("198.18.3.8"),
    gateway=ipaddress.ip_address("198.18.3.1"),
    exclude=frozenset({ipaddress.ip_address("198.18.3.5")}),
)
PR = PoolRange(POOL)
USABLE = [PR.address(o) for o in range(PR.first, PR.last + 1) if PR.usable(o)]

op = st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 9)),
    st.tuples(st.just("release"), st.integers(0, 9)),
    st.tuples(st.just("request"), st.integers(0, 9), st.sampled_from(USABLE)),
)


def check_accounting(store: MemoryStore, model: dict[str, ipaddress.IPv4Address]) -> None:
    held = {ipaddress.ip_address(json.loads(e.value)["ip"]) for e in store.range("pools/m/ips/")}
    assert held == set(model.values())
    assert len(model) == len(set(model.values()))  # no duplicates
    fifo = [ipaddress.ip_address(e.value) for e in store.range("pools/m/free/")]
    assert len(fifo) == len(set(fifo)) and not set(fifo) & held
    idx = {e.key.rsplit("/", 1)[1] for e in store.range("pools/m/freeidx/")}
    assert idx == {str(a) for a in fifo}
    st_entry = store.get("pools/m/state")
    cursor = json.loads(st_entry.value)["cursor"] if st_entry else 0
    never_used = {a for a in USABLE if PR.offset(a) >= cursor} - held
    assert not never_used & set(fifo)
    assert len(held) + len(fifo) + len(never_used) == PR.total


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=60))
def test_random_sequences_never_duplicate_or_leak(ops: list[tuple]) -> None:
    store = MemoryStore()
    ipam = Ipam(store)
    model: dict[str, ipaddress.IPv4Address] = {}
    for step in ops:
        cid = f"c{step[1]}"
        owner = Owner(cid, "eth0", "n")
        if step[0] == "alloc":
            if cid not in model and len(model) == PR.total:
                try:
                    ipam.allocate([POOL], owner)
                    raise AssertionError("allocated from a full pool")
                except PoolExhausted:
                    pass
            else:
                got = ipam.allocate([POOL], owner)[0].address.ip
                assert model.setdefault(cid, got) == got
        elif step[0] == "request":
            want = step[2]
            holder = next((c for c, a in model.items() if a == want), None)
            if (cid in model and model[cid] != want) or (holder not in (None, cid)):
                try:
                    ipam.allocate([POOL], owner, [want])
                    raise AssertionError(f"{want} handed out twice")
                except AddressUnavailable:
                    pass
            else:
                assert ipam.allocate([POOL], owner, [want])[0].address.ip == want
                model[cid] = want
        else:
            released = ipam.release(cid, "eth0")
            assert [lease.address.ip for lease in released] == ([model.pop(cid)] if cid in model else [])
        check_accounting(store, model)
