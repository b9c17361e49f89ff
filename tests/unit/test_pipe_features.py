"""The pipe's centre from the wall ahead: where the crawler sits across the bore."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from navigation.pipe_features import PipeCentreConfig, pipe_centre

FloatArray = NDArray[np.float64]


def bore(rng: np.random.Generator, centre_yz: tuple[float, float], radius_m: float,
         water_z_m: float, n: int = 6000, noise_m: float = 0.005) -> FloatArray:
    """Lidar returns (base_link) on a round wall ahead, and the water surface below it."""
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    y = centre_yz[0] + radius_m * np.cos(phi)
    z = centre_yz[1] + radius_m * np.sin(phi)
    x = rng.uniform(-3.0, 3.0, n)
    wall = np.column_stack([x, y, z])[z > water_z_m]
    k = n // 5
    half = math.sqrt(radius_m**2 - (water_z_m - centre_yz[1]) ** 2)
    water = np.column_stack([rng.uniform(-3.0, 3.0, k),
                             centre_yz[0] + rng.uniform(-half, half, k), np.full(k, water_z_m)])
    points = np.concatenate([wall, water])
    return points + rng.normal(0.0, noise_m, points.shape)


@pytest.fixture
def rng() -> np.random.Generator:
    """Seeded so the tests are repeatable."""
    return np.random.default_rng(11)


def test_an_off_centre_crawler_sees_the_bore_centre_beside_it(rng: np.random.Generator) -> None:
    # DN1000, the crawler 0.12 m right of the centre line (the centre is to its left)
    points = bore(rng, (0.12, 0.47), 0.5, water_z_m=0.05)
    centre = pipe_centre(points)
    assert centre is not None
    assert centre.lateral_m == pytest.approx(0.12, abs=0.005)
    assert centre.vertical_m == pytest.approx(0.47, abs=0.005)
    assert centre.radius_m == pytest.approx(0.5, abs=0.005)
    assert centre.point_base_m.tolist() == [0.0, centre.lateral_m, centre.vertical_m]


def test_roots_hanging_into_the_bore_do_not_pull_the_centre(rng: np.random.Generator) -> None:
    points = bore(rng, (0.0, 0.47), 0.5, water_z_m=0.05)
    roots = np.column_stack([rng.uniform(0.4, 1.2, 250), rng.uniform(-0.2, 0.2, 250),
                             rng.uniform(0.65, 0.9, 250)])
    centre = pipe_centre(np.concatenate([points, roots]))
    assert centre is not None
    assert math.hypot(centre.lateral_m, centre.vertical_m - 0.47) < 0.01


def test_no_centre_in_a_box_gallery_or_from_too_few_points(rng: np.random.Generator) -> None:
    # A 3.2 m x 3.5 m gallery: walls and ceiling are straight lines, not an arc
    n = 3000
    left = np.column_stack([rng.uniform(0, 2, n), np.full(n, 1.6), rng.uniform(0.2, 3.4, n)])
    right = left * [1.0, -1.0, 1.0]
    ceiling = np.column_stack([rng.uniform(0, 2, n), rng.uniform(-1.6, 1.6, n),
                               np.full(n, 3.5)])
    gallery = np.concatenate([left, right, ceiling]) + rng.normal(0.0, 0.005, (3 * n, 3))
    assert pipe_centre(gallery, PipeCentreConfig(radius_limits_m=(0.1, 5.0))) is None
    assert pipe_centre(bore(rng, (0.0, 0.47), 0.5, 0.05, n=200)) is None
