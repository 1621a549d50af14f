"""The agent's wire protocol, standard library only: framing, messages and a client.

One request and one response per connection on the agent's unix socket:

- request: ``{"v": 1, "env": {"CNI_COMMAND": ..., ...}, "stdin": "<network config text>"}``
  (a CNI call replayed: only the CNI_* variables), or ``{"v": 1, "op": "status"}``;
- the client sends it and shuts down its write side (EOF ends the request, at most
  ``MAX_REQUEST`` bytes);
- response: ``{"exit": 0|1, "stdout": "<exactly what the plugin must print>"}`` (status
  answers add ``"metrics"``), then the server shuts down its side.

Speakers: the native forwarder (native/forwarder/flatnet.c, the /opt/cni/bin/flatnet that
runtimes exec), the server (``flatnet.agent.server``) and Python tools (doctor, lab, bench,
chaos, the CLI) through ``request``. Importing this module pulls in no part of the service
(and so no pyroute2).
"""

from __future__ import annotations

import errno
import json
import socket
from typing import Any

from flatnet import defaults
from flatnet.defaults import AGENT_SOCKET
from flatnet.errors import AGENT_PROTOCOL, DECODE_FAILURE, TRY_AGAIN_LATER

PROTOCOL_VERSION = 1
MAX_REQUEST = 1 << 20
DEFAULT_SOCKET = AGENT_SOCKET
ERROR_VERSION = "1.1.0"  # error answers made by the protocol layer (no config read yet)
#: connect errors that mean "no agent listens there"
NO_AGENT_ERRNOS = frozenset({errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENOTDIR, errno.EACCES})


class ProtocolError(Exception):
    """A message that is not a valid request/response; ``code`` is the CNI code to answer."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


class NoAgent(Exception):
    """Nothing listens on the socket."""


class AgentReplyError(Exception):
    """The agent was reached but the exchange failed; ``code`` is the CNI code to report."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


# ---- messages ----
def encode_request(env: dict[str, str], stdin: str) -> bytes:
    """A CNI call as the forwarder sends it (only the CNI_* variables travel)."""
    cni_env = {k: v for k, v in env.items() if k.startswith("CNI_")}
    return json.dumps({"v": PROTOCOL_VERSION, "env": cni_env, "stdin": stdin}).encode("utf-8")


def status_request() -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "op": "status"}


def decode_request(data: bytes) -> dict[str, Any]:
    """A request object, checked: ``op`` status, or ``env`` (strings) and ``stdin`` (string).

    Raises ProtocolError with the code to answer.
    """
    try:
        req = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # deep nesting: RecursionError
        raise ProtocolError(DECODE_FAILURE, f"agent request is not JSON: {exc}") from None
    if not isinstance(req, dict):
        raise ProtocolError(DECODE_FAILURE, "agent request must be a JSON object")
    if req.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            AGENT_PROTOCOL,
            f"agent protocol version {req.get('v')!r} is not "
            f"supported (this agent speaks v{PROTOCOL_VERSION}); "
            "update the plugin and the agent together",
        )
    if req.get("op") == "status":
        return req
    env, stdin = req.get("env"), req.get("stdin", "")
    if (
        not isinstance(env, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        or not isinstance(stdin, str)
    ):
        raise ProtocolError(DECODE_FAILURE, 'agent request needs "env" (object of strings) and "stdin" (string)')
    return req


def encode_response(response: dict[str, Any]) -> bytes:
    return json.dumps(response).encode("utf-8") + b"\n"


def error_response(code: int, msg: str) -> dict[str, Any]:
    """A response carrying a CNI error (what the forwarder prints)."""
    return {"exit": 1, "stdout": json.dumps({"cniVersion": ERROR_VERSION, "code": code, "msg": msg})}


def decode_response(data: bytes) -> dict[str, Any]:
    """The response object; ProtocolError (106) if it is not ``{"exit": int, "stdout": str}``."""
    try:
        reply = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        reply = None
    if isinstance(reply, dict) and isinstance(reply.get("exit"), int) and isinstance(reply.get("stdout"), str):
        return reply
    raise ProtocolError(AGENT_PROTOCOL, "malformed answer (plugin and agent versions differ?)")


# ---- the client ----
def request(path: str, payload: dict[str, Any] | bytes, timeout: float = defaults.AGENT_TIMEOUT) -> dict[str, Any]:
    """Send one request to the agent at ``path``; return its decoded response.

    Raises NoAgent if nobody listens, AgentReplyError if the exchange fails or the agent
    does not answer within ``timeout`` seconds (an ADD may legitimately take a while).
    """
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(min(timeout, defaults.AGENT_CONNECT_TIMEOUT))
        try:
            sock.connect(path)
        except OSError as exc:
            if exc.errno in NO_AGENT_ERRNOS:
                raise NoAgent(f"no agent at {path}: {exc.strerror or exc}") from None
            raise AgentReplyError(TRY_AGAIN_LATER, f"cannot connect to the agent at {path}: {exc}") from None
        sock.settimeout(timeout)
        chunks = []
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            raise AgentReplyError(
                TRY_AGAIN_LATER, f"the agent at {path} did not answer within {timeout:.0f}s; try again"
            ) from None
        except OSError as exc:
            if not chunks and exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise AgentReplyError(AGENT_PROTOCOL, f"the agent at {path} dropped the request: {exc}") from None
    finally:
        sock.close()
    if not chunks:  # the agent died or restarted mid-request: nothing was answered
        raise AgentReplyError(
            TRY_AGAIN_LATER, f"the agent at {path} closed the connection without answering (restarting?); try again"
        )
    try:
        return decode_response(b"".join(chunks))
    except ProtocolError as exc:
        raise AgentReplyError(exc.code, f"the agent at {path} sent a {exc.msg}") from None


def status(path: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The agent's metrics, or None when no agent answers at ``path``."""
    try:
        reply = request(path, status_request(), timeout=timeout)
    except (NoAgent, AgentReplyError, OSError):
        return None
    if reply.get("exit") != 0:
        return None
    metrics = reply.get("metrics")
    return metrics if isinstance(metrics, dict) else {}
