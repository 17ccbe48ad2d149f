"""Text-line plate codec for cameras that print one recognition per line on RS-485 / RS-232.

    <plate><delim><colour><delim><confidence>\\r\\n        e.g.  粤B12345,blue,96

Bytes in, PlateLine values out (h11 style: the decoder never reads a port). Split reads are joined,
and a line that cannot be decoded (invalid bytes, wrong field count, unknown plate shape, overlong because its
terminator was lost) is skipped and counted — never raised — so one noisy camera cannot stop a lane.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from lanectl.core.plates import is_valid_plate, normalize_color, normalize_plate

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
    skipped_overlong: int = 0  # terminator lost / noise without line ends

    @property
    def skipped(self) -> int:
        return self.skipped_bad_bytes + self.skipped_bad_fields + self.skipped_bad_plate + self.skipped_overlong


@dataclass
class PlateLineDecoder:
    encoding: str = "gbk"  # "gbk" or "utf-8"
    delimiter: str = ","
    stats: DecodeStats = field(default_factory=DecodeStats)
    _buf: bytearray = field(default_factory=bytearray)
    _discarding: bool = False  # inside an overlong line: drop bytes until the next terminator

    def feed(self, data: bytes) -> list[PlateLine]:
        """Consume bytes; return the complete plate lines they finish."""
        out: list[PlateLine] = []
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE:
                    if not self._discarding:
                        self.stats.skipped_overlong += 1
                    self._discarding = True
                    self._buf.clear()
                return out
            raw = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if self._discarding:
                self._discarding = False
                continue
            if len(raw) > MAX_LINE:
                self.stats.skipped_overlong += 1
                continue
            line = self._parse(raw.rstrip(b"\r"))
            if line is not None:
                out.append(line)

    def _parse(self, raw: bytes) -> PlateLine | None:
        try:
            text = raw.decode(self.encoding)
        except UnicodeDecodeError:
            self.stats.skipped_bad_bytes += 1
            return None
        # NUL padding and a UTF-8 BOM are framing noise; whitespace-only lines are keep-alives, not errors.
        text = text.strip(" \x00\ufeff")
        if not text.strip():
            return None
        parts = [p.strip() for p in text.split(self.delimiter)]
        if not 1 <= len(parts) <= 3 or not any(parts):
            self.stats.skipped_bad_fields += 1  # a bare ",," carries no reading: not a plate-less car
            return None
        color = normalize_color(parts[1]) if len(parts) > 1 else "unknown"
        confidence = _confidence(parts[2]) if len(parts) > 2 else 0
        if color is None or confidence is None:
            self.stats.skipped_bad_fields += 1
            return None
        plate = normalize_plate(parts[0])
        # "" is plate-less only for an empty field or a word (无牌车, NONE); "-" or "·" alone is noise.
        plateless_noise = plate == "" and parts[0] != "" and not any(c.isalpha() for c in parts[0])
        if plateless_noise or not is_valid_plate(plate):
            self.stats.skipped_bad_plate += 1
            return None
        self.stats.lines += 1
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
