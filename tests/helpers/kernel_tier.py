"""The kernel test tier: tests marked ``kernel`` run inside a VM that boots Debian's stock kernel.

This machine's kernel (and CI's) lacks 8021q, ipvlan, dummy and bridge vlan_filtering, so the
happy paths that need them cannot run here. On the host, every selected test marked
``@pytest.mark.kernel("feature", ...)`` is replaced by a ``VmItem`` with the same node id: the
first one to run boots the VM once (tests/helpers/vm.py) with the node ids of all of them,
pytest runs those tests inside it, and each ``VmItem`` reports its own test's in-VM outcome —
passed, failed with the in-VM traceback and output, or skipped with the in-VM reason. A VM
that cannot be built or booted fails every kernel test with that reason; nothing is silently
skipped. ``make test-kernel`` is ``pytest -m kernel tests``.

Inside the VM (``FLATNET_KERNEL_TIER=vm``) the tests run as ordinary tests, and this plugin
records their outcomes and writes them as one JSON line to the second serial port.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from typing import Any

import pytest

IN_VM = os.environ.get("FLATNET_KERNEL_TIER") == "vm"
RESULT_PORT = "/dev/ttyS1"
VM_TIMEOUT = float(os.environ.get("FLATNET_VM_TIMEOUT", "3600"))  # one VM run holds every kernel test (~60)
_VM_KEY = pytest.StashKey["VmSession"]()
_RESULTS_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()

JOB = """\
cd /opt/flatnet/wt
export FLATNET_KERNEL_TIER=vm PYTHONPATH=/opt/flatnet/wt/src:/opt/flatnet/wt/tooling/src:/opt/flatnet/wt:/opt/flatnet/site
export PYTHONDONTWRITEBYTECODE=1 HYPOTHESIS_STORAGE_DIRECTORY=/tmp/hypothesis
stty -F {port} raw -echo 2>/dev/null
python3 -m pytest -p no:cacheprovider -rA --tb=short -v \\
    --timeout={per_test} {extra} @/opt/flatnet/nodeids
"""


def pytest_configure(config: pytest.Config) -> None:
    if IN_VM:
        config.stash[_RESULTS_KEY] = {}


# --- host side ---------------------------------------------------------------------------------


class VmTestFailure(Exception):
    """A test failed inside the VM; its text is the in-VM report."""


class VmSession:
    """One VM boot for every kernel test of this pytest session."""

    def __init__(self, nodeids: list[str]) -> None:
        self.nodeids = nodeids
        self.results: dict[str, dict[str, Any]] | None = None
        self.error = ""
        self.summary = ""
        self.seconds = 0.0
        self.kernel = ""

    def ensure(self) -> None:
        if self.results is not None or self.error:
            return
        self.error = "the VM run was interrupted"  # one boot per session, even if this one dies
        from tests.helpers import vm

        job = JOB.format(port=RESULT_PORT, per_test=600, extra=os.environ.get("FLATNET_VM_PYTEST_ARGS", ""))
        try:
            run = vm.run(job, {"nodeids": "\n".join(self.nodeids) + "\n"}, timeout=VM_TIMEOUT)
        except vm.VmError as exc:
            self.error = str(exc)
            return
        self.error = ""
        self.seconds, self.kernel = run.seconds, run.kernel
        lines = [ln for ln in run.result.splitlines() if ln.startswith("{")]
        if not lines:
            self.error = (
                "the VM finished but wrote no results; console tail "
                f"(full log: {vm.LOG_DIR}/console.log):\n{run.console[-4000:]}"
            )
            return
        data = json.loads(lines[-1])
        self.results, self.summary = data["results"], data.get("summary", "")
        self.console_tail = run.console[-4000:]


class VmItem(pytest.Item):
    """Stands for a kernel test on the host and reports that test's outcome in the VM."""

    def __init__(self, *, origin: pytest.Item, **kw: Any) -> None:
        super().__init__(**kw)
        self.origin = origin
        self.own_markers = list(origin.iter_markers())
        self.keywords.update(origin.keywords)
        # the first item waits for the whole VM run: the host's per-test timeout must not cut it
        self.add_marker(pytest.mark.timeout(VM_TIMEOUT + 120))

    def runtest(self) -> None:
        sess: VmSession = self.config.stash[_VM_KEY]
        sess.ensure()
        if sess.error:
            raise VmTestFailure(f"kernel tier: {sess.error}")
        assert sess.results is not None
        res = sess.results.get(self.nodeid)
        if res is None:
            raise VmTestFailure(
                f"kernel tier: {self.nodeid} did not run in the VM; console tail:\n" + getattr(sess, "console_tail", "")
            )
        for title, text in res.get("sections", []):
            self.add_report_section("call", f"{title} (in the VM)", text)
        if res["outcome"] == "skipped":
            pytest.skip(f"skipped inside the VM: {res['longrepr']}")
        if res["outcome"] == "failed":
            raise VmTestFailure(res["longrepr"])

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, VmTestFailure):
            return f"[failed inside the kernel tier's VM]\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        path, lineno, name = self.origin.reportinfo()
        return path, lineno, f"{name} [in the kernel-tier VM]"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if IN_VM:
        return
    picked: list[str] = []
    for i, item in enumerate(items):
        if item.get_closest_marker("kernel") is not None and not isinstance(item, VmItem):
            items[i] = VmItem.from_parent(item.parent, name=item.name, origin=item)
            picked.append(item.nodeid)
    config.stash[_VM_KEY] = VmSession(picked)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    sess = config.stash.get(_VM_KEY, None)
    if IN_VM or sess is None or (sess.results is None and not sess.error):
        return
    tr = terminalreporter
    tr.section("kernel tier (Debian's stock kernel under qemu/TCG)")
    if sess.error:
        tr.write_line(f"VM run failed: {sess.error.splitlines()[0]}")
        return
    tr.write_line(f"{sess.kernel}: {len(sess.nodeids)} tests, VM run {sess.seconds:.0f} s")
    tr.write_line(f"in-VM pytest: {sess.summary}")
    for res in (sess.results or {}).values():
        for line in res.get("notes", []):
            tr.write_line(line)


# --- inside the VM -----------------------------------------------------------------------------


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not IN_VM:
        return
    results = _results()
    res = results.setdefault(report.nodeid, {"outcome": "passed", "longrepr": "", "sections": [], "notes": []})
    if report.failed or (report.skipped and res["outcome"] == "passed"):
        res["outcome"] = "failed" if report.failed else "skipped"
        if report.skipped and isinstance(report.longrepr, tuple):
            res["longrepr"] = report.longrepr[2]
        else:
            res["longrepr"] = (res["longrepr"] + "\n" + report.longreprtext).strip()
    if report.when == "call" or report.failed:
        res["sections"] += [[t, s] for t, s in report.sections if s.strip()]
    if report.when == "call":  # user_properties ride on every phase's report
        res["notes"] += [str(v) for k, v in report.user_properties if k == "kernel_tier_note"]


def _results() -> dict[str, dict[str, Any]]:
    return _CONFIG.stash[_RESULTS_KEY]


_CONFIG: pytest.Config


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    global _CONFIG
    _CONFIG = session.config
    session.config._fnv_start = time.monotonic()  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not IN_VM:
        return
    results = _results()
    counts: dict[str, int] = {}
    for res in results.values():
        counts[res["outcome"]] = counts.get(res["outcome"], 0) + 1
    took = time.monotonic() - session.config._fnv_start  # type: ignore[attr-defined]
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f" in {took:.1f}s"
    line = json.dumps({"results": results, "summary": summary, "exit": int(exitstatus)})
    try:
        with open(RESULT_PORT, "w") as port:
            port.write(line + "\n")
    except OSError as exc:
        print(f"kernel tier: cannot write results to {RESULT_PORT}: {exc} {shlex.quote(line[:200])}")
