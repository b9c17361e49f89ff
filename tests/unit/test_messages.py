"""Messages: ids and payload layouts as specified, round trip of every type, decode errors.

``SPEC`` is the wire format written out independently of ``messages.py`` (it mirrors the
tables of docs/firmware_protocol.md), so a layout change that is not also made in the
specification fails here.
"""

from __future__ import annotations

import math
import struct
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.errors import BridgeError, MessageDecodeError
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
    Message,
    Motors,
    MsgId,
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
    message_id,
    payload_size,
)

# class: (id, one struct code per field, little-endian, no padding)
SPEC: dict[type[Message], tuple[int, str]] = {
    Heartbeat: (0x01, "I"),
    SetWheelSpeeds: (0x02, "ff"),
    SetTwist: (0x03, "ff"),
    EstopLatch: (0x04, ""),
    EstopRelease: (0x05, ""),
    SetLamp: (0x06, "B"),
    SetCameraTilt: (0x07, "f"),
    RequestStatus: (0x08, ""),
    Ack: (0x80, "HB"),
    Encoders: (0x81, "Qii"),
    Imu: (0x82, "Q" + "f" * 10),
    Battery: (0x83, "QffB"),
    Tether: (0x84, "Qf"),
    Motors: (0x85, "Qffff"),
    Gas: (0x86, "Qffff"),
    Status: (0x87, "QIBBfffH"),
}
SIZES = {Heartbeat: 4, SetWheelSpeeds: 8, SetTwist: 8, EstopLatch: 0, EstopRelease: 0, SetLamp: 1,
         SetCameraTilt: 4, RequestStatus: 0, Ack: 3, Encoders: 16, Imu: 48, Battery: 17,
         Tether: 12, Motors: 24, Gas: 24, Status: 28}

_INT_RANGES = {"B": (0, 2**8 - 1), "H": (0, 2**16 - 1), "I": (0, 2**32 - 1),
               "Q": (0, 2**64 - 1), "i": (-(2**31), 2**31 - 1)}


def _field_strategy(code: str, allow_nan: bool = False) -> st.SearchStrategy[typing.Any]:
    if code == "f":
        return st.floats(width=32, allow_nan=allow_nan)
    low, high = _INT_RANGES[code]
    return st.integers(low, high)


def _message_strategy(cls: type[Message], allow_nan: bool = False) -> st.SearchStrategy[Message]:
    codes = SPEC[cls][1]
    return st.tuples(*(_field_strategy(c, allow_nan) for c in codes)).map(lambda v: cls(*v))


ALL_CLASSES = list(SPEC)


def test_spec_covers_every_message_class_and_id() -> None:
    classes = set(typing.get_args(Command)) | set(typing.get_args(Telemetry))
    assert classes == set(SPEC)
    assert {int(i) for i in MsgId} == {msg_id for msg_id, _ in SPEC.values()}


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_layout_matches_spec(cls: type[Message]) -> None:
    msg_id, codes = SPEC[cls]
    assert len(codes) == len(cls._fields)
    assert payload_size(MsgId(msg_id)) == struct.calcsize("<" + codes) == SIZES[cls]
    assert SIZES[cls] <= 240
    # Commands below 0x80, telemetry from 0x80.
    assert (msg_id < TELEMETRY_ID_MIN) == (cls in typing.get_args(Command))


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
@settings(deadline=None, max_examples=40)
@given(data=st.data(), seq=st.integers(0, 0xFFFF))
def test_round_trip_every_message(cls: type[Message], data: st.DataObject, seq: int) -> None:
    message = data.draw(_message_strategy(cls), label="message")
    wire = encode_message(message, seq)
    frames = FrameDecoder().feed(wire)
    msg_id, codes = SPEC[cls]
    # The payload is exactly the little-endian packing of the fields, in declaration order.
    assert frames == [Frame(msg_id, seq, struct.pack("<" + codes, *message))]
    decoded = decode_message(frames[0])
    assert type(decoded) is cls
    assert decoded == message
    assert message_id(message) == msg_id


@pytest.mark.parametrize("cls", [c for c in ALL_CLASSES if "f" in SPEC[c][1]],
                         ids=lambda c: c.__name__)
def test_nan_and_infinity_survive(cls: type[Message]) -> None:
    codes = SPEC[cls][1]
    specials = iter([math.nan, math.inf, -math.inf] * 4)
    values: list[typing.Any] = [next(specials) if c == "f" else 1 for c in codes]
    message = cls(*values)
    decoded = decode_message(FrameDecoder().feed(encode_message(message, 1))[0])
    for code, sent, got in zip(codes, message, decoded, strict=True):
        if code == "f" and math.isnan(sent):
            assert math.isnan(got)
        else:
            assert got == sent


def test_floats_are_rounded_to_float32() -> None:
    decoded = decode_message(FrameDecoder().feed(encode_message(SetTwist(0.3, 0.1), 1))[0])
    assert decoded == SetTwist(struct.unpack("<f", struct.pack("<f", 0.3))[0],
                               struct.unpack("<f", struct.pack("<f", 0.1))[0])
    assert decoded != SetTwist(0.3, 0.1)


@pytest.mark.parametrize(
    ("message", "seq", "wire"),
    [
        (SetTwist(0.3, 0.0), 1, "00 04 01 03 01 05 9a 99 99 3e 01 01 01 03 34 33 00"),
        (Ack(1, AckResult.OK), 1, "00 04 01 80 01 02 01 01 02 ee 01 00"),
        (Heartbeat(1000), 2, "00 04 01 01 02 03 e8 03 01 03 b5 1d 00"),
    ],
    ids=["set_twist", "ack", "heartbeat"],
)
def test_worked_examples(message: Message, seq: int, wire: str) -> None:
    # docs/firmware_protocol.md, section 9.
    assert encode_message(message, seq) == bytes.fromhex(wire)


def test_enums_on_the_wire() -> None:
    assert [(r.name, int(r)) for r in AckResult] == [
        ("OK", 0), ("REJECTED_ESTOP", 1), ("BAD_PAYLOAD", 2), ("UNKNOWN_MESSAGE", 3)]
    assert [(f.name, int(f)) for f in Fault if f] == [
        ("WATCHDOG", 0x01), ("ESTOP", 0x02), ("MOTOR_OVERCURRENT", 0x04),
        ("MOTOR_OVERTEMP", 0x08), ("BATTERY_LOW", 0x10), ("IMU_FAULT", 0x20),
        ("TETHER_FAULT", 0x40), ("RX_ERRORS", 0x80)]


# --- errors ---------------------------------------------------------------------------------

_KNOWN = {int(i) for i in MsgId}


@settings(deadline=None, max_examples=100)
@given(st.integers(0, 255).filter(lambda i: i not in _KNOWN), st.binary(max_size=64),
       st.integers(0, 0xFFFF))
def test_unknown_id_raises_with_id_in_text(msg_id: int, payload: bytes, seq: int) -> None:
    with pytest.raises(MessageDecodeError) as err:
        decode_message(Frame(msg_id, seq, payload))
    assert f"0x{msg_id:02X}" in str(err.value)
    assert f"seq {seq}" in str(err.value)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
@settings(deadline=None, max_examples=20)
@given(size=st.integers(0, 240))
def test_wrong_payload_size_raises(cls: type[Message], size: int) -> None:
    expected = SIZES[cls]
    if size == expected:
        size += 1
    msg_id = SPEC[cls][0]
    with pytest.raises(MessageDecodeError) as err:
        decode_message(Frame(msg_id, 5, bytes(size)))
    text = str(err.value)
    # The text names the message (by class), the sizes and the sequence number.
    assert cls.__name__ in text
    assert f"{size} bytes" in text and f"expected {expected}" in text
    assert "seq 5" in text


def test_wrong_payload_size_error_has_message_id() -> None:
    with pytest.raises(MessageDecodeError, match="0x03"):
        decode_message(Frame(0x03, 5, bytes(7)))


def test_decode_error_is_a_bridge_error() -> None:
    assert issubclass(MessageDecodeError, BridgeError)


@pytest.mark.parametrize(
    "message",
    [SetLamp(256), SetLamp(-1), Heartbeat(2**32), Heartbeat(-1), Ack(0x10000, 0), Ack(1, 256),
     Encoders(0, 2**31, 0), Encoders(-1, 0, 0), Status(0, 0, 0, 0, 0.0, 0.0, 0.0, 0x10000)],
    ids=repr,
)
def test_out_of_range_field_raises_value_error(message: Message) -> None:
    with pytest.raises(ValueError, match="cannot pack"):
        encode_message(message, 1)


def test_sequence_number_wraps() -> None:
    assert FrameDecoder().feed(encode_message(Heartbeat(7), 0x10000 + 3)) == [
        Frame(0x01, 3, struct.pack("<I", 7))]
