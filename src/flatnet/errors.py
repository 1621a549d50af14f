"""One exception tree for all of flatnet; every error carries its CNI spec code.

Spec codes (containernetworking/cni SPEC.md, "Error"):
  1 incompatible CNI version          2 unsupported field in network configuration
  3 container unknown / not present   4 invalid necessary environment variables
  5 I/O failure                       6 failed to decode content
  7 invalid network configuration     11 try again later
  50 plugin not available (STATUS)    51 not available, existing containers limited
Ours (100+) are listed below. Anything raised out of flatnet is a FlatnetError, so the
plugin can always print a valid error JSON and never a traceback.
"""

from __future__ import annotations

# spec codes
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51
# flatnet's own
INTERNAL = 100
POOL_EXHAUSTED = 101
ADDRESS_UNAVAILABLE = 102
PARENT_MISSING = 103
INTERFACE_EXISTS = 104
KERNEL_FEATURE_MISSING = 105
AGENT_PROTOCOL = 106
DATAPATH_FAILURE = 107
STATE_MISMATCH = 108  # CHECK found the container's network not as ADD left it


class FlatnetError(Exception):
    """Base of every flatnet error. ``code`` is the CNI code, ``details`` extra context."""

    code: int = INTERNAL

    def __init__(self, msg: str, details: str = "", code: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details
        if code is not None:
            self.code = code

    def to_json(self, cni_version: str = "1.1.0") -> dict:
        out = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


class ConfigError(FlatnetError):
    """The network configuration is invalid (names the field and the fix)."""

    code = INVALID_CONFIG


class VersionError(FlatnetError):
    code = INCOMPATIBLE_VERSION


class EnvError(FlatnetError):
    """A CNI_* environment variable is missing or malformed."""

    code = INVALID_ENV


class DecodeError(FlatnetError):
    code = DECODE_FAILURE


class StoreUnavailable(FlatnetError):
    """The address store cannot be reached now; the caller should retry later."""

    code = TRY_AGAIN_LATER


class StoreAccessDenied(ConfigError):
    """The store answered but refused us: TLS trust, client certificate, user or password.

    Not "try again later": retrying with the same CA, certificate or Secret cannot work,
    so it carries the configuration code and names the setting to fix.
    """


class PoolExhausted(FlatnetError):
    code = POOL_EXHAUSTED


class AddressUnavailable(FlatnetError):
    """An explicitly requested address is outside the pool, reserved or taken."""

    code = ADDRESS_UNAVAILABLE


class DatapathError(FlatnetError):
    code = DATAPATH_FAILURE


class ParentMissing(DatapathError):
    code = PARENT_MISSING


class InterfaceExists(DatapathError):
    code = INTERFACE_EXISTS


class KernelFeatureMissing(DatapathError):
    code = KERNEL_FEATURE_MISSING


class AgentProtocolError(FlatnetError):
    code = AGENT_PROTOCOL
