"""A straightforward byte-at-a-time decoder of our frames: the benchmark's baseline.

This is how the protocol is usually first written in Python (a per-byte COBS state machine
and a bitwise CRC loop). ``crawler bench firmware`` measures it beside ``FrameDecoder`` on
the same stream; the tests use it as an independent oracle.
"""

from __future__ import annotations

from firmware_bridge.framing import HEADER, PROTOCOL_VERSION, Frame


def crc16_bitwise(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, one bit at a time."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


class BytewiseDecoder:
    """Per-byte COBS state machine; returns the frames that pass CRC and version checks."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._code = 0
        self._left = 0
        self._valid = True

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data`` and return the completed frames."""
        frames: list[Frame] = []
        for byte in data:
            if byte == 0:
                frame = self._finish()
                if frame is not None:
                    frames.append(frame)
                continue
            if self._left == 0:
                if self._code and self._code != 0xFF:
                    self._out.append(0)
                self._code = byte
                self._left = byte - 1
            else:
                self._out.append(byte)
                self._left -= 1
        return frames

    def _finish(self) -> Frame | None:
        body, valid = bytes(self._out), self._valid and self._left == 0
        self._out.clear()
        self._code = self._left = 0
        self._valid = True
        if not valid or len(body) < HEADER.size + 2:
            return None
        if crc16_bitwise(body[:-2]) != int.from_bytes(body[-2:], "little"):
            return None
        version, msg_id, seq = HEADER.unpack_from(body)
        if version != PROTOCOL_VERSION:
            return None
        return Frame(msg_id, seq, body[HEADER.size : -2])
