"""Plate text: normalization at the edge (fuzzy matching of exit plates to entry records lives here too)."""

from __future__ import annotations

import re
import unicodedata

PLATELESS_WORDS = frozenset({"", "无牌车", "无车牌", "无牌", "NONE", "UNKNOWN", "_无_"})

# Province / special first characters, a letter, 4-6 alphanumerics, an optional suffix (挂 学 警 港 澳 ...).
_PLATE_RE = re.compile(r"^(?:[\u4e00-\u9fff][A-Z]|WJ[0-9]{2}[\u4e00-\u9fff]?)[A-Z0-9]{4,6}[\u4e00-\u9fff]?$")
_STRIP = re.compile(r"[\s·\-_.•]")

COLORS = ("unknown", "blue", "yellow", "white", "black", "green", "yellow-green")
_COLOR_ALIASES = {
    "": "unknown", "0": "unknown", "unknown": "unknown", "未知": "unknown",
    "1": "blue", "blue": "blue", "蓝": "blue", "蓝色": "blue",
    "2": "yellow", "yellow": "yellow", "黄": "yellow", "黄色": "yellow",
    "3": "white", "white": "white", "白": "white", "白色": "white",
    "4": "black", "black": "black", "黑": "black", "黑色": "black",
    "5": "green", "green": "green", "绿": "green", "绿色": "green", "渐变绿": "green",
    "6": "yellow-green", "yellow-green": "yellow-green", "yellowgreen": "yellow-green", "黄绿": "yellow-green",
    "黄绿色": "yellow-green",
}


def normalize_plate(text: str) -> str:
    """Canonical plate text: no spaces or separators, half-width, upper case; O→0 and I→1 after the first two
    characters (Chinese plates use neither letter there). Plate-less readings become ""."""
    t = unicodedata.normalize("NFKC", text or "").strip()
    t = _STRIP.sub("", t).upper()
    if t in PLATELESS_WORDS:
        return ""
    head, tail = t[:2], t[2:]
    return head + tail.replace("O", "0").replace("I", "1")


def is_valid_plate(plate: str) -> bool:
    """True for a normalized plate of a known shape, or "" (plate-less)."""
    return plate == "" or bool(_PLATE_RE.match(plate))


def normalize_color(text: str) -> str | None:
    """Canonical colour name, or None when the text is no colour we know."""
    return _COLOR_ALIASES.get(unicodedata.normalize("NFKC", text or "").strip().lower())
