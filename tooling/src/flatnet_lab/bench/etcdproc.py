"""A private etcd for the IPAM bench: free ports on 127.0.0.1, data in the run's tmp dir.

Started and stopped by the bench itself (never the lab's etcd, which others may be using),
so its numbers are not disturbed by anyone else's keys and it always goes away at the end.
The launcher is the tooling's one (flatnet_lab.etcd).
"""

from __future__ import annotations

import os

from flatnet_lab.bench.nsenv import Scratch
from flatnet_lab.etcd import EtcdMember, version

__all__ = ["start", "version"]


def start(tmp: str, scratch: Scratch) -> str:
    """Start etcd (tracked by ``scratch`` for cleanup); return its client endpoint."""
    member = EtcdMember(os.path.join(tmp, "etcd"), "fnb", os.path.join(tmp, "etcd.log"))
    member.start(20.0)  # FlatnetError with the log's tail if it does not come up
    assert member.proc is not None
    scratch.track(member.proc)
    return member.endpoint
