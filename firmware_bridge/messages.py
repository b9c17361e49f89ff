"""Typed messages of the crawler MCU protocol and their little-endian payload layouts.

Commands (host -> MCU) have ids below 0x80 and are each answered by an ``Ack`` carrying the
command's sequence number. Telemetry (MCU -> host) has ids from 0x80. Timestamps are the
MCU's monotonic clock in microseconds (``stamp_us``); SI units everywhere else.
"""

from __future__ import annotations

import struct
from enum import IntEnum, IntFlag
from typing import NamedTuple, TypeAlias

from firmware_bridge.errors import MessageDecodeError
from firmware_bridge.framing import Frame, encode_frame


class MsgId(IntEnum):
    """Message ids on the wire."""

    HEARTBEAT = 0x01
    SET_WHEEL_SPEEDS = 0x02
    SET_TWIST = 0x03
    ESTOP_LATCH = 0x04
    ESTOP_RELEASE = 0x05
    SET_LAMP = 0x06
    SET_CAMERA_TILT = 0x07
    REQUEST_STATUS = 0x08
    ACK = 0x80
    ENCODERS = 0x81
    IMU = 0x82
    BATTERY = 0x83
    TETHER = 0x84
    MOTORS = 0x85
    GAS = 0x86
    STATUS = 0x87


TELEMETRY_ID_MIN = 0x80
"""Ids below are commands (host -> MCU), ids from here on are telemetry (MCU -> host)."""


class AckResult(IntEnum):
    """Result code of an ``Ack``."""

    OK = 0
    REJECTED_ESTOP = 1
    BAD_PAYLOAD = 2
    UNKNOWN_MESSAGE = 3


class Fault(IntFlag):
    """Fault flags reported in ``Status.fault_flags``."""

    NONE = 0
    WATCHDOG = 1 << 0
    ESTOP = 1 << 1
    MOTOR_OVERCURRENT = 1 << 2
    MOTOR_OVERTEMP = 1 << 3
    BATTERY_LOW = 1 << 4
    IMU_FAULT = 1 << 5
    TETHER_FAULT = 1 << 6
    RX_ERRORS = 1 << 7


# --- commands -------------------------------------------------------------------------------


class Heartbeat(NamedTuple):
    """Keeps the MCU watchdog (300 ms) from stopping the motors."""

    host_time_ms: int


class SetWheelSpeeds(NamedTuple):
    """Target track speeds, positive forward."""

    left_mps: float
    right_mps: float


class SetTwist(NamedTuple):
    """Target body velocity; the MCU applies skid-steer kinematics."""

    linear_mps: float
    angular_radps: float


class EstopLatch(NamedTuple):
    """Stop the motors and keep them stopped until ``EstopRelease``."""


class EstopRelease(NamedTuple):
    """Release a latched e-stop; the motors stay at zero until the next speed command."""


class SetLamp(NamedTuple):
    """Lamp brightness, 0 to 100 %."""

    brightness_pct: int


class SetCameraTilt(NamedTuple):
    """Camera tilt, positive up."""

    tilt_rad: float


class RequestStatus(NamedTuple):
    """Ask for an immediate ``Status``."""


# --- telemetry ------------------------------------------------------------------------------


class Ack(NamedTuple):
    """Acknowledges the command with sequence number ``acked_seq``."""

    acked_seq: int
    result: int


class Encoders(NamedTuple):
    """Cumulative encoder ticks of both tracks (signed, wrap at 2**31)."""

    stamp_us: int
    left_ticks: int
    right_ticks: int


class Imu(NamedTuple):
    """Body-frame IMU sample with the MCU's AHRS orientation (quaternion x, y, z, w)."""

    stamp_us: int
    accel_x_mps2: float
    accel_y_mps2: float
    accel_z_mps2: float
    gyro_x_radps: float
    gyro_y_radps: float
    gyro_z_radps: float
    quat_x: float
    quat_y: float
    quat_z: float
    quat_w: float


class Battery(NamedTuple):
    """Battery pack state."""

    stamp_us: int
    voltage_v: float
    current_a: float
    percent: int


class Tether(NamedTuple):
    """Cable counter: tether paid out from the drum."""

    stamp_us: int
    length_m: float


class Motors(NamedTuple):
    """Motor currents and winding temperatures."""

    stamp_us: int
    left_current_a: float
    right_current_a: float
    left_temp_c: float
    right_temp_c: float


class Gas(NamedTuple):
    """Gas sensor head readings."""

    stamp_us: int
    o2_pct: float
    ch4_pct_vol: float
    h2s_ppm: float
    co_ppm: float


class Status(NamedTuple):
    """Slow status: faults, e-stop, lamp, inclination, firmware version."""

    stamp_us: int
    fault_flags: int
    estop_latched: int
    lamp_pct: int
    roll_rad: float
    pitch_rad: float
    camera_tilt_rad: float
    firmware_version: int


Command: TypeAlias = (
    Heartbeat | SetWheelSpeeds | SetTwist | EstopLatch | EstopRelease | SetLamp
    | SetCameraTilt | RequestStatus
)
Telemetry: TypeAlias = Ack | Encoders | Imu | Battery | Tether | Motors | Gas | Status
Message: TypeAlias = Command | Telemetry

# One row per message: id, class, payload layout. The protocol doc's tables mirror this.
_LAYOUTS: dict[MsgId, tuple[type[Message], struct.Struct]] = {
    MsgId.HEARTBEAT: (Heartbeat, struct.Struct("<I")),
    MsgId.SET_WHEEL_SPEEDS: (SetWheelSpeeds, struct.Struct("<ff")),
    MsgId.SET_TWIST: (SetTwist, struct.Struct("<ff")),
    MsgId.ESTOP_LATCH: (EstopLatch, struct.Struct("<")),
    MsgId.ESTOP_RELEASE: (EstopRelease, struct.Struct("<")),
    MsgId.SET_LAMP: (SetLamp, struct.Struct("<B")),
    MsgId.SET_CAMERA_TILT: (SetCameraTilt, struct.Struct("<f")),
    MsgId.REQUEST_STATUS: (RequestStatus, struct.Struct("<")),
    MsgId.ACK: (Ack, struct.Struct("<HB")),
    MsgId.ENCODERS: (Encoders, struct.Struct("<Qii")),
    MsgId.IMU: (Imu, struct.Struct("<Q10f")),
    MsgId.BATTERY: (Battery, struct.Struct("<QffB")),
    MsgId.TETHER: (Tether, struct.Struct("<Qf")),
    MsgId.MOTORS: (Motors, struct.Struct("<Q4f")),
    MsgId.GAS: (Gas, struct.Struct("<Q4f")),
    MsgId.STATUS: (Status, struct.Struct("<QIBBfffH")),
}
_DECODERS: dict[int, tuple[type[Message], struct.Struct]] = {
    int(msg_id): row for msg_id, row in _LAYOUTS.items()
}
_ENCODERS: dict[type[Message], tuple[int, struct.Struct]] = {
    cls: (int(msg_id), layout) for msg_id, (cls, layout) in _LAYOUTS.items()
}


def is_known_message(msg_id: int) -> bool:
    """Whether ``msg_id`` is a message of this protocol version."""
    return msg_id in _DECODERS


def payload_size(msg_id: MsgId) -> int:
    """Size in bytes of the payload of message ``msg_id``."""
    return _LAYOUTS[msg_id][1].size


def message_id(message: Message) -> MsgId:
    """Wire id of ``message``."""
    return MsgId(_ENCODERS[type(message)][0])


def encode_message(message: Message, seq: int) -> bytes:
    """Frame ``message`` with sequence number ``seq``, ready to write to the port."""
    msg_id, layout = _ENCODERS[type(message)]
    try:
        payload = layout.pack(*message)
    except struct.error as err:
        raise ValueError(f"cannot pack {message!r}: {err}") from err
    return encode_frame(msg_id, seq, payload)


def decode_message(frame: Frame) -> Message:
    """Parse the payload of ``frame`` into its typed message."""
    row = _DECODERS.get(frame.msg_id)
    if row is None:
        raise MessageDecodeError(f"unknown message id 0x{frame.msg_id:02X} (seq {frame.seq})")
    cls, layout = row
    if len(frame.payload) != layout.size:
        raise MessageDecodeError(
            f"{cls.__name__} (0x{frame.msg_id:02X}) payload is {len(frame.payload)} bytes, "
            f"expected {layout.size} (seq {frame.seq})"
        )
    return cls(*layout.unpack(frame.payload))
