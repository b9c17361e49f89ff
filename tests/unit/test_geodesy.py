"""Site frame <-> CGCS2000: origin, axis azimuth, metric scale, round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from navigation.geodesy import GeodeticOrigin, SiteFrame

WUHAN = GeodeticOrigin(30.5, 114.3, 20.0, x_axis_azimuth_deg=90.0)


def test_origin_maps_to_the_geodetic_origin() -> None:
    lat, lon, h = SiteFrame(WUHAN).to_geodetic([0.0, 0.0, 0.0])[0]
    assert (lat, lon, h) == pytest.approx((30.5, 114.3, 20.0), abs=1e-9)


def test_enu_site_frame_moves_north_with_y() -> None:
    lat, lon, _ = SiteFrame(WUHAN).to_geodetic([0.0, 1000.0, 0.0])[0]
    # Meridian radius of curvature of GRS80 at 30.5 deg N: M = a (1 - e2) / (1 - e2 sin^2)^1.5
    a_m, e2 = 6378137.0, 0.00669438002290
    sin_lat = math.sin(math.radians(30.5))
    meridian_m = a_m * (1 - e2) / (1 - e2 * sin_lat**2) ** 1.5
    assert math.radians(lat - 30.5) * meridian_m == pytest.approx(1000.0, rel=1e-4)
    assert lon == pytest.approx(114.3, abs=1e-9)


def test_axis_azimuth_rotates_the_site_frame() -> None:
    # x axis pointing north: site +x is north, site +y is west.
    frame = SiteFrame(GeodeticOrigin(30.5, 114.3, 20.0, x_axis_azimuth_deg=0.0))
    north = frame.to_geodetic([500.0, 0.0, 0.0])[0]
    west = frame.to_geodetic([0.0, 500.0, 0.0])[0]
    assert north[0] > 30.5 and north[1] == pytest.approx(114.3, abs=1e-9)
    assert west[1] < 114.3 and west[0] == pytest.approx(30.5, abs=1e-6)


def test_round_trip_is_sub_millimetre() -> None:
    frame = SiteFrame(GeodeticOrigin(22.54, 114.06, 5.0, x_axis_azimuth_deg=37.0))
    points = np.array([[0.0, 0.0, 0.0], [600.0, -20.0, -8.0], [-120.5, 340.25, 3.0]])
    back = frame.to_site(frame.to_geodetic(points))
    np.testing.assert_allclose(back, points, atol=1e-3)
    distance = math.dist(*frame.to_site(frame.to_geodetic(points[:2]))[:, :2])
    assert distance == pytest.approx(math.dist(points[0, :2], points[1, :2]), abs=1e-3)
