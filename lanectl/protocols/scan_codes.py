"""Booth scanner (扫码枪) lines: one payment code per line, as a USB/serial scanner types it.

A payment code (WeChat / Alipay / UnionPay `auth_code`) is 10 to 32 ASCII digits; the line ends with CR, LF
or both. Bytes in, codes out; anything else on the line (noise, a QR that is no payment code, a lost
terminator) is skipped and counted, never raised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_LINE = 64
_CODE = re.compile(rb"^[0-9]{10,32}$")


@dataclass
class ScanStats:
    codes: int = 0
    skipped: int = 0  # lines that are no payment code (or overlong)


@dataclass
class ScanLineDecoder:
    stats: ScanStats = field(default_factory=ScanStats)
    _buf: bytearray = field(default_factory=bytearray)
    _discarding: bool = False  # inside an overlong line: drop until the next terminator

    def feed(self, data: bytes) -> list[str]:
        out: list[str] = []
        self._buf += data
        while True:
            ends = [i for i in (self._buf.find(b"\r"), self._buf.find(b"\n")) if i >= 0]
            if not ends:
                if len(self._buf) > MAX_LINE:
                    if not self._discarding:
                        self.stats.skipped += 1
                    self._discarding = True
                    self._buf.clear()
                return out
            end = min(ends)
            line, self._buf = bytes(self._buf[:end]).strip(), self._buf[end + 1:]
            if self._discarding:
                self._discarding = False
                continue
            if not line:
                continue  # the LF of a CRLF, or an empty line
            if _CODE.match(line):
                self.stats.codes += 1
                out.append(line.decode("ascii"))
            else:
                self.stats.skipped += 1
