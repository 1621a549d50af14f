"""nftables for the overlay mode: SNAT on the way out, DNAT port mapping on the way in.

Port mapping is done natively with nftables rather than by chaining the reference
``portmap`` plugin, because:
  * one mechanism covers both SNAT (masquerade) and DNAT, in one table we own (``flatnet``);
  * ``nft -f`` applies a ruleset text as one atomic transaction, so a container's rules
    appear or vanish together and a failed ADD never leaves half its mappings behind;
  * no dependency on iptables (legacy or nft-backed) on the node.
Users who prefer the reference plugin can still chain ``portmap`` after flatnet.

Layout, per family (``ip`` / ``ip6``) in table ``flatnet`` of the node's netns:
  * ``snat-<tag>``: one base chain per network (nat hook postrouting), flushed and refilled
    on every ``ensure_snat``, so it is idempotent without parsing anything;
  * ``portmaps-pre`` / ``portmaps-out``: base chains (nat prerouting / output) holding the
    DNAT rules; every rule carries the comment ``fnpm <network> <container>`` so DEL
    removes exactly that container's rules (by handle, in one transaction).

All commands run inside the target netns: ``run_in`` puts a thread in it, and the
``nft`` child forked from that thread inherits the namespace.
"""

from __future__ import annotations

import ctypes
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any

from flatnet.datapath.netns import run_in
from flatnet.errors import ConfigError, DatapathError

TABLE = "flatnet"
PRE, OUT = "portmaps-pre", "portmaps-out"
_TIMEOUT = 15.0


@dataclass(frozen=True)
class Rule:
    """One rule as listed: where it lives, its handle and comment, and its JSON expression."""

    family: str
    table: str
    chain: str
    handle: int
    comment: str = ""
    expr: list[Any] = field(default_factory=list, compare=False, hash=False)

    @property
    def text(self) -> str:
        """The expression as compact JSON, for substring checks ("masquerade", "dnat")."""
        return json.dumps(self.expr, sort_keys=True)


def require_nft() -> str:
    found = shutil.which("nft") or next((p for p in ("/usr/sbin/nft", "/sbin/nft") if os.path.exists(p)), None)
    if found is None:
        raise DatapathError(
            "nft (nftables) is not installed; overlay SNAT and port mapping need it: apt-get install nftables"
        )
    return found


def _run(ns: str | None, args: list[str], stdin: str | None = None) -> str:
    cmd = [require_nft(), *args]
    try:
        proc = run_in(ns, subprocess.run, cmd, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise DatapathError(f"nft {' '.join(args)} in netns {ns or 'self'} did not finish in {_TIMEOUT:g}s") from None
    except OSError as exc:
        raise DatapathError(f"cannot run nft in netns {ns or 'self'}: {exc}") from exc
    if proc.returncode != 0:
        raise DatapathError(
            f"nft {' '.join(args)} failed in netns {ns or 'self'}: {proc.stderr.strip()}",
            details=(stdin or "")[-2000:],
        )
    return proc.stdout


def apply(ns: str | None, ruleset_text: str) -> None:
    """Apply a ruleset text atomically (``nft -f -``) inside ``ns``."""
    _run(ns, ["-f", "-"], ruleset_text)


_LIB: Any = None
_LIB_TRIED = False
_LIB_GUARD = threading.Lock()


def _libnftables() -> Any:
    """libnftables (what the ``nft`` binary is built on), loaded once; None if absent."""
    global _LIB, _LIB_TRIED
    with _LIB_GUARD:
        if not _LIB_TRIED:
            _LIB_TRIED = True
            try:
                lib = ctypes.CDLL("libnftables.so.1")
                lib.nft_ctx_new.restype = ctypes.c_void_p
                lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
                lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
                lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
                lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
                lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
                lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
                lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
                _LIB = lib
            except (OSError, AttributeError):
                _LIB = None
        return _LIB


def apply_inproc(ns: str | None, ruleset_text: str) -> None:
    """Like ``apply``, through libnftables in this process when it is there (no fork/exec of
    ``nft``: ~2 ms instead of ~7 ms for a pod's first-hop filter on ADD); ``nft -f`` otherwise.

    The context is made and freed on the thread that ``run_in`` put into ``ns``, so its
    netlink socket belongs to that netns. One call is one transaction, as with ``nft -f``.
    """
    lib = _libnftables()
    if lib is None:
        apply(ns, ruleset_text)
        return

    def run() -> tuple[int, str]:
        with _RUN_GUARD:  # libnftables keeps process-wide state: one context at a time
            return _run_ctx(lib, ruleset_text)

    rc, err = run_in(ns, run)
    if rc != 0:
        raise DatapathError(f"nft -f - failed in netns {ns or 'self'}: {err.strip()}", details=ruleset_text[-2000:])


_RUN_GUARD = threading.Lock()


def _run_ctx(lib: Any, ruleset_text: str) -> tuple[int, str]:
    """One libnftables context for one ruleset text: (return code, error text)."""
    ctx = lib.nft_ctx_new(0)
    if not ctx:
        return -1, "nft_ctx_new failed"
    try:
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        rc = lib.nft_run_cmd_from_buffer(ctx, ruleset_text.encode())
        err = lib.nft_ctx_get_error_buffer(ctx) or b""
        return int(rc), err.decode(errors="replace")
    finally:
        lib.nft_ctx_free(ctx)


def _family(net: ipaddress.IPv4Network | ipaddress.IPv6Network | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return "ip" if net.version == 4 else "ip6"


def _tag(network: str) -> str:
    """A chain-name-safe, bounded tag for a network name."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in network)
    return safe if len(safe) <= 24 and safe == network else hashlib.sha1(network.encode()).hexdigest()[:12]


def _comment(network: str, container_id: str) -> str:
    text = f"fnpm {network} {container_id}"
    if len(text) > 120 or '"' in text or "\\" in text:
        text = "fnpm " + hashlib.sha1(f"{network}\0{container_id}".encode()).hexdigest()
    return text


def _snat_chain(network: str) -> str:
    return f"snat-{_tag(network)}"


def ensure_snat(
    ns: str | None, network: str, cluster_subnet: str | ipaddress.IPv4Network | ipaddress.IPv6Network
) -> None:
    """Masquerade traffic from the cluster subnet to anything outside it. Idempotent."""
    cluster = ipaddress.ip_network(cluster_subnet)
    fam, chain = _family(cluster), _snat_chain(network)
    apply(
        ns,
        (
            f"add table {fam} {TABLE}\n"
            f"add chain {fam} {TABLE} {chain} {{ type nat hook postrouting priority srcnat; policy accept; }}\n"
            f"flush chain {fam} {TABLE} {chain}\n"
            f"add rule {fam} {TABLE} {chain} {fam} saddr {cluster} {fam} daddr != {cluster} masquerade "
            f'comment "fnsnat {_tag(network)}"\n'
        ),
    )


def remove_snat(ns: str | None, network: str) -> None:
    """Remove the network's SNAT chain in both families. Idempotent (add-then-delete)."""
    chain = _snat_chain(network)
    apply(
        ns,
        "".join(
            f"add table {fam} {TABLE}\n"
            f"add chain {fam} {TABLE} {chain} {{ type nat hook postrouting priority srcnat; policy accept; }}\n"
            f"delete chain {fam} {TABLE} {chain}\n"
            for fam in ("ip", "ip6")
        ),
    )


def _mapping_rules(
    fam: str, pod: ipaddress.IPv4Address | ipaddress.IPv6Address, mappings: list[dict[str, Any]]
) -> list[str]:
    """Validate CNI portMappings and turn each into the match/verdict text of one rule."""
    out = []
    for i, m in enumerate(mappings):
        where = f"portMappings[{i}]"
        if not isinstance(m, dict):
            raise ConfigError(
                f'{where} must be an object like {{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}'
            )
        ports = {}
        for key in ("hostPort", "containerPort"):
            v = m.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
                raise ConfigError(f"{where}.{key} must be an integer port 1-65535, got {v!r}")
            ports[key] = v
        proto = str(m.get("protocol") or "tcp").lower()
        if proto not in ("tcp", "udp"):
            raise ConfigError(f'{where}.protocol must be "tcp" or "udp", got {m.get("protocol")!r}')
        host_ip = m.get("hostIP") or m.get("hostIp")
        if host_ip:
            try:
                hip = ipaddress.ip_address(host_ip)
            except ValueError:
                raise ConfigError(
                    f"{where}.hostIP {host_ip!r} is not an IP address; omit it to listen on every node address"
                ) from None
            if hip.version != pod.version:
                continue  # a v6 hostIP does not apply to a v4 pod address (and vice versa)
            match = f"{fam} daddr {hip}"
        else:
            match = "fib daddr type local"
        target = f"{pod}:{ports['containerPort']}" if pod.version == 4 else f"[{pod}]:{ports['containerPort']}"
        out.append(f"{match} {proto} dport {ports['hostPort']} dnat to {target}")
    return out


def validate_mappings(pod_ip: str, mappings: list[dict[str, Any]]) -> None:
    """Raise ConfigError for malformed CNI portMappings, before any kernel step is taken."""
    pod = ipaddress.ip_address(pod_ip.split("/")[0])
    _mapping_rules(_family(pod), pod, mappings)


def add_portmaps(ns: str | None, network: str, container_id: str, pod_ip: str, mappings: list[dict[str, Any]]) -> None:
    """DNAT node:hostPort -> pod:containerPort (prerouting and locally originated output).

    Replaces the container's previous rules in the same transaction, so it is
    idempotent and a retried ADD never duplicates rules.
    """
    pod = ipaddress.ip_address(pod_ip.split("/")[0])
    fam, comment = _family(pod), _comment(network, container_id)
    rules = _mapping_rules(fam, pod, mappings)
    text = [
        f"add table {fam} {TABLE}\n",
        f"add chain {fam} {TABLE} {PRE} {{ type nat hook prerouting priority dstnat; policy accept; }}\n",
        f"add chain {fam} {TABLE} {OUT} {{ type nat hook output priority -100; policy accept; }}\n",
    ]
    text += _delete_lines(ns, comment, families=(fam,))
    for rule in rules:
        for chain in (PRE, OUT):
            text.append(f'add rule {fam} {TABLE} {chain} {rule} comment "{comment}"\n')
    apply(ns, "".join(text))


def remove_portmaps(ns: str | None, network: str, container_id: str) -> int:
    """Delete exactly this container's DNAT rules; returns how many were removed. Idempotent."""
    lines = _delete_lines(ns, _comment(network, container_id), families=("ip", "ip6"))
    if lines:
        apply(ns, "".join(lines))
    return len(lines)


def _delete_lines(ns: str | None, comment: str, families: tuple[str, ...]) -> list[str]:
    return [
        f"delete rule {r.family} {r.table} {r.chain} handle {r.handle}\n"
        for r in list_rules(ns)
        if r.family in families and r.comment == comment
    ]


def list_rules(ns: str | None) -> list[Rule]:
    """Every rule of flatnet's tables (both families) in ``ns``; empty when none exist."""
    out: list[Rule] = []
    for fam in ("ip", "ip6"):
        try:
            raw = _run(ns, ["-j", "list", "table", fam, TABLE])
        except DatapathError as exc:
            if "No such file or directory" in exc.msg:
                continue  # table absent: nothing of ours here
            raise
        for item in json.loads(raw).get("nftables", []):
            r = item.get("rule")
            if r:
                out.append(
                    Rule(r["family"], r["table"], r["chain"], int(r["handle"]), r.get("comment", ""), r.get("expr", []))
                )
    return out


def portmap_rules(ns: str | None, network: str, container_id: str) -> list[Rule]:
    """This container's DNAT rules (for CHECK and tests)."""
    comment = _comment(network, container_id)
    return [r for r in list_rules(ns) if r.comment == comment]
