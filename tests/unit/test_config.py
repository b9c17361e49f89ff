"""Configuration tree: defaults, YAML with line-numbered errors, ROS parameter mirror."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.config import CrawlerConfig, flatten, from_flat, load_config
from crawler.errors import ConfigError

DEFAULTS_YAML = Path(__file__).parents[2] / "crawler" / "defaults.yaml"


def test_defaults_validate_and_flatten_to_dotted_parameters() -> None:
    flat = flatten(CrawlerConfig())
    assert flat["bridge.port"] == "/dev/ttyUSB0"
    assert flat["robot.track_width_m"] == pytest.approx(0.42)
    assert from_flat(flat, CrawlerConfig) == CrawlerConfig()


def test_shipped_yaml_mirrors_the_defaults() -> None:
    assert load_config(DEFAULTS_YAML) == CrawlerConfig()


def test_yaml_overrides_only_what_it_lists(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("bridge:\n  port: socket://10.0.0.2:5000\nrobot:\n  ticks_per_m: 1234\n")
    config = load_config(path)
    assert config.bridge.port == "socket://10.0.0.2:5000"
    assert config.robot.ticks_per_m == 1234
    assert config.bridge.baudrate == CrawlerConfig().bridge.baudrate


@pytest.mark.parametrize(("text", "match"), [
    ("bridge:\n  port: x\n  baudrate: -3\n", r"c\.yaml:3: bridge\.baudrate: .*greater than 0"),
    ("robot:\n  track_width_m: 0.4\n  wheel_count: 4\n", r"c\.yaml:3: robot\.wheel_count"),
    ("bridge:\n  port: [x\n", r"c\.yaml:3: malformed YAML"),
    ("- a\n- b\n", r"c\.yaml:1: expected a mapping"),
    ("bridge:\n  heartbeat_period_s: 0.5\n", r"c\.yaml:2: bridge\.heartbeat_period_s"),
])
def test_bad_yaml_names_file_line_and_key(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_bad_parameter_value_names_the_parameter() -> None:
    flat = flatten(CrawlerConfig()) | {"robot.max_track_speed_mps": -1.0}
    with pytest.raises(ConfigError, match=r"parameter robot\.max_track_speed_mps"):
        from_flat(flat, CrawlerConfig)
