"""LED text + voice board codec (the common RS-485 lane-board frame; many vendors share it).

    DA | VR | PN(2) | CMD | DL | DATA[DL] | CRC16(2)

DA is the board address (0x00 unless the board is re-addressed), VR the protocol version 0x64, PN the packet
number 0xFFFF, DL the length of DATA (0..255). CRC16 is CRC-16/Modbus (reflected poly 0xA001, init 0xFFFF,
no final xor) over every byte before it, sent LOW BYTE FIRST. Text is GBK.

Exact DATA layouts vary between boards; these are the ones this codec speaks (one row of COMMANDS each):

    0x62 SHOW_LINE   line(1) colour(1) text...                     one line of text (empty text clears it)
    0x30 SPEAK       option(1) text...                             speech; option 0x01 = interrupt and speak
                                                                   now, 0x00 = queue after what is playing
    0x6E SHOW_SPEAK  n(1) n×[line(1) colour(1) len(1) text[len]]   several lines, then one voice part;
                     option(1) vlen(1) voice[vlen]                 vlen 0 = silent. Nothing may follow it.
    0x05 SET_CLOCK   yy mm dd hh mi ss wd (7 binary bytes)         yy = year - 2000, wd = ISO weekday 1..7
                                                                   (Monday = 1); the board's wall clock
    0xE1 SHOW_QR     url...                                        a QR code for the URL (GBK, non-empty)

Colours are board palette indices; Colour names the usual three (red 1, green 2, yellow 3), any 0..255 passes.

Encoders return whole frames as bytes and raise LedBoardError for anything that cannot be framed (text not in
GBK, DATA over 255 bytes, a field out of byte range). FrameDecoder takes bytes as they come off the wire and
returns frames; it resynchronises on garbage and never raises. describe() turns a frame into what a driver
would see and hear (for the HIL board emulator) and raises LedBoardError for DATA that breaks its layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Callable, Optional, Sequence, Union

VR = 0x64
PN = 0xFFFF
HEADER_LEN = 6  # DA VR PN PN CMD DL
CRC_LEN = 2
MAX_DATA = 255
MIN_FRAME = HEADER_LEN + CRC_LEN
_MAGIC = bytes([VR, PN & 0xFF, PN >> 8])  # what follows DA in every frame: the decoder's sync pattern

ENCODING = "gbk"


class LedBoardError(ValueError):
    """A frame that cannot be built, or DATA that does not fit its command's layout."""


class Command(IntEnum):
    SHOW_LINE = 0x62
    SPEAK = 0x30
    SHOW_SPEAK = 0x6E
    SET_CLOCK = 0x05
    SHOW_QR = 0xE1


class Colour(IntEnum):
    RED = 1
    GREEN = 2
    YELLOW = 3


SPEAK_QUEUE = 0x00
SPEAK_NOW = 0x01


# -- CRC and framing -------------------------------------------------------------------------------------
def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_modbus(data: bytes) -> int:
    """CRC-16/Modbus of `data` (b"123456789" -> 0x4B37; on the wire low byte first: 37 4B)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc


def _byte(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFF:
        raise LedBoardError(f"{name} must be an integer 0..255, got {value!r}")
    return int(value)


def _text(name: str, text: str) -> bytes:
    if not isinstance(text, str):
        raise LedBoardError(f"{name} must be text, got {type(text).__name__}")
    try:
        return text.encode(ENCODING)
    except UnicodeEncodeError as exc:
        raise LedBoardError(f"{name} {text!r} has a character GBK cannot carry: {text[exc.start]!r}") from None


def encode_frame(command: int, data: bytes, *, address: int = 0) -> bytes:
    """One frame around `data`; raises LedBoardError when DATA is over 255 bytes."""
    if len(data) > MAX_DATA:
        raise LedBoardError(f"text too long: command 0x{command:02X} needs {len(data)} bytes of DATA, "
                            f"a frame carries at most {MAX_DATA}")
    body = bytes([_byte("address", address), VR, PN & 0xFF, PN >> 8, _byte("command", command), len(data)]) + data
    crc = crc16_modbus(body)
    return body + bytes([crc & 0xFF, crc >> 8])


# -- encoders --------------------------------------------------------------------------------------------
def show_line(line: int, text: str, colour: int = Colour.GREEN, *, address: int = 0) -> bytes:
    """0x62: show `text` on display line `line` (0 = top)."""
    data = bytes([_byte("line", line), _byte("colour", colour)]) + _text("text", text)
    return encode_frame(Command.SHOW_LINE, data, address=address)


def speak(text: str, *, option: int = SPEAK_NOW, address: int = 0) -> bytes:
    """0x30: say `text`."""
    return encode_frame(Command.SPEAK, bytes([_byte("option", option)]) + _text("voice", text), address=address)


LineSpec = Union[str, tuple[int, str], tuple[int, str, int]]


def show_lines_and_speak(lines: Sequence[LineSpec], voice: Optional[str] = None, *, colour: int = Colour.GREEN,
                         option: int = SPEAK_NOW, address: int = 0) -> bytes:
    """0x6E: several lines and one voice message in one frame. Each line is a text (shown on the line of its
    position, in `colour`), a (line, text) or a (line, text, colour). `voice` None or "" = silent."""
    if isinstance(lines, str):
        raise LedBoardError("lines must be a sequence of lines, not one text")
    parts = [bytes([_byte("number of lines", len(lines))])]
    for i, spec in enumerate(lines):
        if isinstance(spec, str):
            index, text, col = i, spec, colour
        elif isinstance(spec, tuple) and len(spec) in (2, 3):
            index, text, col = spec[0], spec[1], spec[2] if len(spec) == 3 else colour
        else:
            raise LedBoardError(f"line {i}: expected text, (line, text) or (line, text, colour), got {spec!r}")
        raw = _text(f"line {i}", text)
        parts.append(bytes([_byte("line", index), _byte("colour", col), _byte(f"line {i} length", len(raw))]) + raw)
    said = _text("voice", voice or "")
    parts.append(bytes([_byte("option", option), _byte("voice length", len(said))]) + said)
    return encode_frame(Command.SHOW_SPEAK, b"".join(parts), address=address)


def set_clock(dt: datetime, *, address: int = 0) -> bytes:
    """0x05: set the board's wall clock to the fields of `dt` as given (no timezone conversion)."""
    if not 2000 <= dt.year <= 2255:
        raise LedBoardError(f"the board's clock counts years 2000..2255, got {dt.year}")
    data = bytes([dt.year - 2000, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.isoweekday()])
    return encode_frame(Command.SET_CLOCK, data, address=address)


def show_qr(url: str, *, address: int = 0) -> bytes:
    """0xE1: show a QR code for `url` (e.g. the lot's pay page for this lane)."""
    raw = _text("url", url)
    if not raw:
        raise LedBoardError("a QR code needs a URL")
    return encode_frame(Command.SHOW_QR, raw, address=address)


# -- decoder ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Frame:
    address: int
    command: int
    data: bytes


@dataclass
class FrameStats:
    frames: int = 0
    skipped_bytes: int = 0  # bytes that were not part of any good frame (garbage, and bad frames' bytes)
    bad_crc: int = 0  # plausible headers whose CRC did not match


@dataclass
class FrameDecoder:
    """Bytes in, frames out. Sync pattern: VR 0x64 then PN FF FF after the address byte. On a CRC mismatch the
    candidate's first byte is dropped and the scan goes on, so a frame hidden inside a bad one is still found.
    Decisions depend only on bytes already seen, so the output and stats never depend on how reads split.
    Bytes still undecided (a possible frame start, an incomplete frame) wait in the buffer: `pending`."""

    stats: FrameStats = field(default_factory=FrameStats)
    _buf: bytearray = field(default_factory=bytearray)

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        while True:
            start = self._sync()
            if start:
                del self._buf[:start]
                self.stats.skipped_bytes += start
            if len(self._buf) < HEADER_LEN:
                return out
            total = MIN_FRAME + self._buf[5]
            if len(self._buf) < total:
                return out
            body, crc = bytes(self._buf[:total - CRC_LEN]), self._buf[total - CRC_LEN:total]
            if crc16_modbus(body) != crc[0] | crc[1] << 8:
                self.stats.bad_crc += 1
                self.stats.skipped_bytes += 1
                del self._buf[:1]
                continue
            del self._buf[:total]
            self.stats.frames += 1
            out.append(Frame(body[0], body[4], body[HEADER_LEN:]))

    def _sync(self) -> int:
        """Index of the first byte that is, or may still become, the start of a frame."""
        buf, n = self._buf, len(self._buf)
        i = buf.find(_MAGIC, 1) - 1 if n > len(_MAGIC) else -2
        if i >= 0:
            return i
        # no full sync pattern: keep the shortest tail that could still grow into one
        for start in range(max(0, n - len(_MAGIC)), n):
            if buf[start + 1:] == _MAGIC[:n - start - 1]:
                return start
        return n


# -- what a driver sees and hears ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ShownLine:
    line: int
    text: str
    colour: int


@dataclass(frozen=True, slots=True)
class BoardOutput:
    """The effect of one frame. `known` is False for a command this codec has no layout for."""

    address: int
    command: int
    lines: tuple[ShownLine, ...] = ()
    speech: Optional[str] = None  # None: nothing said
    speech_option: Optional[int] = None
    clock: Optional[datetime] = None
    qr: Optional[str] = None
    known: bool = True


def _decode_text(what: str, raw: bytes) -> str:
    try:
        return raw.decode(ENCODING)
    except UnicodeDecodeError:
        raise LedBoardError(f"{what} is not GBK text: {raw.hex(' ')}") from None


def _need(data: bytes, n: int, what: str) -> None:
    if len(data) < n:
        raise LedBoardError(f"DATA too short for {what}: {len(data)} bytes, at least {n} needed")


def _describe_line(f: Frame) -> BoardOutput:
    _need(f.data, 2, "line + colour")
    line = ShownLine(f.data[0], _decode_text("line text", f.data[2:]), f.data[1])
    return BoardOutput(f.address, f.command, lines=(line,))


def _describe_speak(f: Frame) -> BoardOutput:
    _need(f.data, 1, "the voice option")
    return BoardOutput(f.address, f.command, speech=_decode_text("voice", f.data[1:]), speech_option=f.data[0])


def _describe_show_speak(f: Frame) -> BoardOutput:
    d = f.data
    _need(d, 1, "the number of lines")
    pos, lines = 1, []
    for i in range(d[0]):
        _need(d, pos + 3, f"line {i}'s header")
        size = d[pos + 2]
        _need(d, pos + 3 + size, f"line {i}'s text")
        lines.append(ShownLine(d[pos], _decode_text(f"line {i}", d[pos + 3:pos + 3 + size]), d[pos + 1]))
        pos += 3 + size
    _need(d, pos + 2, "the voice option + length")
    option, size = d[pos], d[pos + 1]
    if len(d) != pos + 2 + size:
        raise LedBoardError(f"voice part says {size} bytes, DATA has {len(d) - pos - 2} after it")
    voice = _decode_text("voice", d[pos + 2:])
    return BoardOutput(f.address, f.command, lines=tuple(lines), speech=voice or None,
                       speech_option=option if voice else None)


def _describe_clock(f: Frame) -> BoardOutput:
    if len(f.data) != 7:
        raise LedBoardError(f"a clock is 7 bytes of DATA, got {len(f.data)}")
    yy, mo, dd, hh, mi, ss, wd = f.data
    try:
        dt = datetime(2000 + yy, mo, dd, hh, mi, ss)
    except ValueError as exc:
        raise LedBoardError(f"not a clock: {f.data.hex(' ')} ({exc})") from None
    if wd != dt.isoweekday():
        raise LedBoardError(f"weekday {wd} does not match {dt:%Y-%m-%d} (ISO weekday {dt.isoweekday()})")
    return BoardOutput(f.address, f.command, clock=dt)


def _describe_qr(f: Frame) -> BoardOutput:
    url = _decode_text("QR URL", f.data)
    if not url:
        raise LedBoardError("a QR code frame without a URL")
    return BoardOutput(f.address, f.command, qr=url)


COMMANDS: dict[int, Callable[[Frame], BoardOutput]] = {
    Command.SHOW_LINE: _describe_line,
    Command.SPEAK: _describe_speak,
    Command.SHOW_SPEAK: _describe_show_speak,
    Command.SET_CLOCK: _describe_clock,
    Command.SHOW_QR: _describe_qr,
}


def describe(frame: Frame) -> BoardOutput:
    """What `frame` makes the board show / say. LedBoardError when DATA breaks the command's layout."""
    handler = COMMANDS.get(frame.command)
    if handler is None:
        return BoardOutput(frame.address, frame.command, known=False)
    return handler(frame)
