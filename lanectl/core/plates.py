"""Plate text: normalization at the edge, what a plate may be (classify_plate), and fuzzy matching of exit
plates to entry records."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Literal, Optional

PLATELESS_WORDS = frozenset({"", "无牌车", "无车牌", "无牌", "NONE", "UNKNOWN", "_无_"})

# Province / special first characters, a letter, 4-6 alphanumerics, an optional suffix (挂 学 警 港 澳 ...).
_PLATE_RE = re.compile(r"^(?:[\u4e00-\u9fff][A-Z]|WJ[0-9]{2}[\u4e00-\u9fff]?)[A-Z0-9]{4,6}[\u4e00-\u9fff]?$")
_STRIP = re.compile(r"[\s·\-_.•]")

COLORS = ("unknown", "blue", "yellow", "white", "black", "green", "yellow-green")
_COLOR_ALIASES = {
    "": "unknown", "0": "unknown", "unknown": "unknown", "未知": "unknown",
    "1": "blue", "blue": "blue", "蓝": "blue", "蓝色": "blue", "蓝牌": "blue",
    "2": "yellow", "yellow": "yellow", "黄": "yellow", "黄色": "yellow", "黄牌": "yellow",
    "3": "white", "white": "white", "白": "white", "白色": "white", "白牌": "white",
    "4": "black", "black": "black", "黑": "black", "黑色": "black", "黑牌": "black",
    "5": "green", "green": "green", "绿": "green", "绿色": "green", "渐变绿": "green", "绿牌": "green",
    "6": "yellow-green", "yellow-green": "yellow-green", "yellowgreen": "yellow-green", "黄绿": "yellow-green",
    "黄绿色": "yellow-green",
}


def normalize_plate(text: str) -> str:
    """Canonical plate text: no spaces or separators, half-width, upper case; O→0 and I→1 after the first two
    characters (Chinese plates use neither letter there). Plate-less readings become ""."""
    t = unicodedata.normalize("NFKC", text or "").strip()
    if t.upper() in PLATELESS_WORDS:  # before stripping separators: "_无_" would become "无"
        return ""
    t = _STRIP.sub("", t).upper()
    if t in PLATELESS_WORDS:
        return ""
    head, tail = t[:2], t[2:]
    return head + tail.replace("O", "0").replace("I", "1")


def is_valid_plate(plate: str, special_prefixes: Optional[Iterable[str]] = None) -> bool:
    """True for a normalized reading the edge passes on to the lane: "" (plate-less), anything shaped like a
    plate (a character and a letter, then 4-6 letters or digits: a misread province is still plate-shaped, and
    the lane sends it to the booth, see classify_plate), or a readable plate of a special prefix. Pure noise
    ("-", "HELLO", "12345") is not. `special_prefixes`: default DEFAULT_SPECIAL_PREFIXES."""
    prefixes = DEFAULT_SPECIAL_PREFIXES if special_prefixes is None else special_prefixes
    return plate == "" or bool(_PLATE_RE.match(plate)) or _special(plate, prefixes)


# ---------------------------------------------------------------- what a plate may be

# The 31 mainland provinces, autonomous regions and municipalities: the first character of a civil plate.
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
# The last character of some plates: police, driving school, trailer, Hong Kong, Macao, consulate, test, oversize.
SUFFIXES = "警学挂港澳领试超"
# Prefixes of plates that do not start with a province (armed police, old embassy plates). A site names its own
# in the rules (`vehicles: special_prefixes:`, e.g. military "VA", "KA"); these are the default.
DEFAULT_SPECIAL_PREFIXES: tuple[str, ...] = ("WJ", "使")

PlateKind = Literal["plate", "special", "plateless", "unreadable"]

# Province, city letter, then 5 letters/digits, 4 and a suffix, or 6 for a new-energy plate (D/F third or last).
_CIVIL_RE = re.compile(rf"^[{PROVINCES}][A-Z](?:[A-Z0-9]{{5}}|[A-Z0-9]{{4}}[{SUFFIXES}]|[DF][A-Z0-9]{{5}}"
                       rf"|[A-Z0-9]{{5}}[DF])$")
# After a special prefix: a province (WJ粤12345), two digits and a character (old WJ01警12345) or one letter
# (military VA + 12345 with prefix "V"), then digits only, then an optional type character (WJ...消, ...警).
# Digits only keeps noise in front of a civil plate from reading as one ("WJ" + 粤B12345 is not a WJ plate).
_SPECIAL_REST_RE = re.compile(rf"^(?:[{PROVINCES}]|[0-9]{{2}}[\u4e00-\u9fff]?|[A-Z])?[0-9]{{4,6}}"
                              rf"[{SUFFIXES}消边通森金电]?$")


def _special(plate: str, special_prefixes: Iterable[str]) -> bool:
    return any(p and plate.startswith(p) and _SPECIAL_REST_RE.match(plate[len(p):]) for p in special_prefixes)


def classify_plate(plate: str, special_prefixes: Iterable[str] = DEFAULT_SPECIAL_PREFIXES) -> PlateKind:
    """What a normalized reading is: "plateless" (""), a civil "plate" (a province first, e.g. 粤B12345,
    粤BD12345, 粤B1234学), a "special" plate (one of `special_prefixes` first, e.g. WJ粤12345, 使014578) or
    "unreadable" — anything else, e.g. 竑B55502 (a Big5 line read as GBK): that goes to the booth, never to the
    rules as a plate."""
    if plate == "":
        return "plateless"
    if _CIVIL_RE.match(plate):
        return "plate"
    return "special" if _special(plate, special_prefixes) else "unreadable"


def normalize_special_prefix(text: str) -> str:
    """A configured special prefix as plates spell it (NFKC, upper case); ValueError when it cannot be one."""
    p = unicodedata.normalize("NFKC", text or "").strip().upper()
    if not 1 <= len(p) <= 3 or not all(c.isascii() and c.isalpha() or "\u4e00" <= c <= "\u9fff" for c in p):
        raise ValueError(f"special plate prefix {text!r}: 1 to 3 letters or Chinese characters")
    if p[0] in PROVINCES:
        raise ValueError(f"special plate prefix {text!r} starts with a province: such plates are plates already")
    return p


def normalize_color(text: str) -> str | None:
    """Canonical colour name, or None when the text is no colour we know."""
    return _COLOR_ALIASES.get(unicodedata.normalize("NFKC", text or "").strip().lower())


# ---------------------------------------------------------------- matching an exit plate to entry records

# Characters a camera confuses. normalize_plate already turns O->0 and I->1 after the first two characters, so
# 0/O and 1/I only matter in the city letter; 8/B can be anywhere after the province.
CONFUSABLE_PAIRS = frozenset({frozenset("0O"), frozenset("1I"), frozenset("8B")})

MatchKind = Literal["exact", "province", "confusable", "ambiguous", "none"]


@dataclass(frozen=True, slots=True)
class PlateMatch:
    """kind: exact | province | confusable (one unique candidate, in `plate`) | ambiguous (several fuzzy
    candidates, the booth operator picks) | none. `candidates` are the candidates that matched."""

    kind: MatchKind
    plate: Optional[str]
    candidates: tuple[str, ...] = ()


def _fuzzy_kind(exit_plate: str, candidate: str) -> Optional[str]:
    """"province" when only the first character differs, "confusable" when exactly one other character
    differs by a confusable pair, else None."""
    if len(exit_plate) != len(candidate):
        return None
    diffs = [i for i, (a, b) in enumerate(zip(exit_plate, candidate)) if a != b]
    if len(diffs) != 1:
        return None
    i = diffs[0]
    if i == 0:
        return "province"
    return "confusable" if frozenset((exit_plate[i], candidate[i])) in CONFUSABLE_PAIRS else None


def match_entry(exit_plate: str, candidates: Iterable[str]) -> PlateMatch:
    """Find the entry record plate for an exit plate among the plates of open entry records.

    Exact match first (after normalization). Otherwise a candidate matches fuzzily when only its province
    character differs or exactly one character differs by a confusable pair (0/O, 1/I, 8/B). Province and
    confusable matches are one tier: the match is used only when exactly ONE candidate matches fuzzily, more
    than one is "ambiguous" and goes to the operator — a wrong record would charge the wrong fee.
    A plate-less exit ("") never matches anything: plate-less cars are resolved by the operator or a ticket.
    The returned plate is the candidate string as given."""
    target = normalize_plate(exit_plate)
    if not target:
        return PlateMatch("none", None)
    seen: dict[str, str] = {}  # normalized -> first original spelling
    for c in candidates:
        n = normalize_plate(c)
        if n:
            seen.setdefault(n, c)
    if target in seen:
        return PlateMatch("exact", seen[target], (seen[target],))
    fuzzy = [(kind, orig) for n, orig in seen.items() if (kind := _fuzzy_kind(target, n)) is not None]
    if len(fuzzy) == 1:
        kind, orig = fuzzy[0]
        return PlateMatch(kind, orig, (orig,))  # type: ignore[arg-type]
    if fuzzy:
        return PlateMatch("ambiguous", None, tuple(orig for _, orig in fuzzy))
    return PlateMatch("none", None)


def near_plates(read: str, candidates: Iterable[str], limit: int = 6) -> tuple[str, ...]:
    """Plates inside the booth operator may mean for a reading (the page lists them before the operator types):
    match_entry's own candidates first, then any plate of the same length that differs from the reading in one
    character (a camera's misread that no confusable pair explains, e.g. 粤B8234S for 粤B82345), then in two.
    Never the reading itself as an exact match (that car needs no correction); at most `limit`, in that order."""
    target = normalize_plate(read)
    if not target:
        return ()
    seen: dict[str, str] = {}
    for c in candidates:
        n = normalize_plate(c)
        if n and n != target:
            seen.setdefault(n, c)
    fuzzy = match_entry(target, seen.values())
    ranked: list[tuple[int, str]] = [(0, c) for c in fuzzy.candidates]
    for n, orig in seen.items():
        if orig in fuzzy.candidates or len(n) != len(target):
            continue
        diffs = sum(a != b for a, b in zip(n, target))
        if diffs <= 2:
            ranked.append((diffs, orig))
    ranked.sort(key=lambda r: r[0])  # stable: equal distances keep the order of the cars inside
    return tuple(orig for _, orig in ranked[:limit])
