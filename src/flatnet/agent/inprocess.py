"""The no-agent mode: one CNI call served by the agent's Service inside this process.

For single hosts without a node agent (podman, see docs/PODMAN.md). The native forwarder
(/opt/cni/bin/flatnet) execs this entry point (``flatnet-inprocess``, named by the config's
``inProcess`` or $FLATNET_INPROCESS) with the runtime's CNI_* environment and stdin when no
agent listens on its socket; it is never a second forwarder. Per-container file locks
(shared with the agent) keep the two paths from racing.

It cannot leak: a successful ADD leaves a record, ``/run/flatnet/inprocess/<id>.<ifname>``
(root's, mode 0600): this program's path on the first line, then the FLATNET_* knobs the
ADD ran with. The forwarder execs the recorded program when neither the config nor the
environment names one (podman's exit cleanup runs DEL without ``podman run``'s
environment), this program takes the recorded knobs the environment lacks, and a
successful DEL removes the record.

Knobs: $FLATNET_LOCK_DIR, $FLATNET_NODE, $FLATNET_HOST_NETNS, $FLATNET_LOG (tracebacks of
internal errors). Whatever happens, stdout gets at most one JSON document.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any

from flatnet import SUPPORTED_VERSIONS, defaults
from flatnet.errors import INTERNAL

#: the knobs a record keeps, so DEL runs with what ADD ran with
RECORDED_KNOBS = ("FLATNET_HOST_NETNS", "FLATNET_NODE", "FLATNET_LOCK_DIR", "FLATNET_LOG")
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def record_path(env: dict[str, str], directory: str = defaults.INPROCESS_DIR) -> str | None:
    """This attachment's record (the forwarder builds the same path), or None if the
    container id or ifname could not be a file name."""
    cid, ifname = env.get("CNI_CONTAINERID", ""), env.get("CNI_IFNAME", "")
    for part in (cid, ifname):
        if not part or part.startswith(".") or not set(part) <= _SAFE:
            return None
    return os.path.join(directory, f"{cid}.{ifname}")


def read_record(path: str) -> tuple[str, dict[str, str]] | None:
    """(entry point, knobs) of a record, None when there is none."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    if not lines:
        return None
    knobs = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    return lines[0], {k: v for k, v in knobs.items() if k in RECORDED_KNOBS}


def write_record(path: str, entry: str, env: dict[str, str]) -> None:
    """Write the record atomically (a reader sees the old one or the new one, whole)."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    knobs = [f"{k}={env[k]}" for k in RECORDED_KNOBS if env.get(k) and "\n" not in env[k]]
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join([entry, *knobs]) + "\n")
    os.replace(tmp, path)


def _with_record(env: dict[str, str], path: str | None) -> dict[str, str]:
    """``env`` plus the recorded knobs it lacks (a DEL from podman's exit cleanup)."""
    found = read_record(path) if path else None
    if found is None:
        return env
    return {**found[1], **{k: v for k, v in env.items() if v}}


def _drop(path: str) -> None:
    for p in (path, f"{path}.tmp{os.getpid()}"):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def _before(env: dict[str, str], path: str | None, entry: str) -> None:
    """An ADD records itself before anything is plumbed: a record that cannot be written
    fails the ADD with nothing done, rather than an attachment no DEL would find."""
    if path is not None and entry and env.get("CNI_COMMAND") == "ADD":
        write_record(path, entry, env)


def _after(env: dict[str, str], path: str | None, code: int) -> None:
    """A failed ADD (rolled back) and a successful DEL leave no record."""
    if path is None:
        return
    command = env.get("CNI_COMMAND")
    if (command == "ADD" and code != 0) or (command == "DEL" and code == 0):
        _drop(path)


def run(env: dict[str, str], stdin: bytes, records: str | None = defaults.INPROCESS_DIR) -> tuple[int, str]:
    """(exit code, stdout text) of one CNI call served in-process.

    ``records``: the record directory (None: keep no records, e.g. a caller that is not
    the forwarder's entry point).
    """
    from flatnet.agent.service import Service
    from flatnet.cni import dispatch
    from flatnet.datapath.common import set_own_netns_label

    path = record_path(env, records) if records else None
    env = _with_record(env, path)
    # no agent here: a link "missing in the agent's own netns" would send the user looking for one
    set_own_netns_label("the host's netns (where the runtime runs the plugin)")
    entry = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    try:
        _before(env, path, entry)
    except OSError as exc:
        return 1, _error(f"cannot record this attachment in {records} for its DEL: {exc.strerror or exc}")

    kwargs: dict[str, Any] = {}
    if env.get("FLATNET_LOCK_DIR"):
        kwargs["lock_dir"] = env["FLATNET_LOCK_DIR"]
    service = Service(host_netns=env.get("FLATNET_HOST_NETNS") or None, node=env.get("FLATNET_NODE") or None, **kwargs)
    out, err = io.StringIO(), io.StringIO()
    try:
        code = dispatch(service, env, stdin, out, err)
    finally:
        service.close()
    _after(env, path, code)
    return code, out.getvalue()


def _error(msg: str) -> str:
    return json.dumps({"cniVersion": SUPPORTED_VERSIONS[-1], "code": INTERNAL, "msg": msg}) + "\n"


def main() -> None:
    """Executable entry point (``flatnet-inprocess``)."""
    try:
        env = dict(os.environ)
        code, out = run(env, sys.stdin.buffer.read())
    except BaseException as exc:  # noqa: BLE001 - last line of defence, even for ^C
        code = 1
        out = _error(f"internal error (in-process): {type(exc).__name__}: {exc}")
    try:
        sys.stdout.write(out)
        sys.stdout.flush()
    except Exception:  # noqa: BLE001
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
