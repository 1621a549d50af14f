"""The lab's CNI network configurations, one set per node.

Three networks, as a cluster admin would define them:
  ``flat``         macvlan on the node's ``vlan100``: pods on the VMs' plane (the point)
  ``flat-bridge``  the same plane through a Linux bridge enslaving ``vlan100b``
  ``overlay``      the VXLAN fallback (SNAT out, its own cluster subnet)
  ``flat-small``   macvlan like ``flat``, on a pool of 8 addresses (``small-v4``): the pool
                   that the observability test fills to watch the pool-usage alert fire
  ``flat-wide``    macvlan like ``flat``, on pools of ~1,000 addresses in a subnet of their
                   own (``wide-v4``, ``wide-v6``): what the bench puts hundreds of pods on
                   one node with (the plane's /24 holds 160 pods in all)
The two flat networks name the same pools ("flat-v4", "flat-v6"), so they share one
address space: a macvlan pod and a bridge pod can never get the same address. Files go
to ``net.d/<node>/NN-<network>.conf`` with ``hostNetns`` and ``agentSocket`` per node.
"""

from __future__ import annotations

import os
from typing import Any

from flatnet_lab.lab import procs
from flatnet_lab.lab.topology import Node, Topology

NETWORKS = ("flat", "flat-bridge", "overlay", "flat-small", "flat-wide")
CNI_VERSION = "1.1.0"


def store_config(store: str, etcd_port: int | None) -> dict[str, Any]:
    """The ``ipam.store`` section for the lab's store choice."""
    if store == "etcd":
        return {"type": "etcd", "endpoints": [f"http://127.0.0.1:{etcd_port}"]}
    return {"type": "sqlite", "path": procs.path("ipam.db")}


def store_url(store: str, etcd_port: int | None) -> str:
    """The agent's ``--store`` URL for the same store."""
    if store == "etcd":
        return f"etcd:http://127.0.0.1:{etcd_port}"
    return f"sqlite:{procs.path('ipam.db')}"


def _pool(name: str, subnet: str, start: str, end: str, gateway: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "subnet": subnet, "rangeStart": start, "rangeEnd": end, "gateway": gateway, **extra}


def _flat_pools(topo: Topology) -> list[dict[str, Any]]:
    fp = topo.flat
    return [
        _pool("flat-v4", fp.v4_subnet, fp.v4_start, fp.v4_end, fp.v4_gateway, sticky=True),
        _pool("flat-v6", fp.v6_subnet, fp.v6_start, fp.v6_end, fp.v6_gateway, sticky=True),
    ]


def _small_pools(topo: Topology) -> list[dict[str, Any]]:
    fp = topo.flat
    return [_pool("small-v4", fp.v4_subnet, fp.small_start, fp.small_end, fp.v4_gateway)]


def _wide_pools(topo: Topology) -> list[dict[str, Any]]:
    fp = topo.flat
    return [
        _pool("wide-v4", fp.wide_v4_subnet, fp.wide_v4_start, fp.wide_v4_end, fp.wide_v4_gateway),
        _pool("wide-v6", fp.wide_v6_subnet, fp.wide_v6_start, fp.wide_v6_end, fp.wide_v6_gateway),
    ]


def node_configs(topo: Topology, node: Node, store: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """network name -> plugin config for ``node``."""
    common = {
        "cniVersion": CNI_VERSION,
        "type": "flatnet",
        "hostNetns": node.ns,
        "agentSocket": procs.agent_socket(node.name),
    }
    ov = topo.overlay

    def macvlan(name: str, pools: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            **common,
            "name": name,
            "mode": "macvlan",
            "master": node.flat_master,
            "serviceCidrs": [topo.service.cidr],
            "ipam": {"pools": pools, "store": store},
        }

    return {
        "flat": macvlan("flat", _flat_pools(topo)),
        "flat-bridge": {
            **common,
            "name": "flat-bridge",
            "mode": "bridge",
            "master": node.bridge_master,
            "bridge": "fnbr100",
            "serviceCidrs": [topo.service.cidr],
            "ipam": {"pools": _flat_pools(topo), "store": store},
        },
        "overlay": {
            **common,
            "name": "overlay",
            "mode": "vxlan",
            "vni": ov.vni,
            "vxlanPort": ov.port,
            "clusterSubnet": ov.cluster_subnet,
            "nodeBlockPrefix": ov.node_block_prefix,
            "nodeName": node.name,
            "vtepAddress": node.ipv4,
            "ipam": {"store": store},
        },
        # the metrics demo's 8-address pool, and the bench's room for 500 extra pods
        "flat-small": macvlan("flat-small", _small_pools(topo)),
        "flat-wide": macvlan("flat-wide", _wide_pools(topo)),
    }


def config_path(node: str, network: str) -> str:
    return procs.path("net.d", node, f"{10 * (NETWORKS.index(network) + 1)}-{network}.conf")


def write_all(topo: Topology, store: dict[str, Any]) -> list[str]:
    """Write every node's configs; return the paths written."""
    written = []
    for node in topo.nodes:
        os.makedirs(procs.path("net.d", node.name), exist_ok=True)
        for network, conf in node_configs(topo, node, store).items():
            p = config_path(node.name, network)
            procs.write_json(p, conf)
            written.append(p)
    return written
