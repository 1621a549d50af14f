"""The etcd store's settings: endpoints, TLS files, credentials — checked in one place.

Both the network-config parser (``cni/ipamconf.py``) and ``open_store`` call
:func:`check_etcd`, so a typo is named the same way wherever it is found. Secrets come
from *files* (``caFile``, ``certFile``, ``keyFile``, ``usernameFile``, ``passwordFile``):
a Kubernetes Secret mounted as a volume is a directory of such files, and a config that
only names paths can be logged, cached and sent over the agent socket without leaking
anything. The password is read when the store authenticates (so a rotated Secret is
picked up on the next token) and never appears in a message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flatnet.errors import ConfigError

ETCD_KEYS = ("endpoints", "prefix", "timeout", "caFile", "certFile", "keyFile", "usernameFile", "passwordFile")
FILE_KEYS = ("caFile", "certFile", "keyFile", "usernameFile", "passwordFile")
EXAMPLE = '["https://198.18.0.10:2379", "https://198.18.0.11:2379"]'

if TYPE_CHECKING:  # ssl is imported where a TLS context is made: ~14 ms less per plugin call
    import ssl


def redact(url: str) -> str:
    """``url`` with any ``user:password@`` removed (for messages)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def check_endpoints(raw: object, where: str = "ipam.store.endpoints") -> list[str]:
    """A non-empty list of ``http(s)://host:port`` URLs, all of one scheme, no credentials."""
    if isinstance(raw, str):
        raw = [e.strip() for e in raw.split(",") if e.strip()]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where} must be a non-empty list of etcd URLs, e.g. {EXAMPLE}")
    out = []
    for n, url in enumerate(raw):
        if not isinstance(url, str):
            raise ConfigError(
                f'{where}[{n}] must be a URL string such as "https://198.18.0.10:2379", got {type(url).__name__}'
            )
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f'{where}[{n}] {redact(url)!r} must be a URL such as "https://198.18.0.10:2379"')
        if "@" in parts.netloc:
            raise ConfigError(
                f"{where}[{n}] {redact(url)!r} carries credentials in the URL; "
                "put the user name and password in files and name them with "
                "usernameFile and passwordFile"
            )
        try:
            _ = parts.port  # raises on a port that is not a number in range
        except ValueError:
            raise ConfigError(f"{where}[{n}] {url!r} has an invalid port") from None
        out.append(url.rstrip("/"))
    schemes = {urlsplit(u).scheme for u in out}
    if len(schemes) > 1:
        raise ConfigError(
            f"{where} mixes http:// and https:// endpoints; members of one etcd cluster speak the same scheme"
        )
    return out


@dataclass(frozen=True)
class EtcdSecurity:
    """TLS and credential files of an etcd store (paths only)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username_file: str | None = None
    password_file: str | None = None

    @property
    def auth(self) -> bool:
        return self.username_file is not None

    def as_config(self) -> dict[str, str]:
        pairs = zip(
            FILE_KEYS,
            (self.ca_file, self.cert_file, self.key_file, self.username_file, self.password_file),
            strict=True,
        )
        return {k: v for k, v in pairs if v is not None}

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: the CA bundle (or the system's) and the client certificate."""
        import ssl

        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"ipam.store.caFile {self.ca_file!r} cannot be used as a CA bundle: {_why(exc)}",
                "give a PEM file of CA certificates",
            ) from None
        if self.cert_file:
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"ipam.store.certFile {self.cert_file!r} / keyFile {self.key_file!r} cannot "
                    f"be loaded as a client certificate and its key: {_why(exc)}",
                    "give the PEM certificate and the matching unencrypted PEM key",
                ) from None
        return ctx

    def credentials(self) -> tuple[str, str]:
        """(user, password) read from their files now; trailing newlines are dropped."""
        assert self.username_file and self.password_file
        return (_read(self.username_file, "usernameFile"), _read(self.password_file, "passwordFile"))


def _read(path: str, key: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"ipam.store.{key} {path!r} cannot be read: {_why(exc)}", "mount the Secret holding it, or fix the path"
        ) from None
    if not text:
        raise ConfigError(f"ipam.store.{key} {path!r} is empty")
    return text


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def check_security(cfg: dict[str, Any], endpoints: list[str]) -> EtcdSecurity:
    """The file settings of an etcd store config, checked for shape (not read yet)."""
    vals: dict[str, str | None] = {}
    for key in FILE_KEYS:
        v = cfg.get(key)
        if v is not None and (not isinstance(v, str) or not os.path.isabs(v)):
            raise ConfigError(
                f"ipam.store.{key} must be an absolute file path, e.g. "
                f'"/etc/flatnet/etcd/{key[:-4].lower()}", got {v!r}'
            )
        vals[key] = v
    if (vals["certFile"] is None) != (vals["keyFile"] is None):
        raise ConfigError(
            "ipam.store.certFile and ipam.store.keyFile go together: a client "
            "certificate needs its key; set both or neither"
        )
    if (vals["usernameFile"] is None) != (vals["passwordFile"] is None):
        raise ConfigError("ipam.store.usernameFile and ipam.store.passwordFile go together; set both or neither")
    tls_files = [k for k in ("caFile", "certFile") if vals[k]]
    if tls_files and not endpoints[0].startswith("https://"):
        raise ConfigError(
            f"ipam.store.{tls_files[0]} is set but the endpoints are http://; use https:// endpoints for TLS"
        )
    return EtcdSecurity(vals["caFile"], vals["certFile"], vals["keyFile"], vals["usernameFile"], vals["passwordFile"])
