"""The generated simulation worlds: SDF validity, determinism, ground truth vs geometry."""

from __future__ import annotations

import functools
import itertools
import math
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from numpy.typing import NDArray

from sim_worlds.worldgen import (
    WORLD_NAMES,
    WORLDS_DIR,
    TruthFormatError,
    WorldTruth,
    cjj181,
    load_truth,
    stale_files,
    world_files,
    write_worlds,
)
from sim_worlds.worldgen.__main__ import main as worldgen_main
from sim_worlds.worldgen.geometry import Pose
from sim_worlds.worldgen.truth import GeodeticOrigin, dump_truth, parse_truth

IGN = shutil.which("ign")
needs_ign = pytest.mark.skipif(
    IGN is None, reason="`ign` (Debian packages libsdformat-dev ignition-tools) is not installed"
)
SDF_FILES = [f"{name}.sdf" for name in WORLD_NAMES] + ["models/crawler/model.sdf"]
SEWER_CODES = {"PL", "BX", "FS", "CK", "TJ", "SL", "CJ", "SG", "ZW", "JG", "AJ"}

# Grade bands written out here independently of sim_worlds.worldgen.cjj181
# (DEFECT_STANDARDS.md 3.1: upper limits, lower-exclusive / upper-inclusive).
BANDS: dict[str, tuple[str, tuple[float, ...], int]] = {
    "BX": ("ovality_pct_of_d", (5.0, 15.0, 25.0), 1),
    "CK": ("offset_ratio_of_wall", (0.5, 1.0, 2.0), 1),
    "TJ": ("gap_mm", (20.0, 50.0), 2),
    "CJ": ("depth_pct_of_d", (30.0, 40.0, 50.0), 1),
    "SG": ("area_loss_pct", (15.0, 25.0, 50.0), 1),
    "ZW": ("area_loss_pct", (15.0, 25.0, 50.0), 1),
    "JG": ("area_loss_pct", (15.0, 25.0, 50.0), 1),
    "AJ": ("intrusion_pct_of_d", (10.0, 20.0), 1),
}


def band_grade(code: str, value: float) -> int:
    """Grade of a measured value under the bands above."""
    _, limits, first = BANDS[code]
    return first + sum(1 for limit in limits if value > limit)


# --- loading helpers ------------------------------------------------------------------------


@functools.cache
def sdf_root(relative: str) -> ET.Element:
    """Parsed checked-in SDF file."""
    return ET.parse(WORLDS_DIR / relative).getroot()


@functools.cache
def truth_of(world: str) -> WorldTruth:
    """Loaded checked-in ground truth."""
    return load_truth(WORLDS_DIR / f"{world}.truth.yaml")


def pose_of(element: ET.Element) -> Pose:
    """The <pose> child of an element (identity when absent)."""
    pose = element.find("pose")
    if pose is None or pose.text is None:
        return Pose()
    return Pose.from_xyz_rpy(*(float(v) for v in pose.text.split()))


def find_link(world: str, model_name: str, link_name: str) -> tuple[Pose, ET.Element]:
    """A link's pose in the site frame, and the element."""
    world_el = sdf_root(f"{world}.sdf").find("world")
    assert world_el is not None
    for model in world_el.findall("model"):
        if model.get("name") != model_name:
            continue
        for link in model.findall("link"):
            if link.get("name") == link_name:
                return pose_of(model).compose(pose_of(link)), link
    raise KeyError(f"{model_name}/{link_name}")


def box_of(link: ET.Element, name: str) -> tuple[Pose, tuple[float, float, float]]:
    """Pose (in the link frame) and size of a named box collision."""
    for collision in link.findall("collision"):
        if collision.get("name") == name:
            size = collision.find("geometry/box/size")
            assert size is not None and size.text is not None
            x, y, z = (float(v) for v in size.text.split())
            return pose_of(collision), (x, y, z)
    raise KeyError(name)


class Occupancy:
    """Point-in-solid queries against every static collision box and cylinder of a world."""

    def __init__(self, world: str) -> None:
        centres, rotations, sizes, cylinders = [], [], [], []
        world_el = sdf_root(f"{world}.sdf").find("world")
        assert world_el is not None
        for model in world_el.findall("model"):
            if model.get("name") == "crawler":
                continue
            model_pose = pose_of(model)
            for link in model.findall("link"):
                link_pose = model_pose.compose(pose_of(link))
                for collision in link.findall("collision"):
                    pose = link_pose.compose(pose_of(collision))
                    box = collision.find("geometry/box/size")
                    cylinder = collision.find("geometry/cylinder")
                    if box is not None and box.text is not None:
                        size = [float(v) for v in box.text.split()]
                    elif cylinder is not None:
                        radius = float(cylinder.findtext("radius", "0"))
                        size = [radius, radius, float(cylinder.findtext("length", "0"))]
                    else:
                        continue
                    centres.append(pose.xyz)
                    rotations.append(pose.rot)
                    sizes.append(size)
                    cylinders.append(cylinder is not None)
        self.centres = np.array(centres)
        self.rotations = np.array(rotations)
        self.half = np.array(sizes) / 2.0
        self.cylinder = np.array(cylinders)

    def occupied(self, points: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Whether each (N, 3) point lies inside any solid."""
        result = np.zeros(len(points), dtype=bool)
        reach = np.linalg.norm(self.half, axis=1) + 1e-6
        for i in range(len(self.centres)):
            offset = points - self.centres[i]
            near = np.einsum("ij,ij->i", offset, offset) <= reach[i] ** 2
            if not near.any():
                continue
            local = offset[near] @ self.rotations[i]
            half = self.half[i]
            if self.cylinder[i]:
                inside = (local[:, 0] ** 2 + local[:, 1] ** 2 <= (2 * half[0]) ** 2) & (
                    np.abs(local[:, 2]) <= half[2]
                )
            else:
                inside = np.all(np.abs(local) <= half + 1e-9, axis=1)
            result[np.flatnonzero(near)[inside]] = True
        return result

    def ray_hits(
        self, origins: NDArray[np.float64], directions: NDArray[np.float64]
    ) -> NDArray[np.bool_]:
        """Whether each ray hits a solid (cylinders taken as their bounding boxes)."""
        hit = np.zeros(len(origins), dtype=bool)
        for i in range(len(self.centres)):
            half = self.half[i]
            if self.cylinder[i]:
                half = np.array([2 * half[0], 2 * half[0], half[2]])
            local_o = (origins - self.centres[i]) @ self.rotations[i]
            local_d = directions @ self.rotations[i]
            with np.errstate(divide="ignore", invalid="ignore"):
                t1 = (-half - local_o) / local_d
                t2 = (half - local_o) / local_d
            t_near = np.nanmax(np.minimum(t1, t2), axis=1)
            t_far = np.nanmin(np.maximum(t1, t2), axis=1)
            hit |= (t_far >= np.maximum(t_near, 0.0)) & (t_far > 0.0)
        return hit

    def is_free(self, point: tuple[float, float, float]) -> bool:
        """Whether one point is in free space."""
        return not bool(self.occupied(np.array([point]))[0])


@functools.cache
def occupancy(world: str) -> Occupancy:
    """Cached occupancy of a world."""
    return Occupancy(world)


def route_samples(truth: WorldTruth, step_m: float = 0.25) -> NDArray[np.float64]:
    """Points every step along the route polyline (on the floor)."""
    points = []
    waypoints = np.array(truth.route.waypoints_m)
    for a, b in itertools.pairwise(waypoints):
        count = max(1, int(np.linalg.norm(b - a) / step_m))
        for k in range(count):
            points.append(a + (b - a) * (k / count))
    points.append(waypoints[-1])
    return np.array(points)


# --- SDF validity ---------------------------------------------------------------------------


@pytest.mark.parametrize("relative", SDF_FILES)
def test_sdf_is_well_formed_and_at_least_version_1_9(relative: str) -> None:
    root = sdf_root(relative)
    assert root.tag == "sdf"
    major, minor = (int(v) for v in root.get("version", "0.0").split("."))
    assert (major, minor) >= (1, 9)


@pytest.mark.parametrize("world", WORLD_NAMES)
def test_world_is_named_after_its_file_and_dark(world: str) -> None:
    world_el = sdf_root(f"{world}.sdf").find("world")
    assert world_el is not None and world_el.get("name") == world
    assert all(light.get("type") != "directional" for light in world_el.iter("light"))
    assert world_el.find("spherical_coordinates/latitude_deg") is not None


@pytest.mark.parametrize("relative", SDF_FILES)
def test_crawler_has_the_specified_sensors_lamp_and_drive(relative: str) -> None:
    root = sdf_root(relative)
    model = next(m for m in root.iter("model") if m.get("name") == "crawler")
    sensors = {s.get("type"): s for s in model.iter("sensor")}
    assert set(sensors) == {"gpu_lidar", "camera", "imu", "navsat"}
    lidar = sensors["gpu_lidar"]
    assert lidar.findtext("update_rate") == "10"
    assert lidar.findtext("lidar/scan/horizontal/samples") == "1800"
    assert lidar.findtext("lidar/scan/vertical/samples") == "16"
    assert float(lidar.findtext("lidar/range/min", "0")) == pytest.approx(0.1)
    assert float(lidar.findtext("lidar/range/max", "0")) == pytest.approx(30.0)
    camera = sensors["camera"]
    assert camera.findtext("camera/image/width") == "640"
    assert camera.findtext("camera/image/height") == "480"
    assert camera.findtext("update_rate") == "10"
    assert sensors["imu"].findtext("update_rate") == "100"
    assert any(light.get("type") == "spot" for light in model.iter("light"))
    plugins = [p.get("filename") for p in model.findall("plugin")]
    assert "gz-sim-diff-drive-system" in plugins
    body = model.find("link/collision/geometry/box/size")
    assert body is not None and body.text == "0.6 0.42 0.25"


def _ign(*args: str) -> subprocess.CompletedProcess[str]:
    assert IGN is not None
    return subprocess.run(
        [IGN, "sdf", *args], capture_output=True, text=True, timeout=110, check=False
    )


@needs_ign
@pytest.mark.parametrize("relative", SDF_FILES)
def test_ign_sdf_check_passes(relative: str) -> None:
    result = _ign("-k", str(WORLDS_DIR / relative))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid" in result.stdout


@functools.cache
def _spec_tree() -> ET.Element:
    result = _ign("-d", "1.9")
    assert result.returncode == 0, result.stderr
    return ET.fromstring(result.stdout)


def _undefined_elements(element: ET.Element, spec: ET.Element, path: str) -> list[str]:
    """Elements and attributes not in the SDF spec (`ign sdf -k` accepts unknown ones)."""
    found = [f"{path}@{a}" for a in element.attrib if spec.find(f"attribute[@name='{a}']") is None]
    if element.tag == "plugin":
        return found
    for child in element:
        child_spec = spec.find(f"element[@name='{child.tag}']")
        if child_spec is None:
            found.append(f"{path}/{child.tag}")
            continue
        if len(child) and child_spec.find("element") is None:
            child_spec = _spec_tree().find(f".//element[@name='{child.tag}'][element]")
            assert child_spec is not None
        found += _undefined_elements(child, child_spec, f"{path}/{child.tag}")
    return found


@needs_ign
@pytest.mark.parametrize("relative", SDF_FILES)
def test_only_elements_of_the_sdf_1_9_spec_are_used(relative: str) -> None:
    assert sorted(set(_undefined_elements(sdf_root(relative), _spec_tree(), "sdf"))) == []


# --- generator ------------------------------------------------------------------------------


def test_regenerating_writes_identical_bytes(tmp_path: Path) -> None:
    written = write_worlds(tmp_path)
    assert len(written) == len(world_files())
    for path in written:
        relative = path.relative_to(tmp_path)
        assert path.read_bytes() == (WORLDS_DIR / relative).read_bytes(), relative


def test_checked_in_worlds_are_up_to_date_and_nothing_else_is_there() -> None:
    assert stale_files() == []


def test_check_mode_reports_a_stale_folder(tmp_path: Path) -> None:
    assert worldgen_main(["--out", str(tmp_path)]) == 0
    assert worldgen_main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "sewer_dn1000.truth.yaml").write_text("stale\n", encoding="utf-8")
    (tmp_path / "leftover.sdf").write_text("<sdf/>\n", encoding="utf-8")
    assert stale_files(tmp_path) == ["sewer_dn1000.truth.yaml", "leftover.sdf"]
    assert worldgen_main(["--out", str(tmp_path), "--check"]) == 1


def test_worlds_folder_stays_small() -> None:
    total = sum(p.stat().st_size for p in WORLDS_DIR.rglob("*") if p.is_file())
    assert total < 10_000_000


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(tag + body) == crc
        if tag == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    assert len(zlib.decompress(idat)) == height * (width + 1)
    return width, height


@pytest.mark.parametrize("world", WORLD_NAMES)
def test_every_referenced_texture_is_a_valid_png(world: str) -> None:
    maps = {e.text for e in sdf_root(f"{world}.sdf").iter("albedo_map") if e.text}
    assert maps
    for relative in maps:
        assert _png_size((WORLDS_DIR / relative).read_bytes()) == (256, 256)


def test_bridge_maps_every_required_topic() -> None:
    entries = yaml.safe_load((WORLDS_DIR / "ros_gz_bridge.yaml").read_text(encoding="utf-8"))
    ros = {e["ros_topic_name"]: e for e in entries}
    required = {
        "/points": "sensor_msgs/msg/PointCloud2",
        "/camera/image_raw": "sensor_msgs/msg/Image",
        "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
        "/imu": "sensor_msgs/msg/Imu",
        "/gnss/fix": "sensor_msgs/msg/NavSatFix",
        "/cmd_vel": "geometry_msgs/msg/Twist",
        "/odom/wheel": "nav_msgs/msg/Odometry",
        "/clock": "rosgraph_msgs/msg/Clock",
    }
    assert {topic: ros[topic]["ros_type_name"] for topic in required} == required
    assert ros["/cmd_vel"]["direction"] == "ROS_TO_GZ"
    model = sdf_root("models/crawler/model.sdf")
    gz_topics = {e.text for e in model.iter("topic")} | {e.text for e in model.iter("odom_topic")}
    assert "/lidar" in gz_topics and ros["/points"]["gz_topic_name"] == "/lidar/points"
    for entry in entries:
        if entry["gz_topic_name"] not in ("/clock", "/lidar/points", "/camera/camera_info"):
            assert entry["gz_topic_name"] in gz_topics


# --- ground truth: common -------------------------------------------------------------------


@pytest.mark.parametrize("world", WORLD_NAMES)
def test_truth_loads_round_trips_and_names_its_sdf(world: str) -> None:
    truth = truth_of(world)
    assert truth.world == world
    assert (WORLDS_DIR / truth.sdf_file).is_file()
    assert truth.geodetic_origin.datum == "CGCS2000"
    assert parse_truth(yaml.safe_load(dump_truth(truth))) == truth


@pytest.mark.parametrize("world", WORLD_NAMES)
def test_route_starts_under_the_robot_and_is_drivable(world: str) -> None:
    truth = truth_of(world)
    start = truth.robot_start
    first = truth.route.waypoints_m[0]
    assert math.dist((start.x_m, start.y_m), first[:2]) < 1e-6
    assert 0.0 < start.z_m - first[2] < 0.05
    samples = route_samples(truth)
    grid = occupancy(world)
    clear = grid.occupied(samples + np.array([0.0, 0.0, 0.3]))
    assert not clear.any(), samples[clear][:5]
    supported = np.zeros(len(samples), dtype=bool)
    for depth in (0.02, 0.1, 0.2):
        supported |= grid.occupied(samples - np.array([0.0, 0.0, depth]))
    assert supported.all(), samples[~supported][:5]


@pytest.mark.parametrize("world", WORLD_NAMES)
def test_sky_zones_are_open_to_the_sky(world: str) -> None:
    grid = occupancy(world)
    for zone in truth_of(world).sky_zones:
        (x0, y0, z0), (x1, y1, z1) = zone.box.min_m, zone.box.max_m
        column = np.array(
            [[(x0 + x1) / 2, (y0 + y1) / 2, z] for z in np.arange(z0 + 0.05, z1 + 3.0, 0.05)]
        )
        assert not grid.occupied(column).any(), zone.id


def test_site_frame_converts_to_east_north() -> None:
    origin = truth_of("utility_tunnel").geodetic_origin
    assert origin.site_to_enu(3.0, 4.0) == pytest.approx((3.0, 4.0))
    north_up = GeodeticOrigin("CGCS2000", 30.0, 114.0, 0.0, 0.0)
    assert north_up.site_to_enu(3.0, 4.0) == pytest.approx((-4.0, 3.0))


def _sphere_directions(count: int) -> NDArray[np.float64]:
    index = np.arange(count) + 0.5
    polar = np.arccos(1.0 - 2.0 * index / count)
    azimuth = np.pi * (1.0 + 5.0**0.5) * index
    return np.stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1
    )


@pytest.mark.parametrize("world", WORLD_NAMES)
def test_interior_is_closed_except_to_the_sky(world: str) -> None:
    """Rays from sensor height along the route hit walls unless they leave through a sky zone."""
    truth = truth_of(world)
    samples = route_samples(truth)
    points = samples[np.linspace(0, len(samples) - 1, 40).astype(int)] + np.array([0, 0, 0.35])
    directions = _sphere_directions(200)
    origins = np.repeat(points, len(directions), axis=0)
    rays = np.tile(directions, (len(points), 1))
    escaped = ~occupancy(world).ray_hits(origins, rays)
    to_sky = np.zeros_like(escaped)
    for zone in truth.sky_zones:
        low, high = np.array(zone.box.min_m), np.array(zone.box.max_m)
        with np.errstate(divide="ignore", invalid="ignore"):
            reach = (high[2] - origins[:, 2]) / np.where(rays[:, 2] > 0, rays[:, 2], np.nan)
        top = origins + rays * reach[:, None]
        margin = 0.4
        to_sky |= (
            (rays[:, 2] > 0)
            & (np.abs(top[:, 0] - (low[0] + high[0]) / 2) <= (high[0] - low[0]) / 2 + margin)
            & (np.abs(top[:, 1] - (low[1] + high[1]) / 2) <= (high[1] - low[1]) / 2 + margin)
        )
    leaks = escaped & ~to_sky
    assert not leaks.any(), list(zip(origins[leaks][:3], rays[leaks][:3], strict=True))


# --- sewer ----------------------------------------------------------------------------------


def sewer() -> WorldTruth:
    """Ground truth of the sewer world."""
    return truth_of("sewer_dn1000")


def test_sewer_has_eleven_defects_covering_every_required_code() -> None:
    pipe = sewer().pipe
    assert pipe is not None
    assert len(pipe.defects) >= 11
    assert {d.code for d in pipe.defects} >= SEWER_CODES
    assert pipe.inner_diameter_m == 1.0 and 115.0 <= pipe.length_m <= 125.0


def test_sewer_distance_datum_is_the_pipe_entrance_on_the_route() -> None:
    truth = sewer()
    assert truth.pipe is not None
    first, entrance = truth.route.waypoints_m[:2]
    assert truth.pipe.datum_route_distance_m == pytest.approx(math.dist(first, entrance), abs=1e-3)
    assert entrance[0] == pytest.approx(0.6, abs=0.01)


def test_sewer_defects_lie_inside_the_pipe() -> None:
    truth = sewer()
    pipe = truth.pipe
    assert pipe is not None
    axis = np.array(truth.route.waypoints_m[1:-1]) + np.array([0.0, 0.0, 0.5])
    for defect in pipe.defects:
        assert (
            0.0 <= defect.distance_m <= defect.distance_m + defect.extent_length_m <= pipe.length_m
        )
        assert 0.0 < defect.clock_h <= 12.0 and 1 <= defect.grade <= 4
        point = np.array(defect.position_m)
        distances = [_segment_distance(point, a, b) for a, b in itertools.pairwise(axis)]
        assert min(distances) <= 0.52, defect.id


def _segment_distance(
    point: NDArray[np.float64], a: NDArray[np.float64], b: NDArray[np.float64]
) -> float:
    t = float(np.clip(np.dot(point - a, b - a) / np.dot(b - a, b - a), 0.0, 1.0))
    return float(np.linalg.norm(point - (a + t * (b - a))))


def test_sewer_grades_agree_with_measurements() -> None:
    pipe = sewer().pipe
    assert pipe is not None
    for defect in pipe.defects:
        if defect.code in BANDS:
            quantity = BANDS[defect.code][0]
            assert defect.grade == band_grade(defect.code, defect.measured[quantity]), defect.id


def defect(code: str) -> tuple[str, dict[str, float], int]:
    """Id, measurements and grade of the first defect with a code."""
    pipe = sewer().pipe
    assert pipe is not None
    found = next(d for d in pipe.defects if d.code == code)
    return found.id, found.measured, found.grade


def sewer_link(prefix: str) -> tuple[Pose, ET.Element]:
    """The sewer_pipe link whose name starts with a prefix."""
    world_el = sdf_root("sewer_dn1000.sdf").find("world")
    assert world_el is not None
    model = next(m for m in world_el.findall("model") if m.get("name") == "sewer_pipe")
    link = next(k for k in model.findall("link") if (k.get("name") or "").startswith(prefix))
    return find_link("sewer_dn1000", "sewer_pipe", link.get("name") or "")


def inner_face(link: ET.Element, stave: int) -> NDArray[np.float64]:
    """Middle of the inner face of a stave, in the ring's link frame."""
    pose, (_, _, thickness) = box_of(link, f"s{stave:02d}_c")
    normal = np.array(pose.rot)[:, 2]
    return np.array(pose.xyz) - normal * thickness / 2.0


def test_bx_ring_is_really_oval_by_its_graded_amount() -> None:
    ident, measured, grade = defect("BX")
    _, ring = sewer_link(f"ring_{10:03d}")
    _, deformed = sewer_link("ring_011")
    assert ident in (deformed.get("name") or "")
    nominal_d = inner_face(ring, 0)[2] - inner_face(ring, 12)[2]
    vertical_d = inner_face(deformed, 0)[2] - inner_face(deformed, 12)[2]
    ovality_pct = (1.0 - vertical_d / nominal_d) * 100.0
    assert nominal_d == pytest.approx(1.0, abs=1e-3)
    assert ovality_pct == pytest.approx(measured["ovality_pct_of_d"], abs=0.05)
    assert band_grade("BX", ovality_pct) == grade


def test_ck_joint_has_a_real_radial_step() -> None:
    _, measured, grade = defect("CK")
    wall_m = 0.1
    _, before = sewer_link("ring_018")
    _, shifted = sewer_link("ring_019")
    centre_before = (inner_face(before, 6) + inner_face(before, 18)) / 2.0
    centre_shifted = (inner_face(shifted, 6) + inner_face(shifted, 18)) / 2.0
    step_m = abs(float(centre_shifted[1] - centre_before[1]))
    assert step_m == pytest.approx(measured["offset_m"], abs=1e-4)
    assert band_grade("CK", step_m / wall_m) == grade


def _ring_end(prefix: str, sign: float) -> NDArray[np.float64]:
    frame, link = sewer_link(prefix)
    pose, (length, _, _) = box_of(link, "s00_c")
    return np.array(frame.apply((pose.xyz[0] + sign * length / 2.0, 0.0, 0.0)))


def test_tj_joint_has_a_real_axial_gap() -> None:
    _, measured, grade = defect("TJ")
    gap_m = float(np.linalg.norm(_ring_start("ring_022") - _ring_end("ring_021", 1.0)))
    normal_gap_m = float(np.linalg.norm(_ring_start("ring_021") - _ring_end("ring_020", 1.0)))
    assert normal_gap_m == pytest.approx(0.0, abs=1e-5)
    assert gap_m * 1000.0 == pytest.approx(measured["gap_mm"], abs=0.01)
    assert band_grade("TJ", gap_m * 1000.0) == grade


def _ring_start(prefix: str) -> NDArray[np.float64]:
    return _ring_end(prefix, -1.0)


def test_cj_sediment_is_geometry_of_the_graded_depth() -> None:
    ident, measured, grade = defect("CJ")
    _, link = find_link("sewer_dn1000", "sewer_pipe", f"defect_{ident}")
    pose, size = box_of(link, "flat_c")
    depth_m = pose.xyz[2] + size[2] / 2.0 + 0.5
    assert depth_m == pytest.approx(measured["depth_m"], abs=1e-4)
    assert band_grade("CJ", depth_m * 100.0) == grade


def test_sg_root_mass_blocks_the_graded_area() -> None:
    ident, measured, grade = defect("SG")
    _, link = find_link("sewer_dn1000", "sewer_pipe", f"defect_{ident}")
    pose, size = box_of(link, "root_mass_c")
    bottom = pose.xyz[2] - size[2] / 2.0
    segment = 0.25 * math.acos(bottom / 0.5) - bottom * math.sqrt(0.25 - bottom * bottom)
    area_pct = segment / (math.pi * 0.25) * 100.0
    assert area_pct == pytest.approx(measured["area_loss_pct"], abs=0.01)
    assert band_grade("SG", area_pct) == grade


@pytest.mark.parametrize("code", ["PL", "FS", "SL", "SG", "JG", "CJ"])
def test_visual_defects_carry_a_texture(code: str) -> None:
    ident, _, _ = defect(code)
    _, link = find_link("sewer_dn1000", "sewer_pipe", f"defect_{ident}")
    maps = {e.text for e in link.iter("albedo_map")}
    assert len(maps) == 1 and (WORLDS_DIR / str(maps.pop())).is_file()


# --- tunnel ---------------------------------------------------------------------------------


def tunnel_truth() -> WorldTruth:
    """Ground truth of the tunnel world."""
    return truth_of("utility_tunnel")


def test_tunnel_gallery_has_the_specified_cross_section() -> None:
    grid = occupancy("utility_tunnel")
    inside = [(10.0, 0.0, 3.45), (10.0, 0.0, 0.05), (10.0, -1.55, 1.0), (10.0, 1.55, 1.0)]
    walls = [(10.0, 0.0, 3.55), (10.0, 0.0, -0.05), (10.0, -1.65, 1.0), (10.0, 1.65, 1.0)]
    assert all(grid.is_free(p) for p in inside)
    assert not any(grid.is_free(p) for p in walls)
    tunnel = tunnel_truth().tunnel
    assert tunnel is not None
    main = next(g for g in tunnel.galleries if g.id == "main")
    assert (main.width_m, main.height_m) == (3.2, 3.5)
    assert math.dist(main.start_m, main.end_m) == pytest.approx(600.0)
    branch = next(g for g in tunnel.galleries if g.id == "branch")
    assert math.dist(branch.start_m, branch.end_m) == pytest.approx(50.0)


def test_5g_antennas_every_50_m_match_the_sdf() -> None:
    tunnel = tunnel_truth().tunnel
    assert tunnel is not None
    xs = sorted(a.position_m[0] for a in tunnel.antennas if a.gallery == "main")
    assert len(xs) >= 11
    assert np.allclose(np.diff(xs), 50.0)
    pose, link = find_link("utility_tunnel", "antennas_5g", "heads")
    in_sdf = sorted(pose.compose(pose_of(c)).xyz for c in link.findall("collision"))
    assert [tuple(a.position_m) for a in sorted(tunnel.antennas, key=lambda a: a.position_m)] == [
        pytest.approx(p, abs=1e-3) for p in in_sdf
    ]


def test_three_shafts_open_the_ceiling() -> None:
    truth = tunnel_truth()
    tunnel = truth.tunnel
    assert tunnel is not None and len(tunnel.shafts) == 3
    zones = {z.id: z for z in truth.sky_zones}
    grid = occupancy("utility_tunnel")
    for shaft in tunnel.shafts:
        (x0, y0, _), (x1, y1, _) = shaft.opening.min_m, shaft.opening.max_m
        assert grid.is_free(((x0 + x1) / 2, (y0 + y1) / 2, 3.65))
        assert not grid.is_free((x1 + 0.5, (y0 + y1) / 2, 3.65))
        assert zones[shaft.sky_zone_id].box.contains(((x0 + x1) / 2, (y0 + y1) / 2, 1.0))


def test_fire_doors_about_every_200_m_with_open_doorways() -> None:
    tunnel = tunnel_truth().tunnel
    assert tunnel is not None
    xs = sorted(d.position_m[0] for d in tunnel.fire_doors)
    assert len(xs) >= 2 and all(150.0 <= gap <= 250.0 for gap in np.diff([0.0, *xs, 600.0]))
    grid = occupancy("utility_tunnel")
    for door in tunnel.fire_doors:
        x, y, _ = door.position_m
        assert grid.is_free((x, y, 1.0))
        assert not grid.is_free((x, y + door.doorway_width_m / 2 + 0.2, 1.0))
        assert not grid.is_free((x, y, door.doorway_height_m + 0.2))


def test_gas_zone_and_surface_features() -> None:
    tunnel = tunnel_truth().tunnel
    assert tunnel is not None
    zone = tunnel.gas_zones[0]
    assert (zone.ch4_pct_vol, zone.o2_pct_vol) == (1.2, 19.0)
    assert tunnel.ambient_gas.o2_pct_vol == 20.9
    kinds = {f.kind for f in tunnel.surface_features}
    assert kinds == {"crack", "seepage", "floor_water"}
    _, link = find_link("utility_tunnel", "surface_features", "patches")
    names = {v.get("name") for v in link.findall("visual")}
    assert {f.id for f in tunnel.surface_features} <= names


# --- shelter --------------------------------------------------------------------------------


def shelter_truth() -> WorldTruth:
    """Ground truth of the shelter world."""
    return truth_of("civil_defence_shelter")


def _shoelace(polygon: tuple[tuple[float, float], ...]) -> float:
    total = 0.0
    for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        total += x0 * y1 - x1 * y0
    return abs(total) / 2.0


def test_shelter_has_eight_rooms_on_two_levels_with_exact_volumes() -> None:
    shelter = shelter_truth().shelter
    assert shelter is not None
    assert len(shelter.rooms) >= 8
    assert {r.level for r in shelter.rooms} == {lvl.name for lvl in shelter.levels} == {"B1", "B2"}
    assert len({r.area_m2 for r in shelter.rooms}) >= 8
    for room in shelter.rooms:
        assert room.area_m2 == pytest.approx(_shoelace(room.polygon_m), abs=1e-6)
        assert room.volume_m3 == pytest.approx(room.area_m2 * room.clear_height_m, abs=1e-6)


def test_room_geometry_matches_truth() -> None:
    shelter = shelter_truth().shelter
    assert shelter is not None
    grid = occupancy("civil_defence_shelter")
    for room in shelter.rooms:
        pose, link = find_link("civil_defence_shelter", "shelter", room.id)
        floor_pose, floor_size = box_of(link, "floor_c")
        ceiling_pose, ceiling_size = box_of(link, "ceiling_c")
        floor_top = pose.compose(floor_pose).xyz[2] + floor_size[2] / 2.0
        ceiling_bottom = pose.compose(ceiling_pose).xyz[2] - ceiling_size[2] / 2.0
        assert floor_top == pytest.approx(room.floor_z_m, abs=1e-6)
        assert ceiling_bottom - floor_top == pytest.approx(room.clear_height_m, abs=1e-6)
        xs = [p[0] for p in room.polygon_m]
        ys = [p[1] for p in room.polygon_m]
        z = room.floor_z_m + 1.0
        for x, sx in ((min(xs), 1.0), (max(xs), -1.0)):
            for y, sy in ((min(ys), 1.0), (max(ys), -1.0)):
                assert grid.is_free((x + 0.03 * sx, y + 0.03 * sy, z)), (room.id, x, y)
                assert not grid.is_free((x - 0.03 * sx, y + 0.03 * sy, z)), (room.id, x, y)
                assert not grid.is_free((x + 0.03 * sx, y - 0.03 * sy, z)), (room.id, x, y)


def test_levels_are_joined_by_a_gentle_ramp() -> None:
    shelter = shelter_truth().shelter
    assert shelter is not None
    ramp = shelter.ramps[0]
    rise = ramp.start_m[2] - ramp.end_m[2]
    run = math.dist(ramp.start_m[:2], ramp.end_m[:2])
    assert math.degrees(math.atan2(rise, run)) == pytest.approx(ramp.slope_deg, abs=1e-3)
    assert ramp.slope_deg <= 15.0
    assert {ramp.start_m[2], ramp.end_m[2]} == {lvl.floor_z_m for lvl in shelter.levels}


def _inside(point: tuple[float, float, float], polygon: tuple[tuple[float, float], ...]) -> bool:
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    return min(xs) < point[0] < max(xs) and min(ys) < point[1] < max(ys)


def test_tour_visits_every_room_and_closes_the_corridor_loop() -> None:
    truth = shelter_truth()
    shelter = truth.shelter
    assert shelter is not None
    waypoints = truth.route.waypoints_m
    for room in shelter.rooms:
        assert any(_inside(p, room.polygon_m) for p in waypoints), room.id
    corridors = {c.id: c for c in shelter.corridors}
    loop = shelter.loops[0]
    order: list[str] = []
    for point in route_samples(truth):
        here = next((c for c in loop if _inside(tuple(point), corridors[c].polygon_m)), None)
        if here is not None and (not order or order[-1] != here):
            order.append(here)
    cycle = [*loop, loop[0]]
    assert any(order[i : i + len(cycle)] == cycle for i in range(len(order))), order


# --- malformed ground truth -----------------------------------------------------------------


DELETE = object()


def _mutate(document: dict[str, Any], path: str, value: object) -> None:
    """Set (or delete, for value DELETE) a dotted path like pipe.defects.0.grade."""
    *parents, last = path.split(".")
    node: Any = document
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("pipe.defects.0.grade", DELETE, "pipe.defects[0].grade"),
        ("pipe.defects.0.grade", "two", "pipe.defects[0].grade"),
        ("pipe.defects.0.grade", 7, "pipe.defects[0]"),
        ("site_type", "bunker", "site_type"),
        ("route.waypoints_m", [[0.0, 0.0]], "route.waypoints_m[0]"),
        ("geodetic_origin.latitude_deg", True, "geodetic_origin.latitude_deg"),
        ("robot_start.heading", 1.0, "robot_start.heading"),
        ("pipe", None, "<document>"),
    ],
)
def test_malformed_truth_raises_naming_file_and_field(
    tmp_path: Path, path: str, value: object, field: str
) -> None:
    document = yaml.safe_load((WORLDS_DIR / "sewer_dn1000.truth.yaml").read_text(encoding="utf-8"))
    _mutate(document, path, value)
    bad = tmp_path / "bad.truth.yaml"
    bad.write_text(yaml.safe_dump(document), encoding="utf-8")
    with pytest.raises(TruthFormatError) as caught:
        load_truth(bad)
    assert caught.value.path == str(bad)
    assert caught.value.field_path == field
    assert str(bad) in str(caught.value) and field in str(caught.value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("world: [unclosed\n", "<document> line 2"),
        ("- just\n- a list\n", "<document>"),
        ("", "<document>"),
    ],
)
def test_unreadable_truth_documents_raise(tmp_path: Path, text: str, field: str) -> None:
    bad = tmp_path / "broken.truth.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(TruthFormatError, match=r"broken\.truth\.yaml") as caught:
        load_truth(bad)
    assert caught.value.field_path == field


def test_missing_truth_file_raises(tmp_path: Path) -> None:
    with pytest.raises(TruthFormatError, match=r"missing\.truth\.yaml"):
        load_truth(tmp_path / "missing.truth.yaml")


@pytest.mark.parametrize("code", sorted(BANDS))
def test_generator_grade_rules_agree_with_the_independent_bands(code: str) -> None:
    quantity, limits, _ = BANDS[code]
    for limit in limits:
        for value in (limit - 0.01, limit, limit + 0.01):
            assert cjj181.grade_for(code, {quantity: value}) == band_grade(code, value), value
    if code == "CJ":
        with pytest.raises(ValueError, match="below the defect threshold"):
            cjj181.grade_for(code, {quantity: 15.0})
