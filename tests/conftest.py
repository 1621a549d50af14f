"""Shared pytest plugins; each helper module registers its own fixtures."""

import pytest

pytest_plugins = ["tests.helpers.etcd"]


# ---- kernel features: happy paths this kernel cannot run are marked, reported, and run
# by the VM tier (a kernel that has them); their error paths run here -----------------
REQUIRE_KERNEL_ENV = "FLATNET_REQUIRE_KERNEL_FEATURES"


def pytest_collection_modifyitems(config: "pytest.Config", items: list["pytest.Item"]) -> None:
    """``@pytest.mark.kernel_feature("ipvlan")``: skip, naming the feature, when this kernel
    lacks it (probed once, in a throwaway netns) — unless $FLATNET_REQUIRE_KERNEL_FEATURES=1
    (the VM tier), where a missing feature is an install bug and the test runs and fails."""
    import os

    import pytest

    wanted = sorted({m.args[0] for item in items for m in item.iter_markers("kernel_feature")})
    if not wanted or os.environ.get(REQUIRE_KERNEL_ENV) == "1":
        return
    have: dict[str, bool] = {}
    if os.geteuid() == 0:
        try:
            from flatnet.datapath.probe import probe_links

            have = {f: r.ok for f, r in probe_links(tuple(wanted)).items()}
        except Exception:  # noqa: BLE001 - cannot probe: every marked happy path is skipped
            have = {}
    for item in items:
        for mark in item.iter_markers("kernel_feature"):
            if not have.get(mark.args[0], False):
                item.add_marker(pytest.mark.skip(
                    reason=f"kernel lacks {mark.args[0]}: this happy path runs in the VM "
                           f"tier ({REQUIRE_KERNEL_ENV}=1); its error path runs here"))
