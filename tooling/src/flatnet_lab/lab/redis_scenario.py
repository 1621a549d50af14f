"""The Redis Sentinel scenario, step by step, as seen by an application on a VM.

Sentinel is a registry: it hands out the address of the current master as the master pod
itself sees it. On the flat network that is an address on the VMs' VLAN, so a VM client that
knows only the sentinels finds the master, follows a failover and reaches the restarted pod
at its old (sticky) address, with no ``announce-ip`` workaround. On the overlay, Sentinel
hands out 198.19.x pod addresses that the VM cannot reach (bitnami/charts#4082,
helm/charts#21186, redis/redis#6151). Every fact in the report is measured while it runs;
each step records what it saw rather than asserting, so the overlay's failures show up as
rows instead of a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from flatnet.datapath.netns import run_in
from flatnet.errors import FlatnetError
from flatnet_lab.lab import pods
from flatnet_lab.lab import redis_client as rc
from flatnet_lab.lab.redis_pods import REDIS_PORT, SENTINEL_PORT, Deployment, wait_until
from flatnet_lab.lab.topology import Topology

T = TypeVar("T")
FAILOVER_TIMEOUT = 40.0
REJOIN_TIMEOUT = 60.0


@dataclass
class Row:
    """One step: what Sentinel announced, whether the VM reached it, and the key counts.

    ``found`` maps each redis pod to the keys (of ``written``) it holds as read *from the
    VM*, or to a string saying why it could not be read.
    """

    step: str
    master: str
    vm_reach: str
    written: int
    found: dict[str, int | str] = field(default_factory=dict)
    note: str = ""


@dataclass
class Outcome:
    """The run of one network: availability, the steps, and the facts tests check."""

    network: str
    available: bool = True
    reason: str = ""
    sentinels_how: str = ""
    sentinels_at: str = ""
    rows: list[Row] = field(default_factory=list)
    redis0_ip_before: str = ""
    redis0_ip_after: str = ""
    masters: list[str] = field(default_factory=list)
    aof_keys: int = -1  # keys redis-0 loaded from its volume after the restart (read inside)
    #: pod name -> address at deploy time
    ips: dict[str, str] = field(default_factory=dict)
    error: str = ""


def _err(exc: BaseException) -> str:
    """A short reason: "timed out", "Network is unreachable", "Connection refused"..."""
    if isinstance(exc, FlatnetError):
        return exc.msg
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))[:60]


class Scenario:
    """One network's run; ``run`` never raises FlatnetError (it records it in the outcome)."""

    def __init__(self, topo: Topology, network: str, keys: int, say: Callable[[str], None] = lambda m: None) -> None:
        self.topo, self.keys, self.say = topo, keys, say
        self.vm_ns = next(h.ns for h in topo.hosts if h.role == "vm")
        self.dep = Deployment(topo, network)
        self.out = Outcome(network)
        self.written = 0
        self.sentinels: list[rc.Addr] = []

    def vm(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` as an application on the VM (its sockets live in the VM's netns)."""
        return run_in(self.vm_ns, fn, *args)

    def run(self) -> Outcome:
        try:
            self._steps()
        except (OSError, rc.ReplyError) as exc:  # an in-cluster check that could not answer
            self.out.error = _err(exc)
        except FlatnetError as exc:
            if self.dep.added == 0:  # not a single pod: the network is not usable here
                self.out.available, self.out.reason = False, "; ".join(x for x in (exc.msg, exc.details) if x)
            else:
                self.out.error = f"{exc.msg} {exc.details}".strip()
        finally:
            self.say(f"{self.out.network}: removing the Redis pods, processes and volumes")
            for err in self.dep.cleanup():
                self.out.error += f" cleanup: {err}"
        return self.out

    # -- the VM's view ------------------------------------------------------------------

    def ask(self) -> tuple[rc.Addr | None, str]:
        """Ask Sentinel for the master from the VM; (None, why) when no sentinel answers."""
        try:
            master, _ = self.vm(rc.ask_master, self.sentinels)
        except OSError as exc:
            return None, _err(exc)
        return master, ""

    def ask_in_cluster(self) -> rc.Addr:
        """The same question from inside (a sentinel pod, like ``kubectl exec``)."""
        name = f"sentinel-{1 % self.dep.sentinels}"
        me = rc.Addr(pods.get_pod(name).ip, SENTINEL_PORT)
        return self.dep.in_pod(name, rc.ask_master, [me])[0]

    def master_now(self) -> tuple[rc.Addr, str]:
        """Sentinel's answer (VM first, in-cluster as the fallback) and a note on which."""
        master, why = self.ask()
        if master is not None:
            return master, ""
        return self.ask_in_cluster(), f"VM cannot reach a sentinel ({why}); asked inside"

    def write(self, master: rc.Addr, n: int, replicas: int) -> str:
        """Write the next ``n`` keys from the VM, WAIT for ``replicas``; 'ok' or why not."""
        try:
            self.written += self.vm(rc.write_keys, master, self.written, n, replicas)
        except (OSError, rc.ReplyError) as exc:
            return f"unreachable ({_err(exc)})"
        return "ok"

    def count(self, names: list[str]) -> dict[str, int | str]:
        """Keys found on each pod, read from the VM at the pod's address."""
        found: dict[str, int | str] = {}
        for name in (f"redis-{k}" for k in range(self.dep.replicas)):
            if name not in names:
                found[name] = "no pod"
                continue
            addr = rc.Addr(pods.get_pod(name).ip, REDIS_PORT)
            try:
                found[name] = self.vm(rc.count_keys, addr, 0, self.written)
            except (OSError, rc.ReplyError) as exc:
                found[name] = "unreachable" if isinstance(exc, OSError) else _err(exc)
        return found

    def record(self, step: str, master: rc.Addr, reach: str, names: list[str], note: str = "") -> None:
        self.out.masters.append(str(master))
        self.out.rows.append(Row(step, str(master), reach, self.written, self.count(names), note))

    # -- the steps ----------------------------------------------------------------------

    def _steps(self) -> None:
        net, dep = self.out.network, self.dep
        all_pods = [f"redis-{k}" for k in range(dep.replicas)]
        self.say(f"{net}: pods redis-0..{dep.replicas - 1}, sentinel-0..{dep.sentinels - 1}")
        dep.deploy(sentinel_port_mappings=(net == "overlay"))
        if net == "overlay":  # the usual way in: a NodePort/hostPort on every node
            self.sentinels = [
                rc.Addr(self.topo.node(pods.get_pod(f"sentinel-{k}").node).ipv4, SENTINEL_PORT)
                for k in range(dep.sentinels)
            ]
            self.out.sentinels_how = "node:hostPort"
            self.out.sentinels_at = ", ".join(map(str, self.sentinels))
        else:
            self.sentinels = [rc.Addr(pods.get_pod(f"sentinel-{k}").ip, SENTINEL_PORT) for k in range(dep.sentinels)]
            self.out.sentinels_how = "pod addresses"
            self.out.sentinels_at = ", ".join(map(str, self.sentinels))
        self.out.ips = {p: pods.get_pod(p).ip for p in all_pods}
        self.out.redis0_ip_before = self.out.ips["redis-0"]

        self.say(f"{net}: VM asks Sentinel for the master and writes {self.keys} keys")
        master, note = self.master_now()
        reach = self.write(master, self.keys, dep.replicas - 1)
        self.record("1 VM writes", master, reach, all_pods, note)

        self.say(f"{net}: SIGKILL the master, DEL its pod network; wait for the failover")
        old = master
        dep.delete_pod("redis-0")

        def new_master() -> rc.Addr | None:
            try:
                m = self.master_now()[0]
            except OSError:
                return None
            return m if m != old else None

        master = wait_until("Sentinel to announce a new master", new_master, FAILOVER_TIMEOUT)
        survivors = all_pods[1:]
        reach = self.write(master, self.keys, dep.replicas - 2)
        self.record("2 master killed", master, reach, survivors, "failover; VM asked Sentinel again")

        self.say(f"{net}: redis-0 back on {dep.node_of(0)} with its node-local volume")
        before_kill = self.written - self.keys
        dep.add_pod("redis-0", dep.node_of(0))
        back = dep.start_redis("redis-0", None)  # redis.conf on the volume is reused
        self.out.redis0_ip_after = back.ip
        me = rc.Addr(back.ip, REDIS_PORT)
        self.out.aof_keys = dep.in_pod("redis-0", rc.count_keys, me, 0, before_kill)
        same = back.ip == self.out.redis0_ip_before
        where = "same address" if same else f"NEW address {back.ip}"
        self.record(
            "3 redis-0 back", master, "-", all_pods, f"{back.node}, {where}, {self.out.aof_keys} keys from its AOF"
        )

        if same:
            self.say(f"{net}: wait for Sentinel to turn redis-0 into a replica and resync it")
            try:
                dep.wait_synced("redis-0", master.host, REJOIN_TIMEOUT)
                note = f"replica of {master}"
            except FlatnetError as exc:
                note = exc.msg
        else:  # Sentinel only knows the old address: nobody will ever reconfigure it
            role = dep.in_pod("redis-0", rc.replication, me).get("role", "?")
            note = f"Sentinel knows only {self.out.redis0_ip_before}: redis-0 stays role={role}: two masters"
        master, _ = self.master_now()
        reach = self.write(master, self.keys, dep.replicas - (1 if same else 2))
        self.record("4 rejoined" if same else "4 not rejoined", master, reach, all_pods, note)
