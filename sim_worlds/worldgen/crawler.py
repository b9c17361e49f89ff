"""The crawler robot model: skid-steer body, lamp, 3D lidar, camera, IMU and navsat.

Frames: the model origin (base_link) is on the floor midway between the wheels, x forward.
Gazebo topics (see ros_gz_bridge.yaml for the ROS names): /lidar/points, /camera/image_raw,
/camera/camera_info, /imu, /navsat, /cmd_vel, /odom/wheel.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from sim_worlds.worldgen.geometry import Pose, Vec3, fmt_num
from sim_worlds.worldgen.sdf import (
    Material,
    Surface,
    add_box,
    add_material,
    add_pose,
    sdf_root,
    sub,
)

MODEL_NAME = "crawler"


@dataclass(frozen=True)
class CrawlerSpec:
    """Dimensions (m), masses (kg) and sensor settings of the crawler."""

    body_size_m: Vec3 = (0.6, 0.42, 0.25)
    body_clearance_m: float = 0.04
    body_mass_kg: float = 38.0
    wheel_radius_m: float = 0.09
    wheel_width_m: float = 0.05
    wheel_base_m: float = 0.4
    wheel_separation_m: float = 0.48
    wheel_mass_kg: float = 1.2
    lidar_beams: int = 16
    lidar_samples: int = 1800
    lidar_rate_hz: float = 10.0
    lidar_min_range_m: float = 0.1
    lidar_max_range_m: float = 30.0
    lidar_vertical_fov_rad: float = math.radians(30.0)
    camera_width_px: int = 640
    camera_height_px: int = 480
    camera_rate_hz: float = 10.0
    camera_hfov_rad: float = math.radians(80.0)
    imu_rate_hz: float = 100.0
    navsat_rate_hz: float = 5.0
    max_speed_m_s: float = 0.5
    max_yaw_rate_rad_s: float = 1.0

    @property
    def body_centre_z_m(self) -> float:
        """Height of the body box centre above the floor."""
        return self.body_clearance_m + self.body_size_m[2] / 2.0

    @property
    def top_z_m(self) -> float:
        """Height of the top of the body above the floor."""
        return self.body_clearance_m + self.body_size_m[2]


SPEC = CrawlerSpec()
_BODY_YELLOW = Material((0.95, 0.7, 0.1, 1.0), roughness=0.5)
_RUBBER = Material((0.05, 0.05, 0.05, 1.0), roughness=1.0)
_SENSOR_BLACK = Material((0.1, 0.1, 0.12, 1.0), roughness=0.4)
_WHEELS: tuple[tuple[str, float, float], ...] = (
    ("front_left", 1.0, 1.0),
    ("rear_left", -1.0, 1.0),
    ("front_right", 1.0, -1.0),
    ("rear_right", -1.0, -1.0),
)


def _box_inertia(mass_kg: float, size_m: Vec3) -> Vec3:
    x, y, z = size_m
    k = mass_kg / 12.0
    return (k * (y * y + z * z), k * (x * x + z * z), k * (x * x + y * y))


def _add_inertial(link: ET.Element, mass_kg: float, diagonal: Vec3, pose: Pose | None) -> None:
    inertial = sub(link, "inertial")
    if pose is not None:
        add_pose(inertial, pose)
    sub(inertial, "mass", fmt_num(mass_kg))
    inertia = sub(inertial, "inertia")
    for name, value in zip(("ixx", "iyy", "izz"), diagonal, strict=True):
        sub(inertia, name, fmt_num(value, 6))
    for name in ("ixy", "ixz", "iyz"):
        sub(inertia, name, "0")


def _add_body(model: ET.Element, spec: CrawlerSpec) -> ET.Element:
    link = sub(model, "link", name="base_link")
    centre = Pose((0.0, 0.0, spec.body_centre_z_m))
    _add_inertial(
        link, spec.body_mass_kg, _box_inertia(spec.body_mass_kg, spec.body_size_m), centre
    )
    add_box(link, "body", spec.body_size_m, centre, Surface(_BODY_YELLOW))
    mast = sub(link, "visual", name="lidar_housing")
    add_pose(mast, Pose((0.12, 0.0, spec.top_z_m + 0.04)))
    cylinder = sub(sub(mast, "geometry"), "cylinder")
    sub(cylinder, "radius", "0.05")
    sub(cylinder, "length", "0.08")
    add_material(mast, _SENSOR_BLACK)
    return link


def _add_wheel(model: ET.Element, spec: CrawlerSpec, name: str, fx: float, fy: float) -> None:
    link = sub(model, "link", name=f"{name}_wheel")
    x_m = fx * spec.wheel_base_m / 2.0
    y_m = fy * spec.wheel_separation_m / 2.0
    add_pose(link, Pose.from_xyz_rpy(x_m, y_m, spec.wheel_radius_m, -math.pi / 2.0, 0.0, 0.0))
    r, w, m = spec.wheel_radius_m, spec.wheel_width_m, spec.wheel_mass_kg
    side = m * (3.0 * r * r + w * w) / 12.0
    _add_inertial(link, m, (side, side, m * r * r / 2.0), None)
    for tag in ("collision", "visual"):
        element = sub(link, tag, name="wheel" if tag == "visual" else "wheel_c")
        cylinder = sub(sub(element, "geometry"), "cylinder")
        sub(cylinder, "radius", fmt_num(r))
        sub(cylinder, "length", fmt_num(w))
        if tag == "collision":
            ode = sub(sub(sub(element, "surface"), "friction"), "ode")
            sub(ode, "mu", "1.0")
            sub(ode, "mu2", "0.6")
        else:
            add_material(element, _RUBBER)
    joint = sub(model, "joint", name=f"{name}_wheel_joint", type="revolute")
    sub(joint, "parent", "base_link")
    sub(joint, "child", f"{name}_wheel")
    axis = sub(joint, "axis")
    sub(axis, "xyz", "0 0 1")
    limit = sub(axis, "limit")
    sub(limit, "lower", "-1e16")
    sub(limit, "upper", "1e16")


def _gaussian(parent: ET.Element, stddev: float) -> None:
    noise = sub(parent, "noise", type="gaussian")
    sub(noise, "mean", "0")
    sub(noise, "stddev", fmt_num(stddev, 6))


def _add_lidar(link: ET.Element, spec: CrawlerSpec) -> None:
    sensor = sub(link, "sensor", name="lidar", type="gpu_lidar")
    add_pose(sensor, Pose((0.12, 0.0, spec.top_z_m + 0.1)))
    sub(sensor, "always_on", "true")
    sub(sensor, "update_rate", fmt_num(spec.lidar_rate_hz))
    sub(sensor, "visualize", "false")
    sub(sensor, "topic", "/lidar")
    lidar = sub(sensor, "lidar")
    scan = sub(lidar, "scan")
    horizontal = sub(scan, "horizontal")
    sub(horizontal, "samples", str(spec.lidar_samples))
    sub(horizontal, "resolution", "1")
    sub(horizontal, "min_angle", fmt_num(-math.pi))
    sub(horizontal, "max_angle", fmt_num(math.pi - 2.0 * math.pi / spec.lidar_samples))
    vertical = sub(scan, "vertical")
    sub(vertical, "samples", str(spec.lidar_beams))
    sub(vertical, "resolution", "1")
    sub(vertical, "min_angle", fmt_num(-spec.lidar_vertical_fov_rad / 2.0))
    sub(vertical, "max_angle", fmt_num(spec.lidar_vertical_fov_rad / 2.0))
    range_ = sub(lidar, "range")
    sub(range_, "min", fmt_num(spec.lidar_min_range_m))
    sub(range_, "max", fmt_num(spec.lidar_max_range_m))
    sub(range_, "resolution", "0.003")
    noise = sub(lidar, "noise")
    sub(noise, "type", "gaussian")
    sub(noise, "mean", "0")
    sub(noise, "stddev", "0.01")


def _add_camera(link: ET.Element, spec: CrawlerSpec) -> None:
    sensor = sub(link, "sensor", name="camera", type="camera")
    add_pose(sensor, Pose((spec.body_size_m[0] / 2.0 + 0.01, 0.0, spec.body_centre_z_m + 0.05)))
    sub(sensor, "always_on", "true")
    sub(sensor, "update_rate", fmt_num(spec.camera_rate_hz))
    sub(sensor, "visualize", "false")
    sub(sensor, "topic", "/camera/image_raw")
    camera = sub(sensor, "camera", name="front_camera")
    sub(camera, "horizontal_fov", fmt_num(spec.camera_hfov_rad))
    image = sub(camera, "image")
    sub(image, "width", str(spec.camera_width_px))
    sub(image, "height", str(spec.camera_height_px))
    sub(image, "format", "R8G8B8")
    clip = sub(camera, "clip")
    sub(clip, "near", "0.05")
    sub(clip, "far", "60")
    noise = sub(camera, "noise")
    sub(noise, "type", "gaussian")
    sub(noise, "mean", "0")
    sub(noise, "stddev", "0.007")


def _add_imu(link: ET.Element, spec: CrawlerSpec) -> None:
    sensor = sub(link, "sensor", name="imu", type="imu")
    add_pose(sensor, Pose((0.0, 0.0, spec.body_centre_z_m)))
    sub(sensor, "always_on", "true")
    sub(sensor, "update_rate", fmt_num(spec.imu_rate_hz))
    sub(sensor, "topic", "/imu")
    imu = sub(sensor, "imu")
    for group, stddev in (("angular_velocity", 0.0002), ("linear_acceleration", 0.017)):
        element = sub(imu, group)
        for axis in ("x", "y", "z"):
            _gaussian(sub(element, axis), stddev)


def _add_navsat(link: ET.Element, spec: CrawlerSpec) -> None:
    sensor = sub(link, "sensor", name="navsat", type="navsat")
    add_pose(sensor, Pose((-0.2, 0.0, spec.top_z_m + 0.02)))
    sub(sensor, "always_on", "true")
    sub(sensor, "update_rate", fmt_num(spec.navsat_rate_hz))
    sub(sensor, "topic", "/navsat")
    sensing = sub(sub(sensor, "navsat"), "position_sensing")
    _gaussian(sub(sensing, "horizontal"), 1.5)
    _gaussian(sub(sensing, "vertical"), 3.0)


def _add_lamp(link: ET.Element, spec: CrawlerSpec) -> None:
    light = sub(link, "light", name="lamp", type="spot")
    add_pose(light, Pose((spec.body_size_m[0] / 2.0 + 0.01, 0.0, spec.top_z_m - 0.02)))
    sub(light, "cast_shadows", "false")
    sub(light, "diffuse", "1 0.97 0.9 1")
    sub(light, "specular", "0.3 0.3 0.3 1")
    attenuation = sub(light, "attenuation")
    sub(attenuation, "range", "30")
    sub(attenuation, "constant", "0.3")
    sub(attenuation, "linear", "0.02")
    sub(attenuation, "quadratic", "0.004")
    sub(light, "direction", "1 0 -0.08")
    spot = sub(light, "spot")
    sub(spot, "inner_angle", "0.7")
    sub(spot, "outer_angle", "1.1")
    sub(spot, "falloff", "1")


def _add_drive(model: ET.Element, spec: CrawlerSpec) -> None:
    plugin = sub(
        model, "plugin", filename="gz-sim-diff-drive-system", name="gz::sim::systems::DiffDrive"
    )
    for name, _, fy in _WHEELS:
        sub(plugin, "left_joint" if fy > 0 else "right_joint", f"{name}_wheel_joint")
    sub(plugin, "wheel_separation", fmt_num(spec.wheel_separation_m))
    sub(plugin, "wheel_radius", fmt_num(spec.wheel_radius_m))
    sub(plugin, "odom_publish_frequency", "50")
    sub(plugin, "max_linear_velocity", fmt_num(spec.max_speed_m_s))
    sub(plugin, "max_angular_velocity", fmt_num(spec.max_yaw_rate_rad_s))
    sub(plugin, "topic", "/cmd_vel")
    sub(plugin, "odom_topic", "/odom/wheel")
    sub(plugin, "tf_topic", "/tf_wheel")
    sub(plugin, "frame_id", "odom")
    sub(plugin, "child_frame_id", "base_link")


def crawler_model(pose: Pose | None = None, spec: CrawlerSpec = SPEC) -> ET.Element:
    """The crawler <model> element, posed in its parent frame."""
    model = ET.Element("model", {"name": MODEL_NAME})
    if pose is not None:
        add_pose(model, pose)
    link = _add_body(model, spec)
    _add_lidar(link, spec)
    _add_camera(link, spec)
    _add_imu(link, spec)
    _add_navsat(link, spec)
    _add_lamp(link, spec)
    for name, fx, fy in _WHEELS:
        _add_wheel(model, spec, name, fx, fy)
    _add_drive(model, spec)
    return model


def crawler_model_sdf() -> ET.Element:
    """A stand-alone <sdf> document holding only the crawler model (models/crawler/model.sdf)."""
    root = sdf_root()
    root.append(crawler_model())
    return root


def crawler_model_config() -> str:
    """The model.config manifest of the stand-alone crawler model."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        "<model>\n"
        f"  <name>{MODEL_NAME}</name>\n"
        "  <version>1.0</version>\n"
        '  <sdf version="1.9">model.sdf</sdf>\n'
        "  <author><name>crawler-stack</name><email>none@example.invalid</email></author>\n"
        "  <description>Skid-steer inspection crawler: 16x1800 gpu_lidar, 640x480 camera, lamp,"
        " IMU, navsat. Generated by sim_worlds.worldgen.</description>\n"
        "</model>\n"
    )
