"""A pool's usable addresses as integer offsets from the subnet's network address.

Offsets let the allocator keep a single integer cursor per pool ("next never-used
address") instead of materialising the pool, which is what makes allocation O(1) for
a /8 as for a /28. Everything here is pure arithmetic; validation errors are
``ConfigError`` (code 7) naming the field and the fix.
"""

from __future__ import annotations

import ipaddress

from flatnet.errors import ConfigError
from flatnet.ipam.api import IPAddress, PoolSpec


def _bounds(spec: PoolSpec) -> tuple[int, int]:
    """Offsets of the first and last address any host may use in the whole subnet.

    IPv4 loses the network and broadcast addresses; IPv6 has no broadcast but the
    network address is the subnet-router anycast, so it is skipped too. Point-to-point
    prefixes (/31, /127: RFC 3021, RFC 6164) and host prefixes (/32, /128) use every
    address they have.
    """
    size = spec.subnet.num_addresses
    if size <= 2:
        return 0, size - 1
    if spec.family == 4:
        return 1, size - 2
    return 1, size - 1


class PoolRange:
    """The usable offsets of one validated ``PoolSpec``: [first, last] minus reserved."""

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        self.net = int(spec.subnet.network_address)
        lo, hi = _bounds(spec)
        where = f"pool {spec.name!r} (subnet {spec.subnet})"
        for field, ip in (("rangeStart", spec.range_start), ("rangeEnd", spec.range_end)):
            if ip is not None and ip not in spec.subnet:
                raise ConfigError(
                    f"{where}: {field} {ip} is outside the subnet; "
                    f"choose an address inside {spec.subnet} or drop {field}"
                )
        if spec.range_start is not None:
            lo = max(lo, self.offset(spec.range_start))
        if spec.range_end is not None:
            hi = min(hi, self.offset(spec.range_end))
        if (
            spec.range_start is not None and spec.range_end is not None and int(spec.range_start) > int(spec.range_end)
        ):  # both inside the subnet: one family
            raise ConfigError(f"{where}: rangeStart {spec.range_start} is after rangeEnd {spec.range_end}; swap them")
        self.first, self.last = lo, hi
        reserved: set[int] = set()
        if spec.gateway is not None:
            if spec.gateway.version != spec.family or spec.gateway not in spec.subnet:
                raise ConfigError(
                    f"{where}: gateway {spec.gateway} is outside the subnet; "
                    f"set a gateway inside {spec.subnet} or drop it"
                )
            reserved.add(self.offset(spec.gateway))
        for ip in spec.exclude:
            if ip.version != spec.family or ip not in spec.subnet:
                raise ConfigError(f"{where}: exclude entry {ip} is outside the subnet; remove it from 'exclude'")
            reserved.add(self.offset(ip))
        self.reserved = frozenset(o for o in reserved if lo <= o <= hi)
        self.total = max(0, hi - lo + 1) - len(self.reserved)
        if self.total <= 0:
            raise ConfigError(
                f"{where}: the range {self.address(lo) if hi >= lo else '-'}.."
                f"{self.address(hi) if hi >= lo else '-'} has no usable address after "
                "removing the gateway and 'exclude'; widen rangeStart/rangeEnd or the subnet"
            )

    def offset(self, ip: IPAddress) -> int:
        return int(ip) - self.net

    def address(self, offset: int) -> IPAddress:
        return ipaddress.ip_address(self.net + offset)

    def usable(self, offset: int) -> bool:
        return self.first <= offset <= self.last and offset not in self.reserved

    def next_usable(self, offset: int) -> int | None:
        """First usable offset >= ``offset``, or None past the end (bounded by len(reserved))."""
        off = max(offset, self.first)
        while off <= self.last and off in self.reserved:
            off += 1
        return off if off <= self.last else None

    def why_unusable(self, ip: IPAddress) -> str | None:
        """Why ``ip`` cannot be handed out from this pool (None when it can)."""
        spec = self.spec
        if ip.version != spec.family or ip not in spec.subnet:
            return f"it is outside subnet {spec.subnet} of pool {spec.name!r}"
        off = self.offset(ip)
        if spec.gateway is not None and ip == spec.gateway:
            return f"it is the gateway of pool {spec.name!r}"
        if ip in spec.exclude:
            return f"it is listed in 'exclude' of pool {spec.name!r}"
        if not self.first <= off <= self.last:
            lo, hi = _bounds(spec)
            if not lo <= off <= hi:
                return f"it is the network or broadcast address of {spec.subnet}"
            return f"it is outside the range {self.address(self.first)}-{self.address(self.last)} of pool {spec.name!r}"
        return None

    def contains(self, ip: IPAddress) -> bool:
        """True when ``ip`` belongs to this pool at all (subnet and range), usable or not."""
        if ip.version != self.spec.family or ip not in self.spec.subnet:
            return False
        return self.first <= self.offset(ip) <= self.last
