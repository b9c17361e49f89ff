"""Ray casting: analytic ranges, exact curved surfaces, normals, hit lookup and uv."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from sim_worlds.simulator.errors import SimError
from sim_worlds.simulator.scene import RaycastScene
from sim_worlds.simulator.sdf import SdfWorld, load_world

WORLDS_DIR = Path(__file__).resolve().parents[2] / "sim_worlds" / "worlds"

# Room interior: x in [-2, 2], y in [-1.5, 1.5], z in [0, 2.5]; walls 0.2 m thick.
ROOM = """
<model name="room"><static>true</static><link name="shell">
  <visual name="floor"><pose>0 0 -0.1 0 0 0</pose>
    <geometry><box><size>4.4 3.4 0.2</size></box></geometry></visual>
  <visual name="ceiling"><pose>0 0 2.6 0 0 0</pose>
    <geometry><box><size>4.4 3.4 0.2</size></box></geometry></visual>
  <visual name="east"><pose>2.1 0 1.25 0 0 0</pose>
    <geometry><box><size>0.2 3 2.5</size></box></geometry>
    <material><diffuse>0.9 0.1 0.1 1</diffuse></material></visual>
  <visual name="west"><pose>-2.1 0 1.25 0 0 0</pose>
    <geometry><box><size>0.2 3 2.5</size></box></geometry></visual>
  <visual name="north"><pose>0 1.6 1.25 0 0 0</pose>
    <geometry><box><size>4 0.2 2.5</size></box></geometry></visual>
  <visual name="south"><pose>0 -1.6 1.25 0 0 0</pose>
    <geometry><box><size>4 0.2 2.5</size></box></geometry></visual>
</link></model>"""


def load(tmp_path: Path, body: str, exclude: tuple[str, ...] = ()) -> SdfWorld:
    """Load a world holding ``body``."""
    path = tmp_path / "world.sdf"
    path.write_text(
        f'<?xml version="1.0"?>\n<sdf version="1.9"><world name="t">{body}</world></sdf>'
    )
    return load_world(path, exclude_models=exclude)


def rays_from(
    origin: list[float], directions: list[list[float]]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Origins and unit directions of rays from one point."""
    d = np.array(directions, dtype=np.float64)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.tile(np.array(origin, dtype=np.float64), (len(d), 1)), d


def index_of(world: SdfWorld, suffix: str) -> int:
    """Index of the geometry whose name ends with ``suffix``."""
    (index,) = [i for i, g in enumerate(world.geometries) if g.name.endswith(suffix)]
    return index


@pytest.fixture
def room(tmp_path: Path) -> tuple[SdfWorld, RaycastScene]:
    """The box room and its scene."""
    world = load(tmp_path, ROOM)
    return world, RaycastScene.from_world(world)


def test_rays_in_a_box_room_measure_the_analytic_wall_distances(
    room: tuple[SdfWorld, RaycastScene],
) -> None:
    world, scene = room
    origin = [0.5, -0.3, 1.0]
    oblique = [1.0, 2.0, 0.5]  # reaches y = 1.5 at t = 0.9 |oblique|, before x = 2 or z = 2.5
    origins, directions = rays_from(
        origin, [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1], oblique]
    )
    hits = scene.cast(origins, directions)

    expected = np.array([1.5, 2.5, 1.8, 1.2, 1.5, 1.0, 0.9 * np.linalg.norm(oblique)])
    np.testing.assert_allclose(hits.range_m, expected, atol=2e-6)
    names = ["east", "west", "north", "south", "ceiling", "floor", "north"]
    assert hits.geometry_index.tolist() == [index_of(world, n) for n in names]
    np.testing.assert_allclose(
        hits.point_m, origins + directions * hits.range_m[:, None], atol=1e-5
    )
    assert hits.range_m.dtype == np.float32 and hits.geometry_index.dtype == np.int32


def test_normals_are_unit_and_face_the_ray_origin(room: tuple[SdfWorld, RaycastScene]) -> None:
    _, scene = room
    rng = np.random.default_rng(3)
    directions = rng.normal(size=(2000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    inside = np.tile([0.1, 0.2, 1.2], (2000, 1))
    outside = np.tile([3.0, 0.0, 1.2], (2000, 1))

    for origins in (inside, outside):
        hits = scene.cast(origins, directions)
        hit = hits.hit
        assert hit.sum() > 100
        np.testing.assert_allclose(np.linalg.norm(hits.normal[hit], axis=1), 1.0, atol=1e-6)
        assert np.all(np.einsum("ij,ij->i", hits.normal[hit], directions[hit]) < 0.0)
    # From inside, every ray hits a wall, and the east wall's inner face points to -x.
    hits = scene.cast(inside, directions)
    assert hits.hit.all()
    hits = scene.cast(*rays_from([0, 0, 1], [[1, 0, 0]]))
    np.testing.assert_allclose(hits.normal[0], [-1, 0, 0], atol=1e-6)


def test_max_range_turns_far_hits_into_misses(room: tuple[SdfWorld, RaycastScene]) -> None:
    _, scene = room
    origins, directions = rays_from([0.5, -0.3, 1.0], [[1, 0, 0], [-1, 0, 0]])
    hits = scene.cast(origins, directions, max_range_m=2.0)

    assert hits.range_m[0] == pytest.approx(1.5, abs=1e-6) and hits.geometry_index[0] >= 0
    assert hits.range_m[1] == np.inf and hits.geometry_index[1] == -1
    assert np.isnan(hits.point_m[1]).all() and np.isnan(hits.normal[1]).all()
    assert np.isnan(hits.uv[1]).all()
    assert hits.hit.tolist() == [True, False]


def test_rays_into_open_space_miss(room: tuple[SdfWorld, RaycastScene]) -> None:
    _, scene = room
    hits = scene.cast(*rays_from([10.0, 0.0, 1.0], [[1, 0, 0], [0, 0, 1]]))

    assert hits.geometry_index.tolist() == [-1, -1]
    assert np.isinf(hits.range_m).all()


@pytest.mark.parametrize(
    ("direction", "name", "uv"),
    [
        ([1, 0, 0], "+x", (0.5, 0.5)),
        ([-1, 0, 0], "-x", (0.5, 0.5)),
        ([0, 1, 0], "+y", (0.5, 0.5)),
        ([0, -1, 0], "-y", (0.5, 0.5)),
        ([0, 0, 1], "+z", (0.5, 0.5)),
        ([0, 0, -1], "-z", (0.5, 0.5)),
    ],
)
def test_box_face_centres_have_uv_one_half(
    tmp_path: Path, direction: list[float], name: str, uv: tuple[float, float]
) -> None:
    world = load(
        tmp_path,
        """<model name="m"><pose>1 2 3 0.3 0.2 0.1</pose><link name="l">
        <visual name="b"><geometry><box><size>1 2 3</size></box></geometry></visual>
        </link></model>""",
    )
    scene = RaycastScene.from_world(world)
    T_world_box = world.geometries[0].T_world_geom
    # A ray from 5 m outside the face centre, straight at it.
    axis_world = T_world_box[:3, :3] @ np.array(direction, dtype=np.float64)
    origin = T_world_box[:3, 3] + 5.0 * axis_world
    hits = scene.cast(origin[None, :], -axis_world[None, :])

    assert hits.geometry_index[0] == 0, name
    np.testing.assert_allclose(hits.uv[0], uv, atol=1e-5)
    np.testing.assert_allclose(hits.normal[0], axis_world, atol=1e-5)


def test_box_uv_follows_the_documented_face_axes(tmp_path: Path) -> None:
    world = load(
        tmp_path,
        """<model name="m"><link name="l">
        <visual name="b"><geometry><box><size>2 4 6</size></box></geometry></visual>
        </link></model>""",
    )
    scene = RaycastScene.from_world(world)
    # +x face: u along +y over 4 m, v along +z over 6 m; -y face: u along +x over 2 m.
    origins = np.array([[5.0, 1.0, -1.5], [0.5, -5.0, 1.5], [-0.5, 0.0, 5.0]])
    directions = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
    hits = scene.cast(origins, directions)

    np.testing.assert_allclose(hits.uv, [[0.75, 0.25], [0.75, 0.75], [0.25, 0.5]], atol=1e-5)


def test_ray_from_a_cylinder_axis_measures_the_exact_radius(tmp_path: Path) -> None:
    # Axis along world x (pitched 90 degrees); rays at angles between the facet vertices too.
    world = load(
        tmp_path,
        """<model name="pipe"><pose>0 1 2 0 1.5707963267948966 0</pose><link name="l">
        <visual name="wall"><geometry><cylinder><radius>0.75</radius><length>4</length>
        </cylinder></geometry></visual></link></model>""",
    )
    scene = RaycastScene.from_world(world, cylinder_segments=12)  # coarse facets on purpose
    angles = np.linspace(0.0, 2.0 * math.pi, 97)
    directions = np.column_stack([np.zeros_like(angles), np.cos(angles), np.sin(angles)])
    origins = np.tile([0.4, 1.0, 2.0], (angles.size, 1))
    hits = scene.cast(origins, directions)

    np.testing.assert_allclose(hits.range_m, 0.75, atol=1e-5)
    np.testing.assert_allclose(hits.normal, -directions, atol=1e-5)  # radial, towards the axis
    # From outside, towards the axis: the near side of the surface.
    hits = scene.cast(np.array([[-1.0, 1.0, 5.0]]), np.array([[0.0, 0.0, -1.0]]))
    assert hits.range_m[0] == pytest.approx(3.0 - 0.75, abs=1e-5)
    np.testing.assert_allclose(hits.normal[0], [0, 0, 1], atol=1e-5)


def test_cylinder_uv_and_caps(tmp_path: Path) -> None:
    world = load(
        tmp_path,
        """<model name="c"><link name="l"><visual name="v"><geometry><cylinder>
        <radius>0.5</radius><length>2</length></cylinder></geometry></visual></link></model>""",
    )
    scene = RaycastScene.from_world(world)
    origins = np.array([[0.0, 3.0, 0.5], [-3.0, 0.0, -0.5], [0.0, 0.0, 4.0]])
    directions = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    hits = scene.cast(origins, directions)

    # +y side at z = 0.5: angle 90 deg, v = 0.5 / 2 + 0.5; -x side at z = -0.5; top cap centre.
    np.testing.assert_allclose(hits.uv, [[0.25, 0.75], [0.5, 0.25], [0.5, 0.5]], atol=1e-5)
    np.testing.assert_allclose(hits.range_m, [2.5, 2.5, 3.0], atol=1e-5)


def test_sphere_and_ellipsoid_ranges_are_exact(tmp_path: Path) -> None:
    world = load(
        tmp_path,
        """<model name="m"><link name="l">
        <visual name="ball"><pose>5 0 0 0 0 0</pose>
          <geometry><sphere><radius>0.5</radius></sphere></geometry></visual>
        <visual name="egg"><pose>-5 0 0 0 0 0.5</pose>
          <geometry><ellipsoid><radii>1 0.5 2</radii></ellipsoid></geometry></visual>
        </link></model>""",
    )
    scene = RaycastScene.from_world(world, sphere_rings=6, cylinder_segments=10)
    rng = np.random.default_rng(7)
    targets = rng.normal(size=(200, 3))
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    # Rays from far away at points on the true sphere surface, along the inward normal.
    points = np.array([5.0, 0.0, 0.0]) + 0.5 * targets
    hits = scene.cast(points + 3.0 * targets, -targets)
    np.testing.assert_allclose(hits.range_m, 3.0, atol=1e-5)
    np.testing.assert_allclose(hits.normal, targets, atol=1e-5)
    equator = scene.cast(np.array([[5.0, -3.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    np.testing.assert_allclose(equator.uv[0], [0.75, 0.5], atol=1e-5)
    # Ellipsoid along its local z (world z: only yawed): semi-axis 2.
    hits = scene.cast(np.array([[-5.0, 0.0, 10.0]]), np.array([[0.0, 0.0, -1.0]]))
    assert hits.range_m[0] == pytest.approx(8.0, abs=1e-5)
    assert hits.geometry_index[0] == index_of(world, "egg")


def test_plane_mesh_and_capsule_are_hit(tmp_path: Path) -> None:
    (tmp_path / "quad.obj").write_text("v -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\nf 1 2 3\nf 1 3 4\n")
    world = load(
        tmp_path,
        """<model name="m"><link name="l">
        <visual name="ground"><pose>0 0 0 0 0 0</pose><geometry><plane>
          <normal>0 0 1</normal><size>4 2</size></plane></geometry></visual>
        <visual name="sign"><pose>10 0 1 0 -1.5707963267948966 0</pose><geometry><mesh>
          <uri>quad.obj</uri><scale>0.5 0.5 1</scale></mesh></geometry></visual>
        <visual name="post"><pose>0 10 0 0 0 0</pose><geometry><capsule>
          <radius>0.2</radius><length>1</length></capsule></geometry></visual>
        </link></model>""",
    )
    scene = RaycastScene.from_world(world)
    origins = np.array([[1.0, 0.5, 3.0], [3.0, 0.0, 3.0], [0.0, 0.0, 1.0], [0.0, 10.0, 5.0]])
    directions = np.array([[0, 0, -1.0], [0, 0, -1.0], [1.0, 0, 0], [0, 0, -1.0]])
    hits = scene.cast(origins, directions)

    assert hits.geometry_index.tolist() == [
        index_of(world, "ground"),
        -1,  # outside the plane's 4 x 2 m
        index_of(world, "sign"),
        index_of(world, "post"),
    ]
    np.testing.assert_allclose(hits.range_m[[0, 2, 3]], [3.0, 10.0, 5.0 - 0.7], atol=1e-4)
    np.testing.assert_allclose(hits.uv[0], [0.75, 0.75], atol=1e-5)  # planar over 4 x 2 m
    np.testing.assert_allclose(hits.uv[2], [0.5, 0.5], atol=1e-5)  # mesh: centre of x/y bounds


def test_geometry_index_identifies_the_object_and_its_material(tmp_path: Path) -> None:
    world = load(
        tmp_path,
        ROOM
        + """<model name="crate"><pose>1 1 0.25 0 0 0</pose><link name="l">
        <visual name="box"><geometry><box><size>0.5 0.5 0.5</size></box></geometry>
        <material><diffuse>0 0.5 0 1</diffuse></material></visual></link></model>""",
    )
    scene = RaycastScene.from_world(world)
    hits = scene.cast(*rays_from([-1.0, -0.9, 0.25], [[1, 1, 0], [1, 0, 0]]))

    crate, east = index_of(world, "crate::l::box"), index_of(world, "east")
    assert hits.geometry_index.tolist() == [crate, east]
    assert scene.geometry(crate).name == "crate::l::box"
    assert scene.material(crate).diffuse_rgba == (0.0, 0.5, 0.0, 1.0)
    assert scene.material(east).diffuse_rgba == (0.9, 0.1, 0.1, 1.0)
    with pytest.raises(IndexError):
        scene.geometry(-1)


def test_excluded_robot_is_transparent_to_rays(tmp_path: Path) -> None:
    robot = """<model name="crawler"><pose>0 0 0.2 0 0 0</pose><link name="base">
      <visual name="body"><geometry><box><size>0.6 0.4 0.3</size></box></geometry></visual>
      <sensor name="lidar" type="gpu_lidar"><pose>0 0 0.3 0 0 0</pose><lidar>
        <range><min>0.1</min><max>20</max></range></lidar></sensor>
    </link></model>"""
    world = load(tmp_path, ROOM + robot, exclude=("crawler",))
    scene = RaycastScene.from_world(world)
    (lidar,) = world.sensors
    origin = lidar.T_world_sensor[:3, 3]
    hits = scene.cast(origin[None, :], np.array([[0.0, 0.0, -1.0]]))

    np.testing.assert_allclose(origin, [0.0, 0.0, 0.5])
    assert hits.range_m[0] == pytest.approx(0.5, abs=1e-6)  # the floor, not the robot body
    assert hits.geometry_index[0] == index_of(world, "floor")
    assert all(g.model != "crawler" for g in scene.geometries)


def test_bounds_follow_the_rotated_geometry(tmp_path: Path) -> None:
    # The box of test_sdf_loader's pose composition: world extents worked out by hand.
    half_pi = math.pi / 2.0
    world = load(
        tmp_path,
        f"""<model name="outer"><pose>1 0 0 0 0 {half_pi}</pose>
        <model name="inner"><pose>0 2 0 0 0 0</pose><link name="link">
        <pose>0 0 1 {half_pi} 0 0</pose><visual name="board"><pose>0.5 0 0 0 0 0</pose>
        <geometry><box><size>2 4 6</size></box></geometry></visual>
        </link></model></model>""",
    )
    low, high = RaycastScene.from_world(world).bounds_m

    np.testing.assert_allclose(low, [-4.0, -0.5, -1.0], atol=1e-6)
    np.testing.assert_allclose(high, [2.0, 1.5, 3.0], atol=1e-6)


def test_bad_inputs(room: tuple[SdfWorld, RaycastScene], tmp_path: Path) -> None:
    _, scene = room
    with pytest.raises(ValueError, match=r"must both be \(N, 3\)"):
        scene.cast(np.zeros((4, 3)), np.zeros((3, 3)))
    with pytest.raises(SimError, match="no geometry"):
        RaycastScene.from_world(load(tmp_path, '<model name="m"><link name="l"/></model>'))


def _generated_worlds() -> list[Path]:
    return sorted(WORLDS_DIR.glob("*.sdf")) if WORLDS_DIR.is_dir() else []


@pytest.mark.skipif(not _generated_worlds(), reason=f"no generated worlds in {WORLDS_DIR} yet")
@pytest.mark.parametrize("path", _generated_worlds(), ids=lambda p: p.name)
def test_every_generated_world_loads_into_a_non_empty_scene(path: Path) -> None:
    world = load_world(path)
    scene = RaycastScene.from_world(world)

    assert scene.triangle_count > 0
    low, high = scene.bounds_m
    assert np.all(high > low)
    # Rays from the middle of the bounds in all directions hit something.
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(500, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    hits = scene.cast(np.tile((low + high) / 2.0, (500, 1)), directions)
    assert hits.hit.any()
