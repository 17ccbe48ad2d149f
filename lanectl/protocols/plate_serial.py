"""Text-line plate codec for cameras that print one recognition per line on RS-485 / RS-232.

    <plate><delim><colour><delim><confidence>\\r\\n        e.g.  粤B12345,blue,96

Bytes in, PlateLine values out (h11 style: the decoder never reads a port). Split reads are joined,
and a line that cannot be decoded (invalid bytes, wrong field count, not plate-shaped) is skipped and counted —
never raised — so one noisy camera cannot stop a lane.

Resynchronisation: a line starts with its plate, and a plate starts with a province (or a special prefix, or a
plate-less word such as 无牌车). Garbage glued in front of a line (a stray byte, the half of a line that lost
its terminator, a long run of noise) is dropped up to the first point from which the rest reads as a readable
plate line, so noise costs at most the garbled line, never the good one after it. A line that is plate-shaped
but starts with no province (竑B55502: a Big5 line read as GBK) is passed on as read: the lane sends it to the
booth (core.plates.classify_plate). Noise without any line end is bounded: only the last MAX_LINE bytes are
kept, the rest is dropped and counted.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from lanectl.core.plates import (DEFAULT_SPECIAL_PREFIXES, classify_plate, is_valid_plate, normalize_color,
                                 normalize_plate)

MAX_LINE = 128  # a real plate line is < 40 bytes; anything longer lost its terminator or is noise


@dataclass(frozen=True, slots=True)
class PlateLine:
    plate: str  # normalized; "" for a plate-less car
    color: str  # canonical colour name
    confidence: int  # 0..100


@dataclass
class DecodeStats:
    lines: int = 0
    skipped_bad_bytes: int = 0  # not decodable in the configured encoding
    skipped_bad_fields: int = 0  # field count, colour or confidence wrong
    skipped_bad_plate: int = 0  # not a plate shape
    skipped_overlong: int = 0  # runs of more than MAX_LINE bytes without a line end (terminator lost / noise)
    resynced: int = 0  # of `lines`: read after dropping garbage glued in front of them
    unreadable: int = 0  # of `lines`: plate-shaped but no plate (the lane sends these to the booth)
    bytes_in: int = 0  # every byte fed ...
    skipped_bytes: int = 0  # ... of which dropped as garbage: skipped lines, garbage before a line, overlong heads

    @property
    def skipped(self) -> int:
        return self.skipped_bad_bytes + self.skipped_bad_fields + self.skipped_bad_plate + self.skipped_overlong


@dataclass
class PlateLineDecoder:
    encoding: str = "gbk"  # "gbk" or "utf-8"
    delimiter: str = ","
    # plates that start with no province but are plates here (the site's `vehicles: special_prefixes`)
    special_prefixes: tuple[str, ...] = DEFAULT_SPECIAL_PREFIXES
    stats: DecodeStats = field(default_factory=DecodeStats)
    _buf: bytearray = field(default_factory=bytearray)
    _overlong: bool = False  # the line being received already lost its head (counted once per run)

    @property
    def pending(self) -> int:
        """Bytes received and kept for a line not yet terminated (never more than MAX_LINE)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[PlateLine]:
        """Consume all of `data`; return the complete plate lines it finishes."""
        out: list[PlateLine] = []
        self.stats.bytes_in += len(data)
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE:
                    self._drop_head(len(self._buf) - MAX_LINE)
                    del self._buf[: len(self._buf) - MAX_LINE]
                return out
            raw = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if len(raw) > MAX_LINE:
                self._drop_head(len(raw) - MAX_LINE)
                raw = raw[-MAX_LINE:]
            overlong, self._overlong = self._overlong, False
            line = self._line(raw, overlong)
            if line is not None:
                out.append(line)

    def _drop_head(self, n: int) -> None:
        """The first n bytes of an overlong run go; the run is counted once, when it starts."""
        if not self._overlong:
            self.stats.skipped_overlong += 1
        self._overlong = True
        self.stats.skipped_bytes += n

    def _line(self, raw: bytes, overlong: bool) -> PlateLine | None:
        """The reading in one line (`raw`: without its \\n). Whole first, unless its head was cut off; then from
        the first point after which the rest is a readable plate line (the garbage before it is dropped); only
        then a plate-shaped reading that is no plate (the booth decides). Else the line is skipped and counted;
        a blank keep-alive line is neither a reading nor an error."""
        text = raw.rstrip(b"\r")
        whole = None if overlong else self._parse(text)
        if whole is None and not overlong:
            return None
        if isinstance(whole, PlateLine) and self._readable(whole):
            self.stats.lines += 1
            return whole
        for start in range(0 if overlong else 1, len(text)):
            tail = self._parse(text[start:], resync=True)
            if isinstance(tail, PlateLine) and self._readable(tail):
                self.stats.lines += 1
                self.stats.resynced += 1
                self.stats.skipped_bytes += start
                return tail
        if isinstance(whole, PlateLine):
            self.stats.lines += 1
            self.stats.unreadable += 1
            return whole
        if isinstance(whole, str):
            setattr(self.stats, whole, getattr(self.stats, whole) + 1)
        self.stats.skipped_bytes += len(raw) + 1  # with its \n
        return None

    def _readable(self, line: PlateLine) -> bool:
        return classify_plate(line.plate, self.special_prefixes) != "unreadable"

    def _parse(self, raw: bytes, resync: bool = False) -> PlateLine | str | None:
        """A PlateLine, the name of the counter that says why not, or None for a blank line. `resync`: the
        start of this text is a guess, so an empty plate field is no plate-less car (",blue,96" is the end of
        a line, not a line)."""
        try:
            text = raw.decode(self.encoding)
        except UnicodeDecodeError:
            return "skipped_bad_bytes"
        # NUL padding and a UTF-8 BOM are framing noise; whitespace-only lines are keep-alives, not errors.
        text = text.strip(" \x00\ufeff")
        if not text.strip():
            return None
        parts = [p.strip() for p in text.split(self.delimiter)]
        if not 1 <= len(parts) <= 3 or not any(parts):
            return "skipped_bad_fields"  # a bare ",," carries no reading: not a plate-less car
        color = normalize_color(parts[1]) if len(parts) > 1 else "unknown"
        confidence = _confidence(parts[2]) if len(parts) > 2 else 0
        if color is None or confidence is None:
            return "skipped_bad_fields"
        plate = normalize_plate(parts[0])
        # "" is plate-less only for an empty field or a word (无牌车, NONE); "-" or "·" alone is noise.
        plateless_noise = plate == "" and parts[0] != "" and not any(c.isalpha() for c in parts[0])
        if plateless_noise or not is_valid_plate(plate, self.special_prefixes) or (resync and parts[0] == ""):
            return "skipped_bad_plate"
        return PlateLine(plate, color, confidence)


def _confidence(text: str) -> int | None:
    """0..100 from plain digits (full-width allowed); int() alone would take "+9", "1_0" or "-0"."""
    if text == "":
        return 0
    digits = unicodedata.normalize("NFKC", text)
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 3:
        return None
    value = int(digits)
    return value if value <= 100 else None


def encode_plate_line(plate: str, color: str = "blue", confidence: int = 95, *, encoding: str = "gbk",
                      delimiter: str = ",") -> bytes:
    """What a camera prints for one recognition (used by the HIL camera emulator and the tests)."""
    return f"{plate}{delimiter}{color}{delimiter}{confidence}\r\n".encode(encoding)
