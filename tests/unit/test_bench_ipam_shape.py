"""The IPAM bench's client/node shape (flatnet_lab.bench.ipambench.client_nodes)."""

from __future__ import annotations

from flatnet_lab.bench.ipambench import client_nodes


def test_each_node_has_exactly_one_allocating_client() -> None:
    for clients in (1, 8, 32):
        sets = [client_nodes(w, clients, 100) for w in range(clients)]
        every = [n for s in sets for n in s]
        assert sorted(every) == list(range(100)), clients  # disjoint and all served


def test_more_clients_than_nodes_and_the_mixed_shape_serve_every_node() -> None:
    assert sorted({n for w in range(128) for n in client_nodes(w, 128, 100)}) == list(range(100))
    assert client_nodes(5, 8, 4) == [1]  # more clients than nodes: two allocators on some nodes
    assert client_nodes(3, 8, 100, mixed=True) == list(range(100))
