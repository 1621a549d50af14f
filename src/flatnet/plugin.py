"""The ``flatnet`` CNI plugin executable: a thin client of the node agent.

Runtimes exec a CNI plugin for every pod ADD/DEL/CHECK, so it must start fast: only the
standard library is imported here, and on the hot path (ADD/DEL/CHECK through the agent)
not even ``json``, ``socket`` or ``typing``: they pull in ``re`` and ``enum``, a third of
the start-up; ``flatnet._wirejson`` and ``_socket`` do the same work. The plugin forwards its CNI_* environment and stdin
to the agent over a unix socket and prints the agent's answer. When no agent listens
(socket missing or refused), it runs the very same ``flatnet.agent.Service`` in-process
(imported only then); per-container file locks keep both paths from racing.

Socket: the config's ``agentSocket``, else $FLATNET_AGENT_SOCKET, else
/run/flatnet/agent.sock. In-process fallback knobs: $FLATNET_LOCK_DIR, $FLATNET_NODE,
$FLATNET_HOST_NETNS. Whatever happens, stdout gets at most one JSON document and the
process never prints a traceback.
"""

from __future__ import annotations

import _socket
import errno
import os
import sys

from flatnet import SUPPORTED_VERSIONS, __version__, _wirejson

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs start-up time
    from typing import Any

DEFAULT_SOCKET = "/run/flatnet/agent.sock"
LATEST = SUPPORTED_VERSIONS[-1]
#: connect errors that mean "no agent here": fall back to in-process
_NO_AGENT = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENOTDIR, errno.EACCES)
CODE_TRY_AGAIN, CODE_INTERNAL, CODE_AGENT_PROTOCOL = 11, 100, 106


class NoAgent(Exception):
    """Nothing listens on the socket: the caller should run the service itself."""


class AgentReplyError(Exception):
    """The agent was reached but the exchange failed; ``code`` is the CNI code to report."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def request(path: str, payload: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """Send one request to the agent at ``path`` and return its decoded response.

    Raises NoAgent if nobody listens, AgentReplyError if the agent breaks the protocol or
    does not answer in ``timeout`` seconds (an ADD may legitimately take a while).
    """
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(min(timeout, 5.0))
        try:
            sock.connect(path)
        except OSError as exc:
            if exc.errno in _NO_AGENT or isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
                raise NoAgent(str(exc)) from None
            raise AgentReplyError(CODE_AGENT_PROTOCOL, f"cannot connect to the agent at {path}: {exc}") from None
        sock.settimeout(timeout)
        try:
            sock.sendall(_wirejson.dumps(payload).encode("utf-8"))
            sock.shutdown(_socket.SHUT_WR)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:  # socket.timeout is TimeoutError
            raise AgentReplyError(CODE_TRY_AGAIN, f"the agent at {path} did not answer within "
                                  f"{timeout:.0f}s; try again") from None
        except OSError as exc:
            raise AgentReplyError(CODE_AGENT_PROTOCOL, f"the agent at {path} dropped the request: {exc}") from None
    finally:
        sock.close()
    if not chunks:  # the agent died or restarted mid-request: nothing was answered
        raise AgentReplyError(CODE_TRY_AGAIN, f"the agent at {path} closed the connection "
                              "without answering (restarting?); try again")
    try:
        reply = _wirejson.loads(b"".join(chunks).decode("utf-8"))
        if isinstance(reply, dict) and isinstance(reply.get("exit"), int) \
                and isinstance(reply.get("stdout"), str):
            return reply
    except (UnicodeDecodeError, ValueError, RecursionError):
        pass
    raise AgentReplyError(CODE_AGENT_PROTOCOL, f"the agent at {path} sent a malformed answer "
                          "(plugin and agent versions differ?)")


def _sniff(stdin: bytes) -> dict[str, Any]:
    """The config as a dict if it decodes (only for cniVersion / agentSocket), else {}."""
    try:
        doc = _wirejson.loads(stdin.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # deep nesting raises RecursionError
        return {}
    return doc if isinstance(doc, dict) else {}


def _version_of(conf: dict[str, Any]) -> str:
    ver = conf.get("cniVersion")
    return ver if isinstance(ver, str) and ver in SUPPORTED_VERSIONS else LATEST


def _error(version: str, code: int, msg: str) -> str:
    import json  # error path only

    return json.dumps({"cniVersion": version, "code": code, "msg": msg}, indent=2) + "\n"


def socket_path(conf: dict[str, Any], env: dict[str, str]) -> str:
    """Where the agent listens: config's agentSocket > $FLATNET_AGENT_SOCKET > default."""
    path = conf.get("agentSocket")
    if isinstance(path, str) and path:
        return path
    return env.get("FLATNET_AGENT_SOCKET") or DEFAULT_SOCKET


def in_process(env: dict[str, str], stdin: bytes) -> tuple[int, str]:
    """Run the agent's Service in this process (no agent running)."""
    import io

    from flatnet.agent.service import Service
    from flatnet.cni import dispatch

    kwargs: dict[str, Any] = {}
    if env.get("FLATNET_LOCK_DIR"):
        kwargs["lock_dir"] = env["FLATNET_LOCK_DIR"]
    service = Service(host_netns=env.get("FLATNET_HOST_NETNS") or None,
                      node=env.get("FLATNET_NODE") or None, **kwargs)
    out = io.StringIO()
    try:
        code = dispatch(service, env, stdin, out, io.StringIO())
    finally:
        service.close()
    return code, out.getvalue()


def run(env: dict[str, str], stdin: bytes, stderr: Any = None) -> tuple[int, str]:
    """One invocation: (exit code, stdout text). Never raises."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        if stderr is not None:
            stderr.write(f"CNI flatnet plugin v{__version__}\n"
                         f"CNI protocol versions supported: {', '.join(SUPPORTED_VERSIONS)}\n")
        return 0, ""
    conf = _sniff(stdin)
    version = _version_of(conf)
    if command == "VERSION":  # compact, like the reference plugins; no json import (~8 ms)
        doc = {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}
        return 0, _wirejson.dumps(doc) + "\n"
    try:
        text = stdin.decode("utf-8")
    except UnicodeDecodeError as exc:
        return 1, _error(version, 6, f"network configuration on stdin is not UTF-8: {exc}")
    path = socket_path(conf, env)
    payload = {"v": 1, "env": {k: v for k, v in env.items() if k.startswith("CNI_")}, "stdin": text}
    try:
        timeout = float(env.get("FLATNET_AGENT_TIMEOUT") or 120.0)
        reply = request(path, payload, timeout)
        return (0 if reply["exit"] == 0 else 1), reply["stdout"]
    except NoAgent:
        pass
    except AgentReplyError as exc:
        return 1, _error(version, exc.code, exc.msg)
    except Exception as exc:  # noqa: BLE001 - never a traceback to the runtime
        return 1, _error(version, CODE_INTERNAL, f"internal error talking to the agent: {exc}")
    try:
        return in_process(env, stdin)
    except Exception as exc:  # noqa: BLE001
        return 1, _error(version, CODE_INTERNAL,
                         f"internal error (in-process, no agent at {path}): {type(exc).__name__}: {exc}")


def main() -> None:
    """Executable entry point (``flatnet-cni``, /opt/cni/bin/flatnet)."""
    try:
        env = dict(os.environ)
        stdin = b"" if not env.get("CNI_COMMAND") else sys.stdin.buffer.read()
        code, out = run(env, stdin, sys.stderr)
        if out:
            sys.stdout.write(out)
            sys.stdout.flush()
    except BaseException as exc:  # noqa: BLE001 - last line of defence, even for ^C
        code = 1
        try:
            sys.stdout.write(_error(LATEST, CODE_INTERNAL, f"internal error: {type(exc).__name__}: {exc}"))
            sys.stdout.flush()
        except Exception:  # noqa: BLE001
            pass
    sys.exit(code)


if __name__ == "__main__":
    main()
