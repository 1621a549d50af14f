"""The IP alias types every layer uses, defined once.

Standard library only (like ``flatnet.defaults``), so cni, ipam and datapath share them
without importing each other; their ``api`` modules re-export them for existing importers.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
