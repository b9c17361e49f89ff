"""Serial transport on pyserial: one reader thread, reconnection with back-off, locked writes.

Any pyserial URL works: a device path (``/dev/ttyUSB0``, a pty or a symlink to one),
``socket://host:port`` or ``loop://``. When the port disappears the reader closes it, reports
``LinkState.DISCONNECTED`` and retries with exponential back-off until the port returns or
``stop()`` is called. Reads block with a timeout (no busy loop); writes take a lock so any
thread may send.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import Enum

import serial

from firmware_bridge.errors import TransportClosedError

_LOG = logging.getLogger(__name__)


class LinkState(Enum):
    """Connection state of a transport."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


BytesHandler = Callable[[bytes], None]
StateHandler = Callable[[LinkState, str], None]


class SerialTransport:
    """Owns one serial port and pumps what it receives into ``on_bytes``."""

    def __init__(
        self,
        url: str,
        on_bytes: BytesHandler,
        on_state: StateHandler | None = None,
        baudrate: int = 921_600,
        read_timeout_s: float = 0.05,
        write_timeout_s: float = 0.5,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
    ) -> None:
        self.url = url
        self._on_bytes = on_bytes
        self._on_state = on_state
        self._baudrate = baudrate
        self._read_timeout_s = read_timeout_s
        self._write_timeout_s = write_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        # serial_for_url() returns a SerialBase subclass; all of them have in_waiting.
        self._port: serial.Serial | None = None
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = LinkState.STOPPED
        self._reported = LinkState.STOPPED
        self.opens = 0

    @property
    def connected(self) -> bool:
        """Whether the port is open right now."""
        return self._connected.is_set()

    def start(self) -> None:
        """Start the reader thread; it opens the port and keeps it open."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"serial:{self.url}", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until the port is open or ``timeout_s`` passes; return whether it is open."""
        return self._connected.wait(timeout_s)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the reader thread and close the port."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self._close()
        self._set_state(LinkState.STOPPED, "stopped")

    def write(self, data: bytes) -> None:
        """Write ``data`` whole; raise ``TransportClosedError`` if the port is not open."""
        with self._write_lock:
            port = self._port
            if port is None or not self._connected.is_set():
                raise TransportClosedError(f"{self.url}: port is not open")
            try:
                port.write(data)
            except (serial.SerialException, OSError) as err:
                raise TransportClosedError(f"{self.url}: write failed: {err}") from err

    def _run(self) -> None:
        backoff_s = self._backoff_initial_s
        while not self._stop.is_set():
            port = self._port
            if port is None:
                if self._open():
                    backoff_s = self._backoff_initial_s
                else:
                    self._stop.wait(backoff_s)
                    backoff_s = min(2.0 * backoff_s, self._backoff_max_s)
                continue
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError) as err:
                # TypeError/AttributeError: pyserial internals after a concurrent close().
                self._close()
                self._set_state(LinkState.DISCONNECTED, f"{self.url}: {err}")
                continue
            if data:
                self._on_bytes(data)

    def _open(self) -> bool:
        self._set_state(LinkState.CONNECTING, f"opening {self.url}")
        try:
            port: serial.Serial = serial.serial_for_url(
                self.url,
                baudrate=self._baudrate,
                timeout=self._read_timeout_s,
                write_timeout=self._write_timeout_s,
            )
        except (serial.SerialException, OSError, ValueError) as err:
            self._set_state(LinkState.DISCONNECTED, f"{self.url}: {err}")
            return False
        with self._write_lock:
            self._port = port
            self._connected.set()
        self.opens += 1
        self._set_state(LinkState.CONNECTED, f"{self.url} open")
        return True

    def _close(self) -> None:
        with self._write_lock:
            port, self._port = self._port, None
            self._connected.clear()
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as err:
                _LOG.debug("closing %s: %s", self.url, err)

    def _set_state(self, state: LinkState, detail: str) -> None:
        # CONNECTING is transient: report only settled states, and each change once, so a
        # port that stays away does not log every back-off attempt.
        self.state = state
        if state is LinkState.CONNECTING or state is self._reported:
            return
        self._reported = state
        if self._on_state is not None:
            self._on_state(state, detail)
