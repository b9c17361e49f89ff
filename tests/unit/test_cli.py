"""The ``crawler`` command: version, one-line errors, benchmark JSON, emulator lifecycle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.waiting import wait_until


def _crawler(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crawler", *args], capture_output=True,
                          text=True, timeout=timeout_s, check=False)


def test_version() -> None:
    result = _crawler("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("crawler ")


def test_help_lists_subcommands() -> None:
    result = _crawler("--help")
    assert result.returncode == 0
    for name in ("emulator", "driver", "bench", "demo"):
        assert name in result.stdout


def test_bad_arguments_give_one_line_and_exit_2() -> None:
    for args in (("frobnicate",), ("bench", "nosuch"), ()):
        result = _crawler(*args)
        assert result.returncode == 2, args
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = _crawler("driver", "--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"crawler: error: {tmp_path / 'absent.yaml'}: cannot read: No such file or directory"
    )


def test_malformed_config_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("bridge:\n  baudrate: fast\n")
    result = _crawler("driver", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.startswith(f"crawler: error: {config}:2: bridge.baudrate")
    assert len(result.stderr.strip().splitlines()) == 1


def test_bench_firmware_json_is_the_last_line() -> None:
    result = _crawler("bench", "firmware", "--json", "--quick")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("decode_frames_per_s", "rtt_ms_p50", "rtt_ms_p99", "cores", "baseline"):
        assert key in figures
    assert figures["payload_bytes"] == 48
    assert figures["rtt_ms_p50"] <= figures["rtt_ms_p99"]
    assert figures["cores"] == os.cpu_count()
    assert figures["baseline"]["bytewise_decode_frames_per_s"] > 0


def test_emulator_serves_until_sigterm_and_removes_its_link(tmp_path: Path) -> None:
    link = tmp_path / "mcu"
    proc = subprocess.Popen([sys.executable, "-m", "crawler", "emulator", "--link", str(link)],
                            stdout=subprocess.PIPE, text=True)
    try:
        wait_until(link.exists, 15.0, "the emulator's link")
        assert os.path.realpath(link).startswith("/dev/pts/")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "stopped after 0 commands" in out
    assert not link.exists()


def test_invalid_ros_parameter_is_reported_by_name() -> None:
    result = _crawler("driver", "--port", "loop://", "--ros-args", "-p",
                      "robot.max_track_speed_mps:=-1.0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "crawler: error: parameter robot.max_track_speed_mps: Input should be greater than 0"
    )
