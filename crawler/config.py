"""One typed configuration tree, read from YAML and mirrored as dotted ROS parameters.

Every section is a frozen pydantic model with defaults, so ``CrawlerConfig()`` is a working
configuration and a YAML file only lists what it changes. ``load_config`` validates once and
reports the file and line at fault; ``flatten``/``from_flat`` map the tree to and from the
``section.key`` parameter names that the ROS nodes declare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crawler.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BridgeConfig(_Section):
    """Serial link to the crawler's microcontroller."""

    port: str = "/dev/ttyUSB0"  # any pyserial URL: a device, socket://host:port, loop://
    baudrate: int = Field(921_600, gt=0)
    heartbeat_period_s: float = Field(0.1, gt=0.0, lt=0.3)  # must beat the MCU's 300 ms watchdog
    ack_timeout_s: float = Field(0.2, gt=0.0)
    reconnect_backoff_max_s: float = Field(2.0, gt=0.0)


class RobotConfig(_Section):
    """Geometry and limits of the crawler."""

    track_width_m: float = Field(0.42, gt=0.0)
    ticks_per_m: float = Field(4000.0, gt=0.0)
    max_track_speed_mps: float = Field(1.0, gt=0.0)
    cmd_vel_timeout_s: float = Field(0.5, gt=0.0)  # no /cmd_vel for this long: command zero
    # Odometry noise: variance growth per metre travelled (distance, heading) and per radian.
    odom_var_m2_per_m: float = Field(1e-4, ge=0.0)
    odom_var_rad2_per_m: float = Field(4e-4, ge=0.0)
    odom_var_rad2_per_rad: float = Field(1e-3, ge=0.0)


class ImuConfig(_Section):
    """Noise of the MCU's IMU, reported as covariances on /imu."""

    gyro_noise_radps: float = Field(0.002, ge=0.0)
    accel_noise_mps2: float = Field(0.02, ge=0.0)
    tilt_noise_rad: float = Field(0.01, ge=0.0)  # roll and pitch from the MCU's AHRS
    yaw_noise_rad: float = Field(0.1, ge=0.0)  # yaw is integrated gyro: it drifts


class MountsConfig(_Section):
    """Where the sensors sit on base_link (the crawler model of sim_worlds)."""

    lidar_xyz_m: tuple[float, float, float] = (0.12, 0.0, 0.39)
    lidar_rpy_rad: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # Camera link (x forward, y left, z up; the optical axis is +x, as in Gazebo).
    camera_xyz_m: tuple[float, float, float] = (0.31, 0.0, 0.215)
    camera_rpy_rad: tuple[float, float, float] = (0.0, 0.0, 0.0)


class LocalizationConfig(_Section):
    """The localization nodes."""

    site_file: str = ""  # site file (docs/site_file.md); empty: no site frame, no fixes
    # pipeline: the localizer registers /points itself (navigation.localization, as offline);
    # slam_topic: it fuses the slam node's /slam/odometry (a 2D /scan robot)
    source: Literal["pipeline", "slam_topic"] = "pipeline"
    map_publish_period_s: float = Field(2.0, gt=0.0)
    pose_publish_period_s: float = Field(0.1, gt=0.0)


class PerceptionConfig(_Section):
    """Defect detection and mapping (docs/perception.md)."""

    # ultralytics:PATH.pt | onnx:PATH.onnx | classical | python:module:Class; "shipped": the
    # ONNX model that ships in perception/models/.
    detector: str = "shipped"
    confidence_threshold: float = Field(0.25, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.5, gt=0.0, le=1.0)
    image_size_px: int = Field(640, gt=0)
    min_frames: int = Field(3, ge=1)  # frames that confirm a finding
    min_confidence: float = Field(0.6, ge=0.0, le=1.0)  # of the better half of its views
    pipe_inner_diameter_m: float = Field(1.0, gt=0.0)
    pipe_wall_thickness_m: float = Field(0.1, gt=0.0)
    pipe_axis: str = ""  # site axis the findings are placed on; empty: the site's first


class FramesConfig(_Section):
    """REP-105 frame names."""

    odom: str = "odom"
    base: str = "base_link"
    imu: str = "imu_link"


class CrawlerConfig(_Section):
    """The whole configuration tree."""

    bridge: BridgeConfig = BridgeConfig()
    robot: RobotConfig = RobotConfig()
    imu: ImuConfig = ImuConfig()
    mounts: MountsConfig = MountsConfig()
    localization: LocalizationConfig = LocalizationConfig()
    perception: PerceptionConfig = PerceptionConfig()
    frames: FramesConfig = FramesConfig()


ModelT = TypeVar("ModelT", bound=BaseModel)
ParamValue = bool | int | float | str | list[float]


def load_config(path: Path | None = None) -> CrawlerConfig:
    """Read ``path`` (or nothing: the defaults) into a validated ``CrawlerConfig``."""
    if path is None:
        return CrawlerConfig()
    return load_yaml_model(path, CrawlerConfig)


def load_yaml_model(path: Path, model: type[ModelT]) -> ModelT:
    """Parse YAML file ``path`` into ``model``; errors name the file, line and key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from err
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}{where}: malformed YAML: {problem}") from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(str(part) for part in first["loc"])
        line = _line_of(node, loc)
        raise ConfigError(f"{path}:{line}: {'.'.join(loc)}: {first['msg']}") from err


def _line_of(node: yaml.Node | None, loc: tuple[str, ...]) -> int:
    """1-based line of the deepest YAML node on the key path ``loc`` that exists."""
    line = 1
    for key in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if key_node.value == key:
                line = key_node.start_mark.line + 1
                node = value_node
                break
        else:
            break
    return line


def flatten(config: BaseModel, prefix: str = "") -> dict[str, ParamValue]:
    """The tree as dotted parameter names: ``{"bridge.port": "/dev/ttyUSB0", ...}``."""
    flat: dict[str, ParamValue] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            flat.update(flatten(value, f"{key}."))
        elif isinstance(value, tuple):
            flat[key] = [float(v) for v in value]  # ROS parameters have arrays, not tuples
        else:
            flat[key] = value
    return flat


def from_flat(flat: dict[str, Any], model: type[ModelT]) -> ModelT:
    """Inverse of ``flatten``: validate dotted parameters into ``model``."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        branch = tree
        for part in parents:
            branch = branch.setdefault(part, {})
        branch[leaf] = value
    try:
        return model.model_validate(tree)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(
            f"parameter {'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        ) from err
