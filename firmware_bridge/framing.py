"""Frames on the wire: ``0x00 | COBS(header | payload | crc16) | 0x00``.

Header (little-endian): protocol version ``u8``, message id ``u8``, sequence number ``u16``.
The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over header and payload, stored
little-endian. A zero byte opens and closes every frame, so a receiver that joins mid-stream
or sees line noise is back in step at the next frame.
"""

from __future__ import annotations

import struct
from binascii import crc_hqx
from dataclasses import dataclass
from typing import NamedTuple

from firmware_bridge.cobs import CobsError, cobs_decode, cobs_encode

PROTOCOL_VERSION = 1
DELIMITER = b"\x00"
HEADER = struct.Struct("<BBH")
CRC = struct.Struct("<H")
MAX_PAYLOAD_BYTES = 240
# Header + payload + CRC; COBS adds one byte per started 254-byte block: 1 byte here.
MAX_FRAME_BYTES = HEADER.size + MAX_PAYLOAD_BYTES + CRC.size
MAX_ENCODED_BYTES = MAX_FRAME_BYTES + 1
_MIN_FRAME_BYTES = HEADER.size + CRC.size
_CRC_INIT = 0xFFFF


class Frame(NamedTuple):
    """One frame that passed its CRC and version check."""

    msg_id: int
    seq: int
    payload: bytes


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (check value of b"123456789" is 0x29B1)."""
    return crc_hqx(data, _CRC_INIT)


def encode_frame(msg_id: int, seq: int, payload: bytes = b"") -> bytes:
    """Frame ``payload`` as message ``msg_id`` with sequence number ``seq`` (wrapped to u16)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if not 0 <= msg_id <= 0xFF:
        raise ValueError(f"message id {msg_id} does not fit in a byte")
    body = HEADER.pack(PROTOCOL_VERSION, msg_id, seq & 0xFFFF) + payload
    body += CRC.pack(crc16(body))
    return DELIMITER + cobs_encode(body) + DELIMITER


@dataclass
class DecoderStats:
    """Counters of what a ``FrameDecoder`` has accepted and thrown away."""

    frames: int = 0
    crc_errors: int = 0
    cobs_errors: int = 0
    short_frames: int = 0
    oversized: int = 0
    version_errors: int = 0

    @property
    def rejected(self) -> int:
        """Frames thrown away for any reason."""
        return (self.crc_errors + self.cobs_errors + self.short_frames + self.oversized
                + self.version_errors)


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, get back the frames that are whole.

    It never raises on bad input: corrupt, truncated or oversized frames are counted in
    ``stats`` and dropped, and decoding resumes at the next delimiter.
    """

    def __init__(self) -> None:
        self.stats = DecoderStats()
        self._pending = b""
        self._discarding = False

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data`` and return the frames it completed, in order."""
        chunks = (self._pending + data).split(DELIMITER)
        self._pending = chunks.pop()
        frames: list[Frame] = []
        for chunk in chunks:
            if self._discarding:
                # The rest of an oversized run of bytes: drop it up to this delimiter.
                self._discarding = False
                continue
            if chunk:
                frame = self._decode(chunk)
                if frame is not None:
                    frames.append(frame)
        if len(self._pending) > MAX_ENCODED_BYTES:
            self.stats.oversized += 1
            self._pending = b""
            self._discarding = True
        return frames

    def _decode(self, chunk: bytes) -> Frame | None:
        if len(chunk) > MAX_ENCODED_BYTES:
            self.stats.oversized += 1
            return None
        try:
            body = cobs_decode(chunk)
        except CobsError:
            self.stats.cobs_errors += 1
            return None
        if len(body) < _MIN_FRAME_BYTES:
            self.stats.short_frames += 1
            return None
        if len(body) > MAX_FRAME_BYTES:
            self.stats.oversized += 1
            return None
        if crc_hqx(body[:-2], _CRC_INIT) != CRC.unpack_from(body, len(body) - 2)[0]:
            self.stats.crc_errors += 1
            return None
        version, msg_id, seq = HEADER.unpack_from(body)
        if version != PROTOCOL_VERSION:
            self.stats.version_errors += 1
            return None
        self.stats.frames += 1
        return Frame(msg_id, seq, body[HEADER.size : -2])
