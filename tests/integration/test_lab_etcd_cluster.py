"""The tooling's etcd cluster launcher against real etcd: a port taken before a new member binds
it (the kernel's free pick is only free until someone else takes it) costs a retry on new ports,
not a 60 s wait and a failed run (a CI run's scale test)."""

from __future__ import annotations

import socket

import pytest

from flatnet.errors import FlatnetError
from flatnet_lab import launch
from flatnet_lab.etcd import EtcdCluster

pytestmark = pytest.mark.etcd


def test_free_port_never_hands_out_a_port_twice() -> None:
    got = [launch.free_port() for _ in range(200)]
    assert len(set(got)) == len(got)


def test_a_new_cluster_whose_port_was_taken_starts_again_on_new_ports(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cluster = EtcdCluster(str(tmp_path), size=3, token="portrace", log_level="error")
    taken = cluster.members[1].client_port
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", taken))
    squatter.listen(1)
    try:
        cluster.start(timeout=30.0)
        assert cluster.healthy()
        assert f"127.0.0.1:{taken}" not in " ".join(cluster.endpoints)
    finally:
        cluster.stop()
        squatter.close()


def test_a_cluster_that_formed_once_is_not_moved_to_new_ports(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cluster = EtcdCluster(str(tmp_path), size=3, token="restart", log_level="error")
    try:
        cluster.start(timeout=30.0)
        before = list(cluster.endpoints)
        cluster.stop()
        port = cluster.members[0].client_port
        squatter = socket.socket()
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past etcd's TIME_WAITs
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        try:
            # a restart keeps its ports and data: a member that cannot bind is an error, named
            with pytest.raises(FlatnetError, match="did not become healthy"):
                cluster.start(timeout=8.0)
        finally:
            squatter.close()
        assert cluster.endpoints == before
        cluster.stop()
        cluster.start(timeout=30.0)  # the port free again: the same cluster comes back
        assert cluster.healthy() and cluster.endpoints == before
    finally:
        cluster.stop()
