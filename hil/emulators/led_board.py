"""An LED text + voice board: decodes the lane-board frames it receives and keeps what a driver would SEE (the
lines on the display, a QR code) and HEAR (speech, in order).

Bytes arrive two ways, and both go through the same FrameDecoder:
- over a serial line — `open()` reads a tty path (the device end of a hil.wire VirtualCable, or a
  USB–RS-485 adapter wired to the lane PC);
- via `feed(bytes)` — e.g. the `serialData` a Vzenith-style camera passes through to its RS-485 port
  (hil.emulators.camera_http hands them over).

A frame whose DATA breaks its command's layout (bad GBK, lengths that do not add up) is kept in `rejected`,
a command the codec has no layout for in `unknown`; neither changes the display. With `address` set, frames
for other addresses are counted in `ignored` and change nothing (address None: every frame is for us).

Standalone (prints what the board shows and says):
    python -m hil.emulators.led_board PATH [--baud 9600] [--address 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Optional, Sequence

import serial_asyncio_fast


# ------------------------------------------------------------------------------------------ the frame
# lane-hardware.md: DA | VR | PN(2) | CMD | DL | DATA[DL] | CRC16, CRC-16/Modbus (reflected 0xA001, init 0xFFFF)
# over everything before it, low byte first; VR 0x64, PN 0xFFFF; text GBK. The DATA layouts are the ones the
# project's lanes use (the document leaves them to the board):
#   0x62 show line   line(1) colour(1) text
#   0x30 speak       option(1) text
#   0x6E show+speak  n(1) n x [line(1) colour(1) len(1) text[len]] option(1) vlen(1) voice[vlen], nothing after
#   0x05 set clock   yy mm dd hh mi ss weekday (binary; year - 2000; ISO weekday, Monday 1)
#   0xE1 show QR     url text (non-empty)
# Written from the document, not from lanectl.protocols.led_board: the board checks what the daemon sends.

SYNC = b"\x64\xff\xff"  # VR and PN follow DA in every frame
TEXT = "gbk"


def crc16_modbus(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def frame_bytes(command: int, data: bytes, address: int = 0) -> bytes:
    """A whole frame, for tests and for driving a real board from a script."""
    body = bytes([address]) + SYNC + bytes([command, len(data)]) + data
    return body + crc16_modbus(body).to_bytes(2, "little")


@dataclass(frozen=True)
class Frame:
    address: int
    command: int
    data: bytes


@dataclass
class FrameStats:
    frames: int = 0
    skipped_bytes: int = 0  # bytes that started no frame
    bad_crc: int = 0


class FrameDecoder:
    """Bytes in any split, garbage around them -> whole frames with a good CRC. Never raises."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.stats = FrameStats()

    @property
    def pending(self) -> int:
        """Bytes held that may still become a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        buf = self._buf
        while buf:
            head = bytes(buf[1:4])
            if not SYNC.startswith(head):  # buf[0] cannot be a DA
                del buf[0]
                self.stats.skipped_bytes += 1
                continue
            if len(buf) < 6:
                break
            end = 6 + buf[5]
            if len(buf) < end + 2:
                break
            if crc16_modbus(bytes(buf[:end])) != int.from_bytes(buf[end:end + 2], "little"):
                del buf[0]  # not a frame after all (or a damaged one): look again one byte on
                self.stats.bad_crc += 1
                continue
            frames.append(Frame(buf[0], buf[4], bytes(buf[6:end])))
            del buf[:end + 2]
            self.stats.frames += 1
        return frames


class BoardError(ValueError):
    """DATA that does not fit its command's layout."""


@dataclass(frozen=True)
class ShownLine:
    line: int
    text: str
    colour: int


@dataclass(frozen=True)
class BoardOutput:
    address: int
    command: int
    lines: tuple[ShownLine, ...] = ()
    speech: Optional[str] = None
    qr: Optional[str] = None
    clock: Optional[datetime] = None
    known: bool = True


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode(TEXT)
    except UnicodeDecodeError:
        raise BoardError(f"{what} is not GBK text") from None


def describe(frame: Frame) -> BoardOutput:
    """What a frame makes the board show or say; BoardError when DATA breaks the layout."""
    d, out = frame.data, dict(address=frame.address, command=frame.command)
    if frame.command == 0x62:
        if len(d) < 2:
            raise BoardError(f"show line: {len(d)} DATA bytes, a line index and a colour need 2")
        return BoardOutput(**out, lines=(ShownLine(d[0], _text(d[2:], "line text"), d[1]),))
    if frame.command == 0x30:
        if not d:
            raise BoardError("speak: no option byte")
        return BoardOutput(**out, speech=_text(d[1:], "speech") or None)
    if frame.command == 0x6E:
        if not d:
            raise BoardError("show+speak: no line count")
        lines, i = [], 1
        for _ in range(d[0]):
            if i + 3 > len(d) or i + 3 + d[i + 2] > len(d):
                raise BoardError("show+speak: a line runs past the end of DATA")
            n = d[i + 2]
            lines.append(ShownLine(d[i], _text(d[i + 3:i + 3 + n], "line text"), d[i + 1]))
            i += 3 + n
        if i + 2 > len(d) or i + 2 + d[i + 1] != len(d):
            raise BoardError("show+speak: the voice part does not end DATA exactly")
        voice = _text(d[i + 2:], "voice text")
        return BoardOutput(**out, lines=tuple(lines), speech=voice or None)
    if frame.command == 0x05:
        if len(d) != 7:
            raise BoardError(f"set clock: {len(d)} DATA bytes, 7 needed")
        try:
            at = datetime(2000 + d[0], d[1], d[2], d[3], d[4], d[5])
        except ValueError:
            raise BoardError("set clock: not a date and time") from None
        if at.isoweekday() != d[6]:
            raise BoardError(f"set clock: weekday {d[6]} but {at:%Y-%m-%d} is a {at.isoweekday()}")
        return BoardOutput(**out, clock=at)
    if frame.command == 0xE1:
        url = _text(d, "QR text")
        if not url:
            raise BoardError("show QR: empty")
        return BoardOutput(**out, qr=url)
    return BoardOutput(**out, known=False)


class LedBoard:
    def __init__(self, path: Optional[str] = None, *, baudrate: int = 9600, address: Optional[int] = None) -> None:
        self.path = path
        self.baudrate = baudrate
        self.address = address
        self.decoder = FrameDecoder()
        self.screen: dict[int, ShownLine] = {}  # line index -> what it shows now
        self.speech: list[str] = []  # everything said, in order
        self.qr: Optional[str] = None  # the QR code shown last
        self.clock: Optional[datetime] = None
        self.outputs: list[BoardOutput] = []  # every accepted frame's effect, in order
        self.rejected: list[tuple[Frame, str]] = []
        self.unknown: list[Frame] = []
        self.ignored = 0
        self.on_output: Optional[Callable[[BoardOutput], None]] = None
        self._reader_task: Optional[asyncio.Task[None]] = None
        self._writer: Optional[asyncio.StreamWriter] = None

    # -- what the driver sees and hears -----------------------------------------------------------------
    @property
    def lines(self) -> list[str]:
        """The display's lines top to bottom (lines never written are left out)."""
        return [self.screen[i].text for i in sorted(self.screen)]

    def sees(self, text: str) -> bool:
        """True when some line on the display contains `text`."""
        return any(text in line for line in self.lines)

    def hears(self, text: str) -> bool:
        """True when something said so far contains `text`."""
        return any(text in said for said in self.speech)

    @property
    def stats(self):
        return self.decoder.stats

    # -- bytes in ---------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[BoardOutput]:
        """Decode bytes (any split, any garbage) and apply the frames they complete; returns their effects."""
        applied = []
        for frame in self.decoder.feed(data):
            out = self._apply(frame)
            if out is not None:
                applied.append(out)
        return applied

    def _apply(self, frame: Frame) -> Optional[BoardOutput]:
        if self.address is not None and frame.address != self.address:
            self.ignored += 1
            return None
        try:
            out = describe(frame)
        except BoardError as exc:
            self.rejected.append((frame, str(exc)))
            return None
        if not out.known:
            self.unknown.append(frame)
            return None
        for line in out.lines:
            self.screen[line.line] = line
        if out.speech is not None:
            self.speech.append(out.speech)
        if out.qr is not None:
            self.qr = out.qr
        if out.clock is not None:
            self.clock = out.clock
        self.outputs.append(out)
        if self.on_output is not None:
            self.on_output(out)
        return out

    async def until(self, predicate: Callable[[], bool], timeout: float = 2.0) -> None:
        """Wait until predicate() holds; TimeoutError (naming what the board shows) otherwise."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await asyncio.sleep(0.005)
        except TimeoutError:
            raise TimeoutError(f"LED board: lines={self.lines} speech={self.speech} qr={self.qr!r} "
                               f"stats={self.stats} rejected={len(self.rejected)}") from None

    # -- serial line ------------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._reader_task is not None:
            return
        if self.path is None:
            raise ValueError("this board has no serial path: use feed()")
        reader, self._writer = await serial_asyncio_fast.open_serial_connection(url=self.path,
                                                                                baudrate=self.baudrate)
        self._reader_task = asyncio.create_task(self._read(reader), name=f"led-board-{self.path}")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(1024):
            self.feed(chunk)

    async def close(self) -> None:
        task, self._reader_task = self._reader_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2.0)

    async def __aenter__(self) -> "LedBoard":
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def format_output(out: BoardOutput) -> str:
    parts = [f"[{out.address}:0x{out.command:02X}]"]
    parts += [f"line {ln.line} (colour {ln.colour}): {ln.text}" for ln in out.lines]
    if out.speech is not None:
        parts.append(f"says: {out.speech}")
    if out.qr is not None:
        parts.append(f"QR: {out.qr}")
    if out.clock is not None:
        parts.append(f"clock: {out.clock:%Y-%m-%d %H:%M:%S}")
    return "  ".join(parts)


async def _main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.emulators.led_board", description=__doc__.split("\n")[0])
    ap.add_argument("path", help="tty to read (device end of a pty cable, or a serial adapter)")
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--address", type=int, default=None, help="answer only this board address")
    args = ap.parse_args(argv)
    board = LedBoard(args.path, baudrate=args.baud, address=args.address)
    board.on_output = lambda out: print(format_output(out), flush=True)
    async with board:
        while True:
            await asyncio.sleep(3600)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(asyncio.run(_main()))
