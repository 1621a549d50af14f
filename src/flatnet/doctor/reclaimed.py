"""``flatnet doctor node``: was this node declared dead and its addresses reclaimed?

The agent writes ``<state-dir>/reclaimed.<node>.json`` when it comes back after other
agents reclaimed its leases (``agent/heartbeat.py``). A pod listed there whose netns still
exists has lost its address (the agent removed its interface): it must be recreated.
"""

from __future__ import annotations

import glob
import json
import os
import time

from flatnet.doctor.findings import Finding


def reclaimed_findings(state_dir: str) -> list[Finding]:
    out = []
    for path in sorted(glob.glob(os.path.join(state_dir, "reclaimed.*.json"))):
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError) as exc:
            out.append(Finding("warn", "node-reclaimed-unreadable", "node/heartbeat", f"{path} cannot be read: {exc}"))
            continue
        atts = doc.get("attachments") or []
        running = [a for a in atts if a.get("netns") and os.path.exists(a["netns"])]
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(doc.get("reclaimed_at") or 0))
        names = ", ".join(
            f"{a.get('pod') or a.get('container_id', '?')[:12]} ({a.get('address')})" for a in (running or atts)[:10]
        )
        out.append(
            Finding(
                "error" if running else "warn",
                "node-reclaimed",
                f"node/{doc.get('node', '?')}",
                f"node {doc.get('node')} was declared dead by node {doc.get('reclaimed_by')} at "
                f"{when}: its etcd heartbeat was gone longer than the grace and {len(atts)} "
                f"address(es) were reclaimed"
                + (f"; still running without them: {names}" if running else f": {names}" if names else ""),
                "a reclaimed address may already belong to another pod; the agent removed it from "
                "these pods, which now have no network (CNI CHECK fails for them)",
                ("recreate the pods listed (kubectl delete pod ...), then " if running else "")
                + f"remove {path} once handled",
            )
        )
    return out
