"""The no-agent mode: one CNI call served by the agent's Service inside this process.

For single hosts without a node agent (podman, see docs/PODMAN.md). The native forwarder
(/opt/cni/bin/flatnet) execs this entry point (``flatnet-inprocess``, named by the config's
``inProcess`` or $FLATNET_INPROCESS) with the runtime's CNI_* environment and stdin when no
agent listens on its socket; it is never a second forwarder. Per-container file locks
(shared with the agent) keep the two paths from racing.

Knobs: $FLATNET_LOCK_DIR, $FLATNET_NODE, $FLATNET_HOST_NETNS, $FLATNET_LOG (tracebacks of
internal errors). Whatever happens, stdout gets at most one JSON document.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any

from flatnet import SUPPORTED_VERSIONS
from flatnet.errors import INTERNAL


def run(env: dict[str, str], stdin: bytes) -> tuple[int, str]:
    """(exit code, stdout text) of one CNI call served in-process."""
    from flatnet.agent.service import Service
    from flatnet.cni import dispatch

    kwargs: dict[str, Any] = {}
    if env.get("FLATNET_LOCK_DIR"):
        kwargs["lock_dir"] = env["FLATNET_LOCK_DIR"]
    service = Service(host_netns=env.get("FLATNET_HOST_NETNS") or None, node=env.get("FLATNET_NODE") or None, **kwargs)
    out, err = io.StringIO(), io.StringIO()
    try:
        code = dispatch(service, env, stdin, out, err)
    finally:
        service.close()
    return code, out.getvalue()


def main() -> None:
    """Executable entry point (``flatnet-inprocess``)."""
    try:
        env = dict(os.environ)
        code, out = run(env, sys.stdin.buffer.read())
    except BaseException as exc:  # noqa: BLE001 - last line of defence, even for ^C
        code = 1
        out = (
            json.dumps(
                {
                    "cniVersion": SUPPORTED_VERSIONS[-1],
                    "code": INTERNAL,
                    "msg": f"internal error (in-process): {type(exc).__name__}: {exc}",
                }
            )
            + "\n"
        )
    try:
        sys.stdout.write(out)
        sys.stdout.flush()
    except Exception:  # noqa: BLE001
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
