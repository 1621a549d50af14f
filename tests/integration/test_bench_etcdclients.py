"""The etcd client comparison of the bench runs every candidate against a real etcd (each
one installed: a missing candidate is an install bug of setup.sh/pyproject, not a skip)."""

from __future__ import annotations

import pytest

from flatnet_lab.bench import etcdclients
from flatnet_lab.bench.results import Results

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]


def test_every_candidate_reads_the_probe_and_is_recorded(etcd_shared) -> None:
    got = etcdclients.measure(etcd_shared.endpoint, calls=30)
    assert set(got) == set(etcdclients.CANDIDATES)
    for name, m in got.items():
        assert "error" not in m, f"{name}: {m.get('error')}"
        assert m["wall_us"] > 0 and m["cpu_us"] >= 0
    r = Results()
    etcdclients.record(r, etcd_shared.endpoint, calls=30)
    subjects = {m.subject for m in r.measurements if m.section == etcdclients.SECTION}
    assert subjects == set(etcdclients.CANDIDATES)
