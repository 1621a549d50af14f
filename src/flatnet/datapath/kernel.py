"""What the links flatnet makes need from the kernel: one table for the datapath and the doctor.

A link create the kernel refuses is named with its config option and module here
(``links.create``); ``flatnet doctor node`` probes each probed feature by creating it in a
throwaway netns (``probe.probe_links``) and says who needs it (``doctor/node.py``). A mode's
feature has the mode's name (macvlan, ipvlan, bridge, vxlan); a VLAN id adds 8021q (and, in
mode bridge, a VLAN-aware bridge).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    """One kernel feature: its config option, the module that brings it, who needs it, and the
    link kind made for it (None: an option of another kind, e.g. a bridge's vlan_filtering)."""

    config: str
    module: str | None
    user: str
    kind: str | None
    probed: bool = True  # the doctor creates it in a throwaway netns


FEATURES: dict[str, Feature] = {
    "macvlan": Feature("CONFIG_MACVLAN", "macvlan", "mode macvlan (pods on the VLAN, the default)", "macvlan"),
    "ipvlan": Feature("CONFIG_IPVLAN", "ipvlan", "mode ipvlan (one MAC per switch port)", "ipvlan"),
    "vxlan": Feature("CONFIG_VXLAN", "vxlan", "mode vxlan (the overlay fallback)", "vxlan"),
    "8021q": Feature("CONFIG_VLAN_8021Q", "8021q", "pools/configs with a vlan id (<master>.<vlan>)", "vlan"),
    "bridge": Feature("CONFIG_BRIDGE", "bridge", "mode bridge", "bridge"),
    "bridge_vlan_filtering": Feature(
        "CONFIG_BRIDGE_VLAN_FILTERING", None, "mode bridge with VLANs (VLAN-aware bridge)", None
    ),
    # every distribution kernel has it; not probed, but named if a create is refused
    "veth": Feature("CONFIG_VETH", "veth", "mode bridge and vxlan (the pods' veths)", "veth", probed=False),
}

#: the features ``flatnet doctor node`` probes, in report order
PROBED: tuple[str, ...] = tuple(name for name, f in FEATURES.items() if f.probed)


def for_kind(kind: str) -> Feature | None:
    """The feature behind creating a link of ``kind`` (None: nothing to name)."""
    return next((f for f in FEATURES.values() if f.kind == kind), None)
