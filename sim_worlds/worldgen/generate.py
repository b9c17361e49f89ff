"""Render every world, its ground truth and the shared assets into a folder, byte-for-byte."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from sim_worlds.worldgen.bridge import bridge_yaml
from sim_worlds.worldgen.crawler import crawler_model_config, crawler_model_sdf
from sim_worlds.worldgen.sdf import to_xml_bytes
from sim_worlds.worldgen.sewer_world import build_sewer_world
from sim_worlds.worldgen.shelter import build_shelter_world
from sim_worlds.worldgen.textures import all_textures
from sim_worlds.worldgen.truth import WorldTruth, dump_truth
from sim_worlds.worldgen.tunnel import build_tunnel_world

WORLDS_DIR = Path(__file__).resolve().parent.parent / "worlds"
WORLD_BUILDERS: tuple[Callable[[], tuple[ET.Element, WorldTruth]], ...] = (
    build_sewer_world,
    build_tunnel_world,
    build_shelter_world,
)
WORLD_NAMES = ("sewer_dn1000", "utility_tunnel", "civil_defence_shelter")

_README = """\
# Simulation worlds (generated)

Everything in this folder is written by `python -m sim_worlds.worldgen` (add `--check` to
verify the checked-in files are up to date). Do not edit by hand: change the generator in
`sim_worlds/worldgen/` and regenerate.

- `sewer_dn1000.sdf`: DN1000 concrete sewer, 120 m between two manholes, 12 CJJ 181 defects.
- `utility_tunnel.sdf`: 600 m utility tunnel (综合管廊) with a 50 m branch, shafts, 5G antennas.
- `civil_defence_shelter.sdf`: two-level civil-defence shelter (人防), 12 rooms, corridor loop.

Each `<world>.sdf` has its ground truth next to it in `<world>.truth.yaml`.
The schema of the `*.truth.yaml` files is `sim_worlds/worldgen/truth.py`
(`load_truth(path) -> WorldTruth`).

## Running in Gazebo (Harmonic)

The crawler model is inlined in every world, and textures are referenced relative to the world
file, so no resource path is needed:

    gz sim -r sim_worlds/worlds/sewer_dn1000.sdf
    ros2 run ros_gz_bridge parameter_bridge --ros-args \\
      -p config_file:=sim_worlds/worlds/ros_gz_bridge.yaml -p use_sim_time:=true

`models/crawler/` holds the same robot as a stand-alone model; to `<include>` it instead, add
this folder's `models/` to `GZ_SIM_RESOURCE_PATH` and use `<uri>model://crawler</uri>`.

Gazebo topics: `/lidar/points`, `/camera/image_raw`, `/camera/camera_info`, `/imu`, `/navsat`,
`/cmd_vel`, `/odom/wheel`, `/clock` (ROS names in `ros_gz_bridge.yaml`). Sensor frame ids are
Gazebo's scoped names (`crawler/base_link/lidar`, ...); publish static transforms to the ROS
sensor frames if a node needs them.

The site frame of each world is East-North-Up (`x_axis_azimuth_deg: 90`, SDF `heading_deg: 0`),
anchored at the CGCS2000 position in the ground truth (`<spherical_coordinates>` uses WGS84,
which differs from CGCS2000 by far less than the navsat noise).

## Checking

    ign sdf -k sim_worlds/worlds/sewer_dn1000.sdf     # Debian: libsdformat-dev ignition-tools
"""


def world_files() -> dict[str, bytes]:
    """Relative path -> content of every generated file."""
    files: dict[str, bytes] = {}
    for builder in WORLD_BUILDERS:
        root, truth = builder()
        files[truth.sdf_file] = to_xml_bytes(root)
        files[f"{truth.world}.truth.yaml"] = dump_truth(truth).encode("utf-8")
    for texture in all_textures():
        files[f"textures/{texture.file_name}"] = texture.png
    files["models/crawler/model.sdf"] = to_xml_bytes(crawler_model_sdf())
    files["models/crawler/model.config"] = crawler_model_config().encode("utf-8")
    files["ros_gz_bridge.yaml"] = bridge_yaml().encode("utf-8")
    files["README.md"] = _README.encode("utf-8")
    return dict(sorted(files.items()))


def write_worlds(out_dir: Path = WORLDS_DIR) -> list[Path]:
    """Write every generated file under out_dir; returns the paths written."""
    written = []
    for relative, content in world_files().items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != content:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        written.append(path)
    return written


def stale_files(out_dir: Path = WORLDS_DIR) -> list[str]:
    """Relative paths that are missing, different or not produced by the generator."""
    expected = world_files()
    problems = [
        rel
        for rel, content in expected.items()
        if not (out_dir / rel).is_file() or (out_dir / rel).read_bytes() != content
    ]
    present = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file()}
    problems += sorted(present - set(expected))
    return problems
