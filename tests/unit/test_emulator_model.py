"""The MCU's behaviour (``McuModel``), stepped on its own clock: no pty, no threads, no sleeps."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from firmware_bridge.emulator import FIRMWARE_VERSION, McuModel, McuParams
from firmware_bridge.messages import (
    Ack,
    AckResult,
    Battery,
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
)

MS = 1000  # microseconds


def _run(model: McuModel, until_us: int, step_us: int = MS,
         heartbeat_us: int | None = 100 * MS) -> list[Telemetry]:
    """Step ``model`` up to ``until_us`` (inclusive), sending heartbeats; return its telemetry."""
    out: list[Telemetry] = []
    last_heartbeat = model.now_us
    t = model.now_us
    while t < until_us:
        t = min(t + step_us, until_us)
        model.step(t)
        if heartbeat_us is not None and t - last_heartbeat >= heartbeat_us:
            assert model.handle(Heartbeat(t // MS)) is AckResult.OK
            last_heartbeat = t
        out += model.due_telemetry()
    return out


def _status(model: McuModel) -> Status:
    model.handle(RequestStatus())
    statuses = [m for m in model.due_telemetry() if isinstance(m, Status)]
    assert len(statuses) == 1
    return statuses[0]


def _started(left_mps: float, right_mps: float) -> McuModel:
    model = McuModel()
    model.step(0)
    assert model.handle(SetWheelSpeeds(left_mps, right_mps)) is AckResult.OK
    return model


def _distance(v_mps: float, t_s: float, tau_s: float) -> float:
    """Distance of a first-order response from rest to ``v_mps`` after ``t_s``."""
    return v_mps * (t_s - tau_s * (1.0 - math.exp(-t_s / tau_s)))


# --- motors and encoders --------------------------------------------------------------------


def test_first_order_response_reaches_63_percent_after_one_time_constant() -> None:
    model = _started(0.8, -0.5)
    tau_us = round(model.params.motor_tau_s * 1e6)
    _run(model, tau_us)
    assert model.track_mps[0] == pytest.approx(0.8 * (1 - math.exp(-1)), rel=1e-6)
    assert model.track_mps[1] == pytest.approx(-0.5 * (1 - math.exp(-1)), rel=1e-6)
    _run(model, 5 * tau_us)
    assert model.track_mps == pytest.approx([0.8, -0.5], rel=0.01)
    assert model.moving


def test_response_does_not_depend_on_step_size() -> None:
    fine, coarse = _started(0.6, 0.6), _started(0.6, 0.6)
    _run(fine, 240 * MS, step_us=MS)
    _run(coarse, 240 * MS, step_us=40 * MS)
    assert fine.track_mps == pytest.approx(coarse.track_mps, rel=1e-9)
    assert fine.track_mps[0] == pytest.approx(0.6 * (1 - math.exp(-2)), rel=1e-6)


def test_encoder_ticks_match_distance() -> None:
    model = McuModel()
    model.step(0)
    assert model.handle(SetTwist(0.3, 0.5)) is AckResult.OK
    telemetry = _run(model, 2_000 * MS)
    encoders = [m for m in telemetry if isinstance(m, Encoders)]
    last = encoders[-1]
    assert last.stamp_us == model.now_us
    tpm = model.params.ticks_per_m
    half_w = 0.5 * 0.5 * model.params.track_width_m
    expected_m = [_distance(v, 2.0, model.params.motor_tau_s) for v in (0.3 - half_w,
                                                                          0.3 + half_w)]
    for ticks, pos_m, dist_m in zip((last.left_ticks, last.right_ticks), model.track_pos_m,
                                    expected_m, strict=True):
        assert ticks == round(pos_m * tpm)
        assert ticks == pytest.approx(dist_m * tpm, abs=3)  # 1 ms integration: < 1 mm
    # Ticks only grow while driving forward.
    lefts = [m.left_ticks for m in encoders]
    assert lefts == sorted(lefts)
    assert lefts[0] == 0


def test_encoder_ticks_wrap_at_32_bits() -> None:
    model = McuModel()
    model.track_pos_m = [(2**31 + 10) / model.params.ticks_per_m,
                         -(2**31 + 10) / model.params.ticks_per_m]
    model.step(0)
    encoders = [m for m in model.due_telemetry() if isinstance(m, Encoders)]
    assert (encoders[0].left_ticks, encoders[0].right_ticks) == (-(2**31) + 10, 2**31 - 10)


def test_set_twist_uses_skid_steer_kinematics_and_clips() -> None:
    model = McuModel()
    assert model.handle(SetTwist(0.3, 1.0)) is AckResult.OK
    half_w = 0.5 * model.params.track_width_m
    assert model.target_mps == pytest.approx([0.3 - half_w, 0.3 + half_w])
    assert model.handle(SetWheelSpeeds(5.0, -7.0)) is AckResult.OK
    assert model.target_mps == [1.0, -1.0]


# --- watchdog -------------------------------------------------------------------------------


def test_watchdog_trips_after_300_ms_without_commands_and_not_before() -> None:
    model = _started(0.5, 0.5)
    assert model.params.watchdog_s == 0.3
    _run(model, 300 * MS, heartbeat_us=None)
    assert not model.watchdog_tripped
    assert Fault.WATCHDOG not in model.faults
    assert model.target_mps == [0.5, 0.5]
    _run(model, 301 * MS, heartbeat_us=None)
    assert model.watchdog_tripped
    assert model.target_mps == [0.0, 0.0]
    assert Fault.WATCHDOG in model.faults
    # The periodic status (due at 500 ms) reports it, and the motors run down to a stop.
    telemetry = _run(model, 1_500 * MS, heartbeat_us=None)
    statuses = [m for m in telemetry if isinstance(m, Status)]
    assert [s.stamp_us for s in statuses] == [500 * MS, 1_000 * MS, 1_500 * MS]
    assert all(s.fault_flags & Fault.WATCHDOG for s in statuses)
    assert model.watchdog_tripped
    assert not model.moving


def test_heartbeats_keep_the_watchdog_from_tripping() -> None:
    model = _started(0.5, 0.5)
    _run(model, 3_000 * MS, heartbeat_us=250 * MS)
    assert not model.watchdog_tripped
    assert model.target_mps == [0.5, 0.5]
    assert model.track_mps == pytest.approx([0.5, 0.5])


@pytest.mark.parametrize("keepalive", [SetLamp(10), RequestStatus(), SetCameraTilt(0.1)],
                         ids=repr)
def test_any_command_feeds_the_watchdog(keepalive: SetLamp | RequestStatus | SetCameraTilt) -> None:
    model = _started(0.5, 0.5)
    for t in range(10 * MS, 3_000 * MS, 10 * MS):
        model.step(t)
        if t % (290 * MS) == 0:
            assert model.handle(keepalive) is AckResult.OK
    assert not model.watchdog_tripped
    assert model.target_mps == [0.5, 0.5]
    model.step(2_900 * MS + 300 * MS + 1)
    assert model.watchdog_tripped


def test_motors_stay_stopped_after_watchdog_until_next_speed_command() -> None:
    model = _started(0.5, 0.5)
    _run(model, 400 * MS, heartbeat_us=None)
    assert model.watchdog_tripped
    # A heartbeat neither clears the fault nor restarts the motors: the host keeps seeing
    # WATCHDOG in Status until it commands motion again.
    assert model.handle(Heartbeat(400)) is AckResult.OK
    _run(model, 2_000 * MS)
    assert Fault.WATCHDOG in model.faults
    assert model.target_mps == [0.0, 0.0]
    assert not model.moving
    assert model.handle(SetWheelSpeeds(0.2, 0.2)) is AckResult.OK
    assert Fault.WATCHDOG not in model.faults
    _run(model, 3_000 * MS)
    assert model.track_mps == pytest.approx([0.2, 0.2], abs=1e-3)


# --- e-stop ---------------------------------------------------------------------------------


def test_estop_latch_rejects_speed_commands_until_release() -> None:
    model = _started(0.5, 0.5)
    _run(model, 500 * MS)
    assert model.handle(EstopLatch()) is AckResult.OK
    assert model.target_mps == [0.0, 0.0]
    assert model.handle(SetWheelSpeeds(0.3, 0.3)) is AckResult.REJECTED_ESTOP
    assert model.handle(SetTwist(0.3, 0.0)) is AckResult.REJECTED_ESTOP
    assert model.handle(SetWheelSpeeds(math.nan, 0.0)) is AckResult.REJECTED_ESTOP
    # Other commands still work while latched.
    assert model.handle(SetLamp(40)) is AckResult.OK
    assert model.handle(Heartbeat(1)) is AckResult.OK
    _run(model, 2_500 * MS)
    assert model.estop_latched
    assert not model.moving
    status = _status(model)
    assert status.estop_latched == 1
    assert status.fault_flags & Fault.ESTOP
    assert status.lamp_pct == 40

    assert model.handle(EstopRelease()) is AckResult.OK
    assert not model.estop_latched
    assert Fault.ESTOP not in model.faults
    # Released, but no motion until the next speed command.
    _run(model, 3_000 * MS)
    assert not model.moving
    assert model.handle(SetWheelSpeeds(0.3, 0.3)) is AckResult.OK
    _run(model, 4_000 * MS)
    assert model.track_mps == pytest.approx([0.3, 0.3], abs=1e-3)


# --- battery, tether, heating ---------------------------------------------------------------


def test_battery_drains_faster_while_driving() -> None:
    idle, driving = McuModel(), _started(1.0, 1.0)
    idle.step(0)
    _run(idle, 120_000 * MS, step_us=100 * MS)
    _run(driving, 120_000 * MS, step_us=100 * MS)
    p = driving.params
    assert idle.battery_percent == 100
    assert idle.charge_ah == pytest.approx(p.battery_capacity_ah - p.idle_current_a * 120 / 3600)
    # 1.2 A idle + 6 A per m/s on each track: 13.2 A, i.e. 0.44 Ah in two minutes.
    used_ah = p.battery_capacity_ah - driving.charge_ah
    assert used_ah == pytest.approx(13.2 * 120 / 3600, rel=0.01)
    assert driving.battery_percent == 98
    battery = [m for m in _run(driving, 121_000 * MS, step_us=100 * MS)
               if isinstance(m, Battery)][-1]
    assert battery.percent == 98
    assert battery.current_a == pytest.approx(13.2)
    assert p.battery_empty_v < battery.voltage_v < p.battery_full_v


def test_battery_percent_decreases_monotonically_while_driving() -> None:
    model = _started(1.0, 1.0)
    model.charge_ah = 0.5 * model.params.battery_capacity_ah + 0.01  # just above 50 %
    percents = [model.battery_percent]
    for t in range(1, 7):
        _run(model, t * 30_000 * MS, step_us=100 * MS)
        percents.append(model.battery_percent)
    assert percents == sorted(percents, reverse=True)
    assert percents[-1] < percents[0]


def test_low_battery_sets_fault() -> None:
    model = McuModel()
    model.charge_ah = 0.11 * model.params.battery_capacity_ah
    assert Fault.BATTERY_LOW not in model.faults
    model.charge_ah = 0.10 * model.params.battery_capacity_ah
    assert Fault.BATTERY_LOW in model.faults


def test_tether_grows_with_forward_driving() -> None:
    model = _started(0.5, 0.5)
    telemetry = _run(model, 4_000 * MS)
    expected_m = _distance(0.5, 4.0, model.params.motor_tau_s)
    assert model.tether_m == pytest.approx(expected_m, rel=1e-3)
    lengths = [m.length_m for m in telemetry if isinstance(m, Tether)]
    assert lengths == sorted(lengths)
    assert lengths[-1] == pytest.approx(model.tether_m)
    assert lengths[-1] > lengths[0]


def test_tether_counts_cable_stretch_and_never_goes_negative() -> None:
    stretched = _started(0.5, 0.5)
    stretched.env.tether_stretch = 0.05
    _run(stretched, 2_000 * MS)
    assert stretched.tether_m == pytest.approx(1.05 * _distance(0.5, 2.0, 0.12), rel=1e-3)
    reversing = _started(-0.5, -0.5)
    _run(reversing, 2_000 * MS)
    assert reversing.tether_m == 0.0


def test_turning_on_the_spot_pays_out_no_tether() -> None:
    model = McuModel()
    model.step(0)
    model.handle(SetTwist(0.0, 1.0))
    _run(model, 2_000 * MS)
    assert model.tether_m == pytest.approx(0.0, abs=1e-9)
    assert model.yaw_rad == pytest.approx(2.0 - 0.12 * (1 - math.exp(-2.0 / 0.12)), rel=1e-3)


def test_motors_heat_up_while_driving() -> None:
    model = _started(1.0, 1.0)
    motors = [m for m in _run(model, 60_000 * MS, step_us=10 * MS) if isinstance(m, Motors)]
    assert motors[0].left_temp_c == pytest.approx(model.params.ambient_c, abs=0.01)
    assert motors[-1].left_temp_c > motors[0].left_temp_c + 1.0
    assert motors[-1].left_current_a == pytest.approx(6.0)


# --- bad payloads ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [SetWheelSpeeds(math.nan, 0.0), SetWheelSpeeds(0.0, math.nan), SetWheelSpeeds(math.inf, 0.0),
     SetTwist(math.nan, 0.0), SetTwist(0.0, math.nan), SetTwist(0.0, -math.inf)],
    ids=repr,
)
def test_non_finite_speeds_are_bad_payload(command: SetWheelSpeeds | SetTwist) -> None:
    model = _started(0.4, 0.4)
    assert model.handle(command) is AckResult.BAD_PAYLOAD
    assert model.target_mps == [0.4, 0.4]


def test_lamp_and_tilt_ranges() -> None:
    model = McuModel()
    assert model.handle(SetLamp(101)) is AckResult.BAD_PAYLOAD
    assert model.handle(SetLamp(100)) is AckResult.OK
    assert model.handle(SetCameraTilt(2.0)) is AckResult.BAD_PAYLOAD
    assert model.handle(SetCameraTilt(math.nan)) is AckResult.BAD_PAYLOAD
    assert model.handle(SetCameraTilt(-0.5)) is AckResult.OK
    status = _status(model)
    assert (status.lamp_pct, status.camera_tilt_rad) == (100, -0.5)
    assert status.firmware_version == FIRMWARE_VERSION


# --- telemetry schedule ---------------------------------------------------------------------

_TYPES = {"encoders": Encoders, "imu": Imu, "battery": Battery, "tether": Tether,
          "motors": Motors, "gas": Gas, "status": Status}


@pytest.mark.parametrize("step_us", [MS, 3 * MS, 7 * MS])
def test_telemetry_rates_over_one_second(step_us: int) -> None:
    model = McuModel()
    counts: Counter[type] = Counter()
    for t in range(0, 1_000_000, step_us):
        model.step(t)
        counts.update(type(m) for m in model.due_telemetry())
    expected = {_TYPES[name]: 1_000_000 // period
                for name, period in McuParams().periods_us.items()}
    assert expected[Imu] == 100 and expected[Encoders] == 50
    for cls, n in expected.items():
        if step_us == MS:
            assert counts[cls] == n, cls.__name__
        else:
            assert abs(counts[cls] - n) <= 1, cls.__name__


def test_telemetry_is_stamped_with_model_time() -> None:
    model = McuModel()
    for t in range(0, 100 * MS, 5 * MS):
        model.step(t)
        for message in model.due_telemetry():
            assert not isinstance(message, Ack)
            assert message.stamp_us == t


def test_request_status_sends_one_at_once() -> None:
    model = McuModel()
    _run(model, 100 * MS)
    assert not [m for m in model.due_telemetry() if isinstance(m, Status)]
    assert model.handle(RequestStatus()) is AckResult.OK
    statuses = [m for m in model.due_telemetry() if isinstance(m, Status)]
    assert [s.stamp_us for s in statuses] == [100 * MS]


def test_imu_sees_gravity_and_yaw_rate() -> None:
    model = McuModel()
    model.step(0)
    model.handle(SetTwist(0.0, 0.8))
    imus = [m for m in _run(model, 1_000 * MS) if isinstance(m, Imu)]
    gz = sum(m.gyro_z_radps for m in imus[-20:]) / 20
    az = sum(m.accel_z_mps2 for m in imus[-20:]) / 20
    assert gz == pytest.approx(0.8, abs=0.01)
    assert az == pytest.approx(9.80665, abs=0.02)
    last = imus[-1]
    norm = math.sqrt(last.quat_x**2 + last.quat_y**2 + last.quat_z**2 + last.quat_w**2)
    assert norm == pytest.approx(1.0)
