"""Emulator of the crawler's microcontroller, served on a pseudo-terminal.

``McuModel`` is the firmware's behaviour as plain state and arithmetic: motors with a
first-order response, encoders, IMU with noise and bias, battery drain, tether counter,
motor heating, gas readings, a 300 ms command watchdog and a latched e-stop. ``PtyEmulator``
serves it on a pty behind a stable symlink, so the real host code (``BridgeClient`` and the
``crawler_driver`` node) talks to it exactly as to the hardware. The simulator drives the
same model and feeds it the world (gas, slip, attitude) through ``McuEnvironment``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from firmware_bridge.errors import MessageDecodeError
from firmware_bridge.framing import Frame, FrameDecoder
from firmware_bridge.messages import (
    TELEMETRY_ID_MIN,
    Ack,
    AckResult,
    Battery,
    Command,
    Encoders,
    EstopLatch,
    EstopRelease,
    Fault,
    Gas,
    Heartbeat,
    Imu,
    Motors,
    RequestStatus,
    SetCameraTilt,
    SetLamp,
    SetTwist,
    SetWheelSpeeds,
    Status,
    Telemetry,
    Tether,
    decode_message,
    encode_message,
    is_known_message,
)

_LOG = logging.getLogger(__name__)

GRAVITY_MPS2 = 9.80665
FIRMWARE_VERSION = 0x0100


@dataclass(frozen=True)
class McuParams:
    """Physical constants of the emulated crawler."""

    track_width_m: float = 0.42
    ticks_per_m: float = 4000.0
    motor_tau_s: float = 0.12
    max_track_speed_mps: float = 1.0
    watchdog_s: float = 0.3
    battery_capacity_ah: float = 20.0
    battery_full_v: float = 25.2
    battery_empty_v: float = 19.8
    idle_current_a: float = 1.2
    motor_current_per_mps_a: float = 6.0
    motor_thermal_tau_s: float = 600.0
    motor_heat_c_per_a2: float = 0.08
    ambient_c: float = 18.0
    gyro_noise_radps: float = 0.002
    gyro_bias_radps: float = 0.0005
    accel_noise_mps2: float = 0.02
    # Telemetry periods in microseconds (rates: 50 / 100 / 1 / 10 / 5 / 1 / 2 Hz).
    periods_us: dict[str, int] = field(default_factory=lambda: {
        "encoders": 20_000, "imu": 10_000, "battery": 1_000_000, "tether": 100_000,
        "motors": 200_000, "gas": 1_000_000, "status": 500_000,
    })


@dataclass
class McuEnvironment:
    """What the world imposes on the MCU's sensors; the simulator writes these fields."""

    o2_pct: float = 20.9
    ch4_pct_vol: float = 0.0
    h2s_ppm: float = 0.0
    co_ppm: float = 0.0
    roll_rad: float = 0.0
    pitch_rad: float = 0.0
    tether_stretch: float = 0.0
    """Fractional error of the cable counter (cable paid out per metre driven, minus one)."""
    body_yaw_rate_radps: float | None = None
    """True yaw rate of the body (skid-steer slips); None: ideal, from the track speeds."""
    body_accel_mps2: float | None = None
    """True forward acceleration of the body; None: from the track speeds."""
    tether_paid_out_m: float | None = None
    """Cable actually paid out (the simulator follows the body's path); None: from the tracks."""


class McuModel:
    """The firmware's behaviour, stepped by the caller with a monotonic clock in microseconds."""

    def __init__(self, params: McuParams | None = None, seed: int = 0) -> None:
        self.params = params or McuParams()
        self.env = McuEnvironment()
        self._rng = np.random.default_rng(seed)
        self.now_us = 0
        self.target_mps = [0.0, 0.0]
        self.track_mps = [0.0, 0.0]
        self.track_pos_m = [0.0, 0.0]
        self.yaw_rad = 0.0
        self.estop_latched = False
        self.watchdog_tripped = False
        self.lamp_pct = 0
        self.camera_tilt_rad = 0.0
        self.charge_ah = self.params.battery_capacity_ah
        self.tether_m = 0.0
        self.motor_temp_c = [self.params.ambient_c, self.params.ambient_c]
        self.rx_errors = 0
        self._last_command_us = 0
        self._accel_mps2 = 0.0
        self._gyro_bias = self._rng.normal(0.0, self.params.gyro_bias_radps, 3)
        self._next_due_us = dict.fromkeys(self.params.periods_us, 0)

    @property
    def faults(self) -> Fault:
        """Fault flags as the status message reports them."""
        flags = Fault.NONE
        if self.watchdog_tripped:
            flags |= Fault.WATCHDOG
        if self.estop_latched:
            flags |= Fault.ESTOP
        if self.battery_percent <= 10:
            flags |= Fault.BATTERY_LOW
        if max(self.motor_temp_c) > 90.0:
            flags |= Fault.MOTOR_OVERTEMP
        if self.rx_errors:
            flags |= Fault.RX_ERRORS
        return flags

    @property
    def battery_percent(self) -> int:
        """State of charge, 0 to 100."""
        return round(100.0 * self.charge_ah / self.params.battery_capacity_ah)

    @property
    def moving(self) -> bool:
        """Whether either track turns faster than 1 mm/s."""
        return max(abs(v) for v in self.track_mps) > 1e-3

    def handle(self, command: Command) -> AckResult:
        """Apply one command from the host and return the result to acknowledge it with."""
        # Any command feeds the watchdog; only a speed command clears its fault (below), so
        # the host sees WATCHDOG in Status until it drives again.
        self._last_command_us = self.now_us
        match command:
            case Heartbeat():
                pass
            case SetWheelSpeeds(left_mps, right_mps):
                return self._set_targets(left_mps, right_mps)
            case SetTwist(linear_mps, angular_radps):
                half_w = 0.5 * angular_radps * self.params.track_width_m
                return self._set_targets(linear_mps - half_w, linear_mps + half_w)
            case EstopLatch():
                self.estop_latched = True
                self.target_mps = [0.0, 0.0]
            case EstopRelease():
                self.estop_latched = False
                self.target_mps = [0.0, 0.0]
            case SetLamp(brightness_pct):
                if not 0 <= brightness_pct <= 100:
                    return AckResult.BAD_PAYLOAD
                self.lamp_pct = brightness_pct
            case SetCameraTilt(tilt_rad):
                if not math.isfinite(tilt_rad) or abs(tilt_rad) > math.pi / 2:
                    return AckResult.BAD_PAYLOAD
                self.camera_tilt_rad = tilt_rad
            case RequestStatus():
                self._next_due_us["status"] = self.now_us
        return AckResult.OK

    def _set_targets(self, left_mps: float, right_mps: float) -> AckResult:
        self.watchdog_tripped = False
        if self.estop_latched:
            return AckResult.REJECTED_ESTOP
        if not (math.isfinite(left_mps) and math.isfinite(right_mps)):
            return AckResult.BAD_PAYLOAD
        limit = self.params.max_track_speed_mps
        self.target_mps = [float(np.clip(left_mps, -limit, limit)),
                           float(np.clip(right_mps, -limit, limit))]
        return AckResult.OK

    def step(self, now_us: int) -> None:
        """Advance the motors, battery, tether and temperatures to ``now_us``."""
        p = self.params
        dt_s = max(0, now_us - self.now_us) * 1e-6
        self.now_us = now_us
        # Watchdog: no heartbeat or command for watchdog_s stops the motors.
        if now_us - self._last_command_us > p.watchdog_s * 1e6 and not self.watchdog_tripped:
            self.watchdog_tripped = True
            self.target_mps = [0.0, 0.0]
        if dt_s == 0.0:
            return
        # Motors: first-order response towards the target speed.
        alpha = 1.0 - math.exp(-dt_s / p.motor_tau_s)
        previous_mean = 0.5 * sum(self.track_mps)
        for side in (0, 1):
            self.track_mps[side] += alpha * (self.target_mps[side] - self.track_mps[side])
            self.track_pos_m[side] += self.track_mps[side] * dt_s
        mean_mps = 0.5 * sum(self.track_mps)
        env = self.env
        self._accel_mps2 = (env.body_accel_mps2 if env.body_accel_mps2 is not None
                            else (mean_mps - previous_mean) / dt_s)
        # The AHRS integrates its own (biased) gyro: its yaw drifts like the real one.
        self.yaw_rad += (self.yaw_rate_radps() + float(self._gyro_bias[2])) * dt_s
        if env.tether_paid_out_m is not None:
            self.tether_m = max(0.0, env.tether_paid_out_m * (1.0 + env.tether_stretch))
        else:
            self.tether_m = max(0.0, self.tether_m + mean_mps * dt_s * (1.0 + env.tether_stretch))
        # Power: idle load plus a current proportional to track speed.
        currents = self.motor_currents_a()
        self.charge_ah = max(0.0, self.charge_ah - (p.idle_current_a + sum(currents)) * dt_s / 3600)
        cool = 1.0 - math.exp(-dt_s / p.motor_thermal_tau_s)
        for side in (0, 1):
            steady_c = p.ambient_c + p.motor_heat_c_per_a2 * currents[side] ** 2 * 60.0
            self.motor_temp_c[side] += cool * (steady_c - self.motor_temp_c[side])

    def yaw_rate_radps(self) -> float:
        """True yaw rate: the world's if it says, else ideal skid-steer from the tracks."""
        if self.env.body_yaw_rate_radps is not None:
            return self.env.body_yaw_rate_radps
        return (self.track_mps[1] - self.track_mps[0]) / self.params.track_width_m

    def motor_currents_a(self) -> tuple[float, float]:
        """Motor currents from track speeds (no-load model)."""
        k = self.params.motor_current_per_mps_a
        return abs(self.track_mps[0]) * k, abs(self.track_mps[1]) * k

    def due_telemetry(self) -> list[Telemetry]:
        """Telemetry messages whose period has elapsed at ``now_us``, in a fixed order."""
        out: list[Telemetry] = []
        for name, period_us in self.params.periods_us.items():
            if self.now_us >= self._next_due_us[name]:
                due_us = self._next_due_us[name] + period_us
                # After a stall, resume the cadence from now instead of bursting to catch up.
                if due_us <= self.now_us:
                    due_us = self.now_us + period_us
                self._next_due_us[name] = due_us
                out.append(self._sample(name))
        return out

    def _sample(self, name: str) -> Telemetry:
        p, env, now = self.params, self.env, self.now_us
        match name:
            case "encoders":
                return Encoders(now, _wrap_i32(round(self.track_pos_m[0] * p.ticks_per_m)),
                                _wrap_i32(round(self.track_pos_m[1] * p.ticks_per_m)))
            case "imu":
                return self.imu_sample()
            case "battery":
                frac = self.charge_ah / p.battery_capacity_ah
                voltage = p.battery_empty_v + frac * (p.battery_full_v - p.battery_empty_v)
                current = p.idle_current_a + sum(self.motor_currents_a())
                return Battery(now, voltage, current, self.battery_percent)
            case "tether":
                return Tether(now, self.tether_m)
            case "motors":
                left_a, right_a = self.motor_currents_a()
                return Motors(now, left_a, right_a, *self.motor_temp_c)
            case "gas":
                noise = self._rng.normal(0.0, 1.0, 4) * (0.02, 0.005, 0.1, 0.2)
                return Gas(now, env.o2_pct + noise[0], max(0.0, env.ch4_pct_vol + noise[1]),
                           max(0.0, env.h2s_ppm + noise[2]), max(0.0, env.co_ppm + noise[3]))
            case _:
                return Status(now, int(self.faults), int(self.estop_latched), self.lamp_pct,
                              env.roll_rad, env.pitch_rad, self.camera_tilt_rad, FIRMWARE_VERSION)

    def imu_sample(self) -> Imu:
        """An IMU sample now: noisy specific force and rates, AHRS orientation."""
        p, env = self.params, self.env
        gyro = np.array([0.0, 0.0, self.yaw_rate_radps()]) + self._gyro_bias
        gyro += self._rng.normal(0.0, p.gyro_noise_radps, 3)
        # Specific force in the body frame: forward acceleration plus gravity tilted by attitude.
        accel = np.array([
            self._accel_mps2 - GRAVITY_MPS2 * math.sin(env.pitch_rad),
            GRAVITY_MPS2 * math.sin(env.roll_rad) * math.cos(env.pitch_rad),
            GRAVITY_MPS2 * math.cos(env.roll_rad) * math.cos(env.pitch_rad),
        ]) + self._rng.normal(0.0, p.accel_noise_mps2, 3)
        qx, qy, qz, qw = _quaternion_from_rpy(env.roll_rad, env.pitch_rad, self.yaw_rad)
        ax, ay, az = (float(v) for v in accel)
        gx, gy, gz = (float(v) for v in gyro)
        return Imu(self.now_us, ax, ay, az, gx, gy, gz, qx, qy, qz, qw)


def _wrap_i32(value: int) -> int:
    return (value + 2**31) % 2**32 - 2**31


def _quaternion_from_rpy(
    roll: float, pitch: float, yaw: float
) -> tuple[float, float, float, float]:
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy)


class PtyEmulator:
    """Serves an ``McuModel`` on a pseudo-terminal behind the stable path ``link_path``.

    ``reopen()`` closes the pty and makes a new one behind the same path, which is what a
    host sees when a USB adapter is unplugged and plugged back in.

    By default the emulator steps the model on the wall clock. With ``external_clock`` the
    owner (the simulator) steps it in simulated time, holding ``lock`` while it does, and the
    emulator only serves the port and sends the telemetry that has come due.
    """

    def __init__(self, link_path: Path, model: McuModel | None = None,
                 tick_s: float = 0.002, external_clock: bool = False) -> None:
        self.link_path = Path(link_path)
        self.model = model or McuModel()
        self.tick_s = tick_s
        self.external_clock = external_clock
        self.commands_received = 0
        self._decoder = FrameDecoder()
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master_fd = -1
        self._slave_fd = -1
        self._t0_ns = time.monotonic_ns()

    def __enter__(self) -> PtyEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Open the pty and start serving."""
        self._open_pty()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mcu-emulator", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving, close the pty and remove the link."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        with self._lock:
            self._close_pty()
        self.link_path.unlink(missing_ok=True)

    def unplug(self) -> None:
        """Close the pty and remove the link: the port vanishes."""
        with self._lock:
            self._close_pty()
            self.link_path.unlink(missing_ok=True)

    def replug(self) -> None:
        """Make a new pty behind the same link path."""
        with self._lock:
            self._open_pty()

    def reopen(self) -> None:
        """Unplug and plug back in at once."""
        self.unplug()
        self.replug()

    @property
    def lock(self) -> threading.Lock:
        """Held while the model is stepped or commanded."""
        return self._lock

    def now_us(self) -> int:
        """Emulator clock: microseconds since start (the model's own under an external clock)."""
        if self.external_clock:
            return self.model.now_us
        return (time.monotonic_ns() - self._t0_ns) // 1000

    def _open_pty(self) -> None:
        master_fd, slave_fd = os.openpty()
        tty.setraw(slave_fd)
        os.set_blocking(master_fd, False)
        self._master_fd, self._slave_fd = master_fd, slave_fd
        tmp = self.link_path.with_name(self.link_path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave_fd))
        tmp.replace(self.link_path)

    def _close_pty(self) -> None:
        for fd in (self._master_fd, self._slave_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master_fd = self._slave_fd = -1

    def _run(self) -> None:
        while not self._stop.is_set():
            fd = self._master_fd
            if fd < 0:
                self._stop.wait(self.tick_s)
                continue
            try:
                readable, _, _ = select.select([fd], [], [], self.tick_s)
                data = os.read(fd, 4096) if readable else b""
            except (OSError, ValueError):
                # The pty was closed under us by unplug(); wait for replug().
                self._stop.wait(self.tick_s)
                continue
            with self._lock:
                if not self.external_clock:
                    self.model.step(self.now_us())
                for frame in self._decoder.feed(data):
                    self._handle_frame(frame.msg_id, frame.seq, frame.payload)
                self.model.rx_errors = self._decoder.stats.rejected
                if not self.external_clock:
                    self._send_due()

    def step(self, now_us: int) -> None:
        """External clock: advance the model to ``now_us`` and send what has come due."""
        with self._lock:
            self.model.step(now_us)
            self._send_due()

    def _send_due(self) -> None:
        for message in self.model.due_telemetry():
            self._write(message)

    def _handle_frame(self, msg_id: int, seq: int, payload: bytes) -> None:
        self.commands_received += 1
        if msg_id >= TELEMETRY_ID_MIN or not is_known_message(msg_id):
            self._write(Ack(seq, int(AckResult.UNKNOWN_MESSAGE)))
            return
        try:
            message = decode_message(Frame(msg_id, seq, payload))
        except MessageDecodeError:
            result = AckResult.BAD_PAYLOAD
        else:
            result = self.model.handle(cast(Command, message))
        self._write(Ack(seq, int(result)))

    def _write(self, message: Telemetry) -> None:
        self._seq = (self._seq + 1) & 0xFFFF
        try:
            os.write(self._master_fd, encode_message(message, self._seq))
        except BlockingIOError:
            pass  # Host not reading: the UART buffer overflows and the frame is lost.
        except OSError as err:
            _LOG.debug("emulator write failed: %s", err)
