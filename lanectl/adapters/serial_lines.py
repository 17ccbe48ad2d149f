"""Line-oriented serial devices: the plate camera's RS-485 output and the booth's payment-code scanner.

SerialLineSource owns one tty: it opens it with pyserial-asyncio-fast, hands every chunk to a per-connection
handler (a codec that never reads a port), and when the port vanishes (USB adapter unplugged, cable cut,
pty closed) it reports DeviceFault once, retries with capped exponential backoff and reports DeviceRecovered
once when the port opens again. It logs once on failure and once on recovery, never each retry.

SerialPlateReader is that loop plus the plate-line codec: one PlateRead per decoded line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Literal, Optional

import serial
import serial_asyncio_fast

from lanectl.config.devices import SerialLine
from lanectl.config.devices import SerialPlateReader as SerialPlateReaderConfig
from lanectl.core.events import CodeScanned, DeviceFault, DeviceRecovered, PlateRead
from lanectl.core.plates import DEFAULT_SPECIAL_PREFIXES
from lanectl.protocols.plate_serial import DecodeStats, PlateLineDecoder
from lanectl.protocols.scan_codes import ScanLineDecoder, ScanStats
from lanectl.service.ports import Clock, Emit

log = logging.getLogger(__name__)

DeviceName = Literal["barrier", "plate_reader", "display", "scanner"]
ChunkHandler = Callable[[bytes], None]
# Called on every (re)open with the emit function; returns the handler for that connection's bytes. A fresh
# handler per connection means half a line from before an unplug is never glued to the next line.
SessionFactory = Callable[[Emit], ChunkHandler]

CLOSE_TIMEOUT_S = 2.0


class _LoopClock:
    """Fallback Clock for the backoff when none is injected (only monotonic() and sleep() are used)."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _PortProtocol(asyncio.Protocol):
    def __init__(self, handler: ChunkHandler, owner: "SerialLineSource") -> None:
        self._handler = handler
        self._owner = owner
        self.closed: asyncio.Future[Optional[Exception]] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._owner.chunks += 1
        self._owner.bytes += len(data)
        try:
            self._handler(data)
        except Exception:  # a handler bug must not kill the port; the codec itself never raises
            log.exception("%s: error handling %d bytes from %s", self._owner.name, len(data), self._owner.port)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


class SerialLineSource:
    def __init__(self, line: SerialLine, *, name: str, device: DeviceName, session: SessionFactory,
                 clock: Optional[Clock] = None, backoff_min_s: float = 0.2, backoff_max_s: float = 5.0,
                 stable_s: float = 5.0) -> None:
        self.line = line
        self.name = name
        self.device: DeviceName = device
        self._session = session
        self._clock = clock or _LoopClock()
        self._backoff = (backoff_min_s, backoff_max_s)
        self._stable_s = stable_s  # a port must stay open this long before the backoff starts over
        self.connected = False
        self.fault: Optional[str] = None  # the reason while faulted
        self.chunks = 0  # reads delivered by the port (diagnostics: split reads, traffic)
        self.bytes = 0

    @property
    def port(self) -> str:
        return self.line.port

    async def run(self, emit: Emit) -> None:
        """Read until cancelled; cancelling closes the port."""
        delay = self._backoff[0]
        while True:
            try:
                transport, proto = await self._open(emit)
            except (serial.SerialException, OSError, ValueError) as exc:
                self._failed(emit, str(exc) or type(exc).__name__)
            else:
                self._opened(emit)
                opened_at = self._clock.monotonic()
                try:
                    exc = await asyncio.shield(proto.closed)  # shield: a cancel must not cancel this future
                finally:  # also on cancellation: never leave the tty open
                    self.connected = False
                    await self._close(transport, proto)
                self._failed(emit, str(exc) if exc else "port closed")
                if self._clock.monotonic() - opened_at >= self._stable_s:
                    delay = self._backoff[0]
            await self._clock.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    # -- port --------------------------------------------------------------------------------------------
    def _open_port(self) -> serial.Serial:
        return serial.Serial(port=self.line.port, baudrate=self.line.baudrate, bytesize=self.line.bytesize,
                             parity=self.line.parity, stopbits=self.line.stopbits, timeout=0,
                             exclusive=True)  # one owner per port: a second daemon fails loudly, not silently

    async def _open(self, emit: Emit) -> tuple[asyncio.Transport, _PortProtocol]:
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(None, self._open_port)
        try:
            ser = await asyncio.shield(opening)
        except asyncio.CancelledError:  # cancelled mid-open: close the port the worker thread may still open
            opening.add_done_callback(lambda f: f.cancelled() or f.exception() or f.result().close())
            raise
        proto = _PortProtocol(self._session(emit), self)
        transport, _ = await serial_asyncio_fast.connection_for_serial(loop, lambda: proto, ser)
        return transport, proto

    async def _close(self, transport: asyncio.Transport, proto: _PortProtocol) -> None:
        if not proto.closed.done():
            transport.abort()  # no flush: we never write, and tcdrain on a dead port could hang
        try:
            await asyncio.wait_for(asyncio.shield(proto.closed), CLOSE_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning("%s: %s did not close within %.0f s", self.name, self.port, CLOSE_TIMEOUT_S)

    # -- availability (log and emit on edges only) -------------------------------------------------------
    def _opened(self, emit: Emit) -> None:
        self.connected = True
        ln = self.line
        if self.fault is None:
            log.info("%s: %s open on %s (%d %d%s%d)", self.name, self.device, ln.port, ln.baudrate,
                     ln.bytesize, ln.parity, ln.stopbits)
            return
        log.info("%s: %s recovered, %s open again", self.name, self.device, ln.port)
        self.fault = None
        emit(DeviceRecovered(self.device))

    def _failed(self, emit: Emit, reason: str) -> None:
        if self.fault is not None:
            log.debug("%s: %s still unavailable: %s", self.name, self.port, reason)
            return
        self.fault = reason
        log.warning("%s: %s on %s unavailable, retrying: %s", self.name, self.device, self.port, reason)
        emit(DeviceFault(self.device, reason))


class SerialPlateReader:
    """PlateSource for a camera that prints one `plate,colour,confidence` line per recognition."""

    def __init__(self, config: SerialPlateReaderConfig, *, name: str, clock: Optional[Clock] = None,
                 backoff_min_s: float = 0.2, backoff_max_s: float = 5.0,
                 on_activity: Optional[Callable[[], None]] = None,
                 special_prefixes: tuple[str, ...] = DEFAULT_SPECIAL_PREFIXES) -> None:
        self.config = config
        self.name = name
        self.special_prefixes = special_prefixes  # the site's plates with no province first (WJ, 使, ...)
        # Called for every chunk received: a plate line is arriving, a barrier command may follow it (the
        # app uses it to keep the barrier's bus free of polls for that moment).
        self.on_activity = on_activity
        self.stats = DecodeStats()  # cumulative over reconnects
        self.source = SerialLineSource(config, name=name, device="plate_reader", session=self._session,
                                       clock=clock, backoff_min_s=backoff_min_s, backoff_max_s=backoff_max_s)

    @property
    def connected(self) -> bool:
        return self.source.connected

    @property
    def fault(self) -> Optional[str]:
        return self.source.fault

    async def run(self, emit: Emit) -> None:
        await self.source.run(emit)

    def _session(self, emit: Emit) -> ChunkHandler:
        decoder = PlateLineDecoder(encoding=self.config.encoding, delimiter=self.config.delimiter,
                                   special_prefixes=self.special_prefixes, stats=self.stats)
        warned = False

        def on_chunk(data: bytes) -> None:
            nonlocal warned
            if self.on_activity is not None:
                self.on_activity()
            skipped, resynced = self.stats.skipped, self.stats.resynced
            for line in decoder.feed(data):
                color = "" if line.color == "unknown" else line.color  # PlateRead's spelling of unknown
                emit(PlateRead(line.plate, color, line.confidence, source=self.name))
            if (self.stats.skipped > skipped or self.stats.resynced > resynced) and not warned:
                warned = True  # once per connection: a wrong baud rate or encoding makes every line garbage
                log.warning("%s: skipping undecodable input on %s (%s, delimiter %r): %s", self.name,
                            self.config.port, self.config.encoding, self.config.delimiter, self.stats)

        return on_chunk


class BoothScanner:
    """The booth's payment-code scanner on a serial line: one CodeScanned per code read; other lines are skipped
    and counted."""

    def __init__(self, config: SerialLine, *, name: str, clock: Optional[Clock] = None,
                 backoff_min_s: float = 0.2, backoff_max_s: float = 5.0) -> None:
        self.config, self.name = config, name
        self.stats = ScanStats()  # cumulative over reconnects
        self.source = SerialLineSource(config, name=name, device="scanner", session=self._session, clock=clock,
                                       backoff_min_s=backoff_min_s, backoff_max_s=backoff_max_s)

    async def run(self, emit: Emit) -> None:
        await self.source.run(emit)

    def _session(self, emit: Emit) -> ChunkHandler:
        decoder = ScanLineDecoder(stats=self.stats)

        def on_chunk(data: bytes) -> None:
            for code in decoder.feed(data):
                log.info("%s: payment code scanned (%s…)", self.name, code[:4])  # never the whole code in logs
                emit(CodeScanned(code))
        return on_chunk
