"""Looking closer at suspected defects with the crawler's pan-tilt-zoom camera.

From the wide camera a hairline crack 3 m away is a line finer than a pixel, and a thin film
of water on the floor a faint dark strip; the detector sees them weakly, in few frames, and
the tracker rightly does not confirm them. An inspector stops, turns the camera towards the
spot and zooms in. ``SuspectFinder`` picks the detections worth that: confident enough to be
more than noise, not confident enough to be trusted, placed on the surface within zoom range,
and not at a spot already looked at. ``aim_head`` gives the pan, tilt and zoom that put a
point in the middle of the view with a given width of surface around it, and ``AimClimb``
moves the aim during the look towards the view the detector is surest of.

Head convention (the simulator's ``CameraHead`` and a real head alike): pan turns the camera
left about its mount's z (up), tilt raises it about the panned y (left); both 0 look along the
mount's x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from perception.detectors.base import Detection
from perception.findings import FindingTracker, PinholeCamera

FloatArray = NDArray[np.float64]

NARROWEST_FOV_RAD = math.radians(6.0)
"""The zoom lens's narrowest horizontal field of view (a 12x zoom on an 80-degree lens)."""


@dataclass(frozen=True)
class HeadAim:
    """Pan, tilt and zoom that centre a point; its distance from the camera."""

    pan_rad: float
    tilt_rad: float
    horizontal_fov_rad: float
    range_m: float


def aim_head(T_map_mount: FloatArray, target_m: FloatArray, field_m: float,
             wide_fov_rad: float, narrowest_fov_rad: float = NARROWEST_FOV_RAD) -> HeadAim:
    """The head's pan and tilt towards ``target_m`` (map frame) from a camera whose head is
    mounted at ``T_map_mount``, zoomed so that ``field_m`` across fills the view's width
    (within the lens's range)."""
    offset = np.asarray(T_map_mount[:3, :3]).T @ (np.asarray(target_m, dtype=np.float64)
                                                  - T_map_mount[:3, 3])
    x, y, z = (float(v) for v in offset)
    range_m = math.sqrt(x * x + y * y + z * z)
    pan = math.atan2(y, x)
    tilt = math.atan2(z, math.hypot(x, y))
    fov = 2.0 * math.atan2(0.5 * field_m, max(range_m, 1e-3))
    return HeadAim(pan, tilt, min(max(fov, narrowest_fov_rad), wide_fov_rad), range_m)


def zoomed(camera: PinholeCamera, horizontal_fov_rad: float) -> PinholeCamera:
    """The same image size with the focal length of ``horizontal_fov_rad``."""
    focal = 0.5 * camera.width_px / math.tan(0.5 * horizontal_fov_rad)
    return PinholeCamera(camera.width_px, camera.height_px, focal)


@dataclass(frozen=True)
class Suspect:
    """A detection worth a closer look, placed on the inspected surface."""

    id: str
    code: str
    confidence: float
    distance_m: float
    """Chainage along the asset's axis where it was placed."""
    point_m: FloatArray
    """Where on the surface (map frame) the head aims."""
    stamp_ns: int


class SuspectFinder:
    """Picks the detections to look closer at (see the module docstring).

    A detection is a suspect when its confidence lies in ``[min_confidence, trust_confidence)``
    (the tracker confirms a track whose better views reach ``trust_confidence`` without help),
    its box's centre ray meets the surface within ``max_range_m`` of the camera, and no spot
    looked at before (every suspect's spot counts as one), nor a finding already confirmed of
    its class, lies within ``spacing_m``.
    """

    def __init__(self, tracker: FindingTracker, min_confidence: float = 0.15,
                 trust_confidence: float | None = None, max_range_m: float = 6.0,
                 spacing_m: float = 1.5, id_prefix: str = "S") -> None:
        self.tracker = tracker
        self.min_confidence = min_confidence
        self.trust_confidence = (tracker.min_confidence if trust_confidence is None
                                 else trust_confidence)
        self.max_range_m = max_range_m
        self.spacing_m = spacing_m
        self._prefix = id_prefix
        self._looked: list[FloatArray] = []
        self._confirmed: list[tuple[str, FloatArray]] = []
        self._count = 0

    def consider(self, stamp_ns: int, detections: list[Detection], T_map_camera: FloatArray,
                 camera: PinholeCamera | None = None) -> Suspect | None:
        """The most confident new suspect among one frame's detections, or None."""
        camera_m, _ = self.tracker.surface.axis.chainage_and_direction(T_map_camera[:3, 3])
        for detection in sorted(detections, key=lambda d: -d.confidence):
            if not self.min_confidence <= detection.confidence < self.trust_confidence:
                continue
            placed = self.tracker.place(stamp_ns, detection, T_map_camera, camera_m, camera)
            if placed is None:
                continue
            point = placed.point_m
            if float(np.linalg.norm(point - T_map_camera[:3, 3])) > self.max_range_m:
                continue
            if self._near(point, self._looked) or self._near(
                    point, [p for code, p in self._confirmed if code == detection.code]):
                continue
            self._count += 1
            self.looked_at(point)  # a suspect's spot is never suspected again
            return Suspect(f"{self._prefix}{self._count:03d}", detection.code,
                           detection.confidence, placed.centre_m, point, stamp_ns)
        return None

    def looked_at(self, point_m: FloatArray) -> None:
        """A spot the camera has looked closer at: no more suspects around it."""
        self._looked.append(np.asarray(point_m, dtype=np.float64))

    def confirmed(self, code: str, point_m: FloatArray) -> None:
        """A confirmed finding: no suspects of its class around it."""
        self._confirmed.append((code, np.asarray(point_m, dtype=np.float64)))

    def _near(self, point: FloatArray, spots: list[FloatArray]) -> bool:
        return any(float(np.linalg.norm(point - spot)) < self.spacing_m for spot in spots)


class AimClimb:
    """Where a look aims: a hill climb on the zoomed detector's confidence.

    The look starts at the suspect's spot. Each zoomed frame's most confident detection of the
    suspect's class, placed on the surface, proposes the next aim: the aim moves there while
    the frames get surer, and once a move makes them less sure it goes back to the best aim
    and stays. Following the latest box alone walks off: the box of a pool seen at a grazing
    angle is centred nearer its far edge or the wall than the aim that framed it, and each
    step framed less of the water (the tunnel's W1: 0.62, 0.66, then 0.30-0.46).
    Proposals farther than ``reach_m`` from the first aim are ignored (another defect).
    """

    def __init__(self, first_aim_m: FloatArray, reach_m: float, min_step_m: float = 0.05
                 ) -> None:
        self.first_aim_m = np.asarray(first_aim_m, dtype=np.float64)
        self.aim_m = self.first_aim_m
        self.reach_m = reach_m
        self.min_step_m = min_step_m
        self.settled = False
        self._best_aim_m = self.aim_m
        self._best_confidence = 0.0

    def observe(self, confidence: float, proposed_m: FloatArray | None) -> FloatArray:
        """A frame taken at ``aim_m``: its best detection's ``confidence`` (0 for none) and
        where that detection lies (None if off the surface); returns the next aim."""
        if self.settled:
            return self.aim_m
        if confidence < self._best_confidence:  # the last move made it worse: back, stay
            self.aim_m, self.settled = self._best_aim_m, True
            return self.aim_m
        if confidence > self._best_confidence:
            self._best_aim_m, self._best_confidence = self.aim_m, confidence
            if proposed_m is not None and self._reachable(proposed_m):
                self.aim_m = np.asarray(proposed_m, dtype=np.float64)
        return self.aim_m

    def _reachable(self, point_m: FloatArray) -> bool:
        return (float(np.linalg.norm(point_m - self.first_aim_m)) <= self.reach_m
                and float(np.linalg.norm(point_m - self.aim_m)) >= self.min_step_m)
