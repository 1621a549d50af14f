"""ipvlan mode (L2): like macvlan, but every pod shares the parent's MAC address.

Useful where the switch port limits the number of MACs it learns (port security, some
clouds' bare-metal offerings). The plan is macvlan's; only the link kind differs, and a
``mac`` cannot be chosen. Kernels built without CONFIG_IPVLAN get KernelFeatureMissing
before anything is created.
"""

from __future__ import annotations

from flatnet import errors
from flatnet.datapath.api import AttachSpec
from flatnet.datapath.macvlan import ChildLinkDatapath


class IpvlanDatapath(ChildLinkDatapath):
    """ipvlan in L2 mode with the same shim trick for node-to-pod traffic."""

    kind = "ipvlan"

    def _validate(self, spec: AttachSpec) -> None:
        super()._validate(spec)
        if spec.mac:
            raise errors.ConfigError(
                "ipvlan pods share the parent's MAC address, so 'mac' cannot be set; remove it or use macvlan mode"
            )
