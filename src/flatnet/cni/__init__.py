"""The CNI protocol, and nothing else: config parsing, result types, the dispatcher.

Pure by design (no kernel, no I/O beyond the streams it is given), so the plugin
starts fast and every rule of the spec can be unit-tested. Typical use::

    from flatnet.cni import dispatch
    sys.exit(dispatch(handler, os.environ, sys.stdin.buffer.read(), sys.stdout, sys.stderr))

where ``handler`` implements ``Handler`` (add/delete/check/gc/status taking ``CmdArgs``).
"""

from flatnet.cni.config import ConfList, NetConf, parse_conflist, parse_netconf
from flatnet.cni.env import CmdArgs, parse_env
from flatnet.cni.runtimeconf import PortMapping, RuntimeConfig, ValidAttachment
from flatnet.cni.skel import ABOUT, Handler, dispatch
from flatnet.cni.types import DNS, Interface, IPConfig, Result, Route
from flatnet.cni.version import SUPPORTED, pick_conflist_version

__all__ = [
    "ABOUT",
    "SUPPORTED",
    "CmdArgs",
    "ConfList",
    "DNS",
    "Handler",
    "IPConfig",
    "Interface",
    "NetConf",
    "PortMapping",
    "Result",
    "Route",
    "RuntimeConfig",
    "ValidAttachment",
    "dispatch",
    "parse_conflist",
    "parse_env",
    "parse_netconf",
    "pick_conflist_version",
]
