"""The lane's LED text + voice board (the Display port), on its own RS-485 line or behind the camera.

A message (lanectl.core.effects.Display) is rendered from its `key` and `fields` through the lot's templates
(config `templates` over DEFAULT_TEMPLATES), filled with the fields board_wording.board_fields makes of the
lane's facts. A template that cannot be rendered for this message — a field missing or empty (a plate-less car
has no plate to show), a text the frame cannot carry — falls back to the lane's own wording
(board_wording.lane_wording): a template problem never costs the driver the message. A key with no wording at
all is a DisplayError. Templates were checked when the configuration was loaded (unknown placeholders are
config errors).

Rendered text is split into the board's lines on "|" (or, without one, on spaces: the first words one per
line, the rest on the last line); unused lines are sent empty so nothing stale stays lit. The voice says the
same text unless `voice: false`. pay_fallback also shows a QR code when `qr_url` is set.

Sending:
- serial: the port is opened on the first message (pyserial, exclusive), written from a worker thread with a
  write timeout (a write-only device: a blocking write with a bound is simpler than a transport and reports
  the error right where it happened). On failure the port is closed and DisplayError raised (the runner logs
  it); the next message reopens it, no sooner than the backoff allows. Faulted / recovered are logged once.
  A board that is powered off on a live RS-485 line cannot be noticed: it does not answer these frames.
- via_camera: the frames are queued on the camera and ride in its next reply (serialData).
"""

from __future__ import annotations

import asyncio
import logging
import string
import termios
import threading
import time
from typing import Optional

import serial

from lanectl.adapters.board_wording import Said, UnknownMessage, say
from lanectl.adapters.camera_http import VzenithCamera
from lanectl.config.devices import DEFAULT_TEMPLATES, LedBoardConfig, template_fields
from lanectl.core import effects as fx
from lanectl.protocols.led_board import Colour, LedBoardError, show_lines_and_speak, show_qr

log = logging.getLogger(__name__)

# Colour follows what the driver must do: red stop / see the booth, yellow pay, green go.
COLOURS: dict[str, int] = {"refused": Colour.RED, "fault": Colour.RED, "booth": Colour.RED,
                           "balance_short": Colour.RED, "pay": Colour.YELLOW, "pay_fallback": Colour.YELLOW}


class DisplayError(Exception):
    """The board could not be written to (port missing, write failed or timed out)."""


def render(template: str, fields: dict[str, str]) -> Optional[str]:
    """The template filled in; None when a placeholder has no value (missing or empty) or the template is
    broken."""
    try:
        names = template_fields(template)
        if any(not fields.get(n) for n in names):
            return None
        return string.Formatter().vformat(template, (), fields)
    except (ValueError, KeyError, IndexError, AttributeError):
        return None


def split_lines(text: str, lines: int) -> tuple[list[str], str]:
    """(the board's `lines` lines, the words to say)."""
    parts = [p.strip() for p in text.split("|")] if "|" in text else text.split()
    parts = [p for p in parts if p]
    voice = " ".join(parts)
    if len(parts) > lines:
        parts = parts[:lines - 1] + [" ".join(parts[lines - 1:])]
    return parts + [""] * (lines - len(parts)), voice


class LedBoardDisplay:
    def __init__(self, cfg: LedBoardConfig, camera: Optional[VzenithCamera] = None, *, lane_id: str = "",
                 name: str = "", backoff_min_s: float = 0.2, backoff_max_s: float = 5.0) -> None:
        if cfg.via_camera and camera is None:
            raise ValueError("via_camera: the lane has no camera to carry the board's frames")
        self.cfg = cfg
        self.camera = camera if cfg.via_camera else None
        self.lane_id = lane_id
        self.name = name or f"{lane_id or 'lane'}-display"
        self.templates = {**DEFAULT_TEMPLATES, **cfg.templates}
        self.shown = 0
        self.fallbacks = 0  # messages shown in the lane's default wording (no usable template)
        self.failures = 0
        self.fault: Optional[str] = None
        self._backoff = (backoff_min_s, backoff_max_s)
        self._delay = backoff_min_s
        self._retry_at = 0.0
        self._port: Optional[serial.Serial] = None
        self._port_lock = threading.Lock()  # a cancelled show() must not let two threads interleave frames
        self._lock = asyncio.Lock()
        if self.camera is not None:
            self.camera.attach_display()

    # -- the Display port ----------------------------------------------------------------------------------
    async def show(self, message: fx.Display) -> None:
        frames = self.frames(message)
        if self.camera is not None:
            self.camera.queue_serial(self.cfg.camera_channel, frames)
            self.shown += 1
            return
        async with self._lock:
            await self._write(b"".join(frames))
        self.shown += 1

    # -- rendering -----------------------------------------------------------------------------------------
    def render(self, message: fx.Display) -> tuple[list[str], str]:
        """(lines, voice) for `message`: its template, else the lane's wording."""
        return self._render(message, self._said(message))

    def _said(self, message: fx.Display) -> Said:
        try:
            return say(message)
        except UnknownMessage as exc:
            raise DisplayError(str(exc.args[0])) from None

    def _render(self, message: fx.Display, said: Said) -> tuple[list[str], str]:
        template = self.templates.get(message.key)
        text = render(template, said.fields) if template is not None else None
        if text is not None and text.replace("|", "").strip():
            return split_lines(text, self.cfg.lines)
        self.fallbacks += 1
        return self._lane_wording(said)

    def _lane_wording(self, said: Said) -> tuple[list[str], str]:
        lines, spoken = split_lines(said.text, self.cfg.lines)
        return lines, said.voice or spoken

    def frames(self, message: fx.Display) -> list[bytes]:
        colour = COLOURS.get(message.key, Colour.GREEN)
        said = self._said(message)
        lines, voice = self._render(message, said)
        try:
            frame = self._frame(lines, voice, colour)
        except LedBoardError as exc:  # e.g. a long template over one frame: the lane's shorter wording
            log.warning("%s: %s message does not fit the board (%s); showing the default wording",
                        self.name, message.key or "a", exc)
            self.fallbacks += 1
            frame = self._frame(*self._lane_wording(said), colour)  # LedBoardError here: the lane's text
        out = [frame]
        if message.key == "pay_fallback" and self.cfg.qr_url:
            url = render(self.cfg.qr_url, {**said.fields, "lane": self.lane_id})
            if url:
                try:
                    out.append(show_qr(url, address=self.cfg.address))
                except LedBoardError as exc:
                    log.warning("%s: QR code not shown: %s", self.name, exc)
        return out

    def _frame(self, lines: list[str], voice: str, colour: int) -> bytes:
        return show_lines_and_speak(lines, voice if self.cfg.voice else None, colour=colour,
                                    address=self.cfg.address)

    # -- serial line ---------------------------------------------------------------------------------------
    async def _write(self, data: bytes) -> None:
        if self._port is None and time.monotonic() < self._retry_at:
            raise DisplayError(f"board on {self.cfg.port} unavailable: {self.fault} "
                               f"(next try in {self._retry_at - time.monotonic():.1f} s)")
        try:
            await asyncio.to_thread(self._write_blocking, data)
        except (serial.SerialException, OSError, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
            self.failures += 1
            self._retry_at = time.monotonic() + self._delay
            self._delay = min(self._delay * 2, self._backoff[1])
            if self.fault is None:
                log.warning("%s: board on %s unavailable: %s", self.name, self.cfg.port, reason)
            self.fault = reason
            raise DisplayError(f"board on {self.cfg.port}: {reason}") from None
        self._delay = self._backoff[0]
        if self.fault is not None:
            log.info("%s: board on %s back", self.name, self.cfg.port)
            self.fault = None

    def _write_blocking(self, data: bytes) -> None:
        with self._port_lock:
            if self._port is None:
                self._port = serial.Serial(port=self.cfg.port, baudrate=self.cfg.baudrate,
                                           bytesize=self.cfg.bytesize, parity=self.cfg.parity,
                                           stopbits=self.cfg.stopbits, timeout=0,
                                           write_timeout=self.cfg.write_timeout_s, exclusive=True)
            try:
                self._port.reset_input_buffer()  # nobody reads the board's answers; keep the buffer empty
                written = self._port.write(data)
                if written != len(data):
                    raise serial.SerialException(f"wrote {written} of {len(data)} bytes")
            except termios.error as exc:  # tcflush on a vanished tty: not an OSError
                self._close_port()
                raise serial.SerialException(f"{exc.args[-1]} (flush)") from None
            except BaseException:
                self._close_port()
                raise

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass

    async def aclose(self) -> None:
        """Close the board's port (shutdown)."""
        async with self._lock:
            await asyncio.to_thread(self._locked_close)

    def _locked_close(self) -> None:
        with self._port_lock:
            self._close_port()
