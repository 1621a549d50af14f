"""What happens after the agent answered a CNI request: one metric sample and one log line.

The agent's socket server calls a ``RequestObserver`` with the request's CNI env and its
``Outcome`` (the config as the dispatcher parsed it: never decoded again here) and answer; the observer records the latency histogram by verb,
network, mode and result code, writes the log line (text or JSON fields) and returns the
answer with any secret masked (an error message may quote a store URL or config).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from flatnet.obs.logs import redact

if TYPE_CHECKING:
    from flatnet.cni.skel import Outcome
    from flatnet.cni.types import Result
    from flatnet.obs.metrics import AgentMetrics

log = logging.getLogger("flatnet.agent")


def _cni_args(env: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in env.get("CNI_ARGS", "").split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _outcome(code: int, stdout: str, result: Result | None) -> tuple[list[str], str]:
    """(addresses of a result, error message of a failure): a success's from the answered
    ``Result`` itself; a failure's from the (redacted) answer text."""
    if code == 0:
        return ([str(ip.address) for ip in result.ips] if result is not None else []), ""
    try:
        doc = json.loads(stdout) if stdout.strip() else {}
    except ValueError:
        return [], (f"exit {code}" if code else "")
    if not isinstance(doc, dict):
        return [], ""
    if code != 0:
        return [], f"{doc.get('msg', '')}" + (f" ({doc['details']})" if doc.get("details") else "")
    ips = doc.get("ips") or []
    return [str(ip.get("address", "?")) for ip in ips if isinstance(ip, dict)], ""


class RequestObserver:
    """Called once per answered CNI request; ``metrics`` None: log only (no metrics endpoint)."""

    def __init__(self, metrics: "AgentMetrics | None" = None) -> None:
        self.metrics = metrics

    def __call__(self, env: dict[str, str], outcome: Outcome, stdout: str, seconds: float) -> str:
        verb, code = env.get("CNI_COMMAND", ""), outcome.code
        network, mode = outcome.network_and_mode()
        result = _error_code(code, stdout)
        if self.metrics is not None:
            self.metrics.observe_cni(verb, network, mode, result, seconds)
        if code != 0:
            stdout = redact(stdout)
        args = _cni_args(env)
        addresses, error = _outcome(code, stdout, outcome.result)
        fields: dict[str, Any] = {
            "verb": verb or "?",
            "network": network,
            "mode": mode,
            "pod_namespace": args.get("K8S_POD_NAMESPACE", ""),
            "pod_name": args.get("K8S_POD_NAME", ""),
            "container_id": env.get("CNI_CONTAINERID", ""),
            "ifname": env.get("CNI_IFNAME", ""),
            "addresses": addresses,
            "duration_seconds": seconds,
            "result": result,
        }
        if error:
            fields["error"] = error
        pod = f"{fields['pod_namespace']}/{fields['pod_name']}" if fields["pod_name"] else "-"
        said = f"error {result}: {error}" if code else ("ok " + ",".join(addresses)).strip()
        log.log(
            logging.WARNING if code else logging.INFO,
            "%-6s %s pod %s %s/%s -> %s (%.0f ms)",
            fields["verb"],
            network or "-",
            pod,
            fields["container_id"][:12] or "-",
            fields["ifname"] or "-",
            said,
            seconds * 1000,
            extra=fields,
        )
        return stdout


def _error_code(code: int, stdout: str) -> int:
    """The CNI result code: 0, or the ``code`` of the error JSON (1 when unreadable)."""
    if code == 0:
        return 0
    try:
        doc = json.loads(stdout)
        value = doc.get("code") if isinstance(doc, dict) else None
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else 1
    except ValueError:
        return 1
