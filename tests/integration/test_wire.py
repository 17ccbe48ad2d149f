"""hil.wire.VirtualCable: real pty pairs, real pyserial at both ends."""

from __future__ import annotations

import os
import threading
import time

import pytest
import serial

from hil.wire import VirtualCable, char_time, wire_time


@pytest.fixture(autouse=True)
def no_leaked_relay_threads():
    yield
    leaked = [t.name for t in threading.enumerate() if t.name.startswith("wire-")]
    assert not leaked, f"relay threads still running: {leaked}"


@pytest.fixture
def links(tmp_path):
    return str(tmp_path / "rig" / "daemon"), str(tmp_path / "rig" / "device")


def _open(path: str, timeout: float = 1.0) -> serial.Serial:
    return serial.Serial(path, baudrate=9600, timeout=timeout)


def _read_exactly(port: serial.Serial, n: int, deadline_s: float = 5.0) -> bytes:
    buf = bytearray()
    end = time.monotonic() + deadline_s
    while len(buf) < n and time.monotonic() < end:
        buf += port.read(n - len(buf))
    return bytes(buf)


def test_wire_time_helpers():
    assert char_time(9600) == pytest.approx(10 / 9600)
    assert wire_time(16, 9600) == pytest.approx(0.016667, abs=1e-5)
    assert wire_time(8, 38400, bits_per_char=11) == pytest.approx(8 * 11 / 38400)
    with pytest.raises(ValueError):
        char_time(0)


def test_bytes_pass_both_ways(links):
    a, b = links
    with VirtualCable(a, b) as cable:
        assert os.path.islink(a) and os.path.islink(b)
        assert cable.plugged
        with _open(a) as pa, _open(b) as pb:
            pa.write(b"\x01\x05\x00\x00\xff\x00\x8c\x3a")
            assert _read_exactly(pb, 8) == b"\x01\x05\x00\x00\xff\x00\x8c\x3a"
            pb.write(b"pong\x00\xff")
            assert _read_exactly(pa, 6) == b"pong\x00\xff"


def test_large_transfer_intact_both_directions_at_once(links):
    a, b = links
    payload_ab = os.urandom(256 * 1024)
    payload_ba = bytes(range(256)) * 512
    got: dict[str, bytes] = {}
    with VirtualCable(a, b), _open(a) as pa, _open(b) as pb:

        def reader(port: serial.Serial, key: str, n: int) -> None:
            got[key] = _read_exactly(port, n, deadline_s=20)

        threads = [
            threading.Thread(target=reader, args=(pb, "ab", len(payload_ab))),
            threading.Thread(target=reader, args=(pa, "ba", len(payload_ba))),
        ]
        for t in threads:
            t.start()
        pa.write(payload_ab)
        pb.write(payload_ba)
        for t in threads:
            t.join(timeout=30)
    assert got["ab"] == payload_ab
    assert got["ba"] == payload_ba


def test_reopen_within_one_plug_session(links):
    # The daemon closing and reopening its port must not break the relay (the cable holds the slaves open).
    a, b = links
    with VirtualCable(a, b), _open(b) as pb:
        for i in range(3):
            with _open(a) as pa:
                pa.write(bytes([i]) * 4)
                assert _read_exactly(pb, 4) == bytes([i]) * 4


def test_pacing_100_bytes_at_9600(links):
    a, b = links
    with VirtualCable(a, b, baudrate=9600) as cable, _open(a) as pa, _open(b) as pb:
        assert cable.wire_time(100) == pytest.approx(0.1042, abs=1e-3)
        t0 = time.monotonic()
        pa.write(bytes(100))
        assert _read_exactly(pb, 100) == bytes(100)
        elapsed = time.monotonic() - t0
    assert 0.090 <= elapsed < 0.300, elapsed


def test_pacing_one_frame_and_no_drift_at_115200(links):
    a, b = links
    with VirtualCable(a, b, baudrate=115200) as cable, _open(a) as pa, _open(b) as pb:
        # A write-coil frame: 8 bytes, ~0.69 ms; measure the last byte, not the first.
        t0 = time.monotonic()
        pa.write(b"\x01\x05\x00\x00\xff\x00\x8c\x3a")
        assert len(_read_exactly(pb, 8)) == 8
        assert time.monotonic() - t0 >= cable.wire_time(8) * 0.9
        # 2000 bytes = 173.6 ms: per-byte sleeps would drift well past this; computed deadlines do not.
        n = 2000
        t0 = time.monotonic()
        pb.write(bytes(n))
        assert len(_read_exactly(pa, n)) == n
        elapsed = time.monotonic() - t0
    assert wire_time(n, 115200) * 0.9 <= elapsed < wire_time(n, 115200) + 0.15, elapsed


def test_pacing_queues_back_to_back_writes(links):
    # Two writes in quick succession share the line: the second waits for the first.
    a, b = links
    with VirtualCable(a, b, baudrate=9600) as cable, _open(a) as pa, _open(b) as pb:
        t0 = time.monotonic()
        pa.write(bytes(30))
        pa.write(bytes(30))
        assert len(_read_exactly(pb, 60)) == 60
        elapsed = time.monotonic() - t0
    assert elapsed >= cable.wire_time(60) * 0.9


def test_unplug_fails_open_port_and_plug_allows_reopen(links):
    a, b = links
    with VirtualCable(a, b) as cable:
        pa = _open(a, timeout=0.5)
        try:
            cable.unplug()
            assert not cable.plugged
            assert not os.path.lexists(a) and not os.path.lexists(b)
            with pytest.raises(serial.SerialException):
                pa.read(1)
            with pytest.raises(serial.SerialException):
                pa.write(b"x")
                pa.flush()
            with pytest.raises(serial.SerialException):
                _open(a)
        finally:
            pa.close()
        cable.plug()
        assert cable.plugged
        with _open(a) as pa2, _open(b) as pb2:
            pa2.write(b"back")
            assert _read_exactly(pb2, 4) == b"back"
    assert not os.path.lexists(a)


def test_close_is_idempotent(links):
    a, b = links
    cable = VirtualCable(a, b)
    cable.close()
    cable.close()
    cable.unplug()
    assert not os.path.lexists(a)
