"""A tiny CNI conflist runner, the way libcni drives a chain (for integration tests).

ADD execs each plugin of ``plugins`` in order, injecting ``name``, ``cniVersion``, the
previous plugin's result as ``prevResult`` and ``runtimeConfig`` for the capabilities a
plugin declares; CHECK runs in order and DEL in reverse, both with the ADD result as
``prevResult``. Plugins are found on ``cni_path`` by their ``type``; ``netns_exec`` runs
them inside a node netns (``ip netns exec``), so reference plugins such as portmap touch
that namespace and never the machine's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CNI_PATH = ("/opt/cni/bin", "/usr/lib/cni")


class CniError(Exception):
    """A plugin failed: ``code``/``msg`` from its error JSON, ``plugin`` its type."""

    def __init__(self, plugin: str, code: int, msg: str, stdout: str, stderr: str) -> None:
        super().__init__(f"{plugin}: error {code}: {msg}")
        self.plugin, self.code, self.msg, self.stdout, self.stderr = plugin, code, msg, stdout, stderr


@dataclass
class Runner:
    """Runs one conflist against one attachment (container id, netns path, ifname)."""

    conflist: dict
    container_id: str
    netns: str
    ifname: str = "eth0"
    cni_args: str = ""
    capability_args: dict[str, Any] = field(default_factory=dict)
    cni_path: tuple[str, ...] = DEFAULT_CNI_PATH
    netns_exec: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 60.0
    last_result: dict | None = None

    def _find(self, kind: str) -> str:
        for directory in self.cni_path:
            candidate = os.path.join(directory, kind)
            if os.access(candidate, os.X_OK):
                return candidate
        raise FileNotFoundError(f"CNI plugin {kind!r} not found in {':'.join(self.cni_path)}")

    def _config(self, plugin: dict, prev: dict | None) -> dict:
        conf = dict(plugin)
        conf["name"] = self.conflist["name"]
        conf["cniVersion"] = self.conflist["cniVersion"]
        if prev is not None:
            conf["prevResult"] = prev
        runtime = {
            cap: self.capability_args[cap]
            for cap, on in (plugin.get("capabilities") or {}).items()
            if on and cap in self.capability_args
        }
        if runtime:
            conf["runtimeConfig"] = runtime
        return conf

    def exec_plugin(self, verb: str, plugin: dict, prev: dict | None) -> dict | None:
        conf = self._config(plugin, prev)
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": verb,
            "CNI_CONTAINERID": self.container_id,
            "CNI_NETNS": self.netns,
            "CNI_IFNAME": self.ifname,
            "CNI_ARGS": self.cni_args,
            "CNI_PATH": ":".join(self.cni_path),
            **self.env,
        }
        argv = [self._find(plugin["type"])]
        if self.netns_exec:
            argv = ["ip", "netns", "exec", self.netns_exec, *argv]
        proc = subprocess.run(argv, input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=self.timeout)
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        if proc.returncode != 0:
            try:
                doc = json.loads(out)
                code, msg = int(doc.get("code", -1)), str(doc.get("msg", ""))
            except ValueError:
                code, msg = -1, out or err
            raise CniError(plugin["type"], code, msg, out, err)
        return json.loads(out) if out.strip() else None

    def add(self) -> dict:
        prev: dict | None = None
        for plugin in self.conflist["plugins"]:
            prev = self.exec_plugin("ADD", plugin, prev)
        assert prev is not None, "the chain produced no result"
        self.last_result = prev
        return prev

    def check(self, skip: tuple[str, ...] = ()) -> None:
        """CHECK every plugin in order, except the types in ``skip`` (known-broken CHECKs)."""
        for plugin in self.conflist["plugins"]:
            if plugin["type"] not in skip:
                self.exec_plugin("CHECK", plugin, self.last_result)

    def delete(self) -> None:
        for plugin in reversed(self.conflist["plugins"]):
            self.exec_plugin("DEL", plugin, self.last_result)


def install_forwarder(directory: str) -> str:
    """``directory``/flatnet: the CNI forwarder built from this working tree.

    Tests exec the working tree's forwarder (``make -C native/forwarder``, a no-op when up
    to date), not whatever /opt/cni/bin holds.
    """
    from flatnet_lab import forwarder

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "flatnet")
    shutil.copyfile(forwarder.path(), path)
    os.chmod(path, 0o755)
    return path


def inprocess_env() -> dict[str, str]:
    """What makes the forwarder run the no-agent mode when no agent listens."""
    from flatnet_lab import forwarder

    return {"FLATNET_INPROCESS": forwarder.inprocess_entry(), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def tree_inprocess_entry(directory: str) -> str:
    """A ``flatnet-inprocess`` launcher in ``directory`` that imports flatnet from the tree
    under test, whatever the environment: podman's exit cleanup runs DEL without the
    environment (so without PYTHONPATH) that ``podman run`` had."""
    import flatnet

    src = os.path.dirname(os.path.dirname(os.path.abspath(flatnet.__file__)))
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "flatnet-inprocess")
    with open(path, "w") as fh:
        fh.write(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {src!r})\n"
            "from flatnet.agent.inprocess import main\nmain()\n"
        )
    os.chmod(path, 0o755)
    return path
