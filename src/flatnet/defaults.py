"""Every default path, port and timeout flatnet uses, in one place.

Standard library only and imported by every layer (cni, ipam, datapath, agent, cli,
doctor), so a default is changed here and nowhere else. A network config, a command-line
option or an environment variable overrides each of them where it is used.
"""

from __future__ import annotations

#: a network config's mode when it names none (pods as macvlan children of the VLAN's link)
MODE = "macvlan"
#: the distribution that installs the runtime (pyproject's name; ``flatnet_build_info``'s version)
DISTRIBUTION = "flatnet-cni"

#: node state that survives a reboot (the embedded store)
STATE_DIR = "/var/lib/flatnet"
#: the embedded store: one SQLite file per node
SQLITE_PATH = f"{STATE_DIR}/ipam.db"
#: how long a SQLite call waits for another writer's lock, seconds
SQLITE_TIMEOUT = 5.0

#: runtime state that a reboot clears: the agent's socket and the per-container locks
RUN_DIR = "/run/flatnet"
AGENT_SOCKET = f"{RUN_DIR}/agent.sock"
#: CNI requests the agent serves at once (``flatnet agent --max-parallel``); more wait their turn
AGENT_MAX_PARALLEL = 4
LOCK_DIR = f"{RUN_DIR}/locks"
#: the no-agent mode's per-attachment records (``<container id>.<ifname>``): which entry point
#: served an ADD, so every later DEL/CHECK finds it (the forwarder reads this path too)
INPROCESS_DIR = f"{RUN_DIR}/inprocess"

#: etcd's client port and the endpoint used when a config names none
ETCD_PORT = 2379
ETCD_ENDPOINT = f"http://127.0.0.1:{ETCD_PORT}"
#: every key of one flatnet cluster lives under this prefix (clusters can share an etcd)
ETCD_PREFIX = "/flatnet/"
#: how long one etcd call may take before the next endpoint is tried, seconds
ETCD_TIMEOUT = 2.0

#: a node's heartbeat in an etcd store: an etcd lease of this many seconds, kept alive
HEARTBEAT_TTL = 10
#: how long a node's heartbeat may be gone before a live agent reclaims its leases, seconds
DEAD_NODE_GRACE = 300.0
#: an etcd member that failed is asked after the others for this long, seconds
ETCD_DOWN_FOR = 5.0
#: TCP connect + TLS handshake bound per etcd member, seconds (a dead member costs at most this)
ETCD_CONNECT_TIMEOUT = 1.0

#: the agent's /metrics, /healthz and /readyz port (the chart's agent.metricsPort)
METRICS_PORT = 9631
#: how often the agent reclaims leases whose container netns vanished without a DEL, seconds
RECONCILE_EVERY = 60.0
#: the CNI forwarder: how long it waits for the agent to accept, and to answer a call, seconds
#: (native/forwarder/Makefile generates build/versions.h from these two lines: keep the format;
#: $FLATNET_AGENT_TIMEOUT overrides the answer timeout)
AGENT_CONNECT_TIMEOUT = 5.0
AGENT_TIMEOUT = 120.0

#: how long a deleted pod's sticky address stays reserved for it, seconds (a pool's stickyHold)
STICKY_HOLD = 86400.0
#: how long an address that answered a conflict probe stays out of use, seconds
QUARANTINE = 600.0

#: where the container runtime looks for network configs and plugin binaries
CNI_CONF_DIR = "/etc/cni/net.d"
CNI_BIN_DIR = "/opt/cni/bin"

#: the bridge of mode bridge, and the overlay's bridge behind the VXLAN device
BRIDGE = "fnbr0"
OVERLAY_BRIDGE = "fnovl0"
#: the IANA VXLAN port and the VNI used when a config names none
VXLAN_PORT = 4789
VNI = 1
