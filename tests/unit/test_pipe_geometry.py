"""Pipe geometry from lidar points: synthetic rings, ellipses, offset joints and beds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from perception.errors import PerceptionError
from perception.pipe_geometry import (
    INTRUSION,
    InsufficientPointsError,
    PipeCloud,
    PipeGeometryError,
    clock_of,
    find_geometric_defects,
    fit_circle,
    measure_joint_offset,
    measure_ovality,
    measure_sediment,
    ring_profile,
)

FloatArray = NDArray[np.float64]
D_M = 1.0
R_M = D_M / 2.0


def ring(rng: np.random.Generator, s_m: tuple[float, float], half_width_m: float = R_M,
         half_height_m: float = R_M, centre_m: tuple[float, float] = (0.0, 0.0),
         bed_m: float | None = None, angle_rad: float = 0.0, per_m: int = 20_000,
         noise_m: float = 0.005) -> FloatArray:
    """Site points (x = s, y = lateral, z = vertical) on an elliptic bore, with a flat bed.

    Above ``bed_m`` the wall; at ``bed_m`` a flat surface across the bore (water or a deposit).
    """
    n = round(per_m * (s_m[1] - s_m[0]))
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    u, v = half_width_m * np.cos(phi), half_height_m * np.sin(phi)
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    y, z = centre_m[0] + c * u - s * v, centre_m[1] + s * u + c * v
    x = rng.uniform(*s_m, n)
    points = np.column_stack([x, y, z])
    if bed_m is not None:
        points = points[z > bed_m]
        # The bed spans the bore's chord at its height
        k = round(n * 0.3)
        t = (bed_m - centre_m[1]) / half_height_m
        chord = half_width_m * math.sqrt(max(1.0 - t * t, 0.0))
        bed = np.column_stack([rng.uniform(*s_m, k), centre_m[0] + rng.uniform(-chord, chord, k),
                               np.full(k, bed_m)])
        points = np.concatenate([points, bed])
    return points + rng.normal(0.0, noise_m, points.shape)


def straight_cloud(*parts: FloatArray) -> PipeCloud:
    """A cloud on a straight axis along x through the pipe centre."""
    cloud = PipeCloud([[-1.0, 0.0, 0.0], [20.0, 0.0, 0.0]], start_distance_m=-1.0,
                      max_range_m=None)
    for points in parts:
        cloud.add_scan(points)
    return cloud


@pytest.fixture
def rng() -> np.random.Generator:
    """Seeded so the tests are repeatable."""
    return np.random.default_rng(7)


# --- pipe coordinates ------------------------------------------------------------------------


def test_pipe_coordinates_follow_a_bent_invert_axis() -> None:
    # An invert line turning 90 degrees left at x = 2; the centre is 0.5 m above it
    cloud = PipeCloud([[0.0, 0.0, -3.0], [2.0, 0.0, -3.0], [2.0, 3.0, -3.0]],
                      start_distance_m=-0.6, centre_above_axis_m=0.5)
    pipe = cloud.to_pipe([[1.0, 0.2, -2.5 + 0.3], [2.1, 1.0, -2.5 - 0.4]])
    np.testing.assert_allclose(pipe[0], [0.4, 0.2, 0.3], atol=1e-12)
    # On the second leg (heading +y) left is -x
    np.testing.assert_allclose(pipe[1], [2.4, -0.1, -0.4], atol=1e-12)


def test_repeated_scans_merge_into_the_same_voxels(rng: np.random.Generator) -> None:
    points = ring(rng, (0.0, 1.0), noise_m=0.0)
    cloud = straight_cloud(points)
    voxels = len(cloud)
    for _ in range(9):
        cloud.add_scan(points)
    assert len(cloud) == voxels
    assert cloud.hits == 10 * len(points)
    # Voxel means stay on the ring (within the sagitta of a 2 cm chord: 0.1 mm)
    p = cloud.points(0.0, 1.0)
    np.testing.assert_allclose(np.hypot(p.lateral_m, p.vertical_m), R_M, atol=2e-4)


def test_range_gate_and_radius_gate_drop_far_points() -> None:
    cloud = PipeCloud([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]], max_radius_m=1.0, max_range_m=3.0)
    kept = cloud.add_scan([[1.0, 0.5, 0.0], [5.0, 0.5, 0.0], [1.0, 1.5, 0.0],
                           [math.nan, 0.0, 0.0]], sensor_m=[0.0, 0.0, 0.0])
    assert kept == 1


def test_invalid_axes_are_rejected() -> None:
    with pytest.raises(PipeGeometryError, match="waypoints"):
        PipeCloud([[0.0, 0.0, 0.0]])
    with pytest.raises(PipeGeometryError, match="vertical segment"):
        PipeCloud([[0.0, 0.0, 0.0], [0.0, 0.0, -2.0]])
    assert issubclass(PipeGeometryError, PerceptionError)


def test_clock_positions_follow_the_cjj181_convention() -> None:
    assert clock_of(0.0, 1.0) == pytest.approx(12.0)
    assert clock_of(-1.0, 0.0) == pytest.approx(3.0)
    assert clock_of(0.0, -1.0) == pytest.approx(6.0)
    assert clock_of(1.0, 0.0) == pytest.approx(9.0)


# --- measurements ----------------------------------------------------------------------------


def test_round_ring_has_no_ovality(rng: np.random.Generator) -> None:
    cloud = straight_cloud(ring(rng, (0.0, 1.0), noise_m=0.01))
    m = measure_ovality(cloud, 0.0, 1.0, D_M)
    assert abs(m.ovality_pct_of_d) < 0.5
    assert m.min_d_m == pytest.approx(D_M, abs=0.005)
    assert m.max_d_m == pytest.approx(D_M, abs=0.005)
    assert m.points > 1000
    assert m.residual_m == pytest.approx(0.01, abs=0.004)


@pytest.mark.parametrize("angle_deg", [0.0, 35.0, 90.0])
def test_ellipse_ovality_is_measured_above_the_water(rng: np.random.Generator,
                                                     angle_deg: float) -> None:
    # The world generator's BX bore: crown down by 10 % D, invert kept, sides out
    bore = ring(rng, (0.0, 1.0), 0.55, 0.45, (0.0, -0.05), bed_m=-0.4,
                angle_rad=math.radians(angle_deg))
    m = measure_ovality(straight_cloud(bore), 0.0, 1.0, D_M)
    assert m.ovality_pct_of_d == pytest.approx(10.0, abs=0.5)
    assert m.min_d_m == pytest.approx(0.9, abs=0.005)
    assert m.max_d_m == pytest.approx(1.1, abs=0.005)


def test_circle_fit_ignores_a_lateral_opening(rng: np.random.Generator) -> None:
    wall = ring(rng, (0.0, 0.1))
    # A third as many returns again from inside a lateral's bore at 3 o'clock
    n = len(wall) // 2
    lateral = np.column_stack([rng.uniform(0.0, 0.1, n), -rng.uniform(0.5, 1.5, n),
                               rng.uniform(-0.15, 0.15, n)])
    points = np.concatenate([wall, lateral])
    fit = fit_circle(points[:, 1], points[:, 2], R_M)
    assert fit.radius_m == pytest.approx(R_M, abs=0.002)
    assert math.hypot(fit.centre_lateral_m, fit.centre_vertical_m) < 0.003


def test_offset_joint_is_measured(rng: np.random.Generator) -> None:
    cloud = straight_cloud(ring(rng, (2.0, 4.0), bed_m=-0.4),
                           ring(rng, (4.0, 6.0), centre_m=(-0.06, 0.0), bed_m=-0.4))
    m = measure_joint_offset(cloud, 4.0, D_M)
    assert m.offset_m == pytest.approx(0.06, abs=0.01)
    assert m.centre_shift_m == pytest.approx(0.06, abs=0.005)
    assert m.direction_clock_h == pytest.approx(3.0, abs=0.2)


def test_flat_bed_depth_is_measured_from_the_fitted_invert(rng: np.random.Generator) -> None:
    cloud = straight_cloud(ring(rng, (0.0, 1.0), bed_m=-0.27))
    m = measure_sediment(cloud, 0.0, 1.0, D_M)
    assert m.depth_m == pytest.approx(0.23, abs=0.01)
    assert m.depth_pct_of_d == pytest.approx(23.0, abs=1.0)
    assert m.invert_vertical_m == pytest.approx(-R_M, abs=0.005)


def test_too_few_points_raise(rng: np.random.Generator) -> None:
    cloud = straight_cloud(ring(rng, (0.0, 1.0)))
    with pytest.raises(InsufficientPointsError, match="points"):
        measure_ovality(cloud, 5.0, 6.0, D_M)
    with pytest.raises(PipeGeometryError, match="empty chainage range"):
        measure_sediment(cloud, 1.0, 0.0, D_M)


# --- scanning along the pipe -----------------------------------------------------------------


@pytest.fixture
def defective_pipe(rng: np.random.Generator) -> PipeCloud:
    """10 m of DN1000 with water: BX at 2-4 m, an offset section at 6-8 m, a deposit 9.5-11.5 m."""
    water = -0.4
    parts = [
        ring(rng, (0.0, 2.0), bed_m=water),
        ring(rng, (2.0, 4.0), 0.55, 0.45, (0.0, -0.05), bed_m=water),
        ring(rng, (4.0, 6.0), bed_m=water),
        ring(rng, (6.0, 8.0), centre_m=(-0.06, 0.0), bed_m=water),
        ring(rng, (8.0, 9.5), bed_m=water),
        ring(rng, (9.5, 11.5), bed_m=-0.25),
        ring(rng, (11.5, 13.0), bed_m=water),
    ]
    return straight_cloud(*parts)


def test_ring_profile_tracks_the_bore(defective_pipe: PipeCloud) -> None:
    profile = ring_profile(defective_pipe, 0.25, D_M, 0.0, 13.0)
    s = profile.s_mid_m
    bx = (s > 2.25) & (s < 3.75)
    assert np.all(profile.ovality_pct_of_d[bx] == pytest.approx(10.0, abs=1.0))
    assert np.all(np.abs(profile.ovality_pct_of_d[(s > 4.25) & (s < 5.75)]) < 1.0)
    offset = (s > 6.25) & (s < 7.75)
    assert np.all(profile.centre_lateral_m[offset] == pytest.approx(-0.06, abs=0.005))
    assert np.all(profile.bed_height_m[(s > 9.75) & (s < 11.25)] == pytest.approx(0.25,
                                                                                   abs=0.01))
    assert np.all(profile.bed_height_m[(s > 4.25) & (s < 5.75)] == pytest.approx(0.1,
                                                                                  abs=0.01))


def test_geometric_defects_are_found_with_their_measurements(defective_pipe: PipeCloud) -> None:
    found = find_geometric_defects(defective_pipe, D_M, 0.1, s_start_m=0.0, s_end_m=13.0)
    assert [d.code for d in found] == ["BX", "CK", "CK", "CJ"]
    bx, ck1, ck2, cj = found
    assert (bx.s_start_m, bx.s_end_m) == (pytest.approx(2.0, abs=0.15),
                                          pytest.approx(4.0, abs=0.15))
    assert bx.measured["ovality_pct_of_d"] == pytest.approx(10.0, abs=0.5)
    for ck, s_joint in ((ck1, 6.0), (ck2, 8.0)):
        assert ck.s_start_m == pytest.approx(s_joint, abs=0.15)
        assert ck.measured["offset_m"] == pytest.approx(0.06, abs=0.01)
        assert ck.measured["offset_ratio_of_wall"] == pytest.approx(0.6, abs=0.1)
    assert (cj.s_start_m, cj.s_end_m) == (pytest.approx(9.5, abs=0.15),
                                          pytest.approx(11.5, abs=0.15))
    assert cj.measured["depth_m"] == pytest.approx(0.25, abs=0.01)
    assert cj.measured["depth_pct_of_d"] == pytest.approx(25.0, abs=1.0)


def test_an_obstacle_in_the_bore_is_an_intrusion_not_a_deformation(
        rng: np.random.Generator) -> None:
    # Rubble against the right wall at 2.0-2.5 m: inner face at y = -0.28, top at z = 0.1
    wall = ring(rng, (0.0, 4.0), bed_m=-0.4)
    hidden = (wall[:, 0] > 2.0) & (wall[:, 0] < 2.5) & (wall[:, 1] < -0.28) & (wall[:, 2] < 0.1)
    n = 4000
    face = np.column_stack([rng.uniform(2.0, 2.5, n), np.full(n, -0.28),
                            rng.uniform(-0.4, 0.1, n)])
    top = np.column_stack([rng.uniform(2.0, 2.5, n), rng.uniform(-0.48, -0.28, n),
                           np.full(n, 0.1)])
    cloud = straight_cloud(wall[~hidden], face + rng.normal(0.0, 0.005, face.shape),
                           top + rng.normal(0.0, 0.005, top.shape))
    found = find_geometric_defects(cloud, D_M, 0.1, s_start_m=0.0, s_end_m=4.0)
    assert [d.code for d in found] == [INTRUSION]
    (rubble,) = found
    assert (rubble.s_start_m, rubble.s_end_m) == (pytest.approx(2.0, abs=0.15),
                                                  pytest.approx(2.5, abs=0.15))
    assert rubble.clock_h == pytest.approx(3.5, abs=1.0)
    assert rubble.measured["intrusion_m"] == pytest.approx(0.2, abs=0.06)


def test_rubble_area_loss_is_integrated_over_its_cross_section(
        rng: np.random.Generator) -> None:
    # Rubble against the right wall at 2.0-2.5 m above the water: inner face y = -0.28, top z = 0.1
    water = -0.4
    wall = ring(rng, (0.0, 4.0), bed_m=water)
    hidden = (wall[:, 0] > 2.0) & (wall[:, 0] < 2.5) & (wall[:, 1] < -0.28) & (wall[:, 2] < 0.1)
    n = 4000
    face = np.column_stack([rng.uniform(2.0, 2.5, n), np.full(n, -0.28),
                            rng.uniform(water, 0.1, n)])
    top = np.column_stack([rng.uniform(2.0, 2.5, n), rng.uniform(-0.48, -0.28, n),
                           np.full(n, 0.1)])
    cloud = straight_cloud(wall[~hidden], face + rng.normal(0.0, 0.005, face.shape),
                           top + rng.normal(0.0, 0.005, top.shape))
    (rubble,) = find_geometric_defects(cloud, D_M, 0.1, s_start_m=0.0, s_end_m=4.0)
    # The bore it fills above the water, on a 1 mm grid
    y, z = np.meshgrid(np.arange(-R_M, R_M, 0.001), np.arange(-R_M, R_M, 0.001))
    filled = (y * y + z * z < R_M**2) & (y < -0.28) & (z < 0.1) & (z > water)
    truth_pct = 100.0 * np.count_nonzero(filled) * 1e-6 / (math.pi * R_M**2)
    assert rubble.measured["area_loss_pct"] == pytest.approx(truth_pct, rel=0.15)
    # Far from the segment a depth of 0.2 m would cut off: that overstates a side object
    assert truth_pct < 14.0


def test_offset_joints_are_found_where_the_shifted_ring_shows_its_edge(
        rng: np.random.Generator) -> None:
    # Pose noise smears each joint's step face over the bins next to it: returns inside the
    # fitted wall, as deep as the step (0.06 m)
    water = -0.4
    parts = [ring(rng, (0.0, 3.0), bed_m=water),
             ring(rng, (3.0, 5.0), centre_m=(-0.06, 0.0), bed_m=water),
             ring(rng, (5.0, 8.0), bed_m=water)]
    for s_joint in (3.0, 5.0):
        for s0 in np.arange(s_joint - 0.3, s_joint + 0.3, 0.1):
            # On the left (9 o'clock) the shifted ring's wall stands 0.06 m inside the other
            n = 300
            phi = rng.uniform(math.radians(60.0), math.radians(120.0), n)
            rho = R_M - rng.uniform(0.04, 0.07, n)
            parts.append(np.column_stack([rng.uniform(s0, s0 + 0.1, n), rho * np.sin(phi),
                                          rho * np.cos(phi)]))
    found = find_geometric_defects(straight_cloud(*parts), D_M, 0.1, s_start_m=0.0,
                                   s_end_m=8.0)
    offsets = [d for d in found if d.code == "CK"]
    assert [d.s_start_m for d in offsets] == [pytest.approx(3.0, abs=0.15),
                                              pytest.approx(5.0, abs=0.15)]
    assert all(d.measured["offset_m"] == pytest.approx(0.06, abs=0.015) for d in offsets)


def test_a_deposit_with_an_uneven_top_starts_where_its_ramp_meets_the_invert(
        rng: np.random.Generator) -> None:
    # Water 0.1 m deep; a deposit ramps up from the invert at 9.0 m to 0.3 m at 10.0 m, has an
    # uneven top (0.2-0.35 m) and ramps down to the invert at 13.0 m
    water_height = 0.1
    parts = [ring(rng, (6.0, 9.0), bed_m=-R_M + water_height)]
    top = iter(np.tile([0.3, 0.2, 0.33, 0.22, 0.35, 0.21], 3))
    for s0 in np.arange(9.0, 13.0, 0.05):
        s_mid = s0 + 0.025
        if s_mid < 10.0:
            height = 0.3 * (s_mid - 9.0)
        elif s_mid > 12.0:
            height = 0.3 * (13.0 - s_mid)
        else:
            height = next(top) if round(s0 / 0.05) % 4 == 0 else height
        parts.append(ring(rng, (s0, s0 + 0.05), bed_m=-R_M + max(height, water_height)))
    parts.append(ring(rng, (13.0, 16.0), bed_m=-R_M + water_height))
    found = find_geometric_defects(straight_cloud(*parts), D_M, 0.1, s_start_m=6.0,
                                   s_end_m=16.0)
    (deposit,) = [d for d in found if d.code == "CJ"]
    assert deposit.s_start_m == pytest.approx(9.0, abs=0.2)
    assert deposit.s_end_m == pytest.approx(13.0, abs=0.2)


def test_a_bed_off_the_fitted_rings_middle_is_insufficient_not_nan(
        rng: np.random.Generator) -> None:
    # Wall points of a ring centred 0.3 m to the left, a bed only under the right side
    wall = ring(rng, (0.0, 1.0), centre_m=(0.3, 0.0), bed_m=-0.3)
    wall = wall[wall[:, 2] > -0.25]
    bed = np.column_stack([rng.uniform(0.0, 1.0, 400), rng.uniform(-0.15, -0.05, 400),
                           np.full(400, -0.3)])
    with pytest.raises(InsufficientPointsError, match="no bed points"):
        measure_sediment(straight_cloud(wall, bed), 0.0, 1.0, D_M)


def test_a_gap_wider_than_any_joint_is_not_an_open_joint(rng: np.random.Generator) -> None:
    # Returns from behind the wall over 0.6 m at both sides: smeared scans, not a joint
    water = -0.4
    wall = ring(rng, (0.0, 8.0), bed_m=water)
    n = 3000
    behind = []
    for side in (-1.0, 1.0):
        behind.append(np.column_stack([rng.uniform(4.0, 4.6, n), np.full(n, side * 0.62),
                                       rng.uniform(-0.2, 0.2, n)]))
    cloud = straight_cloud(wall, *behind)
    found = find_geometric_defects(cloud, D_M, 0.1, s_start_m=0.0, s_end_m=8.0)
    assert "TJ" not in [d.code for d in found]


def _behind(rng: np.random.Generator, s_m: tuple[float, float], clocks_h: tuple[float, float],
            depth_m: float, n: int = 3000) -> FloatArray:
    """Returns from ``depth_m`` behind the wall over a clock range on both sides."""
    out = []
    for sign in (1.0, -1.0):  # right side (3 o'clock) and its mirror on the left
        angle = np.radians(rng.uniform(*clocks_h, n) * 30.0)
        radius = R_M + depth_m + rng.normal(0.0, 0.003, n)
        out.append(np.column_stack([rng.uniform(*s_m, n), -sign * radius * np.sin(angle),
                                    radius * np.cos(angle)]))
    return np.vstack(out)


def test_an_open_joint_is_found_where_the_ring_is_most_open(rng: np.random.Generator) -> None:
    # A 40 mm open joint at 4.0 m (the backing 8 cm behind it seen at 2-4 o'clock and 8-10),
    # then a section whose lower sides sit 4.5 cm off the ring (open in fewer sectors), with
    # deeper returns at 5.5-5.9 m: a gap measured over the whole run was 1.9 m, no joint
    wall = ring(rng, (0.0, 8.0), bed_m=-0.4)
    joint = _behind(rng, (4.0, 4.05), (2.0, 4.0), 0.08)
    offset = _behind(rng, (4.1, 6.5), (3.5, 4.49), 0.045, n=8000)
    deep = _behind(rng, (5.5, 5.9), (3.5, 4.49), 0.09)
    found = find_geometric_defects(straight_cloud(wall, joint, offset, deep), D_M, 0.1,
                                   s_start_m=0.0, s_end_m=8.0)
    (open_joint,) = [d for d in found if d.code == "TJ"]
    assert open_joint.s_start_m == pytest.approx(4.0, abs=0.05)
    assert open_joint.measured["gap_mm"] < 100.0
