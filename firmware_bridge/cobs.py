"""Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999).

COBS removes every zero byte from a packet so that ``0x00`` can delimit frames on the wire.
Each block starts with a code byte ``n``: ``n - 1`` data bytes follow, then an implied zero,
unless ``n == 0xFF`` (254 data bytes, no zero) or the block ends the packet.
"""

from __future__ import annotations

_MAX_BLOCK = 254


class CobsError(ValueError):
    """The input is not a valid COBS encoding."""


def cobs_encode(data: bytes) -> bytes:
    """Encode ``data`` so that the result contains no zero byte (overhead: 1 byte per 254)."""
    out = bytearray()
    for block in data.split(b"\x00"):
        while len(block) >= _MAX_BLOCK:
            out.append(0xFF)
            out += block[:_MAX_BLOCK]
            block = block[_MAX_BLOCK:]
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(encoded: bytes) -> bytes:
    """Decode one COBS packet (without its zero delimiter); raise ``CobsError`` if malformed."""
    out = bytearray()
    index = 0
    size = len(encoded)
    while index < size:
        code = encoded[index]
        end = index + code
        if code == 0 or end > size:
            raise CobsError(f"bad COBS code {code} at byte {index} of {size}")
        out += encoded[index + 1 : end]
        index = end
        if code != 0xFF and index < size:
            out.append(0)
    return bytes(out)
