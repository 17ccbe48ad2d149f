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
from datetime import datetime
from typing import Callable, Optional, Sequence

import serial_asyncio_fast

from lanectl.protocols.led_board import (
    BoardOutput,
    Frame,
    FrameDecoder,
    LedBoardError,
    ShownLine,
    describe,
)


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
        except LedBoardError as exc:
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
