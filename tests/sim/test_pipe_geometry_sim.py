"""Geometric defects of the simulated DN1000 sewer measured from its 16-beam lidar.

The crawler is placed on the floor along the pipe axis every ``STEP_M`` from 18 m to 80 m
(true poses, no localization error; on the deposit it stands on top of it) and each sweep,
taken standing still, goes into one ``PipeCloud`` about the site file's axis (the invert
line, as ``site_from_truth`` derives it). What the world generator built is then measured
back: the BX ring, both CK joints, the CJ deposit, and the TJ open joint, which the profile
finds too (an open joint is geometry; it is reported as TJ with its gap width). Further down,
80 m to 107 m, the roots (SG), the rubble (ZW) and the broken-in lateral (AJ) occupy part of
the bore: they are reported as ``INTRUSION`` with their size and clock, never as BX.
"""

from __future__ import annotations

import numpy as np
import pytest

from navigation.site import site_from_truth
from perception.pipe_geometry import (
    INTRUSION,
    PipeCloud,
    find_geometric_defects,
    measure_joint_offset,
    measure_ovality,
    measure_sediment,
)
from sim_worlds.simulator.simulation import SimConfig, Simulation
from sim_worlds.worldgen.truth import PipeDefect

pytestmark = pytest.mark.slow

S_FIRST_M, S_LAST_M = 18.0, 80.0
STEP_M = 0.25
SEARCH_M = (S_FIRST_M, S_LAST_M)
"""Where ``find_geometric_defects`` looks."""


class Sewer:
    """The accumulated cloud and the world's ground truth."""

    def __init__(self, s_first_m: float, s_last_m: float, step_m: float) -> None:
        sim = Simulation("sewer_dn1000", SimConfig(camera=False, planar_scan_samples=0))
        assert sim.lidar is not None and sim.truth.pipe is not None
        pipe = sim.truth.pipe
        axis = site_from_truth(sim.truth).axes[0]
        self.diameter_m = pipe.inner_diameter_m
        self.wall_m = pipe.wall_thickness_m
        self.defects: list[PipeDefect] = list(pipe.defects)
        self.cloud = PipeCloud.from_site_axis(axis, self.diameter_m)
        for k, s_m in enumerate(np.arange(s_first_m, s_last_m, step_m).tolist()):
            # True pose: on the axis, facing along it, standing on the floor (or deposit)
            T_world_base = axis.pose_at(s_m)
            floor = sim.floor_heights(T_world_base[None, :2, 3], T_world_base[2, 3] + 0.5)
            T_world_base[2, 3] = floor[0]
            T_world_lidar = T_world_base @ sim.T_base_lidar
            scan = sim.lidar.scan(sim.scene, k, T_world_lidar)
            points = (scan.points_m.astype(np.float64) @ T_world_lidar[:3, :3].T
                      + T_world_lidar[:3, 3])
            self.cloud.add_scan(points, T_world_lidar[:3, 3])

    def truth(self, code: str) -> list[PipeDefect]:
        """The true defects of a code, in chainage order."""
        return sorted((d for d in self.defects if d.code == code), key=lambda d: d.distance_m)


@pytest.fixture(scope="module")
def sewer() -> Sewer:
    """18 m to 80 m of the sewer, scanned every 0.25 m."""
    return Sewer(S_FIRST_M, S_LAST_M, STEP_M)


@pytest.fixture(scope="module")
def downstream() -> Sewer:
    """82 m to 107 m, scanned every 0.4 m."""
    return Sewer(82.0, 107.0, 0.4)


def test_deformed_ring_ovality(sewer: Sewer) -> None:
    (bx,) = sewer.truth("BX")
    s0, s1 = bx.distance_m, bx.distance_m + bx.extent_length_m
    m = measure_ovality(sewer.cloud, s0 + 0.2, s1 - 0.2, sewer.diameter_m)
    assert m.ovality_pct_of_d == pytest.approx(bx.measured["ovality_pct_of_d"], abs=2.0)
    assert m.min_d_m == pytest.approx(bx.measured["min_inner_diameter_m"], abs=0.02)
    assert m.max_d_m == pytest.approx(bx.measured["max_inner_diameter_m"], abs=0.02)
    # The round rings beside it are round
    before = measure_ovality(sewer.cloud, s0 - 1.8, s0 - 0.2, sewer.diameter_m)
    assert abs(before.ovality_pct_of_d) < 1.0


def test_offset_joints(sewer: Sewer) -> None:
    joints = sewer.truth("CK")
    assert len(joints) == 2
    for ck in joints:
        m = measure_joint_offset(sewer.cloud, ck.distance_m, sewer.diameter_m)
        assert m.offset_m == pytest.approx(ck.measured["offset_m"], abs=0.015)
    # The offset section is displaced towards 3 o'clock: entering it, and back leaving it
    assert measure_joint_offset(sewer.cloud, joints[0].distance_m,
                                sewer.diameter_m).direction_clock_h == pytest.approx(3.0, abs=0.3)
    assert measure_joint_offset(sewer.cloud, joints[1].distance_m,
                                sewer.diameter_m).direction_clock_h == pytest.approx(9.0, abs=0.3)


def test_sediment_depth(sewer: Sewer) -> None:
    (cj,) = sewer.truth("CJ")
    # The flat top of the bank, between its 1 m ramps
    s0, s1 = cj.distance_m + 1.2, cj.distance_m + cj.extent_length_m - 1.2
    m = measure_sediment(sewer.cloud, s0, s1, sewer.diameter_m)
    assert m.depth_m == pytest.approx(cj.measured["depth_m"], abs=0.03)
    # Elsewhere the lidar sees the 0.1 m of water on the invert
    clear = measure_sediment(sewer.cloud, 70.0, 72.0, sewer.diameter_m)
    assert clear.depth_m == pytest.approx(0.1, abs=0.02)


def test_defects_found_along_the_pipe_are_the_true_ones(sewer: Sewer) -> None:
    found = find_geometric_defects(sewer.cloud, sewer.diameter_m, sewer.wall_m,
                                   s_start_m=SEARCH_M[0], s_end_m=SEARCH_M[1])
    expected = [d for d in sewer.defects
                if d.code in ("BX", "CK", "CJ", "TJ") and SEARCH_M[0] <= d.distance_m
                and d.distance_m + d.extent_length_m <= SEARCH_M[1]]
    expected.sort(key=lambda d: d.distance_m)
    assert [d.code for d in found] == [d.code for d in expected] == ["BX", "CK", "CK", "TJ",
                                                                     "CJ"]
    for got, true in zip(found, expected, strict=True):
        assert got.s_start_m == pytest.approx(true.distance_m, abs=0.3), got
        assert got.s_end_m == pytest.approx(true.distance_m + true.extent_length_m, abs=0.3), got
    bx, ck1, ck2, tj, cj = found
    assert bx.measured["ovality_pct_of_d"] == pytest.approx(10.0, abs=2.0)
    for ck in (ck1, ck2):
        assert ck.measured["offset_m"] == pytest.approx(0.06, abs=0.015)
        assert ck.measured["offset_ratio_of_wall"] == pytest.approx(0.6, abs=0.15)
    assert tj.measured["gap_mm"] == pytest.approx(40.0, abs=10.0)  # CJJ 181 grade 3: 20-50 mm
    assert cj.measured["depth_m"] == pytest.approx(0.25, abs=0.03)
    assert cj.measured["depth_pct_of_d"] == pytest.approx(25.0, abs=3.0)


def test_things_in_the_bore_are_intrusions_not_deformations(downstream: Sewer) -> None:
    found = find_geometric_defects(downstream.cloud, downstream.diameter_m, downstream.wall_m,
                                   s_start_m=82.0, s_end_m=107.0)
    true = [*downstream.truth("SG"), *downstream.truth("ZW"), *downstream.truth("AJ")]
    assert [d.code for d in found] == [INTRUSION] * 3
    for got, defect in zip(found, true, strict=True):
        assert got.s_start_m == pytest.approx(defect.distance_m, abs=0.3), got
        assert got.s_end_m == pytest.approx(defect.distance_m + defect.extent_length_m,
                                            abs=0.3), got
        assert got.clock_h == pytest.approx(defect.clock_h, abs=1.0), got
    sg, _, aj = found
    assert sg.measured["intrusion_m"] == pytest.approx(
        downstream.truth("SG")[0].measured["hang_depth_m"], abs=0.05)
    assert aj.measured["intrusion_m"] == pytest.approx(
        downstream.truth("AJ")[0].measured["intrusion_m"], abs=0.03)
