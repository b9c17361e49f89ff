"""Site frame <-> CGCS2000 geodetic coordinates (BeiDou fixes, GIS exports).

A site's local frame is tied to CGCS2000 by the geodetic position of its origin and the
azimuth of its +x axis (degrees clockwise from north; 90 makes the site frame East-North-Up).
Between the two sits the topocentric (ENU) frame of the origin on the CGCS2000 ellipsoid,
computed by PROJ through pyproj: exact, not a flat-earth approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyproj
from numpy.typing import ArrayLike, NDArray

CGCS2000_ELLIPSOID = "GRS80"
"""CGCS2000's ellipsoid equals GRS80 to 0.1 mm in the semi-minor axis."""


@dataclass(frozen=True)
class GeodeticOrigin:
    """CGCS2000 position of a site's origin and the azimuth of its +x axis."""

    latitude_deg: float
    longitude_deg: float
    height_m: float
    x_axis_azimuth_deg: float = 90.0


class SiteFrame:
    """Converts between a site's frame (x, y, z in metres) and CGCS2000 latitude/longitude."""

    def __init__(self, origin: GeodeticOrigin) -> None:
        self.origin = origin
        o = origin
        self._enu = pyproj.Transformer.from_pipeline(
            "+proj=pipeline +step +proj=axisswap +order=2,1 "
            "+step +proj=unitconvert +xy_in=deg +xy_out=rad "
            f"+step +proj=cart +ellps={CGCS2000_ELLIPSOID} "
            f"+step +proj=topocentric +lat_0={o.latitude_deg!r} +lon_0={o.longitude_deg!r} "
            f"+h_0={o.height_m!r} +ellps={CGCS2000_ELLIPSOID}"
        )
        # Site x axis at azimuth a (clockwise from north): x = (sin a, cos a) in (E, N).
        a = math.radians(o.x_axis_azimuth_deg)
        self._R_enu_site = np.array([
            [math.sin(a), -math.cos(a), 0.0],
            [math.cos(a), math.sin(a), 0.0],
            [0.0, 0.0, 1.0],
        ])

    def to_geodetic(self, points_site_m: ArrayLike) -> NDArray[np.float64]:
        """(N, 3) site points -> (N, 3) latitude [deg], longitude [deg], ellipsoidal height [m]."""
        site = np.atleast_2d(np.asarray(points_site_m, dtype=np.float64))
        enu = site @ self._R_enu_site.T
        lat, lon, h = self._enu.transform(enu[:, 0], enu[:, 1], enu[:, 2],
                                          direction=pyproj.enums.TransformDirection.INVERSE)
        return np.column_stack([lat, lon, h])

    def to_site(self, lat_lon_h: ArrayLike) -> NDArray[np.float64]:
        """(N, 3) latitude [deg], longitude [deg], height [m] -> (N, 3) site points [m]."""
        geo = np.atleast_2d(np.asarray(lat_lon_h, dtype=np.float64))
        e, n, u = self._enu.transform(geo[:, 0], geo[:, 1], geo[:, 2])
        site: NDArray[np.float64] = np.column_stack([e, n, u]) @ self._R_enu_site
        return site
