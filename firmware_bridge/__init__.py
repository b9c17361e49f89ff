"""Serial boundary to the crawler's microcontroller: framing, messages, transport, emulator.

The wire protocol is specified in ``docs/firmware_protocol.md``. Nothing here imports ROS.
"""

from firmware_bridge.errors import (
    AckTimeoutError,
    BridgeError,
    CommandRejectedError,
    MessageDecodeError,
    TransportClosedError,
)
from firmware_bridge.framing import PROTOCOL_VERSION, Frame, FrameDecoder, encode_frame
from firmware_bridge.messages import decode_message, encode_message

__all__ = [
    "PROTOCOL_VERSION",
    "AckTimeoutError",
    "BridgeError",
    "CommandRejectedError",
    "Frame",
    "FrameDecoder",
    "MessageDecodeError",
    "TransportClosedError",
    "decode_message",
    "encode_frame",
    "encode_message",
]
