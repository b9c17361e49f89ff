"""Occupancy grid from scans, map_server files, and the other map outputs (cloud, TUM)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from navigation.map_export import (
    ExportError,
    VoxelCloud,
    format_stamp_s,
    parse_stamp_ns,
    read_tum,
    write_tum,
)
from navigation.occupancy import (
    CELL_FREE,
    CELL_OCCUPIED,
    CELL_UNKNOWN,
    MapError,
    OccupancyGrid,
    OccupancyMap,
    read_map,
    write_map,
)
from navigation.records import LaserScan2D, LidarScan3D

RES_M = 0.05
WALL_M = 2.025  # inner faces of the room's walls, mid-cell so no point sits on a cell edge
POSES = [(0.0, 0.0, 0.0), (0.5, 0.3, 0.4), (-0.7, -0.5, -1.0), (1.0, -1.0, 2.5),
         (-1.2, 1.1, -2.2), (0.2, 1.4, 1.3)]


def pose(x_m: float, y_m: float, yaw_rad: float, z_m: float = 0.0) -> np.ndarray:
    T = np.eye(4)
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = x_m, y_m, z_m
    return T


def room_ranges(x_m: float, y_m: float, yaw_rad: float, angles: np.ndarray) -> np.ndarray:
    """Exact ranges from (x, y, yaw) to the walls of the square room |x|, |y| < WALL_M."""
    c, s = np.cos(angles + yaw_rad), np.sin(angles + yaw_rad)
    with np.errstate(divide="ignore"):
        tx = np.where(c > 0, (WALL_M - x_m) / c, (-WALL_M - x_m) / c)
        ty = np.where(s > 0, (WALL_M - y_m) / s, (-WALL_M - y_m) / s)
    return np.minimum(np.abs(tx), np.abs(ty))


def room_scan(x_m: float, y_m: float, yaw_rad: float) -> LaserScan2D:
    angles = np.radians(np.arange(360.0))
    ranges = room_ranges(x_m, y_m, yaw_rad, angles).astype(np.float32)
    return LaserScan2D(0, ranges, 0.0, math.radians(1.0), 0.05, 30.0)


def room_grid() -> OccupancyGrid:
    grid = OccupancyGrid(RES_M)
    for x, y, yaw in POSES:
        grid.insert_scan_2d(room_scan(x, y, yaw), pose(x, y, yaw))
    return grid


def states_at(occupancy: OccupancyMap, xy_m: np.ndarray) -> np.ndarray:
    rows, cols = zip(*(occupancy.cell_at(float(x), float(y)) for x, y in xy_m), strict=True)
    states: np.ndarray = occupancy.cells[np.array(rows), np.array(cols)]
    return states


def test_square_room_has_occupied_walls_free_inside_unknown_outside() -> None:
    occupancy = room_grid().to_map(crop=False)
    along = np.arange(-1.9, 1.9, RES_M) + RES_M / 2
    walls = np.concatenate([
        np.column_stack([np.full_like(along, WALL_M), along]),
        np.column_stack([np.full_like(along, -WALL_M), along]),
        np.column_stack([along, np.full_like(along, WALL_M)]),
        np.column_stack([along, np.full_like(along, -WALL_M)]),
    ])
    wall_states = states_at(occupancy, walls)
    assert (wall_states == CELL_OCCUPIED).mean() > 0.98
    inside = np.array([(x, y) for x in along for y in along])
    assert (states_at(occupancy, inside) == CELL_FREE).all()
    outside = np.concatenate([walls * 1.1, walls * 1.5])  # beyond the walls
    assert (states_at(occupancy, outside) == CELL_UNKNOWN).all()
    # Nothing but wall cells is occupied
    occupied_rows, occupied_cols = np.nonzero(occupancy.cells == CELL_OCCUPIED)
    centres = np.array([occupancy.cell_center_m(int(r), int(c))
                        for r, c in zip(occupied_rows, occupied_cols, strict=True)])
    distance_to_wall = np.abs(np.abs(centres) - WALL_M).min(axis=1)
    assert distance_to_wall.max() <= RES_M


def test_no_returns_mark_nothing_unless_asked_to_clear() -> None:
    # One beam ahead returns at 3 m, one to the left reads max range (no return).
    scan = LaserScan2D(0, np.array([3.0, 10.0], dtype=np.float32), 0.0, math.pi / 2, 0.1, 10.0)
    grid = OccupancyGrid(RES_M)
    grid.insert_scan_2d(scan, np.eye(4))
    occupancy = grid.to_map(free_thresh=0.45, crop=False)  # one miss counts as free here
    assert states_at(occupancy, np.array([[3.0, 0.0]]))[0] == CELL_OCCUPIED
    assert states_at(occupancy, np.array([[0.0, 2.0], [0.0, 9.99]])).tolist() == [
        CELL_UNKNOWN, CELL_UNKNOWN]
    grid.insert_scan_2d(scan, np.eye(4), clear_no_return_m=4.0)
    occupancy = grid.to_map(free_thresh=0.45, crop=False)
    assert states_at(occupancy, np.array([[0.0, 2.0], [0.0, 3.9], [0.0, 4.2]])).tolist() == [
        CELL_FREE, CELL_FREE, CELL_UNKNOWN]


def test_slice_of_a_3d_scan_uses_only_points_near_the_sensor_height() -> None:
    angles = np.radians(np.arange(0.0, 360.0, 0.5))
    ranges = room_ranges(0.0, 0.0, 0.0, angles)
    wall = np.column_stack([ranges * np.cos(angles), ranges * np.sin(angles),
                            np.zeros_like(angles)])
    floor = np.array([[1.0, 0.0, -0.4], [0.0, -1.0, -0.39]])  # below the band
    ceiling = np.array([[-1.0, 0.5, 1.5]])
    points = np.vstack([wall, floor, ceiling]).astype(np.float32)
    grid = OccupancyGrid(RES_M)
    for _ in range(4):
        grid.insert_cloud_slice(LidarScan3D(0, points), pose(0.0, 0.0, 0.0, z_m=0.4), band_m=0.1)
    occupancy = grid.to_map(crop=False)
    assert states_at(occupancy, np.array([[WALL_M, 0.0], [0.0, -WALL_M]])).tolist() == [
        CELL_OCCUPIED, CELL_OCCUPIED]
    assert states_at(occupancy, np.array([[1.0, 0.0], [0.0, -1.0], [-1.0, 0.5]])).tolist() == [
        CELL_FREE, CELL_FREE, CELL_FREE]


def test_grid_grows_and_keeps_what_it_had() -> None:
    grid = room_grid()
    before = grid.to_map(crop=False)
    wall_state = states_at(before, np.array([[WALL_M, 0.0]]))[0]
    far = LaserScan2D(0, np.array([2.0], dtype=np.float32), 0.0, 0.1, 0.1, 30.0)
    grid.insert_scan_2d(far, pose(-60.0, 40.0, 0.0))
    after = grid.to_map(crop=False)
    assert after.cells.shape[0] > before.cells.shape[0]
    assert after.cells.shape[1] > before.cells.shape[1]
    assert states_at(after, np.array([[WALL_M, 0.0], [-58.0, 40.0]])).tolist() == [
        wall_state, CELL_OCCUPIED]


# --- map_server files --------------------------------------------------------------------------


def read_pgm(path: Path) -> tuple[bytes, int, int, int, np.ndarray]:
    data = path.read_bytes()
    lines = data.split(b"\n", 4)
    magic, comment, size, maxval, pixels = lines
    assert comment.startswith(b"#")
    width, height = (int(v) for v in size.split())
    image = np.frombuffer(pixels, dtype=np.uint8)
    return magic, width, height, int(maxval), image


def test_map_files_are_in_map_server_format(tmp_path: Path) -> None:
    grid = room_grid()
    occupancy = grid.to_map()
    pgm, yaml_path = write_map(grid, tmp_path / "out")
    assert (pgm.name, yaml_path.name) == ("map.pgm", "map.yaml")
    meta = yaml.safe_load(yaml_path.read_text())
    assert meta == {"image": "map.pgm", "mode": "trinary", "resolution": RES_M,
                    "origin": [occupancy.origin_xy_m[0], occupancy.origin_xy_m[1], 0.0],
                    "negate": 0, "occupied_thresh": 0.65, "free_thresh": 0.196}
    magic, width, height, maxval, pixels = read_pgm(pgm)
    assert (magic, maxval) == (b"P5", 255)
    assert (height, width) == occupancy.cells.shape
    assert pixels.size == width * height
    image = pixels.reshape(height, width)
    assert set(np.unique(image).tolist()) == {0, 205, 254}
    # Row 0 of the image is the top of the map (largest y); origin is the lower-left pixel.
    np.testing.assert_array_equal(image == 0, (occupancy.cells == CELL_OCCUPIED)[::-1])
    np.testing.assert_array_equal(image == 254, (occupancy.cells == CELL_FREE)[::-1])
    row, col = occupancy.cell_at(0.0, WALL_M)  # the +y wall
    assert image[height - 1 - row, col] == 0
    ox, oy, _ = meta["origin"]
    assert ox + col * RES_M <= 0.0 < ox + (col + 1) * RES_M
    assert oy + row * RES_M <= WALL_M < oy + (row + 1) * RES_M


def test_map_round_trips_through_its_files(tmp_path: Path) -> None:
    occupancy = room_grid().to_map()
    _, yaml_path = write_map(occupancy, tmp_path, name="level1")
    loaded = read_map(yaml_path)
    np.testing.assert_array_equal(loaded.cells, occupancy.cells)
    assert loaded.resolution_m == occupancy.resolution_m
    assert loaded.origin_xy_m == occupancy.origin_xy_m
    assert sorted(p.name for p in tmp_path.iterdir()) == ["level1.pgm", "level1.yaml"]


@pytest.mark.parametrize("content, problem", [
    ("image: map.pgm\nresolution: [oops\n", "malformed YAML"),
    ("image: map.pgm\norigin: [0, 0, 0]\n", "missing key 'resolution'"),
    ("image: map.pgm\nresolution: 0.05\norigin: [0, 0]\n", "bad value"),
    ("image: gone.pgm\nresolution: 0.05\norigin: [0, 0, 0]\n", "gone.pgm: cannot read"),
])
def test_bad_map_files_give_one_line_errors(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "map.pgm").write_bytes(b"P2\n1 1\n255\n0\n")
    (tmp_path / "map.yaml").write_text(content)
    with pytest.raises(MapError, match=problem) as caught:
        read_map(tmp_path / "map.yaml")
    assert "\n" not in str(caught.value) and str(tmp_path) in str(caught.value)


def test_ascii_pgm_is_refused(tmp_path: Path) -> None:
    (tmp_path / "map.pgm").write_bytes(b"P2\n1 1\n255\n0\n")
    (tmp_path / "map.yaml").write_text("image: map.pgm\nresolution: 0.05\norigin: [0, 0, 0]\n")
    with pytest.raises(MapError, match=r"map.pgm: not a binary PGM"):
        read_map(tmp_path / "map.yaml")


# --- cloud.ply and trajectory.tum --------------------------------------------------------------


def test_voxel_cloud_keeps_one_centroid_per_voxel_across_poses(tmp_path: Path) -> None:
    world = np.array([[1.01, 1.01, 0.01], [1.02, 1.03, 0.02], [3.0, -2.0, 1.0]])
    cloud = VoxelCloud(voxel_m=0.1)
    for T in (pose(0.0, 0.0, 0.0), pose(2.0, -1.0, 1.2, z_m=0.5)):
        sensor = (world - T[:3, 3]) @ T[:3, :3]  # the same world points seen from T
        cloud.add(sensor, T)
    assert len(cloud) == 2
    points = cloud.points_m()
    order = np.argsort(points[:, 0])
    np.testing.assert_allclose(points[order], [[1.015, 1.02, 0.015], [3.0, -2.0, 1.0]],
                               atol=1e-5)
    import open3d as o3d

    path = cloud.write_ply(tmp_path / "cloud.ply")
    loaded = np.asarray(o3d.io.read_point_cloud(path).points)
    np.testing.assert_allclose(loaded[np.argsort(loaded[:, 0])], points[order], atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["cloud.ply"]


def test_tum_file_has_one_pose_per_line_with_nanosecond_stamps(tmp_path: Path) -> None:
    t0 = 1_700_000_000 * 1_000_000_000
    trajectory = [(t0 + 7, pose(1.0, 2.0, 0.5, z_m=-3.98)),
                  (t0 + 100_000_001, pose(1.25, 2.0, math.pi))]
    path = write_tum(tmp_path / "trajectory.tum", trajectory)
    lines = path.read_text().splitlines()
    number = r"-?\d+\.\d+"
    assert all(re.fullmatch(rf"\d+\.\d{{9}}( {number}){{7}}", line) for line in lines)
    assert lines[0].split()[:4] == ["1700000000.000000007", "1.000000", "2.000000", "-3.980000"]
    qx, qy, qz, qw = (float(v) for v in lines[0].split()[4:])
    assert (qx, qy) == (0.0, 0.0) and qz == pytest.approx(math.sin(0.25))
    assert qw == pytest.approx(math.cos(0.25))
    assert lines[1].split()[0] == "1700000000.100000001"
    loaded = read_tum(path)
    assert [stamp for stamp, _ in loaded] == [stamp for stamp, _ in trajectory]
    for (_, T_loaded), (_, T) in zip(loaded, trajectory, strict=True):
        np.testing.assert_allclose(T_loaded, T, atol=1e-6)


def test_stamps_format_and_parse_exactly() -> None:
    assert format_stamp_s(0) == "0.000000000"
    assert format_stamp_s(-1) == "-0.000000001"
    assert format_stamp_s(12_345_678_901) == "12.345678901"
    for stamp in (0, 1, 999_999_999, 1_700_000_000_123_456_789, -2_500_000_000):
        assert parse_stamp_ns(format_stamp_s(stamp)) == stamp
    assert parse_stamp_ns("1.5") == 1_500_000_000


def test_malformed_tum_line_is_named(tmp_path: Path) -> None:
    (tmp_path / "t.tum").write_text("# timestamp x y z qx qy qz qw\n1.0 0 0 0 0 0 0 1\n1.1 0 0\n")
    with pytest.raises(ExportError, match=r"t.tum:3: expected 8 fields, got 3"):
        read_tum(tmp_path / "t.tum")
