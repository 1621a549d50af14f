"""The verb dispatcher: env + stdin in, result or error JSON out, and an exit code.

Like the reference pkg/skel, env, stdin, stdout and stderr are injected, so the same
function serves the plugin executable, the agent's socket server (which replays a
plugin's env and stdin) and the tests. Whatever happens, ``dispatch`` returns 0 or 1
and leaves at most one JSON document on stdout: a runtime parses stdout, so a
traceback there would be worse than useless.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, TextIO

from flatnet import __version__, defaults
from flatnet.cni import version as _v
from flatnet.cni.config import decode_json, parse_netconf
from flatnet.cni.env import CmdArgs, parse_env
from flatnet.cni.types import Result
from flatnet.errors import INTERNAL, FlatnetError

ABOUT = f"CNI flatnet plugin v{__version__}"


class Handler(Protocol):
    """What a plugin implements; each method raises FlatnetError on failure."""

    def add(self, cmd: CmdArgs) -> Result: ...

    def delete(self, cmd: CmdArgs) -> None: ...

    def check(self, cmd: CmdArgs) -> None: ...

    def gc(self, cmd: CmdArgs) -> None: ...

    def status(self, cmd: CmdArgs) -> None: ...


@dataclass
class Outcome:
    """One answered invocation: its exit code and what was parsed on the way.

    The agent's request observer (log line, metrics) reads the network and mode from here,
    so the config is decoded and parsed once per request, not again after the answer.
    """

    code: int
    #: the parsed env (with ``conf`` set once the config parsed); None: the env was refused
    cmd: CmdArgs | None = None
    #: the decoded config JSON; None when it was not readable JSON
    doc: Any = None
    #: ADD's result as answered (None: no result, or a failure)
    result: Result | None = None

    def network_and_mode(self) -> tuple[str, str]:
        """(network name, mode): the parsed config's, else the raw JSON's; "" when unknown."""
        conf = self.cmd.conf if self.cmd is not None else None
        if conf is not None:
            return conf.name, conf.mode
        if not isinstance(self.doc, dict):
            return "", ""
        name, mode = self.doc.get("name"), self.doc.get("mode") or defaults.MODE
        return (name if isinstance(name, str) else ""), (mode if isinstance(mode, str) else "")


def dispatch(
    handler: Handler,
    env: Mapping[str, str],
    stdin: bytes,
    stdout: TextIO,
    stderr: TextIO | None = None,
    about: str = ABOUT,
) -> int:
    """Run one CNI invocation; return the process exit code (0 success, 1 error).

    No CNI_COMMAND: print ``about`` and the supported versions to stderr and succeed
    (as reference plugins do); with ``about=""`` that is an error (code 4) instead.
    Traceback of unexpected exceptions goes to the file named by FLATNET_LOG in
    ``env``, if set, never to stdout/stderr.
    """
    return serve(handler, env, stdin, stdout, stderr, about).code


def serve(
    handler: Handler,
    env: Mapping[str, str],
    stdin: bytes,
    stdout: TextIO,
    stderr: TextIO | None = None,
    about: str = ABOUT,
) -> Outcome:
    """``dispatch``, answering with the ``Outcome`` (the agent's server observes it)."""
    outcome = Outcome(1)
    try:
        outcome.code = _dispatch(handler, env, stdin, stdout, stderr, about, outcome)
    except Exception:  # noqa: BLE001 - last line of defence: the streams themselves failed
        outcome.code = 1
    return outcome


def _dispatch(
    handler: Handler,
    env: Mapping[str, str],
    stdin: bytes,
    stdout: TextIO,
    stderr: TextIO | None,
    about: str,
    outcome: Outcome,
) -> int:
    if not env.get("CNI_COMMAND") and about:
        if stderr is not None:
            stderr.write(f"{about}\nCNI protocol versions supported: {', '.join(_v.SUPPORTED)}\n")
        return 0
    outcome.doc = doc = _decode(stdin)  # once: the version sniffed and the config parsed from it
    version = _sniff_version(stdin, doc)
    try:
        cmd = outcome.cmd = parse_env(env)
        if cmd.command == "VERSION":
            _emit(stdout, {"cniVersion": version, "supportedVersions": list(_v.SUPPORTED)})
            return 0
        cmd.stdin = bytes(stdin)
        cmd.conf = parse_netconf(cmd.stdin, doc)
        version = cmd.conf.cni_version
        _v.require_verb(cmd.command, version)
        if cmd.command == "ADD":
            result = handler.add(cmd)
            if not isinstance(result, Result):
                raise TypeError(f"handler.add returned {type(result).__name__}, not a Result")
            outcome.result = result
            _emit(stdout, result.to_json(version))
        else:
            _verb(handler, cmd.command)(cmd)
        return 0
    except FlatnetError as exc:
        _emit(stdout, exc.to_json(version))
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: still a valid CNI error, details to the log only
        _log_traceback(env.get("FLATNET_LOG"), env.get("CNI_COMMAND", ""))
        msg = f"internal error: {type(exc).__name__}: {exc}"
        _emit(stdout, {"cniVersion": version, "code": INTERNAL, "msg": msg[:2000]})
        return 1


def _verb(handler: Handler, command: str) -> Callable[[CmdArgs], None]:
    """The handler's method for a verb other than ADD and VERSION (parse_env checked it)."""
    methods: dict[str, Callable[[CmdArgs], None]] = {
        "DEL": handler.delete,
        "CHECK": handler.check,
        "GC": handler.gc,
        "STATUS": handler.status,
    }
    return methods[command]


def _decode(stdin: bytes) -> Any:
    """The config's JSON value, or None when it is not readable (``parse_netconf`` then
    decodes again, on the error path only, to name what is wrong)."""
    try:
        return decode_json(stdin)
    except Exception:  # noqa: BLE001 - any trouble: parse_netconf says what it is
        return None


def _sniff_version(stdin: bytes, doc: Any = None) -> str:
    """The config's cniVersion if it is readable and supported, else the latest.

    Errors found before the config is parsed (bad env) and VERSION answers should
    still speak the caller's version when it told us one. ``doc``: the decoded config.
    """
    try:
        data: Any = doc if doc is not None else json.loads(bytes(stdin).decode("utf-8"))
        candidate = data.get("cniVersion") if isinstance(data, dict) else None
        if isinstance(candidate, str) and candidate in _v.SUPPORTED:
            return candidate
    except Exception:  # noqa: BLE001 - any trouble: answer in the latest version
        pass
    return _v.LATEST


def _emit(stdout: TextIO, doc: dict[str, Any]) -> None:
    stdout.write(json.dumps(doc, indent=2) + "\n")
    stdout.flush()


def _log_traceback(path: str | None, command: str) -> None:
    """Append the current traceback to ``path``; a failing log must not fail the verb."""
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            log.write(f"--- {stamp} flatnet CNI {command} internal error\n")
            log.write(traceback.format_exc())
    except Exception:  # noqa: BLE001 - a failing log must not fail the verb
        pass
