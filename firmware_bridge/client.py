"""Host side of the MCU protocol: sequence numbers, acknowledged commands, telemetry fan-out."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from firmware_bridge.errors import (
    AckTimeoutError,
    CommandRejectedError,
    MessageDecodeError,
)
from firmware_bridge.framing import DecoderStats, FrameDecoder
from firmware_bridge.messages import (
    TELEMETRY_ID_MIN,
    Ack,
    AckResult,
    Command,
    Telemetry,
    decode_message,
    encode_message,
)
from firmware_bridge.transport import LinkState, SerialTransport, StateHandler

_LOG = logging.getLogger(__name__)

TelemetryHandler = Callable[[Telemetry, int], None]
"""Called from the reader thread with a message and its host receive time in ns."""


@dataclass
class LinkStats:
    """What the host has seen of the MCU's frame stream beyond the decoder's own counters."""

    messages: int = 0
    duplicates: int = 0
    lost: int = 0
    undecodable: int = 0
    last_rx_ns: int = 0


class _PendingAck:
    __slots__ = ("event", "result")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.result = AckResult.OK


class BridgeClient:
    """Talks to the crawler MCU over one serial URL.

    Commands carry increasing sequence numbers; ``command()`` waits for the matching ``Ack``
    and ``send()`` does not. Telemetry goes to every handler added with ``subscribe()``.
    A repeated sequence number (a duplicated frame) is dropped; gaps are counted as lost.
    """

    def __init__(
        self,
        url: str,
        baudrate: int = 921_600,
        on_state: StateHandler | None = None,
        backoff_max_s: float = 2.0,
    ) -> None:
        self.decoder = FrameDecoder()
        self.link = LinkStats()
        self._handlers: list[TelemetryHandler] = []
        self._pending: dict[int, _PendingAck] = {}
        self._pending_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._seq_lock = threading.Lock()
        self._last_rx_seq: int | None = None
        self._user_on_state = on_state
        self.transport = SerialTransport(
            url, self._on_bytes, self._on_state, baudrate=baudrate, backoff_max_s=backoff_max_s
        )

    @property
    def decoder_stats(self) -> DecoderStats:
        """Counters of the frame decoder (CRC errors, COBS errors, ...)."""
        return self.decoder.stats

    @property
    def connected(self) -> bool:
        """Whether the serial port is open."""
        return self.transport.connected

    @property
    def state(self) -> LinkState:
        """Connection state of the serial port."""
        return self.transport.state

    def subscribe(self, handler: TelemetryHandler) -> None:
        """Call ``handler(message, rx_ns)`` for every telemetry message received."""
        self._handlers.append(handler)

    def start(self, connect_timeout_s: float = 0.0) -> bool:
        """Open the port in the background; optionally wait for it; return whether it is open."""
        self.transport.start()
        return connect_timeout_s <= 0.0 or self.transport.wait_connected(connect_timeout_s)

    def stop(self) -> None:
        """Close the port and stop the reader thread."""
        self.transport.stop()

    def send(self, command: Command) -> int:
        """Send ``command`` without waiting; return its sequence number."""
        with self._seq_lock:
            seq = next(self._seq) & 0xFFFF
        self.transport.write(encode_message(command, seq))
        return seq

    def command(self, command: Command, timeout_s: float = 0.1) -> int:
        """Send ``command`` and wait for its acknowledgement; return its sequence number.

        Raises ``AckTimeoutError`` if no ``Ack`` arrives within ``timeout_s`` and
        ``CommandRejectedError`` if the MCU answers with a non-OK result.
        """
        pending = _PendingAck()
        with self._seq_lock:
            seq = next(self._seq) & 0xFFFF
        with self._pending_lock:
            self._pending[seq] = pending
        try:
            self.transport.write(encode_message(command, seq))
            if not pending.event.wait(timeout_s):
                raise AckTimeoutError(
                    f"{self.transport.url}: no ack for {type(command).__name__} seq {seq} "
                    f"within {timeout_s * 1e3:.0f} ms"
                )
        finally:
            with self._pending_lock:
                self._pending.pop(seq, None)
        if pending.result is not AckResult.OK:
            raise CommandRejectedError(
                f"{type(command).__name__} seq {seq} rejected: {pending.result.name}"
            )
        return seq

    def _on_state(self, state: LinkState, detail: str) -> None:
        if state is LinkState.CONNECTED:
            # A new connection may be a rebooted MCU whose sequence numbers start over.
            self._last_rx_seq = None
        if self._user_on_state is not None:
            self._user_on_state(state, detail)

    def _on_bytes(self, data: bytes) -> None:
        rx_ns = time.monotonic_ns()
        for frame in self.decoder.feed(data):
            if frame.seq == self._last_rx_seq:
                self.link.duplicates += 1
                continue
            if self._last_rx_seq is not None:
                self.link.lost += (frame.seq - self._last_rx_seq - 1) & 0xFFFF
            self._last_rx_seq = frame.seq
            try:
                message = decode_message(frame)
            except MessageDecodeError as err:
                self._undecodable(str(err))
                continue
            if frame.msg_id < TELEMETRY_ID_MIN:
                self._undecodable(f"MCU sent command id 0x{frame.msg_id:02X}")
                continue
            telemetry = cast(Telemetry, message)
            self.link.messages += 1
            self.link.last_rx_ns = rx_ns
            if isinstance(telemetry, Ack):
                self._resolve(telemetry)
            for handler in self._handlers:
                handler(telemetry, rx_ns)

    def _undecodable(self, why: str) -> None:
        # Count every one; log the first few and then every 100th, not at telemetry rate.
        self.link.undecodable += 1
        count = self.link.undecodable
        if count <= 3 or count % 100 == 0:
            _LOG.warning("%s: %s (%d undecodable frames so far)", self.transport.url, why, count)

    def _resolve(self, ack: Ack) -> None:
        with self._pending_lock:
            pending = self._pending.get(ack.acked_seq)
        if pending is not None:
            try:
                pending.result = AckResult(ack.result)
            except ValueError:
                pending.result = AckResult.BAD_PAYLOAD
            pending.event.set()
