"""SDF loader: pose composition, includes, materials, sensors, lights and located errors."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from sim_worlds.simulator.errors import SdfError
from sim_worlds.simulator.sdf import (
    Box,
    Cylinder,
    LightKind,
    Mesh,
    Plane,
    ShapeKind,
    load_world,
    rotation_from_rpy,
)

HALF_PI = math.pi / 2.0


def write_world(directory: Path, body: str, name: str = "world.sdf", version: str = "1.9") -> Path:
    """A world file holding ``body`` inside <world name="test">."""
    path = directory / name
    path.write_text(
        f'<?xml version="1.0"?>\n<sdf version="{version}">\n<world name="test">\n'
        f"{body}\n</world>\n</sdf>\n"
    )
    return path


def box_visual(name: str, size: str = "1 1 1", pose: str = "", extra: str = "") -> str:
    """A <visual> with a box."""
    pose_element = f"<pose>{pose}</pose>" if pose else ""
    return (
        f'<visual name="{name}">{pose_element}<geometry><box><size>{size}</size></box>'
        f"</geometry>{extra}</visual>"
    )


def line_of(path: Path, needle: str) -> int:
    """1-based line number of the first line containing ``needle``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


# ---------------------------------------------------------------------------------------------
# Poses
# ---------------------------------------------------------------------------------------------


def test_nested_model_link_visual_poses_compose_with_rotations(tmp_path: Path) -> None:
    path = write_world(
        tmp_path,
        f"""
<model name="outer">
  <pose>1 0 0 0 0 {HALF_PI}</pose>
  <static>true</static>
  <model name="inner">
    <pose>0 2 0 0 0 0</pose>
    <link name="link">
      <pose>0 0 1 {HALF_PI} 0 0</pose>
      {box_visual("board", size="2 4 6", pose="0.5 0 0 0 0 0")}
    </link>
  </model>
</model>""",
    )
    world = load_world(path)

    (geometry,) = world.geometries
    assert geometry.name == "outer::inner::link::board"
    assert geometry.model == "outer::inner"
    assert geometry.kind is ShapeKind.BOX
    assert isinstance(geometry.shape, Box) and geometry.shape.size_m == (2.0, 4.0, 6.0)
    # Worked by hand: inner origin (-1, 0, 0); link (-1, 0, 1) turned Rz(90) Rx(90);
    # the visual 0.5 m along the link x (world +y): (-1, 0.5, 1).
    np.testing.assert_allclose(geometry.T_world_geom[:3, 3], [-1.0, 0.5, 1.0], atol=1e-12)
    # Box corner (1, 2, 3): Rx(90) -> (1, -3, 2), Rz(90) -> (3, 1, 2), plus the origin.
    corner = geometry.T_world_geom @ np.array([1.0, 2.0, 3.0, 1.0])
    np.testing.assert_allclose(corner[:3], [2.0, 1.5, 3.0], atol=1e-12)
    assert [m.name for m in world.models] == ["outer", "outer::inner"]
    assert all(m.static for m in world.models)  # a nested model of a static model is static
    np.testing.assert_allclose(
        world.model("outer::inner").T_world_model[:3, 3], [-1, 0, 0], atol=1e-12
    )
    (link,) = world.links
    assert link.name == "outer::inner::link"
    np.testing.assert_allclose(link.T_world_link[:3, 3], [-1.0, 0.0, 1.0], atol=1e-12)


def test_relative_to_model_world_and_parent_name(tmp_path: Path) -> None:
    path = write_world(
        tmp_path,
        f"""
<model name="m">
  <pose>10 0 0 0 0 {HALF_PI}</pose>
  <link name="l">
    <pose>0 0 5 0 0 0</pose>
    {box_visual("from_link", pose="1 0 0 0 0 0")}
    <visual name="from_named_link"><pose relative_to="l">1 0 0 0 0 0</pose>
      <geometry><sphere><radius>0.1</radius></sphere></geometry></visual>
    <visual name="from_model"><pose relative_to="__model__">1 0 0 0 0 0</pose>
      <geometry><sphere><radius>0.1</radius></sphere></geometry></visual>
    <visual name="from_world"><pose relative_to="world">1 0 0 0 0 0</pose>
      <geometry><sphere><radius>0.1</radius></sphere></geometry></visual>
  </link>
</model>""",
    )
    positions = {g.name.split("::")[-1]: g.T_world_geom[:3, 3] for g in load_world(path).geometries}

    np.testing.assert_allclose(positions["from_link"], [10.0, 1.0, 5.0], atol=1e-12)
    np.testing.assert_allclose(positions["from_named_link"], [10.0, 1.0, 5.0], atol=1e-12)
    np.testing.assert_allclose(positions["from_model"], [10.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(positions["from_world"], [1.0, 0.0, 0.0], atol=1e-12)


def test_degrees_and_quaternion_poses_equal_radian_euler(tmp_path: Path) -> None:
    roll, pitch, yaw = 0.3, -0.4, 1.1
    half = [a / 2.0 for a in (roll, pitch, yaw)]
    cr, sr = math.cos(half[0]), math.sin(half[0])
    cp, sp = math.cos(half[1]), math.sin(half[1])
    cy, sy = math.cos(half[2]), math.sin(half[2])
    quat_xyzw = (
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
        cr * cp * cy + sr * sp * sy,
    )
    degrees = " ".join(str(math.degrees(a)) for a in (roll, pitch, yaw))
    quat = " ".join(str(q) for q in quat_xyzw)
    path = write_world(
        tmp_path,
        f"""
<model name="m"><link name="l">
  <visual name="rad"><pose>1 2 3 {roll} {pitch} {yaw}</pose>
    <geometry><box><size>1 1 1</size></box></geometry></visual>
  <visual name="deg"><pose degrees="true">1 2 3 {degrees}</pose>
    <geometry><box><size>1 1 1</size></box></geometry></visual>
  <visual name="quat"><pose rotation_format="quat_xyzw">1 2 3 {quat}</pose>
    <geometry><box><size>1 1 1</size></box></geometry></visual>
</link></model>""",
    )
    rad, deg, quat_geometry = load_world(path).geometries

    np.testing.assert_allclose(rad.T_world_geom[:3, :3], rotation_from_rpy(roll, pitch, yaw))
    np.testing.assert_allclose(deg.T_world_geom, rad.T_world_geom, atol=1e-12)
    np.testing.assert_allclose(quat_geometry.T_world_geom, rad.T_world_geom, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Includes, resources, materials
# ---------------------------------------------------------------------------------------------


def _write_shelf_model(root: Path) -> Path:
    """model://shelf with model.config naming shelf.sdf, a texture and an OBJ mesh."""
    model_dir = root / "shelf"
    (model_dir / "textures").mkdir(parents=True)
    (model_dir / "meshes").mkdir()
    (model_dir / "textures" / "wood.png").write_bytes(b"not decoded by the loader")
    (model_dir / "meshes" / "tri.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (model_dir / "model.config").write_text(
        '<?xml version="1.0"?>\n<model><name>shelf</name>\n'
        '<sdf version="1.6">old.sdf</sdf>\n<sdf version="1.9">shelf.sdf</sdf>\n</model>\n'
    )
    (model_dir / "shelf.sdf").write_text(
        """<?xml version="1.0"?>
<sdf version="1.9">
<model name="shelf">
  <pose>5 5 5 0 0 0</pose>
  <link name="body">
    <visual name="board">
      <pose>0 0 0.5 0 0 0</pose>
      <geometry><box><size>1 0.4 0.02</size></box></geometry>
      <material>
        <diffuse>0.5 0.4 0.3 1</diffuse>
        <emissive>0 0 0.1</emissive>
        <pbr><metal><albedo_map>textures/wood.png</albedo_map></metal></pbr>
      </material>
    </visual>
    <visual name="tag">
      <geometry><mesh><uri>model://shelf/meshes/tri.obj</uri><scale>2 3 1</scale></mesh>
      </geometry>
    </visual>
  </link>
</model>
</sdf>
"""
    )
    return model_dir


def test_include_through_gz_sim_resource_path_with_name_and_pose_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = tmp_path / "resources"
    model_dir = _write_shelf_model(resources)
    monkeypatch.setenv("GZ_SIM_RESOURCE_PATH", f"{tmp_path / 'nowhere'}:{resources}")
    monkeypatch.delenv("SDF_PATH", raising=False)
    world_dir = tmp_path / "worlds"
    world_dir.mkdir()
    path = write_world(
        world_dir,
        f"""
<include><uri>model://shelf</uri><name>shelf_a</name>
  <pose>1 2 0 0 0 {HALF_PI}</pose></include>
<include><uri>model://shelf</uri></include>""",
    )
    world = load_world(path)

    by_name = {g.name: g for g in world.geometries}
    assert set(by_name) == {
        "shelf_a::body::board",
        "shelf_a::body::tag",
        "shelf::body::board",
        "shelf::body::tag",
    }
    board = by_name["shelf_a::body::board"]
    np.testing.assert_allclose(board.T_world_geom[:3, 3], [1.0, 2.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(board.T_world_geom[:2, 0], [0.0, 1.0], atol=1e-12)  # yawed 90
    # Without an override the model keeps the pose written in its own file.
    np.testing.assert_allclose(
        by_name["shelf::body::board"].T_world_geom[:3, 3], [5, 5, 5.5], atol=1e-12
    )
    assert board.material.diffuse_rgba == (0.5, 0.4, 0.3, 1.0)
    assert board.material.emissive_rgba == (0.0, 0.0, 0.1, 1.0)
    assert board.material.albedo_map == model_dir / "textures" / "wood.png"
    tag = by_name["shelf_a::body::tag"].shape
    assert isinstance(tag, Mesh)
    assert tag.path == model_dir / "meshes" / "tri.obj"
    np.testing.assert_allclose(tag.vertices_m, [[0, 0, 0], [2, 0, 0], [0, 3, 0]])
    np.testing.assert_array_equal(tag.triangles, [[0, 1, 2]])


def test_include_found_in_the_world_models_directory_and_by_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GZ_SIM_RESOURCE_PATH", raising=False)
    _write_shelf_model(tmp_path / "models")
    (tmp_path / "models" / "shelf" / "model.config").unlink()  # falls back to model.sdf
    (tmp_path / "models" / "shelf" / "shelf.sdf").rename(tmp_path / "models/shelf/model.sdf")
    path = write_world(
        tmp_path,
        """
<include><uri>model://shelf</uri><name>a</name></include>
<include><uri>models/shelf/model.sdf</uri><name>b</name></include>""",
    )
    names = sorted({g.model for g in load_world(path).geometries})

    assert names == ["a", "b"]


def test_shapes_materials_and_lights(tmp_path: Path) -> None:
    path = write_world(
        tmp_path,
        """
<light type="directional" name="sun">
  <pose>0 0 10 0 0 0</pose><diffuse>0.8 0.8 0.7 1</diffuse><direction>0 0 -1</direction>
</light>
<model name="m"><static>true</static><link name="l">
  <pose>0 0 1 0 0 0</pose>
  <visual name="pipe"><geometry><cylinder><radius>0.2</radius><length>3</length></cylinder>
    </geometry><material><ambient>0.1 0.2 0.3 1</ambient></material></visual>
  <visual name="ground"><geometry><plane><normal>0 0 2</normal><size>8 6</size></plane>
    </geometry></visual>
  <light type="spot" name="lamp">
    <pose>0.3 0 0 0 1.5707963267948966 0</pose>
    <attenuation><range>12</range><linear>0.05</linear><quadratic>0.01</quadratic></attenuation>
    <spot><inner_angle>0.4</inner_angle><outer_angle>0.6</outer_angle><falloff>1</falloff></spot>
    <direction>0 0 -1</direction>
  </light>
</link></model>""",
    )
    world = load_world(path)

    pipe, ground = world.geometries
    assert pipe.shape == Cylinder(radius_m=0.2, length_m=3.0)
    # Only ambient given: the diffuse colour follows it.
    assert pipe.material.diffuse_rgba == (0.1, 0.2, 0.3, 1.0)
    assert ground.shape == Plane(normal=(0.0, 0.0, 1.0), size_m=(8.0, 6.0))
    sun, lamp = world.lights
    assert sun.kind is LightKind.DIRECTIONAL and sun.attached_to is None
    np.testing.assert_allclose(sun.direction_world, [0, 0, -1])
    assert lamp.kind is LightKind.SPOT
    assert lamp.name == "m::l::lamp" and lamp.attached_to == "m::l"
    assert (lamp.range_m, lamp.attenuation_linear, lamp.attenuation_quadratic) == (12, 0.05, 0.01)
    assert (lamp.spot_inner_angle_rad, lamp.spot_outer_angle_rad) == (0.4, 0.6)
    np.testing.assert_allclose(lamp.T_world_light[:3, 3], [0.3, 0.0, 1.0], atol=1e-12)
    # Pitched 90 degrees: the light's -z points along world -x.
    np.testing.assert_allclose(lamp.direction_world, [-1.0, 0.0, 0.0], atol=1e-12)


def test_link_without_visuals_uses_its_collisions(tmp_path: Path) -> None:
    path = write_world(
        tmp_path,
        """
<model name="m"><link name="seen">
  <collision name="c"><geometry><box><size>9 9 9</size></box></geometry></collision>
  <visual name="v"><geometry><box><size>1 1 1</size></box></geometry></visual>
</link><link name="bare">
  <collision name="c"><geometry><box><size>2 2 2</size></box></geometry></collision>
</link></model>""",
    )
    names = [g.name for g in load_world(path).geometries]

    assert names == ["m::seen::v", "m::bare::c"]


# ---------------------------------------------------------------------------------------------
# Sensors and excluded models
# ---------------------------------------------------------------------------------------------

ROBOT = f"""
<model name="crawler">
  <pose>3 1 0 0 0 {HALF_PI}</pose>
  <link name="base_link">
    <pose>0 0 0.1 0 0 0</pose>
    {box_visual("body", size="0.6 0.4 0.2")}
    <sensor name="lidar" type="gpu_lidar">
      <pose>0.2 0 0.15 0 0 0</pose>
      <update_rate>10</update_rate><always_on>true</always_on><topic>/lidar</topic>
      <lidar>
        <scan>
          <horizontal><samples>1800</samples><resolution>1</resolution>
            <min_angle>-3.14159</min_angle><max_angle>3.14159</max_angle></horizontal>
          <vertical><samples>16</samples>
            <min_angle>-0.2618</min_angle><max_angle>0.2618</max_angle></vertical>
        </scan>
        <range><min>0.1</min><max>30</max><resolution>0.01</resolution></range>
        <noise><type>gaussian</type><mean>0</mean><stddev>0.01</stddev></noise>
      </lidar>
    </sensor>
    <sensor name="camera" type="camera">
      <pose>0.31 0 0.05 0 0 0</pose>
      <update_rate>15</update_rate>
      <camera><horizontal_fov>1.5708</horizontal_fov>
        <image><width>640</width><height>480</height><format>R8G8B8</format></image>
        <clip><near>0.05</near><far>50</far></clip></camera>
    </sensor>
    <sensor name="imu" type="imu"><update_rate>100</update_rate>
      <imu><angular_velocity>
        <x><noise type="gaussian"><stddev>0.002</stddev></noise></x>
        <y><noise type="gaussian"><stddev>0.003</stddev></noise></y>
        <z><noise type="gaussian"><stddev>0.004</stddev></noise></z>
      </angular_velocity></imu>
    </sensor>
    <sensor name="navsat" type="navsat"><update_rate>1</update_rate>
      <navsat><position_sensing>
        <horizontal><noise type="gaussian"><stddev>2.5</stddev></noise></horizontal>
        <vertical><noise type="gaussian"><stddev>4</stddev></noise></vertical>
      </position_sensing></navsat>
    </sensor>
  </link>
  <link name="wheel">
    <visual name="tyre"><geometry><mesh><uri>meshes/wheel.dae</uri></mesh></geometry></visual>
  </link>
</model>"""


def test_excluded_model_gives_sensors_but_no_geometry(tmp_path: Path) -> None:
    # The robot's .dae wheel would be refused: excluded geometry is not even parsed.
    path = write_world(
        tmp_path,
        f"""
<spherical_coordinates><surface_model>EARTH_WGS84</surface_model>
  <latitude_deg>31.2</latitude_deg><longitude_deg>121.5</longitude_deg>
  <elevation>4</elevation><heading_deg>0</heading_deg></spherical_coordinates>
<model name="floor"><static>true</static><link name="l">{box_visual("slab", "20 20 0.1")}</link>
</model>
{ROBOT}""",
    )
    world = load_world(path, exclude_models=("crawler",))

    assert [g.model for g in world.geometries] == ["floor"]
    assert world.model("crawler").excluded and not world.model("floor").excluded
    assert world.spherical_coordinates is not None
    assert world.spherical_coordinates.latitude_deg == 31.2
    sensors = {s.name: s for s in world.sensors_of("crawler")}
    assert set(sensors) == {
        "crawler::base_link::lidar",
        "crawler::base_link::camera",
        "crawler::base_link::imu",
        "crawler::base_link::navsat",
    }
    lidar = sensors["crawler::base_link::lidar"]
    assert lidar.sensor_type == "gpu_lidar" and lidar.link == "crawler::base_link"
    assert lidar.model == "crawler"
    assert (lidar.update_rate_hz, lidar.always_on, lidar.topic) == (10.0, True, "/lidar")
    # Model at (3, 1) yawed 90: the sensor's 0.2 m forward offset points along world +y.
    np.testing.assert_allclose(lidar.T_world_sensor[:3, 3], [3.0, 1.2, 0.25], atol=1e-12)
    np.testing.assert_allclose(lidar.T_link_sensor[:3, 3], [0.2, 0.0, 0.15], atol=1e-12)
    assert lidar.lidar is not None
    assert (lidar.lidar.horizontal_samples, lidar.lidar.vertical_samples) == (1800, 16)
    assert lidar.lidar.horizontal_min_angle_rad == -3.14159
    assert lidar.lidar.vertical_max_angle_rad == 0.2618
    assert (lidar.lidar.range_min_m, lidar.lidar.range_max_m) == (0.1, 30.0)
    assert lidar.lidar.noise_stddev_m == 0.01
    assert lidar.raw["lidar/scan/horizontal/samples"] == "1800"
    camera = sensors["crawler::base_link::camera"].camera
    assert camera is not None
    assert (camera.width_px, camera.height_px, camera.horizontal_fov_rad) == (640, 480, 1.5708)
    assert (camera.near_clip_m, camera.far_clip_m) == (0.05, 50.0)
    imu = sensors["crawler::base_link::imu"].imu
    assert imu is not None and imu.angular_velocity_noise_stddev_rad_s == (0.002, 0.003, 0.004)
    navsat = sensors["crawler::base_link::navsat"].navsat
    assert navsat is not None
    assert navsat.horizontal_position_noise_stddev_m == 2.5
    assert navsat.vertical_position_noise_stddev_m == 4.0


def test_excluding_a_model_the_world_lacks_is_an_error(tmp_path: Path) -> None:
    path = write_world(tmp_path, f'<model name="m"><link name="l">{box_visual("b")}</link></model>')

    with pytest.raises(SdfError, match=r"exclude_models names 'crawlr'.*models: m"):
        load_world(path, exclude_models=["crawlr"])


# ---------------------------------------------------------------------------------------------
# Errors name the file and line
# ---------------------------------------------------------------------------------------------


def test_malformed_xml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.sdf"
    path.write_text(
        '<?xml version="1.0"?>\n<sdf version="1.9">\n<world name="w">\n<model>\n</sdf>\n'
    )

    with pytest.raises(SdfError, match=rf"^{re.escape(str(path))}:5: malformed XML: mismatched"):
        load_world(path)


def test_unsupported_geometry_names_file_line_and_element(tmp_path: Path) -> None:
    path = write_world(
        tmp_path,
        """<model name="m"><link name="wall"><visual name="v"><geometry>
<heightmap><uri>x.png</uri></heightmap>
</geometry></visual></link></model>""",
    )
    line = line_of(path, "<heightmap>")

    with pytest.raises(
        SdfError,
        match=rf"^{re.escape(str(path))}:{line}: <geometry> of link 'wall' has unsupported "
        r"<heightmap>$",
    ):
        load_world(path)


def test_unknown_relative_to_frame_is_refused(tmp_path: Path) -> None:
    path = write_world(
        tmp_path,
        """<model name="m"><link name="a"/><link name="b">
<visual name="v"><pose relative_to="a">0 0 1 0 0 0</pose>
<geometry><box><size>1 1 1</size></box></geometry></visual></link></model>""",
    )
    line = line_of(path, 'relative_to="a"')

    with pytest.raises(SdfError, match=rf":{line}: <pose relative_to='a'> of <visual> 'm::b::v'"):
        load_world(path)


def test_missing_include_names_uri_and_searched_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GZ_SIM_RESOURCE_PATH", str(tmp_path / "extra"))
    monkeypatch.setenv("SDF_PATH", str(tmp_path / "sdf_path"))
    path = write_world(tmp_path, "<include>\n<uri>model://ghost</uri>\n</include>")

    with pytest.raises(SdfError) as caught:
        load_world(path)

    message = str(caught.value)
    assert message.startswith(f"{path}:{line_of(path, 'model://ghost')}: ")
    assert "'model://ghost' not found" in message
    for searched in ("ghost", "models/ghost", "extra/ghost", "sdf_path/ghost"):
        assert str(tmp_path / searched) in message


def test_missing_mesh_file_is_refused(tmp_path: Path) -> None:
    path = write_world(
        tmp_path,
        """<model name="m"><link name="l"><visual name="v"><geometry>
<mesh><uri>meshes/pump.stl</uri></mesh></geometry></visual></link></model>""",
    )

    with pytest.raises(SdfError, match=r"mesh file 'meshes/pump.stl' not found .*pump\.stl"):
        load_world(path)


def test_collada_mesh_is_refused_with_the_file_name(tmp_path: Path) -> None:
    (tmp_path / "pump.dae").write_text("<COLLADA/>")
    path = write_world(
        tmp_path,
        """<model name="m"><link name="l"><visual name="v"><geometry>
<mesh><uri>pump.dae</uri></mesh></geometry></visual></link></model>""",
    )

    with pytest.raises(SdfError, match=r"pump\.dae has unsupported format '\.dae'"):
        load_world(path)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '<model name="m"><link name="l">' + box_visual("v", size="1 -1 1") + "</link></model>",
            r"<box> <size> must be positive",
        ),
        (
            '<model name="m"><link name="l">' + box_visual("v", size="1 1") + "</link></model>",
            r"<size> needs 3 numbers, got '1 1'",
        ),
        (
            '<model name="m"><pose>0 0 0 0 0</pose></model>',
            r"<pose> needs 6 numbers",
        ),
        (
            '<model name="m"><pose rotation_format="quat_wxyz">0 0 0 1 0 0 0</pose></model>',
            r"rotation_format='quat_wxyz'",
        ),
        ('<light type="area" name="x"/>', r"<light> 'x' has unknown type 'area'"),
        (
            '<model name="m"><link name="l"><sensor name="s" type="gpu_lidar"/></link></model>',
            r"gpu_lidar sensor 'm::l::s' has no <lidar>",
        ),
    ],
)
def test_bad_values_are_refused_at_their_line(tmp_path: Path, body: str, message: str) -> None:
    path = write_world(tmp_path, body)

    with pytest.raises(SdfError, match=rf"^{re.escape(str(path))}:\d+: .*{message}"):
        load_world(path)


def test_old_sdf_version_is_refused(tmp_path: Path) -> None:
    path = write_world(tmp_path, "", version="1.5")

    with pytest.raises(SdfError, match=r":2: SDF version 1.5 is older than 1.6"):
        load_world(path)
