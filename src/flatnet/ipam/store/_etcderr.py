"""What went wrong talking to etcd, in words that name the setting to fix.

Two kinds of failure matter to the caller: a member that is *down* (connection refused,
timeout, 5xx: try the next member, then "try again later") and a member that *refuses
us* (its certificate is not trusted by ``caFile``, it wants a client certificate, the
user or password is wrong, the user lacks a role). A refusal is the same on every member
and retrying cannot fix it, so it becomes ``StoreAccessDenied`` with the setting named.
No message here ever contains the password: only file names and etcd's own error text.
"""

from __future__ import annotations

import json
import socket

from flatnet.errors import FlatnetError
from flatnet.ipam.store._etcdconf import EtcdSecurity

_CLIENT_CERT_ALERTS = (
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "ACCESS_DENIED",
    "HANDSHAKE_FAILURE",
)


class Refused(Exception):
    """Member answered but refused us; the text is safe to show (no secrets)."""


def explain_oserror(exc: BaseException, url: str, sec: EtcdSecurity) -> tuple[str, bool]:
    """(message, is_refusal) for a transport error of one call to ``url``."""
    import ssl  # here: a plugin call that meets no error need not load it (~14 ms)

    if isinstance(exc, ssl.SSLCertVerificationError):
        trust = f"caFile {sec.ca_file!r}" if sec.ca_file else "the system's CA store (no caFile set)"
        return (
            f"TLS: the certificate of etcd at {url} is not trusted by {trust} "
            f"({exc.verify_message or exc.reason}); set ipam.store.caFile to the CA bundle "
            "that signed etcd's server certificate",
            True,
        )
    if isinstance(exc, ssl.SSLEOFError) and sec.cert_file:
        # TLS 1.3: the handshake is done on our side before etcd checks our certificate,
        # so a rejected one shows as the connection ending at the first read
        return (
            f"TLS: etcd at {url} ended the connection after the handshake: it most "
            f"likely rejected the client certificate certFile {sec.cert_file!r}; it must "
            "be signed by a CA etcd's --trusted-ca-file trusts",
            True,
        )
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or exc)
        if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER_FAILURE" in reason:
            return (f"TLS: etcd at {url} does not speak TLS; use an http:// endpoint or enable TLS on etcd", True)
        if any(alert in reason for alert in _CLIENT_CERT_ALERTS):
            if not sec.cert_file:
                return (
                    f"TLS: etcd at {url} requires a client certificate ({reason}); set "
                    "ipam.store.certFile and ipam.store.keyFile",
                    True,
                )
            return (
                f"TLS: etcd at {url} rejected the client certificate certFile "
                f"{sec.cert_file!r} ({reason}); it must be signed by a CA etcd's "
                "--trusted-ca-file trusts",
                True,
            )
        return f"TLS: {reason}", False
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is etcd running there?)", False
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "no answer in time", False
    if url.startswith("http://") and "closed the connection without answering" in str(exc):
        return (f"{exc} (if etcd serves TLS at {url}, use an https:// endpoint)", False)
    if isinstance(exc, ConnectionResetError) and url.startswith("https://") and not sec.cert_file:
        return (
            f"TLS: etcd at {url} reset the connection; if it requires a client "
            "certificate, set ipam.store.certFile and ipam.store.keyFile",
            False,
        )
    return f"{type(exc).__name__}: {exc}", False


def _error_text(body: bytes) -> str:
    try:
        d = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace").strip()
    if isinstance(d, dict):
        return str(d.get("error") or d.get("message") or d)[:200]
    return str(d)[:200]


def explain_refusal(
    status: int, body: bytes, url: str, sec: EtcdSecurity, prefix: str, user: str | None = None
) -> Refused | FlatnetError | None:
    """A 4xx answer: ``Refused`` (security), None (auth token expired: authenticate
    again) or a plain ``FlatnetError`` (a request etcd found malformed)."""
    text = _error_text(body)
    low = text.lower()
    if "http request to an https server" in low:
        return Refused(f"etcd at {url} speaks TLS; use https:// endpoints")
    if "invalid auth token" in low or "auth store is old" in low:
        return None
    if "user name is empty" in low or ("user name" in low and not sec.auth):
        return Refused(
            f"etcd at {url} requires authentication ({text}); set ipam.store.usernameFile and ipam.store.passwordFile"
        )
    if "authentication failed" in low or "invalid user id or password" in low:
        return Refused(
            f"etcd at {url} rejected the user name or password ({text}); check "
            f"usernameFile {sec.username_file!r} and passwordFile "
            f"{sec.password_file!r}"
        )
    if "permission denied" in low:
        who = (
            f"user {user!r}"
            if user
            else (f"the user in usernameFile {sec.username_file!r}" if sec.auth else "this client")
        )
        return Refused(
            f"etcd at {url} denied {who} access ({text}); grant it a role with readwrite on the key prefix {prefix!r}"
        )
    if "certificate" in low:
        return Refused(f"etcd at {url} refused the client certificate ({text})")
    return FlatnetError(f"etcd refused the request: HTTP {status}: {text}", details=url)
