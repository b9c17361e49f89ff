"""What a pipe's lidar scan says about the crawler's pose: where it sits across the bore.

A crawler in a round pipe is meant to ride the invert, but it wanders: a heading error of
0.03 degrees walks it 2 cm sideways every 35 m, reversing out of a pipe more, and a crawler
off the invert climbs the wall and rolls. Lidar odometry cannot see this: it measures motion
against its own map, which drifts along with it, and assuming "on the axis" hides the drift
from the controller that should steer it back. The pipe wall itself is an absolute reference.

``pipe_centre`` fits a circle to the wall just ahead of the sensor, in base_link's y-z plane
(the pipe's cross-section while the crawler heads along the pipe): the points of a short slice
ahead, above the water and any deposit, by an algebraic (Kasa) fit refined by iteratively
re-weighted least squares with Tukey weights (roots, a lateral's opening or a joint's step
are outliers). The centre's lateral offset in base_link, turned into the site frame, is the
crawler's lateral offset from the site axis (the invert line lies under the centre): the
smoother's pipe-axis factor takes it instead of assuming 0. The fitted radius minus the
centre's height is the crawler's height above the invert (on a deposit it rides 0.25 m up);
the pipeline takes it only where the bore is its usual round self: in a deformed (BX) section
the fit is too wide and its centre moves up or down, not across.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

_TUKEY_C = 4.685
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class PipeCentreConfig:
    """Which points are the wall, and when the fit is believed."""

    min_ahead_m: float = 0.3
    max_ahead_m: float = 1.5
    """The slice of bore ahead of base_link that is fitted (short: the pipe may bend)."""
    min_height_m: float = 0.15
    """Points at most this high above base_link are water, deposits or the invert."""
    min_points: int = 150
    max_points: int = 2000
    """Evenly thinned to this many."""
    radius_limits_m: tuple[float, float] = (0.1, 2.0)
    max_residual_m: float = 0.02
    """Robust scatter of the wall about the circle above which the fit is not believed (a
    junction, a manhole, a collapsed section)."""
    min_inlier_fraction: float = 0.6
    iterations: int = 8


@dataclass(frozen=True)
class PipeCentre:
    """The pipe's centre line where the slice was cut, in base_link."""

    lateral_m: float
    """y of the centre in base_link (positive: the centre is to the crawler's left)."""
    vertical_m: float
    """z of the centre in base_link."""
    radius_m: float
    residual_m: float
    """Robust scatter of the wall points about the circle."""
    points: int

    @property
    def point_base_m(self) -> FloatArray:
        """The centre as a point of base_link (at x = 0)."""
        return np.array([0.0, self.lateral_m, self.vertical_m])


def pipe_centre(points_base_m: FloatArray, config: PipeCentreConfig | None = None
                ) -> PipeCentre | None:
    """The pipe's centre and radius from the wall ahead; None where no round wall is seen."""
    cfg = config or PipeCentreConfig()
    # Wall ahead: a short slice of the bore, above the water
    points = np.asarray(points_base_m, dtype=np.float64)
    ahead = ((points[:, 0] > cfg.min_ahead_m) & (points[:, 0] < cfg.max_ahead_m)
             & (points[:, 2] > cfg.min_height_m))
    wall = points[ahead][:, 1:]
    if len(wall) < cfg.min_points:
        return None
    if len(wall) > cfg.max_points:
        wall = wall[np.linspace(0, len(wall) - 1, cfg.max_points).astype(np.int64)]
    # Circle: algebraic fit, then re-weighted against outliers
    weights = np.ones(len(wall))
    centre, radius = _weighted_kasa(wall, weights)
    sigma = np.inf
    for _ in range(cfg.iterations):
        residual = np.linalg.norm(wall - centre, axis=1) - radius
        sigma = max(_MAD_TO_SIGMA * float(np.median(np.abs(residual))), 1e-3)
        u = residual / (_TUKEY_C * sigma)
        weights = np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)
        if np.count_nonzero(weights) < cfg.min_points:
            return None
        centre, radius = _weighted_kasa(wall, weights)
    # Believed only for a round wall that most points lie on
    inliers = float(np.count_nonzero(weights)) / len(wall)
    low, high = cfg.radius_limits_m
    if (not low <= radius <= high or sigma > cfg.max_residual_m
            or inliers < cfg.min_inlier_fraction):
        return None
    return PipeCentre(float(centre[0]), float(centre[1]), float(radius), float(sigma),
                      len(wall))


def _weighted_kasa(yz: FloatArray, weights: FloatArray) -> tuple[FloatArray, float]:
    """Least-squares circle y^2 + z^2 + a y + b z + c = 0 (weighted): centre and radius."""
    root_w = np.sqrt(weights)
    A = np.column_stack([yz, np.ones(len(yz))]) * root_w[:, None]
    b = -(yz * yz).sum(axis=1) * root_w
    (a_y, a_z, c), *_ = np.linalg.lstsq(A, b, rcond=None)
    centre = np.array([-a_y / 2.0, -a_z / 2.0])
    radius = float(np.sqrt(max(float(centre @ centre) - c, 0.0)))
    return centre, radius
