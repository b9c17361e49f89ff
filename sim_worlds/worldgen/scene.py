"""World skeleton shared by all worlds: systems, darkness, geodetic anchor, daylight shafts."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from sim_worlds.worldgen.geometry import Pose, Vec3, fmt_num, fmt_vec
from sim_worlds.worldgen.sdf import Material, add_pose, sdf_root, sub
from sim_worlds.worldgen.textures import texture_path
from sim_worlds.worldgen.truth import GeodeticOrigin

PHYSICS_STEP_S = 0.002
SYSTEM_PLUGINS: tuple[tuple[str, str], ...] = (
    ("gz-sim-physics-system", "gz::sim::systems::Physics"),
    ("gz-sim-user-commands-system", "gz::sim::systems::UserCommands"),
    ("gz-sim-scene-broadcaster-system", "gz::sim::systems::SceneBroadcaster"),
    ("gz-sim-sensors-system", "gz::sim::systems::Sensors"),
    ("gz-sim-imu-system", "gz::sim::systems::Imu"),
    ("gz-sim-navsat-system", "gz::sim::systems::NavSat"),
)

CONCRETE = Material((1.0, 1.0, 1.0, 1.0), albedo_map=texture_path("concrete"))
SOIL = Material((0.33, 0.26, 0.18, 1.0), roughness=1.0)
WATER = Material((0.12, 0.22, 0.26, 1.0), specular=(0.6, 0.6, 0.6, 1.0), roughness=0.1)
STEEL = Material((0.45, 0.46, 0.48, 1.0), specular=(0.4, 0.4, 0.4, 1.0), roughness=0.4)
GALVANISED = Material((0.62, 0.63, 0.64, 1.0), specular=(0.5, 0.5, 0.5, 1.0), roughness=0.35)
FIRE_DOOR_RED = Material((0.62, 0.08, 0.06, 1.0), roughness=0.5)
ANTENNA_WHITE = Material((0.9, 0.9, 0.88, 1.0), roughness=0.6)
WATER_TRANSPARENCY = 0.45
SKY_RGBA = (0.62, 0.72, 0.85, 1.0)  # seen only through shafts and manhole necks


def gz_heading_deg(x_axis_azimuth_deg: float) -> float:
    """SDF heading_deg for a site x-axis azimuth (SDF 1.9 spec: right-hand rule about up).

    Gazebo's heading handling has changed between releases (gz-math's legacy LOCAL frame), so
    the generated worlds keep the site frame East-aligned (azimuth 90, heading 0).
    """
    return (90.0 - x_axis_azimuth_deg) % 360.0


def new_world(name: str, origin: GeodeticOrigin) -> tuple[ET.Element, ET.Element]:
    """An <sdf> root with a dark <world>: systems, no sun, no ambient light, geodetic anchor."""
    root = sdf_root()
    world = sub(root, "world", name=name)
    physics = sub(world, "physics", name="default_physics", type="ignored")
    sub(physics, "max_step_size", fmt_num(PHYSICS_STEP_S))
    sub(physics, "real_time_factor", "1")
    for filename, plugin_name in SYSTEM_PLUGINS:
        plugin = sub(world, "plugin", filename=filename, name=plugin_name)
        if filename == "gz-sim-sensors-system":
            sub(plugin, "render_engine", "ogre2")
    scene = sub(world, "scene")
    sub(scene, "ambient", "0.01 0.01 0.01 1")
    sub(scene, "background", fmt_vec(SKY_RGBA, 3))
    sub(scene, "grid", "false")
    sub(scene, "shadows", "true")
    geo = sub(world, "spherical_coordinates")
    sub(geo, "surface_model", "EARTH_WGS84")
    sub(geo, "world_frame_orientation", "ENU")
    sub(geo, "latitude_deg", fmt_num(origin.latitude_deg, 8))
    sub(geo, "longitude_deg", fmt_num(origin.longitude_deg, 8))
    sub(geo, "elevation", fmt_num(origin.height_m, 3))
    sub(geo, "heading_deg", fmt_num(gz_heading_deg(origin.x_axis_azimuth_deg), 6))
    return root, world


def add_daylight(
    world: ET.Element, name: str, above_m: Vec3, opening_radius_m: float, depth_m: float
) -> None:
    """A downward spot light above a sky opening: daylight reaching the bottom of a shaft."""
    light = sub(world, "light", name=name, type="spot")
    add_pose(light, Pose(above_m))
    sub(light, "cast_shadows", "true")
    sub(light, "diffuse", "0.9 0.9 0.85 1")
    sub(light, "specular", "0.2 0.2 0.2 1")
    attenuation = sub(light, "attenuation")
    sub(attenuation, "range", fmt_num(depth_m + 10.0, 3))
    sub(attenuation, "constant", "0.5")
    sub(attenuation, "linear", "0.01")
    sub(attenuation, "quadratic", "0.001")
    sub(light, "direction", fmt_vec((0.0, 0.0, -1.0)))
    half_angle = math.atan2(opening_radius_m, max(depth_m, 1e-3))
    spot = sub(light, "spot")
    sub(spot, "inner_angle", fmt_num(half_angle * 0.6, 4))
    sub(spot, "outer_angle", fmt_num(half_angle, 4))
    sub(spot, "falloff", "1")
