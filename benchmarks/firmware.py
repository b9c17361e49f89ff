"""``crawler bench firmware``: frame decoding throughput and command round-trip time.

Two figures, each beside a baseline measured in the same run:
- ``decode_frames_per_s``: 48-byte-payload IMU frames through ``FrameDecoder`` and
  ``decode_message`` on one core; baseline: the byte-at-a-time reference decoder.
- ``rtt_ms_p50`` / ``rtt_ms_p99``: ``BridgeClient.command()`` to its ``Ack`` through the
  MCU emulator in another process over a pty, with telemetry streaming; baseline: the raw
  round trip of the same bytes through a pty echo process.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import serial

from benchmarks.reference_codec import BytewiseDecoder
from firmware_bridge.client import BridgeClient
from firmware_bridge.framing import Frame, FrameDecoder
from firmware_bridge.messages import (
    Imu,
    MsgId,
    SetTwist,
    decode_message,
    encode_message,
    payload_size,
)

_LOG = logging.getLogger(__name__)
TARGETS = {"decode_frames_per_s": 100_000.0, "rtt_ms_p99": 5.0}
_CHUNK_BYTES = 4096


def imu_stream(frames: int) -> bytes:
    """``frames`` consecutive IMU frames, as the MCU sends them at 100 Hz."""
    return b"".join(
        encode_message(Imu(i * 10_000, 0.12, -0.03, 9.79, 0.001, -0.002, 0.15,
                           0.0, 0.0, 0.38, 0.92), i)
        for i in range(frames)
    )


def frames_per_s(feed: Callable[[bytes], list[Frame]], stream: bytes, expected: int,
                 repeats: int = 3) -> float:
    """Best-of-``repeats`` rate of decoding ``stream`` into typed messages."""
    best_s = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        count = 0
        for offset in range(0, len(stream), _CHUNK_BYTES):
            for frame in feed(stream[offset : offset + _CHUNK_BYTES]):
                decode_message(frame)
                count += 1
        best_s = min(best_s, time.perf_counter() - start)
        if count != expected:
            raise RuntimeError(f"decoded {count} frames of {expected}")
    return expected / best_s


def _spawn(args: list[str], link: Path, timeout_s: float = 15.0) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, *args, str(link)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while not link.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{' '.join(args)} did not create {link} in {timeout_s} s")
        time.sleep(0.01)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5.0)


def _percentiles_ms(samples_s: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(samples_s) * 1e3, [50, 99])
    return float(p50), float(p99)


def command_rtt(link_dir: Path, samples: int) -> tuple[float, float]:
    """p50/p99 ms from ``command()`` to its ack through the emulator process."""
    link = link_dir / "mcu"
    proc = _spawn(["-m", "crawler", "emulator", "--link"], link)
    client = BridgeClient(str(link))
    try:
        if not client.start(connect_timeout_s=5.0):
            raise RuntimeError(f"could not open {link}")
        rtts: list[float] = []
        for i in range(samples + 50):
            start = time.perf_counter()
            client.command(SetTwist(0.0, 0.0), timeout_s=1.0)
            if i >= 50:  # the first 50 warm the path up
                rtts.append(time.perf_counter() - start)
        return _percentiles_ms(rtts)
    finally:
        client.stop()
        _stop(proc)


def echo_rtt(link_dir: Path, samples: int) -> tuple[float, float]:
    """p50/p99 ms of a command-sized frame echoed by a bare pty process."""
    link = link_dir / "echo"
    proc = _spawn(["-m", "benchmarks.pty_echo"], link)
    frame = encode_message(SetTwist(0.0, 0.0), 1)
    try:
        with serial.serial_for_url(str(link), timeout=1.0) as port:
            rtts: list[float] = []
            for i in range(samples + 50):
                start = time.perf_counter()
                port.write(frame)
                if port.read(len(frame)) != frame:
                    raise RuntimeError("pty echo returned different bytes")
                if i >= 50:
                    rtts.append(time.perf_counter() - start)
        return _percentiles_ms(rtts)
    finally:
        _stop(proc)


def run(quick: bool = False, progress: Callable[[str], None] = _LOG.info) -> dict[str, Any]:
    """Run the benchmark and return its JSON-ready result."""
    frames = 20_000 if quick else 100_000
    rtt_samples = 500 if quick else 2000
    stream = imu_stream(frames)
    progress(f"decoding {frames} IMU frames ({len(stream) // frames} bytes each on the wire)")
    ours = frames_per_s(FrameDecoder().feed, stream, frames)
    baseline_frames = frames // 10
    baseline = frames_per_s(BytewiseDecoder().feed, imu_stream(baseline_frames),
                            baseline_frames, repeats=1)
    with tempfile.TemporaryDirectory(prefix="crawler-bench-") as tmp:
        progress(f"{rtt_samples} acknowledged commands through the emulator over a pty")
        rtt_p50, rtt_p99 = command_rtt(Path(tmp), rtt_samples)
        progress(f"{rtt_samples} raw round trips through a pty echo process")
        echo_p50, echo_p99 = echo_rtt(Path(tmp), rtt_samples)
    result: dict[str, Any] = {
        "benchmark": "firmware",
        "decode_frames_per_s": round(ours),
        "payload_bytes": payload_size(MsgId.IMU),
        "wire_bytes_per_frame": len(stream) // frames,
        "rtt_ms_p50": round(rtt_p50, 3),
        "rtt_ms_p99": round(rtt_p99, 3),
        "rtt_samples": rtt_samples,
        "baseline": {
            "bytewise_decode_frames_per_s": round(baseline),
            "pty_echo_rtt_ms_p50": round(echo_p50, 3),
            "pty_echo_rtt_ms_p99": round(echo_p99, 3),
        },
        "decode_speedup_vs_baseline": round(ours / baseline, 1),
        "targets": TARGETS,
        "cores": os.cpu_count(),
    }
    result["targets_met"] = (result["decode_frames_per_s"] >= TARGETS["decode_frames_per_s"]
                             and result["rtt_ms_p99"] <= TARGETS["rtt_ms_p99"])
    return result
