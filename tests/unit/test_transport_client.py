"""Serial transport and host client against loop://, a missing port and the pty emulator."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_bridge.client import BridgeClient
from firmware_bridge.emulator import McuModel, PtyEmulator
from firmware_bridge.errors import AckTimeoutError, CommandRejectedError, TransportClosedError
from firmware_bridge.framing import encode_frame
from firmware_bridge.messages import (
    Ack,
    AckResult,
    Encoders,
    EstopLatch,
    EstopRelease,
    MsgId,
    SetLamp,
    SetTwist,
    Telemetry,
    encode_message,
)
from firmware_bridge.transport import LinkState, SerialTransport
from tests.waiting import wait_until


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[PtyEmulator]:
    with PtyEmulator(tmp_path / "mcu", McuModel(seed=3)) as emu:
        yield emu


@pytest.fixture
def client(emulator: PtyEmulator) -> Iterator[BridgeClient]:
    bridge = BridgeClient(str(emulator.link_path))
    assert bridge.start(connect_timeout_s=5.0)
    yield bridge
    bridge.stop()


def test_loop_url_delivers_written_bytes() -> None:
    received = bytearray()
    transport = SerialTransport("loop://", received.extend)
    transport.start()
    try:
        assert transport.wait_connected(2.0)
        transport.write(b"\x00hello\x00")
        wait_until(lambda: bytes(received) == b"\x00hello\x00", 2.0, "the echo")
    finally:
        transport.stop()
    assert transport.state is LinkState.STOPPED


def test_write_while_disconnected_raises(tmp_path: Path) -> None:
    transport = SerialTransport(str(tmp_path / "absent"), lambda _: None)
    with pytest.raises(TransportClosedError, match="absent: port is not open"):
        transport.write(b"x")


def test_missing_port_backs_off_and_connects_when_it_appears(tmp_path: Path) -> None:
    link = tmp_path / "late"
    states: list[LinkState] = []
    transport = SerialTransport(str(link), lambda _: None, lambda s, _: states.append(s),
                                backoff_initial_s=0.02, backoff_max_s=0.2)
    opens = 0
    original_open = transport._open

    def counting_open() -> bool:
        nonlocal opens
        opens += 1
        return original_open()

    transport._open = counting_open  # type: ignore[method-assign]
    transport.start()
    try:
        time.sleep(1.0)
        # Back-off, not a busy loop: 0.02 + 0.04 + 0.08 + 0.16 + 0.2 + ... within one second.
        assert 3 <= opens <= 9
        assert states == [LinkState.DISCONNECTED]  # reported once, not at every attempt
        with PtyEmulator(link):
            assert transport.wait_connected(2.0)
            assert states == [LinkState.DISCONNECTED, LinkState.CONNECTED]
    finally:
        transport.stop()


def test_command_is_acknowledged(client: BridgeClient, emulator: PtyEmulator) -> None:
    seq = client.command(SetLamp(40), timeout_s=1.0)
    assert seq >= 1
    assert emulator.model.lamp_pct == 40


def test_rejected_command_raises(client: BridgeClient, emulator: PtyEmulator) -> None:
    client.command(EstopLatch(), timeout_s=1.0)
    with pytest.raises(CommandRejectedError, match=r"SetTwist seq \d+ rejected: REJECTED_ESTOP"):
        client.command(SetTwist(0.2, 0.0), timeout_s=1.0)
    client.command(EstopRelease(), timeout_s=1.0)
    client.command(SetTwist(0.2, 0.0), timeout_s=1.0)
    assert emulator.model.target_mps[0] == pytest.approx(0.2)


def test_silent_peer_times_out() -> None:
    # loop:// echoes our own command back: a frame arrives, but never an Ack.
    bridge = BridgeClient("loop://")
    assert bridge.start(connect_timeout_s=2.0)
    try:
        with pytest.raises(AckTimeoutError, match="no ack for SetTwist seq 1 within 50 ms"):
            bridge.command(SetTwist(0.1, 0.0), timeout_s=0.05)
        assert bridge.link.undecodable == 1  # our echoed command is not telemetry
    finally:
        bridge.stop()


def test_telemetry_reaches_subscribers_at_its_rates(client: BridgeClient) -> None:
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def count(message: Telemetry, rx_ns: int) -> None:
        with lock:
            counts[type(message).__name__] = counts.get(type(message).__name__, 0) + 1

    client.subscribe(count)
    client.command(SetTwist(0.0, 0.0))  # feed the watchdog once; telemetry flows regardless
    time.sleep(1.0)
    assert {"Encoders", "Imu", "Status", "Gas", "Battery", "Tether", "Motors"} <= set(counts)
    assert counts["Imu"] > counts["Encoders"] > counts["Status"]
    assert client.decoder_stats.crc_errors == 0


def test_duplicated_frames_are_dropped_and_gaps_counted() -> None:
    bridge = BridgeClient("loop://")
    seen: list[int] = []
    bridge.subscribe(lambda m, _: seen.append(m.stamp_us))  # type: ignore[union-attr]
    frames = [encode_message(Encoders(i, i, i), seq) for i, seq in
              [(1, 10), (2, 11), (2, 11), (3, 14)]]
    bridge._on_bytes(b"".join(frames))
    assert seen == [1, 2, 3]
    assert bridge.link.duplicates == 1
    assert bridge.link.lost == 2


def test_emulator_answers_malformed_commands(client: BridgeClient) -> None:
    acks: dict[int, int] = {}
    client.subscribe(lambda m, _: acks.update({m.acked_seq: m.result})  # type: ignore[union-attr]
                     if isinstance(m, Ack) else None)
    client.transport.write(encode_frame(MsgId.SET_TWIST, 900, bytes(7)))  # wrong size
    client.transport.write(encode_frame(0x30, 901, b""))  # not a command of this protocol
    client.transport.write(encode_frame(MsgId.ACK, 902, bytes(3)))  # telemetry id, wrong way
    wait_until(lambda: len(acks) == 3, 2.0, "three acks")
    assert acks == {900: AckResult.BAD_PAYLOAD, 901: AckResult.UNKNOWN_MESSAGE,
                    902: AckResult.UNKNOWN_MESSAGE}
