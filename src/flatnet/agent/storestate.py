"""Which stores the node's agent uses, written where read-only tools can find them.

``flatnet ipam ls`` run on a node should look at the store the agent there uses without
being told: the agent may take it from ``--store`` or from each network config's
``ipam.store``. The agent therefore keeps ``stores.json`` next to its socket (by default
``/run/flatnet/stores.json``, on the host through the DaemonSet's ``/run/flatnet`` mount):
the store configs it has opened, rewritten (atomically, mode 0600) whenever it opens a new
one. Configs hold file paths of TLS material and credentials, never their contents.

Not to be merged with ``<state_dir>/agent-stores.<node>.json`` (``storebeats.py``): that one
lives on persistent disk and lists only the etcd stores whose heartbeat got in, so a rebooted
or upgraded agent beats again before any CNI request; this one is in /run (gone at reboot,
like the socket it sits beside) and lists every store opened, for read-only tools.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flatnet.errors import ConfigError

STATE_NAME = "stores.json"


def state_path(socket_path: str) -> str:
    """``stores.json`` beside the agent socket."""
    return os.path.join(os.path.dirname(os.path.abspath(socket_path)), STATE_NAME)


def record(path: str, stores: list[dict[str, Any]], node: str | None = None) -> None:
    """Write the list of store configs (best effort is the caller's choice)."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"node": node, "pid": os.getpid(), "stores": stores}, fh, sort_keys=True)
    os.replace(tmp, path)


def load(path: str) -> list[dict[str, Any]] | None:
    """The recorded store configs; None when there is no state file (no agent recorded one).

    A state file that exists but cannot be read (mode 0600: a non-root user) is an error,
    not "no agent": falling back to the default store would report an empty or wrong store.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise ConfigError(
            f"cannot read {path} (the stores the node's agent uses; mode 0600): permission denied",
            "run it as root (sudo flatnet ...), or name the store with --store",
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path} (the stores the node's agent uses) is unreadable: {exc}",
            "name the store with --store; restarting the agent rewrites the file",
        ) from None
    stores = data.get("stores") if isinstance(data, dict) else None
    if not isinstance(stores, list):
        return None
    return [s for s in stores if isinstance(s, dict) and s.get("type") in ("sqlite", "etcd", "memory")]
