"""Looking closer: the head's aim, the zoom lens, placing zoomed detections, picking suspects,
moving the aim during a look."""

from __future__ import annotations

import math

import numpy as np
import pytest

from navigation.site import Axis
from perception.close_up import AimClimb, SuspectFinder, aim_head, zoomed
from perception.detectors.base import Detection
from perception.findings import FindingTracker, GalleryModel, PinholeCamera
from sim_worlds.simulator.camera import Camera, CameraHead
from sim_worlds.simulator.errors import SimError
from sim_worlds.simulator.sdf import CameraSpec

WIDE = PinholeCamera(640, 480, 0.5 * 640 / math.tan(math.radians(40.0)))
WIDE_FOV_RAD = math.radians(80.0)
HALF_UP = np.array([0.0, 0.0, 0.5])
GALLERY = GalleryModel(Axis("main", ((0.0, 0.0, 0.0), (200.0, 0.0, 0.0))), 3.2, 3.5)


def mount_at(x_m: float, yaw_rad: float = 0.0, z_m: float = 0.6) -> np.ndarray:
    T = np.eye(4)
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = x_m, 0.0, z_m
    return T


@pytest.mark.parametrize("target", [(5.0, 0.0, 0.6), (0.0, 3.0, 0.6), (3.0, -1.6, 1.8),
                                    (-2.0, 1.0, 3.5), (1.0, 0.5, -0.4)])
@pytest.mark.parametrize("yaw_rad", [0.0, 0.7, -2.5])
def test_the_head_aimed_at_a_point_looks_straight_at_it(target: tuple[float, float, float],
                                                        yaw_rad: float) -> None:
    """aim_head's pan and tilt turn the simulator head's optical axis onto the target."""
    T_map_mount = mount_at(0.0, yaw_rad)
    target_m = T_map_mount[:3, :3] @ np.array(target) + T_map_mount[:3, 3]
    aim = aim_head(T_map_mount, target_m, 1.0, WIDE_FOV_RAD)
    T_map_camera = T_map_mount @ CameraHead(aim.pan_rad, aim.tilt_rad).T_mount_camera()
    towards = (target_m - T_map_camera[:3, 3]) / np.linalg.norm(target_m - T_map_camera[:3, 3])
    np.testing.assert_allclose(T_map_camera[:3, 0], towards, atol=1e-9)
    assert aim.range_m == pytest.approx(float(np.linalg.norm(target)))
    R = T_map_camera[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert abs(R[2, 1]) < 1e-12  # no roll: the image's horizon stays level


def test_the_zoom_frames_the_asked_width_within_the_lens_range() -> None:
    aim = aim_head(np.eye(4), np.array([3.0, 0.0, 0.0]), 1.2, WIDE_FOV_RAD)
    assert 2.0 * 3.0 * math.tan(0.5 * aim.horizontal_fov_rad) == pytest.approx(1.2)
    assert aim_head(np.eye(4), np.array([0.5, 0.0, 0.0]), 5.0,
                    WIDE_FOV_RAD).horizontal_fov_rad == WIDE_FOV_RAD
    assert aim_head(np.eye(4), np.array([100.0, 0.0, 0.0]), 0.1,
                    WIDE_FOV_RAD).horizontal_fov_rad == pytest.approx(math.radians(6.0))
    assert zoomed(WIDE, aim.horizontal_fov_rad).focal_px == pytest.approx(
        WIDE.focal_px * math.tan(0.5 * WIDE_FOV_RAD) / math.tan(0.5 * aim.horizontal_fov_rad))


def test_the_simulated_zoom_lens_narrows_the_view_and_refuses_the_impossible() -> None:
    spec = CameraSpec(WIDE_FOV_RAD, 64, 48, "R8G8B8", 0.05, 60.0, 0.0)
    camera = Camera(spec)
    wide_rays = camera._grid.directions_camera.copy()
    camera.zoom_to(math.radians(20.0))
    assert camera.spec.horizontal_fov_rad == pytest.approx(math.radians(20.0))
    assert camera.spec.width_px == 64
    # The edge rays now leave 10 degrees off axis, not 40
    half = math.degrees(math.atan2(float(np.abs(camera._grid.directions_camera[:, 1]).max()),
                                   float(camera._grid.directions_camera[:, 0].min())))
    assert half == pytest.approx(10.0 * (63.0 / 64.0), abs=0.2)
    assert not np.allclose(wide_rays, camera._grid.directions_camera)
    with pytest.raises(SimError, match="zoom"):
        camera.zoom_to(math.radians(1.0))


def box_around(point_m: np.ndarray, T_map_camera: np.ndarray, camera: PinholeCamera,
               half_px: float = 20.0) -> tuple[float, float, float, float]:
    p = T_map_camera[:3, :3].T @ (point_m - T_map_camera[:3, 3])
    u = 0.5 * camera.width_px - camera.focal_px * p[1] / p[0]
    v = 0.5 * camera.height_px - camera.focal_px * p[2] / p[0]
    return (u - half_px, v - half_px, u + half_px, v + half_px)


def test_a_zoomed_detection_is_placed_with_the_zoomed_focal_length() -> None:
    """The same box means a different spot through a zoomed lens: placing it with the wide
    camera's focal length would put it metres off."""
    crack = np.array([12.0, -1.6, 1.8])
    T_map_mount = mount_at(9.0)
    aim = aim_head(T_map_mount, crack + np.array([0.3, 0.0, 0.2]), 1.2, WIDE_FOV_RAD)
    T_map_camera = T_map_mount @ CameraHead(aim.pan_rad, aim.tilt_rad).T_mount_camera()
    lens = zoomed(WIDE, aim.horizontal_fov_rad)
    detection = Detection("PL", box_around(crack, T_map_camera, lens), 0.8)
    tracker = FindingTracker(GALLERY, WIDE)
    right = tracker.place(0, detection, T_map_camera, 9.0, lens)
    wrong = tracker.place(0, detection, T_map_camera, 9.0)
    assert right is not None and wrong is not None
    np.testing.assert_allclose(right.point_m, crack, atol=0.02)
    assert float(np.linalg.norm(wrong.point_m - crack)) > 0.3


def test_suspects_are_weak_near_new_detections() -> None:
    tracker = FindingTracker(GALLERY, WIDE)
    finder = SuspectFinder(tracker, min_confidence=0.15, max_range_m=6.0, spacing_m=1.5)
    T_map_camera = mount_at(10.0)
    crack, far = np.array([13.0, -1.6, 1.8]), np.array([18.0, -1.6, 1.5])

    def seen(point: np.ndarray, code: str, confidence: float) -> Detection:
        return Detection(code, box_around(point, T_map_camera, WIDE, 6.0), confidence)

    # Too weak, too strong (the tracker confirms it unaided), too far to zoom: none
    assert finder.consider(0, [seen(crack, "PL", 0.1)], T_map_camera) is None
    assert finder.consider(0, [seen(crack, "PL", 0.7)], T_map_camera) is None
    assert finder.consider(0, [seen(far, "PL", 0.3)], T_map_camera) is None
    # The most confident weak one, placed on the wall
    suspect = finder.consider(5, [seen(crack, "PL", 0.2), seen(crack + HALF_UP, "SL", 0.4)],
                              T_map_camera)
    assert suspect is not None
    assert (suspect.id, suspect.code, suspect.stamp_ns) == ("S001", "SL", 5)
    np.testing.assert_allclose(suspect.point_m, crack + HALF_UP, atol=0.05)
    assert suspect.distance_m == pytest.approx(13.0, abs=0.05)
    # Once looked at, its surroundings are no new suspect; elsewhere still are
    finder.looked_at(suspect.point_m)
    assert finder.consider(6, [seen(crack, "PL", 0.3)], T_map_camera) is None
    beyond = np.array([14.8, 1.6, 1.0])
    assert finder.consider(7, [seen(beyond, "JS", 0.3)], T_map_camera) is not None
    # A confirmed finding keeps suspects of its own class away, not of others
    finder.confirmed("PL", np.array([8.0, 1.6, 1.0]))
    T_back = mount_at(5.0)
    near_finding = np.array([8.3, 1.6, 1.2])
    box = box_around(near_finding, T_back, WIDE, 6.0)
    assert finder.consider(8, [Detection("PL", box, 0.3)], T_back) is None
    other = finder.consider(8, [Detection("SL", box, 0.3)], T_back)
    assert other is not None and other.id == "S003"


def test_the_aim_follows_surer_views_then_returns_to_the_best_and_stays() -> None:
    """The W1 pattern: 0.62 at the suspect's spot, 0.66 one step on, 0.36 the next: the aim
    goes back to where 0.66 was seen and holds it, whatever the later frames propose."""
    spot, step1, step2 = (np.array([120.65, -0.7, 0.0]), np.array([121.0, -1.07, 0.0]),
                          np.array([120.88, -1.24, 0.0]))
    climb = AimClimb(spot, reach_m=1.2)
    assert climb.aim_m is climb.first_aim_m
    assert np.allclose(climb.observe(0.62, step1), step1)
    assert np.allclose(climb.observe(0.66, step2), step2)
    assert np.allclose(climb.observe(0.36, np.array([120.7, -1.4, 0.0])), step1)
    assert climb.settled
    assert np.allclose(climb.observe(0.9, np.array([120.6, -1.6, 0.0])), step1)


def test_the_aim_ignores_far_proposals_and_nothing_seen_sends_it_back() -> None:
    """A proposal beyond reach of the first aim (another defect) is not followed; a move after
    which nothing is seen goes back; an empty first frame leaves the aim where it is."""
    spot = np.array([63.0, -1.6, 1.8])
    climb = AimClimb(spot, reach_m=1.2)
    assert np.allclose(climb.observe(0.0, None), spot) and not climb.settled
    far, near = spot + np.array([2.0, 0.0, 0.0]), spot + np.array([0.3, 0.0, 0.0])
    assert np.allclose(climb.observe(0.5, far), spot)  # too far: stays
    assert np.allclose(climb.observe(0.55, near), near)
    assert np.allclose(climb.observe(0.0, None), spot) and climb.settled
