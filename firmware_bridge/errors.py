"""Errors raised by the firmware bridge; each carries the port, message or sequence at fault."""

from __future__ import annotations


class BridgeError(Exception):
    """Base class of every firmware-bridge error."""


class MessageDecodeError(BridgeError):
    """A frame passed its CRC but its message id or payload is not understood."""


class TransportError(BridgeError):
    """The serial port could not be opened, read or written."""


class TransportClosedError(TransportError):
    """A write was attempted while the port is disconnected or the transport stopped."""


class AckTimeoutError(BridgeError):
    """The microcontroller did not acknowledge a command in time."""


class CommandRejectedError(BridgeError):
    """The microcontroller acknowledged a command with a non-OK result."""
