"""The reachability matrix's logic with fake probe results (no namespaces, no root)."""

from __future__ import annotations

from typing import Any

import pytest

from flatnet.errors import ConfigError
from flatnet_lab.lab import reach, render
from flatnet_lab.lab.traffic import ProbeResult
from flatnet_lab.lab.topology import default_topology

TOPO = default_topology(3)
NODE1, NODE2 = TOPO.nodes[0], TOPO.nodes[1]
POD_A = reach.Endpoint("pod a", "fnlab-pod-a", "198.18.100.40", NODE1.ipv4)
POD_B = reach.Endpoint("pod b", "fnlab-pod-b", "198.18.100.41", NODE2.ipv4)


class FakeNet:
    """A probe that answers from a table: (src_ns, dial_ip) -> seen source or None (no)."""

    def __init__(self, reachable: dict[tuple[str, str], str | None], port_shift: int = 0):
        self.reachable = reachable
        self.port_shift = port_shift
        self.calls: list[tuple[Any, ...]] = []

    def __call__(
        self, src_ns: str, dst_ns: str, ip: str, port: int, timeout: float = 1.0, listen_port: int | None = None
    ) -> ProbeResult:
        self.calls.append((src_ns, dst_ns, ip, port, listen_port))
        seen = self.reachable.get((src_ns, ip))
        if seen is None:
            return ProbeResult(False, error="timed out")
        return ProbeResult(True, seen, 40000 + self.port_shift, POD_A.ip, 40000, 0.001)


def flat_world() -> dict[tuple[str, str], str | None]:
    """What a correct flat network does: sources kept, VLAN 200 cut off."""
    return {
        ("fnlab-vm1", POD_A.ip): "198.18.100.201",
        (POD_A.ns, "198.18.100.201"): POD_A.ip,
        (POD_A.ns, POD_B.ip): POD_A.ip,
        ("fnlab-out", POD_A.ip): "198.19.200.10",
        (NODE1.ns, POD_A.ip): "198.18.100.250",  # a shim address: not part of the promise
        (POD_A.ns, TOPO.service.vip): POD_A.ip,
    }


def overlay_world() -> dict[tuple[str, str], str | None]:
    return {
        (POD_A.ns, "198.18.100.201"): NODE1.ipv4,  # SNAT
        (POD_A.ns, POD_B.ip): POD_A.ip,
        (NODE1.ns, POD_A.ip): NODE1.ipv4,
        (POD_A.ns, TOPO.service.vip): POD_A.ip,
    }


def matrix(network: str, world: dict[tuple[str, str], str | None], **kw: Any) -> reach.Matrix:
    return reach.run(network, reach.plans(TOPO, POD_A, POD_B), FakeNet(world, **kw))


def test_plans_cover_every_row_with_the_right_endpoints() -> None:
    plan_list = reach.plans(TOPO, POD_A, POD_B)
    assert [p.row.key for p in plan_list] == [r.key for r in reach.ROWS]
    by = {p.row.key: p for p in plan_list}
    assert by["vm-pod"].src.ns == "fnlab-vm1" and by["vm-pod"].dial_ip == POD_A.ip
    assert by["v200-pod"].src.ns == "fnlab-vlan200"
    assert by["out-pod"].src.ip == "198.19.200.10"
    assert by["node-pod"].src.ns == NODE1.ns  # the pod's own node
    svc = by["pod-svc"]
    assert (svc.dial_ip, svc.port, svc.listen_port, svc.dst.ns) == (
        TOPO.service.vip,
        TOPO.service.port,
        TOPO.service.port,
        POD_B.ns,
    )


def test_correct_flat_network_has_no_mismatch() -> None:
    m = matrix("flat", flat_world())
    assert m.mismatches == []
    assert m.cell("pod-vm").src_kind == "own"
    assert not m.cell("v200-pod").result.ok


def test_flat_bridge_follows_the_flat_model() -> None:
    assert matrix("flat-bridge", flat_world()).mismatches == []


def test_correct_overlay_has_no_mismatch_and_shows_snat() -> None:
    m = matrix("overlay", overlay_world())
    assert m.mismatches == []
    assert m.cell("pod-vm").src_kind == "node"


def test_snat_on_flat_is_a_mismatch() -> None:
    world = flat_world()
    world[(POD_A.ns, "198.18.100.201")] = NODE1.ipv4
    bad = matrix("flat", world).mismatches
    assert [c.key for c in bad] == ["pod-vm"]
    assert "SNAT" in bad[0].text()


def test_vlan200_reaching_a_pod_is_a_mismatch_in_both_modes() -> None:
    for network, world in (("flat", flat_world()), ("overlay", overlay_world())):
        world[("fnlab-vlan200", POD_A.ip)] = "198.18.100.210"
        assert [c.key for c in matrix(network, world).mismatches] == ["v200-pod"]


def test_overlay_reachable_from_vm_is_a_mismatch() -> None:
    world = overlay_world()
    world[("fnlab-vm1", POD_A.ip)] = "198.18.100.201"
    assert [c.key for c in matrix("overlay", world).mismatches] == ["vm-pod"]


def test_unreached_expected_path_is_a_mismatch() -> None:
    world = flat_world()
    del world[(POD_A.ns, POD_B.ip)]
    bad = matrix("flat", world).mismatches
    assert [c.key for c in bad] == ["pod-pod"]
    assert bad[0].text() == "no (timed out)"


def test_retry_probes_only_failed_cells_that_should_connect() -> None:
    world = flat_world()
    plan_list = reach.plans(TOPO, POD_A, POD_B)
    m = reach.run("flat", plan_list, FakeNet({}))  # everything down the first time
    net = FakeNet(world)
    m = reach.retry_failed(m, plan_list, net)
    assert m.mismatches == []
    retried = {c[2] for c in net.calls}
    assert len(net.calls) == len(reach.ROWS) - 1  # the VLAN-200 cell is never retried
    assert POD_A.ip in retried


@pytest.mark.parametrize(
    "seen,expected", [(POD_A.ip, "own"), (NODE1.ipv4, "node"), ("198.18.100.99", "other"), (None, None)]
)
def test_classify(seen: str | None, expected: str | None) -> None:
    assert reach.classify(seen, POD_A.ip, NODE1.ipv4) == expected


def test_unknown_network_is_named() -> None:
    with pytest.raises(ConfigError, match="'ipip'"):
        reach.kind_of("ipip")


def test_json_lists_mismatches() -> None:
    world = flat_world()
    del world[("fnlab-out", POD_A.ip)]
    data = matrix("flat", world).to_json()
    assert data["mismatches"] == ["out-pod"]
    assert {c["key"] for c in data["cells"]} == {r.key for r in reach.ROWS}
    assert next(c for c in data["cells"] if c["key"] == "out-pod")["match"] is False


def test_render_matrix_side_by_side_marks_mismatch() -> None:
    world = overlay_world()
    world[("fnlab-out", POD_A.ip)] = "198.19.200.10"  # an overlay must not do this
    text = render.to_text(render.matrix_table([matrix("flat", flat_world()), matrix("overlay", world)]))
    assert "FLAT measured" in text and "OVERLAY measured" in text
    lines = [ln for ln in text.splitlines() if "outside host -> pod" in ln]
    assert len(lines) == 1 and "MISMATCH" in lines[0]
    assert sum("MISMATCH" in ln for ln in text.splitlines()) == 1
    assert render.mismatch_lines([matrix("overlay", world)]) == [
        "overlay: outside host -> pod: measured 'yes, src 198.19.200.10 (own)', expected 'no'"
    ]


def test_render_snat_table_reports_port_rewrite() -> None:
    flat = matrix("flat", flat_world())
    over = matrix("overlay", overlay_world(), port_shift=7)
    text = render.to_text(render.snat_table([flat, over]))
    flat_line = next(ln for ln in text.splitlines() if "FLAT" in ln)
    over_line = next(ln for ln in text.splitlines() if "OVERLAY" in ln)
    assert f"{POD_A.ip}:40000" in flat_line and "kept (the pod's own)" in flat_line
    assert f"{NODE1.ipv4}:40007" in over_line and "rewritten" in over_line
