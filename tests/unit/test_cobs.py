"""COBS: known vectors, round trip on arbitrary data, no zero in the output, malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.cobs import CobsError, cobs_decode, cobs_encode

# Runs of one byte value (zero or not) of up to 600 bytes, so that blocks longer than the
# 254-byte COBS limit, blocks of exactly 254 and runs of zeros all come up.
_runs = st.lists(
    st.tuples(st.integers(0, 600), st.integers(0, 255)).map(lambda r: bytes([r[1]]) * r[0]),
    max_size=8,
).map(b"".join)
_payloads = st.one_of(st.binary(max_size=1200), _runs)
_nonzero = st.lists(st.integers(1, 255), min_size=0, max_size=1100).map(bytes)


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        # Vectors from Cheshire & Baker / the usual COBS references.
        (b"", b"\x01"),
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 254)), b"\xfe" + bytes(range(1, 254))),
        (bytes(range(0, 254)), b"\x01\xfe" + bytes(range(1, 254))),
        (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    ],
)
def test_known_vectors(raw: bytes, encoded: bytes) -> None:
    assert cobs_encode(raw) == encoded
    assert cobs_decode(encoded) == raw


@settings(deadline=None, max_examples=300)
@given(_payloads)
def test_round_trip(data: bytes) -> None:
    assert cobs_decode(cobs_encode(data)) == data


@settings(deadline=None, max_examples=300)
@given(_payloads)
def test_encoded_has_no_zero_and_bounded_overhead(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    # One code byte, plus at most one more per 254 bytes.
    assert len(data) + 1 <= len(encoded) <= len(data) + 1 + len(data) // 254


@settings(deadline=None, max_examples=200)
@given(_nonzero)
def test_long_runs_without_zeros(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert cobs_decode(encoded) == data
    # Every full 254-byte block is introduced by the 0xFF code.
    assert encoded.count(0xFF) >= len(data) // 254


def test_frame_sized_data_costs_exactly_one_byte() -> None:
    # Up to 253 bytes (every frame of the protocol), COBS adds exactly one byte whatever the data.
    for data in (bytes(246), b"\xff" * 246, bytes(range(246)), b""):
        assert len(cobs_encode(data)) == len(data) + 1


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x00",  # a zero code byte
        b"\x02\x11\x00\x01",  # a zero inside
        b"\x05\x11\x22",  # block runs past the end
        b"\x03\x11\x22\x04\x33",  # second block runs past the end
        b"\xff" + b"\x01" * 10,  # 0xFF block needs 254 data bytes
    ],
)
def test_malformed_input_raises_cobs_error(encoded: bytes) -> None:
    with pytest.raises(CobsError):
        cobs_decode(encoded)


def test_cobs_error_is_a_value_error() -> None:
    assert issubclass(CobsError, ValueError)


@settings(deadline=None, max_examples=500)
@given(st.binary(max_size=600))
def test_decode_of_arbitrary_bytes_returns_or_raises_cobs_error(data: bytes) -> None:
    try:
        decoded = cobs_decode(data)
    except CobsError:
        return
    # What decodes is the canonical encoding of what it decodes to, when no 0xFF block is
    # involved (COBS is a bijection on short packets).
    if data and 0 not in data and 0xFF not in data:
        assert cobs_encode(decoded) == data
