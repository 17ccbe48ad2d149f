"""SerialPlateReader over REAL ptys: the reader opens the slave path like a lane PC opens /dev/ttyUSB0, the test
plays the camera on the master fd. The vanish/return case re-points a symlink, like /dev/serial/by-id/...
when a USB adapter is unplugged and plugged back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from pathlib import Path

import pytest
import serial

from hil.emulators.plate_camera import PlateCamera
from lanectl.adapters.serial_lines import SerialLineSource, SerialPlateReader
from lanectl.config.devices import SerialLine
from lanectl.config.devices import SerialPlateReader as ReaderConfig
from lanectl.core.events import DeviceFault, DeviceRecovered, PlateRead
from lanectl.protocols.plate_serial import DecodeStats, encode_plate_line
from tests.fakes import EmitRecorder

LOGGER = "lanectl.adapters.serial_lines"


class Pty:
    """One pty pair in raw mode: `path` is what the reader opens, `write` is the camera."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line discipline before the reader configures the port
        self.path = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    async def write_slowly(self, data: bytes, gap_s: float = 0.003) -> None:
        for i in range(len(data)):
            os.write(self.master, data[i:i + 1])
            await asyncio.sleep(gap_s)

    def read_master(self, n: int = 4096) -> bytes:
        return os.read(self.master, n)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def pty_pair():
    p = Pty()
    yield p
    p.close()


async def until(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def reading(reader: SerialPlateReader | SerialLineSource, emit: EmitRecorder, *, wait_open: bool = True):
    task = asyncio.create_task(reader.run(emit))
    try:
        if wait_open:
            await until(lambda: reader.connected, what="port open")
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def config(port: str, **kw) -> ReaderConfig:
    return ReaderConfig(kind="serial_line", port=port, **kw)


def reads(emit: EmitRecorder) -> list[PlateRead]:
    return emit.of(PlateRead)


async def test_a_line_becomes_a_plate_read(pty_pair):
    reader, emit = SerialPlateReader(config(pty_pair.path), name="in1-camera"), EmitRecorder()
    async with reading(reader, emit):
        pty_pair.write(encode_plate_line("粤B12345", "蓝", 96))
        pty_pair.write("无牌车,,0\r\n".encode("gbk"))
        await emit.wait_for(lambda ev: len(ev) == 2)
    assert reads(emit) == [PlateRead("粤B12345", "blue", 96, source="in1-camera"),
                           PlateRead("", "", 0, source="in1-camera")]  # unknown colour is "" in PlateRead
    assert emit.of(DeviceFault) == []


async def test_split_reads_one_byte_at_a_time(pty_pair):
    reader, emit = SerialPlateReader(config(pty_pair.path, baudrate=115200), name="cam"), EmitRecorder()
    async with reading(reader, emit):
        await pty_pair.write_slowly(encode_plate_line("京A12345", "yellow", 88))
        await emit.wait_for(lambda ev: len(ev) == 1)
        assert reader.source.chunks > 5  # it really arrived in pieces
        await pty_pair.write_slowly(encode_plate_line("沪C9876D", "5", 77)[:-2])
        await asyncio.sleep(0.05)
        assert len(reads(emit)) == 1  # nothing until the terminator
        pty_pair.write(b"\r\n")
        await emit.wait_for(lambda ev: len(ev) == 2)
    assert reads(emit) == [PlateRead("京A12345", "yellow", 88, source="cam"),
                           PlateRead("沪C9876D", "green", 77, source="cam")]


async def test_garbage_between_lines_is_counted_and_skipped(pty_pair, caplog):
    reader, emit = SerialPlateReader(config(pty_pair.path), name="cam"), EmitRecorder()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with reading(reader, emit):
            pty_pair.write(encode_plate_line("粤B11111"))
            pty_pair.write(b"\xff\xfe\x00\r\n")  # undecodable
            pty_pair.write(b"hello,blue,9\r\n")  # not a plate
            pty_pair.write(b"x" * 500 + b"\r\n")  # terminator lost upstream: overlong
            pty_pair.write("粤B22222,purple,9\r\n".encode("gbk"))  # unknown colour
            pty_pair.write(b"\r\n\n")  # blank lines are not errors
            pty_pair.write(encode_plate_line("粤B33333"))
            await emit.wait_for(lambda ev: len(ev) == 2)
    assert [r.plate for r in reads(emit)] == ["粤B11111", "粤B33333"]
    got = dict(vars(reader.stats), bytes_in=0, skipped_bytes=0)
    assert got == vars(DecodeStats(lines=2, skipped_bad_bytes=1, skipped_bad_fields=1, skipped_bad_plate=1,
                                   skipped_overlong=1))
    assert reader.stats.bytes_in == reader.source.bytes  # every byte the port delivered went through the codec
    warnings = [r for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 1 and "undecodable" in warnings[0].getMessage()  # once, not per line


async def test_noise_before_a_line_costs_only_the_noise(pty_pair):
    """Issue 14: a stray 0xFE, or more than 128 bytes of noise without CR LF, used to cost the next good line."""
    reader, emit = SerialPlateReader(config(pty_pair.path), name="cam"), EmitRecorder()
    async with reading(reader, emit):
        pty_pair.write(b"\xfe" + encode_plate_line("粤B11111"))
        pty_pair.write(bytes(range(0x80, 0x100)) * 2)  # 256 bytes of noise, no line end, in its own read
        await until(lambda: reader.stats.skipped_overlong == 1, what="the noise dropped")
        pty_pair.write(encode_plate_line("粤B22222"))
        pty_pair.write(b"\r\x81\r" + encode_plate_line("粤B33333"))
        await emit.wait_for(lambda ev: len(ev) == 3)
    assert [r.plate for r in reads(emit)] == ["粤B11111", "粤B22222", "粤B33333"]
    assert (reader.stats.resynced, reader.stats.skipped_overlong, reader.stats.skipped) == (3, 1, 1)
    assert reader.stats.skipped_bytes == 1 + 256 + 2  # \r\x81: the \r right before the plate is blank space


async def test_a_big5_plate_on_a_gbk_line_reaches_the_lane_as_unreadable_and_never_opens(pty_pair):
    """The camera sends 粵B55502 in Big5; the line is configured GBK, which reads 竑B55502. The lane sends that
    car to the booth: no OPEN, the booth on the board, the reading on a record as read, counted."""
    from lanectl.adapters.clock import SystemClock
    from lanectl.core import effects as fx
    from lanectl.core.events import IoSnapshot, OperatorOpen
    from lanectl.service.lane_runner import LaneRunner
    from tests.fakes import SHANGHAI, FakeBarrier, FakeDisplay, MemoryLaneStore
    from tests.policies import FlatPolicy

    store, barrier, display = MemoryLaneStore(), FakeBarrier(), FakeDisplay()
    runner = LaneRunner("in1", "entry", FlatPolicy(), store, SystemClock(SHANGHAI), barrier=barrier,
                        display=display)
    lane = asyncio.create_task(runner.run())
    reader = SerialPlateReader(config(pty_pair.path), name="in1-camera")
    try:
        await runner.started.wait()
        runner.emit(IoSnapshot(arming=True, safety=False, up_limit=False, down_limit=True))
        async with reading(reader, runner.emit):
            pty_pair.write("粵B55502,blue,96\r\n".encode("big5"))
            await until(lambda: runner.status.unreadable_plates == 1, what="the unreadable read")
            await until(lambda: display.keys() == ["booth"], what="the booth on the board")
            [record] = store.written(fx.NewRecord)
            assert (record.plate, record.status, record.reason) == ("竑B55502", "refused", "unreadable_plate")
            assert barrier.commands == [] and reader.stats.unreadable == 1
            await runner.request(OperatorOpen("王", "plate unreadable", request_id="r1"))  # the booth decides
            await until(lambda: barrier.commands == ["open"], what="the operator's OPEN")
    finally:
        lane.cancel()
        await asyncio.gather(lane, return_exceptions=True)


@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
async def test_encodings_and_delimiter(pty_pair, encoding):
    reader = SerialPlateReader(config(pty_pair.path, encoding=encoding, delimiter="|"), name="cam")
    emit = EmitRecorder()
    async with reading(reader, emit):
        pty_pair.write(encode_plate_line("粤B12345", "黄", 91, encoding=encoding, delimiter="|"))
        other = "utf-8" if encoding == "gbk" else "gbk"
        pty_pair.write(encode_plate_line("粤B54321", "黄", 91, encoding=other, delimiter="|"))  # wrong encoding
        pty_pair.write(encode_plate_line("川A00001", "白", 90, encoding=encoding, delimiter="|"))
        await emit.wait_for(lambda ev: len(ev) == 2)
    assert [(r.plate, r.color) for r in reads(emit)] == [("粤B12345", "yellow"), ("川A00001", "white")]
    assert reader.stats.skipped_bad_bytes == 1


async def test_port_vanishes_and_returns(tmp_path: Path, caplog):
    link = tmp_path / "ttyUSB-camera"
    first = Pty()
    link.symlink_to(first.path)
    reader = SerialPlateReader(config(str(link)), name="cam", backoff_max_s=0.5)
    emit = EmitRecorder()
    second = None
    try:
        with caplog.at_level(logging.INFO, logger=LOGGER):
            async with reading(reader, emit):
                first.write(encode_plate_line("粤B00001"))
                await emit.wait_for(lambda ev: len(ev) == 1)
                first.write(encode_plate_line("粤B00002")[:5])  # half a line, then the cable is pulled

                link.unlink()  # unplug: the by-id path disappears and the device hangs up
                first.close()
                await emit.wait_for(lambda ev: len(emit.of(DeviceFault)) == 1)
                assert not reader.connected and reader.fault
                await asyncio.sleep(1.5)  # several failed reopen attempts (backoff 0.2 .. 0.5 s)

                second = Pty()  # plug back in: a new tty, the same stable path
                tmp = tmp_path / "new-link"
                tmp.symlink_to(second.path)
                tmp.replace(link)
                await emit.wait_for(lambda ev: len(emit.of(DeviceRecovered)) == 1)
                second.write(encode_plate_line("粤B00003"))
                await emit.wait_for(lambda ev: len(reads(emit)) == 2)
                await asyncio.sleep(0.3)
    finally:
        first.close()
        if second:
            second.close()
    kinds = [type(e).__name__ for e in emit.events]
    assert kinds == ["PlateRead", "DeviceFault", "DeviceRecovered", "PlateRead"]
    assert emit.of(DeviceFault)[0].device == "plate_reader"
    assert emit.of(DeviceRecovered) == [DeviceRecovered("plate_reader")]
    assert [r.plate for r in reads(emit)] == ["粤B00001", "粤B00003"]  # the half line was not glued on
    assert reader.stats.skipped == 0
    levels = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert [lv for lv, _ in levels] == ["INFO", "WARNING", "INFO"], levels  # opened, failed once, recovered
    assert "recovered" in levels[2][1]


async def test_missing_port_at_start_faults_once_then_recovers(tmp_path: Path):
    link = tmp_path / "camera"
    reader = SerialPlateReader(config(str(link)), name="cam", backoff_max_s=0.3)
    emit = EmitRecorder()
    p = Pty()
    try:
        async with reading(reader, emit, wait_open=False):
            await emit.wait_for(lambda ev: len(ev) == 1)
            await asyncio.sleep(0.8)
            assert emit.events == [DeviceFault("plate_reader", emit.events[0].reason)]
            assert "No such file" in emit.events[0].reason
            link.symlink_to(p.path)
            await emit.wait_for(lambda ev: len(ev) == 2)
            p.write(encode_plate_line("粤B12345"))
            await emit.wait_for(lambda ev: len(ev) == 3)
    finally:
        p.close()
    assert emit.events[1:] == [DeviceRecovered("plate_reader"), PlateRead("粤B12345", "blue", 95, source="cam")]


class _RecordingClock:
    """monotonic() and a sleep that records and returns at once (only the backoff uses the clock)."""

    def __init__(self, stop_after: int) -> None:
        self.sleeps: list[float] = []
        self.stop_after = stop_after
        self.done = asyncio.Event()

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) >= self.stop_after:
            self.done.set()
            await asyncio.Event().wait()  # park here until cancelled
        await asyncio.sleep(0)


async def test_reopen_backoff_is_capped_exponential(tmp_path: Path, caplog):
    clock = _RecordingClock(stop_after=9)
    reader = SerialPlateReader(config(str(tmp_path / "nothing")), name="cam", clock=clock)  # type: ignore[arg-type]
    emit = EmitRecorder()
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        async with reading(reader, emit, wait_open=False):
            await asyncio.wait_for(clock.done.wait(), 5)
    assert clock.sleeps == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0])
    assert len(emit.of(DeviceFault)) == 1
    assert [r.levelname for r in caplog.records if r.levelno >= logging.INFO] == ["WARNING"]


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_cancel_closes_the_port(pty_pair):
    before = _open_fds()
    reader, emit = SerialPlateReader(config(pty_pair.path), name="cam"), EmitRecorder()
    async with reading(reader, emit):
        with pytest.raises(serial.SerialException):  # we own it exclusively while running
            serial.Serial(pty_pair.path, exclusive=True)
    assert not reader.connected
    serial.Serial(pty_pair.path, exclusive=True).close()  # free again
    await until(lambda: _open_fds() <= before, what="no leaked file descriptors")


async def test_the_loop_is_generic_a_scanner_reuses_it(pty_pair):
    """A booth scanner (another line device) plugs its own handler into the same open/reconnect loop."""
    codes: list[str] = []

    def session(emit):
        buf = bytearray()

        def on_chunk(data: bytes) -> None:
            buf.extend(data)
            while b"\r" in buf:
                line, _, rest = bytes(buf).partition(b"\r")
                buf[:] = rest
                codes.append(line.decode("ascii").strip())

        return on_chunk

    source = SerialLineSource(SerialLine(port=pty_pair.path), name="booth-scanner", device="scanner",
                              session=session)
    async with reading(source, EmitRecorder()):
        pty_pair.write(b"134567890123456789\r")
        await until(lambda: codes == ["134567890123456789"], what="scanned code")


async def test_plate_camera_emulator_writes_lines_to_a_tty(pty_pair):
    async with PlateCamera(pty_pair.path, encoding="utf-8", delimiter=";") as camera:
        sent = await camera.send("粤B12345", "green", 90)
        await camera.send_raw(b"\xffjunk\r\n", chunk=2, gap_s=0.001)
    assert sent == "粤B12345;green;90\r\n".encode("utf-8")
    got = b""
    while len(got) < len(sent) + 7:
        got += await asyncio.get_running_loop().run_in_executor(None, pty_pair.read_master)
    assert got == sent + b"\xffjunk\r\n"
    assert camera.sent == 1


async def test_plate_camera_emulator_talks_to_the_reader_through_a_pty_cable():
    """Two ptys spliced together (what hil/wire.py's VirtualCable does): camera on one end, reader on the other."""
    a, b = Pty(), Pty()

    async def splice() -> None:  # bytes the camera writes to a's slave come out of a's master: copy to b
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.run_in_executor(None, a.read_master)
            b.write(data)

    reader, emit = SerialPlateReader(config(b.path), name="cam"), EmitRecorder()
    pump = asyncio.create_task(splice())
    try:
        async with reading(reader, emit), PlateCamera(a.path) as camera:
            await camera.send("粤B12345", "yellow", 80)
            await emit.wait_for(lambda ev: len(ev) == 1)
    finally:
        pump.cancel()
        a.close()
        b.close()
        await asyncio.gather(pump, return_exceptions=True)
    assert reads(emit) == [PlateRead("粤B12345", "yellow", 80, source="cam")]
