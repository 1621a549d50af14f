"""Shared pieces of the lab's integration tests: a fresh lab per module, tiny TCP scripts."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from flatnet_lab.testbed import net as labnet
from flatnet_lab.lab import manager
from flatnet_lab.lab.topology import PREFIX, Topology

#: a TCP server that answers every connection with "<tag> <peer address it saw>" (30 s idle cap)
SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
s.settimeout(30)
print("ready", flush=True)
while True:
    try:
        c, peer = s.accept()
    except socket.timeout:
        break
    c.sendall(("%s %s" % (sys.argv[2], peer[0])).encode())
    c.close()
"""
#: connects to argv[1]:argv[2] (3 s timeouts) and prints what the server said
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
c.settimeout(3)
print(c.recv(200).decode())
"""


@contextmanager
def fresh_lab(nodes: int = 3, agents: bool = True) -> Iterator[Topology]:
    """A lab built from scratch under the lab lock, torn down (and checked gone) after."""
    with manager.exclusive():
        manager.down()
        try:
            yield manager.up(nodes=nodes, agents=agents)
        finally:
            manager.down()
            assert labnet.list_namespaces(PREFIX) == []
