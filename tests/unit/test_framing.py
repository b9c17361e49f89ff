"""Framing: CRC, frame layout, round trip in any chunking, and a decoder that survives line noise.

The fuzz tests compare what ``FrameDecoder`` delivers with the frames actually sent. A corrupt
frame is only ever delivered if its corruption happens to give a matching CRC (about 1 in
65536); ``_reference_frames`` (an independent, bit-wise re-implementation of the spec) finds
those rare streams and ``assume`` skips them, so the tests are exact and never flaky.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from firmware_bridge.cobs import cobs_encode
from firmware_bridge.framing import (
    DELIMITER,
    MAX_ENCODED_BYTES,
    MAX_FRAME_BYTES,
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    DecoderStats,
    Frame,
    FrameDecoder,
    crc16,
    encode_frame,
)

FUZZ = settings(deadline=None, max_examples=150)

# --- an independent reference of the spec ---------------------------------------------------


def _crc_ref(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, bit by bit: poly 0x1021, init 0xFFFF, no reflection, no xor-out."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _cobs_decode_ref(chunk: bytes) -> bytes | None:
    out = bytearray()
    i = 0
    while i < len(chunk):
        code = chunk[i]
        if code == 0 or i + code > len(chunk):
            return None
        out += chunk[i + 1 : i + code]
        i += code
        if code != 0xFF and i < len(chunk):
            out.append(0)
    return bytes(out)


def _reference_frames(stream: bytes) -> list[Frame]:
    """Frames a conforming receiver finds in ``stream`` (a trailing unterminated part is not)."""
    frames = []
    for chunk in stream.split(b"\x00")[:-1]:
        if not chunk or len(chunk) > MAX_ENCODED_BYTES:
            continue
        body = _cobs_decode_ref(chunk)
        if body is None or len(body) < 6:
            continue
        if _crc_ref(body[:-2]) != body[-2] | body[-1] << 8 or body[0] != PROTOCOL_VERSION:
            continue
        frames.append(Frame(body[1], body[2] | body[3] << 8, body[4:-2]))
    return frames


# --- strategies -----------------------------------------------------------------------------

_frames = st.builds(
    Frame,
    msg_id=st.integers(0, 255),
    seq=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=MAX_PAYLOAD_BYTES),
)
_small_frames = st.builds(
    Frame, msg_id=st.integers(0, 255), seq=st.integers(0, 0xFFFF), payload=st.binary(max_size=40)
)


def _encode(frame: Frame) -> bytes:
    return encode_frame(frame.msg_id, frame.seq, frame.payload)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _feed_all(decoder: FrameDecoder, pieces: list[bytes]) -> list[Frame]:
    out: list[Frame] = []
    for piece in pieces:
        out += decoder.feed(piece)
    return out


# --- CRC ------------------------------------------------------------------------------------


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


@settings(deadline=None, max_examples=200)
@given(st.binary(max_size=300))
def test_crc_matches_bitwise_reference(data: bytes) -> None:
    assert crc16(data) == _crc_ref(data)


# --- encoding -------------------------------------------------------------------------------


def test_constants() -> None:
    assert MAX_PAYLOAD_BYTES == 240
    assert MAX_FRAME_BYTES == 4 + MAX_PAYLOAD_BYTES + 2
    # COBS adds one byte to anything shorter than 254 bytes; the limit leaves one to spare.
    assert len(cobs_encode(bytes(MAX_FRAME_BYTES))) <= MAX_ENCODED_BYTES


def test_worked_example_set_twist() -> None:
    # docs/firmware_protocol.md: SetTwist(0.3, 0.0) with sequence number 1.
    payload = struct.pack("<ff", 0.3, 0.0)
    assert encode_frame(0x03, 1, payload) == bytes.fromhex(
        "00 04 01 03 01 05 9a 99 99 3e 01 01 01 03 34 33 00"
    )


@settings(deadline=None, max_examples=200)
@given(_frames)
def test_frame_layout(frame: Frame) -> None:
    wire = _encode(frame)
    assert wire[:1] == DELIMITER and wire[-1:] == DELIMITER
    assert 0 not in wire[1:-1]
    assert len(wire) - 2 <= MAX_ENCODED_BYTES
    body = _cobs_decode_ref(wire[1:-1])
    assert body is not None
    assert body[0] == PROTOCOL_VERSION
    assert body[1] == frame.msg_id
    assert body[2:4] == frame.seq.to_bytes(2, "little")
    assert body[4:-2] == frame.payload
    assert body[-2:] == _crc_ref(body[:-2]).to_bytes(2, "little")


def test_sequence_number_wraps_to_u16() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(1, 0x1_0005)) == [Frame(1, 5, b"")]
    assert decoder.feed(encode_frame(1, -1)) == [Frame(1, 0xFFFF, b"")]


def test_oversized_payload_rejected() -> None:
    encode_frame(1, 0, bytes(MAX_PAYLOAD_BYTES))  # the limit itself is fine
    with pytest.raises(ValueError, match="exceeds 240"):
        encode_frame(1, 0, bytes(MAX_PAYLOAD_BYTES + 1))


# --- round trip -----------------------------------------------------------------------------


@settings(deadline=None, max_examples=150)
@given(st.lists(_frames, min_size=1, max_size=6), st.data())
def test_round_trip_in_any_chunking(frames: list[Frame], data: st.DataObject) -> None:
    stream = b"".join(_encode(f) for f in frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts")
    decoder = FrameDecoder()
    assert _feed_all(decoder, _split(stream, cuts)) == frames
    assert decoder.stats == DecoderStats(frames=len(frames))


def test_round_trip_byte_by_byte() -> None:
    frames = [Frame(0x82, 7, bytes(range(48))), Frame(0x03, 8, b""), Frame(0xFF, 0xFFFF, b"\0")]
    stream = b"".join(_encode(f) for f in frames)
    decoder = FrameDecoder()
    assert _feed_all(decoder, [bytes([b]) for b in stream]) == frames


def test_back_to_back_delimiters_are_not_errors() -> None:
    decoder = FrameDecoder()
    frame = Frame(0x01, 1, b"\x01\x02")
    assert decoder.feed(b"\x00" * 10 + _encode(frame) + b"\x00" * 10) == [frame]
    assert decoder.stats.rejected == 0


# --- each reason of rejection is counted ----------------------------------------------------


def _body(version: int, msg_id: int, seq: int, payload: bytes) -> bytes:
    body = struct.pack("<BBH", version, msg_id, seq) + payload
    return body + struct.pack("<H", _crc_ref(body))


def test_crc_error_counted() -> None:
    body = bytearray(_body(PROTOCOL_VERSION, 3, 9, b"\x11\x22\x33"))
    body[5] ^= 0x01
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00" + cobs_encode(bytes(body)) + b"\x00") == []
    assert decoder.stats == DecoderStats(crc_errors=1)


def test_cobs_error_counted() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x09\x11\x22\x00") == []
    assert decoder.stats == DecoderStats(cobs_errors=1)


def test_short_frame_counted() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00" + cobs_encode(b"\x01\x02\x03\x04\x05") + b"\x00") == []
    assert decoder.stats == DecoderStats(short_frames=1)


def test_version_error_counted() -> None:
    decoder = FrameDecoder()
    chunk = cobs_encode(_body(PROTOCOL_VERSION + 1, 3, 9, b""))
    assert decoder.feed(b"\x00" + chunk + b"\x00") == []
    assert decoder.stats == DecoderStats(version_errors=1)


def test_frame_longer_than_limit_is_oversized_even_with_good_crc() -> None:
    # A valid CRC does not matter: anything longer than MAX_ENCODED_BYTES is dropped unread.
    chunk = cobs_encode(_body(PROTOCOL_VERSION, 3, 9, b"\x01" * (MAX_PAYLOAD_BYTES + 2)))
    assert len(chunk) > MAX_ENCODED_BYTES
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00" + chunk + b"\x00") == []
    assert decoder.stats == DecoderStats(oversized=1)


# --- fuzzing --------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2000), st.data())
def test_random_bytes_never_raise_and_match_reference(noise: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(noise)), max_size=10), label="cuts")
    decoder = FrameDecoder()
    delivered = _feed_all(decoder, _split(noise, cuts))
    assert delivered == _reference_frames(noise)
    assert decoder.stats.frames == len(delivered)


@FUZZ
@given(
    st.lists(_small_frames, min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), min_size=1, max_size=4),
    st.data(),
)
def test_bit_flips_never_deliver_a_corrupt_frame(
    frames: list[Frame], flips: list[tuple[int, int]], data: st.DataObject
) -> None:
    wires = [_encode(f) for f in frames]
    clean = b"".join(wires)
    stream = bytearray(clean)
    for position, bit in flips:
        stream[position % len(stream)] ^= 1 << bit
    changed = [i for i, (a, b) in enumerate(zip(clean, stream, strict=True)) if a != b]
    starts = [sum(len(w) for w in wires[:i]) for i in range(len(wires))]
    # Frames with a changed byte in their span, opening and closing delimiters included.
    hit = {max(i for i, s in enumerate(starts) if s <= pos) for pos in changed}
    tail = Frame(0x42, 0xBEEF, b"after the noise")
    stream += _encode(tail)
    assume(set(_reference_frames(bytes(stream))) <= {*frames, tail})  # no CRC collision

    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10), label="cuts")
    decoder = FrameDecoder()
    delivered = _feed_all(decoder, _split(bytes(stream), cuts))

    intact = [f for i, f in enumerate(frames) if i not in hit]
    assert delivered == [*intact, tail]  # every intact frame, nothing else, in order
    assert decoder.stats.frames == len(delivered)
    assert (decoder.stats.rejected >= 1) == bool(hit)


@FUZZ
@given(st.lists(st.tuples(_small_frames, st.booleans(), st.integers(1, 200)), min_size=1,
                max_size=6))
def test_truncated_frames_are_dropped_and_counted(
    plan: list[tuple[Frame, bool, int]],
) -> None:
    stream = b""
    intact: list[Frame] = []
    truncated = 0
    for frame, cut, keep in plan:
        wire = _encode(frame)
        if cut:
            # Keep the opening delimiter and 1 .. len-1 bytes of the COBS block.
            stream += wire[: 1 + 1 + keep % (len(wire) - 3)]
            truncated += 1
        else:
            stream += wire
            intact.append(frame)
    tail = Frame(0x80, 1, b"ok")
    stream += _encode(tail)
    assume(set(_reference_frames(stream)) <= {f for f, _, _ in plan} | {tail})

    decoder = FrameDecoder()
    delivered = decoder.feed(stream)
    assert delivered == [*intact, tail]
    assert decoder.stats.rejected == truncated


@FUZZ
@given(st.lists(st.tuples(_frames, st.integers(1, 3)), min_size=1, max_size=5), st.data())
def test_duplicated_frames_are_all_delivered(
    plan: list[tuple[Frame, int]], data: st.DataObject
) -> None:
    # The decoder passes duplicates on; dropping a repeated sequence number is the client's job.
    sent = [frame for frame, copies in plan for _ in range(copies)]
    stream = b"".join(_encode(f) for f in sent)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10), label="cuts")
    decoder = FrameDecoder()
    assert _feed_all(decoder, _split(stream, cuts)) == sent
    assert decoder.stats.rejected == 0


_garbage = st.one_of(
    st.binary(max_size=300),
    st.binary(min_size=1, max_size=40).map(lambda b: b * 20),  # long runs, often without zeros
    st.integers(1, 255).map(lambda b: bytes([b]) * 700),  # oversized: no delimiter at all
)


@FUZZ
@given(st.lists(st.tuples(_garbage, _frames), min_size=1, max_size=4), _garbage, st.data())
def test_garbage_between_frames_resynchronises_at_next_frame(
    plan: list[tuple[bytes, Frame]], trailing: bytes, data: st.DataObject
) -> None:
    sent = [frame for _, frame in plan]
    stream = b"".join(garbage + _encode(frame) for garbage, frame in plan) + trailing
    # No run of garbage happens to hold a frame with a good CRC.
    assume(not any(_reference_frames(b"\x00" + g + b"\x00") for g, _ in plan))
    assume(not _reference_frames(b"\x00" + trailing + b"\x00"))

    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")
    decoder = FrameDecoder()
    # The first complete frame after each run of garbage is delivered.
    assert _feed_all(decoder, _split(stream, cuts)) == sent

    # Every non-empty run between delimiters inside the garbage was counted as rejected.
    junk_chunks = sum(1 for g, _ in plan for c in g.split(b"\x00") if c)
    assert decoder.stats.rejected >= junk_chunks
    assert decoder.stats.frames == len(sent)


@settings(deadline=None, max_examples=50)
@given(
    st.integers(MAX_ENCODED_BYTES + 1, 5000),
    st.integers(1, 255),
    st.lists(st.integers(0, 5000), max_size=8),
)
def test_oversized_input_without_delimiters_is_dropped_then_decoding_resumes(
    length: int, fill: int, cuts: list[int]
) -> None:
    frame = Frame(0x81, 77, bytes(range(16)))
    stream = b"\x00" + bytes([fill]) * length + _encode(frame) + _encode(frame)
    decoder = FrameDecoder()
    assert _feed_all(decoder, _split(stream, cuts)) == [frame, frame]
    assert decoder.stats.oversized >= 1
    assert decoder.stats.crc_errors == decoder.stats.cobs_errors == 0


def test_oversized_run_split_over_many_feeds() -> None:
    frame = Frame(0x85, 3, b"\x00" * 24)
    decoder = FrameDecoder()
    for _ in range(100):
        assert decoder.feed(b"\x55" * 100) == []
    assert decoder.stats.oversized >= 1
    # The tail of the run up to the next delimiter is dropped too, and not decoded as a frame.
    assert decoder.feed(b"\x55" * 10 + _encode(frame)) == [frame]
    assert decoder.feed(_encode(frame)) == [frame]
    assert decoder.stats.cobs_errors == decoder.stats.crc_errors == 0


def test_frame_after_tail_of_oversized_run_in_same_feed() -> None:
    frame = Frame(0x84, 4, b"\x01\x02\x03\x04")
    decoder = FrameDecoder()
    assert decoder.feed(b"\x07" * (MAX_ENCODED_BYTES + 1)) == []
    assert decoder.feed(b"\x07" * 3 + _encode(frame) + b"\x07" * 5 + _encode(frame)) == [
        frame,
        frame,
    ]
