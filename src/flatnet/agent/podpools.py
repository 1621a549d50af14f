"""ADD's choice of pools for one pod: namespace rules and annotations, applied before allocation.

The rules themselves are pure (``flatnet.cni.poolrules``); here they meet the invocation
(the pod's namespace from CNI_ARGS, its annotations from runtimeConfig, the addresses the
runtime requested) and the store (an address reserved for another pod's sticky return is
refused up front: the allocator's requested-address path would take the reservation over,
which is right for CNI_ARGS ``IP`` but not for an annotation a person wrote). Everything that
can be refused without allocating is refused here; what only the allocator can see (held by
a live pod, quarantined, answered on the VLAN) it refuses, and ``naming`` puts the
annotation's name and value in front of its message.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

from flatnet.agent.spec import netconf, requested_ips
from flatnet.cni import annotations as ann
from flatnet.cni import poolrules
from flatnet.errors import AddressUnavailable
from flatnet.ipam.api import IPAddress, PoolSpec

if TYPE_CHECKING:
    from flatnet.cni.env import CmdArgs
    from flatnet.ipam import Ipam


@dataclass(frozen=True)
class Pick:
    """The pools one ADD allocates from, the addresses it requests and how each pool was chosen."""

    pools: tuple[PoolSpec, ...]
    requested: list[IPAddress] = field(default_factory=list)
    how: Mapping[str, str] = field(default_factory=dict)
    #: the ``flatnet.io/ip`` value as written, and the addresses it asked for
    fixed_value: str = ""
    fixed: tuple[IPAddress, ...] = ()


def pick(cmd: CmdArgs, pools: Sequence[PoolSpec], ipam: Ipam) -> Pick:
    """Apply the rules to this ADD; raise (nothing allocated) when the pod's request is refused."""
    annotations = ann.pod_annotations(netconf(cmd).runtime_config.raw)
    namespace = (cmd.args or {}).get("K8S_POD_NAMESPACE") or None
    choice = poolrules.choose(pools, namespace, annotations)
    fixed_value = annotations.get(ann.IP, "")
    requested = list(choice.requested)
    for ip in requested_ips(cmd):  # CNI_ARGS IP, runtimeConfig ips, args.cni.ips
        mine = next((x for x in requested if x.version == ip.version), None)
        if mine is None:
            requested.append(ip)
        elif mine != ip:
            raise AddressUnavailable(
                f"pod annotation {ann.IP} {ann.show(fixed_value)} asks for {mine} but the runtime requested "
                f"{ip} (CNI_ARGS IP or runtimeConfig ips)",
                "ask for one address per family in one place",
            )
    pod = _pod(cmd)
    for ip in choice.requested:
        pool = next(p for p in choice.pools if p.family == ip.version)
        held_for = ipam.reserved_for(pool.name, ip)
        if held_for is not None and held_for != pod:
            raise AddressUnavailable(
                f"pod annotation {ann.IP} {ann.show(fixed_value)}: {ip} in pool {pool.name!r} is reserved for "
                f"sticky pod {held_for} (deleted; its address waits for it to come back)",
                f"ask for another address, or free it: flatnet ipam release --pool {pool.name} --ip {ip} "
                f"--forget-sticky {held_for}",
            )
    return Pick(choice.pools, requested, dict(choice.how), fixed_value, choice.requested)


def _pod(cmd: CmdArgs) -> str | None:
    args = cmd.args or {}
    ns, name = args.get("K8S_POD_NAMESPACE"), args.get("K8S_POD_NAME")
    return f"{ns}/{name}" if ns and name else None


@contextlib.contextmanager
def naming(pick: Pick) -> Iterator[None]:
    """The allocator's refusal of an annotation's address, with the annotation and its value."""
    try:
        yield
    except AddressUnavailable as exc:
        if not pick.fixed or exc.msg.startswith("pod annotation") or not any(str(ip) in exc.msg for ip in pick.fixed):
            raise
        raise AddressUnavailable(
            f"pod annotation {ann.IP} {ann.show(pick.fixed_value)}: {exc.msg}", exc.details
        ) from exc
