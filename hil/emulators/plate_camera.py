"""A plate camera's serial output: one `plate,colour,confidence\\r\\n` line per recognition (GBK by default).

Opens a tty path — the device end of a pty cable, or a real USB–RS-485 adapter wired to the lane PC — and
writes lines. `send_raw` writes any bytes (garbage, half lines), optionally in small chunks with gaps, to
exercise the reader's framing.

Standalone:
    python -m hil.emulators.plate_camera PATH 粤B12345 [京A88888 ...] [--color blue] [--confidence 95]
    python -m hil.emulators.plate_camera PATH            # then type: 粤B12345 [colour] [confidence]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Optional, Sequence

import serial_asyncio_fast


def plate_line(plate: str, color: str = "blue", confidence: int = 95, *, encoding: str = "gbk",
               delimiter: str = ",") -> bytes:
    """One recognition as lane-hardware.md's text-line codec prints it: the fields plate, colour, confidence
    joined by the delimiter, `\\r\\n` terminated, in the camera's encoding (GBK or UTF-8), e.g. `粤B12345,blue,96`."""
    text = delimiter.join((plate, color, str(confidence))) + "\r\n"
    return text.encode(encoding)


class PlateCamera:
    def __init__(self, path: str, encoding: str = "gbk", delimiter: str = ",", *, baudrate: int = 9600) -> None:
        self.path = path
        self.encoding = encoding
        self.delimiter = delimiter
        self.baudrate = baudrate
        self._writer: Optional[asyncio.StreamWriter] = None
        self.sent = 0  # lines sent with send()

    async def open(self) -> None:
        if self._writer is None:
            _, self._writer = await serial_asyncio_fast.open_serial_connection(url=self.path,
                                                                               baudrate=self.baudrate)

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.close()  # flushes what was written, then closes the tty
        try:
            await asyncio.wait_for(writer.wait_closed(), 2.0)
        except Exception:  # a stuck line (flow control) or a vanished peer: do not hang the rig on close
            pass

    async def __aenter__(self) -> "PlateCamera":
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, plate: str, color: str = "blue", confidence: int = 95) -> bytes:
        """Print one recognition; returns the bytes written."""
        data = plate_line(plate, color, confidence, encoding=self.encoding, delimiter=self.delimiter)
        await self.send_raw(data)
        self.sent += 1
        return data

    async def send_raw(self, data: bytes, *, chunk: Optional[int] = None, gap_s: float = 0.0) -> None:
        """Write bytes as they are; with `chunk`, in pieces of that size with `gap_s` between them."""
        await self.open()
        assert self._writer is not None
        step = chunk or len(data) or 1
        for i in range(0, len(data), step):
            if i and gap_s:
                await asyncio.sleep(gap_s)
            self._writer.write(data[i:i + step])
            await self._writer.drain()


async def _main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.emulators.plate_camera", description=__doc__.split("\n")[0])
    ap.add_argument("path", help="tty to write to (device end of a pty cable, or a serial adapter)")
    ap.add_argument("plates", nargs="*", help="plates to send; none: read `plate [colour] [confidence]` lines")
    ap.add_argument("--color", default="blue")
    ap.add_argument("--confidence", type=int, default=95)
    ap.add_argument("--encoding", default="gbk", choices=["gbk", "utf-8"])
    ap.add_argument("--delimiter", default=",")
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between plates given as arguments")
    args = ap.parse_args(argv)
    async with PlateCamera(args.path, args.encoding, args.delimiter, baudrate=args.baud) as camera:
        if args.plates:
            for i, plate in enumerate(args.plates):
                if i:
                    await asyncio.sleep(args.interval)
                print((await camera.send(plate, args.color, args.confidence)).decode(args.encoding).rstrip())
            await asyncio.sleep(0.1)  # let the last bytes leave before the port closes
            return 0
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            fields = line.split()
            if not fields:
                continue
            color = fields[1] if len(fields) > 1 else args.color
            confidence = int(fields[2]) if len(fields) > 2 else args.confidence
            print((await camera.send(fields[0], color, confidence)).decode(args.encoding).rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(_main()))
