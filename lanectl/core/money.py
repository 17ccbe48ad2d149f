"""Money as integer fen (1 元 = 100 fen). Text in yuan converts exactly, never through float."""

from __future__ import annotations

import re
from typing import Optional

# "7", "7.0", "7.00", "0.10", optionally signed; ASCII digits only (\d would also accept other scripts).
_YUAN_RE = re.compile(r"^([+-]?)([0-9]+)(?:\.([0-9]{1,2}))?$")
# Longer whole parts are garbage, never a fee; refusing them before int() keeps a 5000-digit "total" from
# reaching Python's int digit limit (a ValueError that is not a MoneyError).
MAX_YUAN_DIGITS = 15
DEFAULT_MAX_FEN = 10_000_000  # ¥100 000: the default ceiling of one payment (site payments.max_amount_fen)


class MoneyError(ValueError):
    """Text or a value that is not an amount of money we accept."""


def _shown(value: object) -> str:
    """A value for an error message: hostile input can be megabytes long."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:32]}... ({len(text)} characters)"


def yuan_to_fen(text: str, *, allow_negative: bool = False, max_fen: Optional[int] = None) -> int:
    """Yuan text -> integer fen: "7" -> 700, "7.5" -> 750, "0.10" -> 10.

    At most two decimals (fen is the smallest unit); no exponents, no thousands separators, no empty text,
    at most MAX_YUAN_DIGITS whole digits, and at most `max_fen` (in absolute value) when given.
    Negative amounts only with allow_negative=True (refunds, corrections)."""
    if not isinstance(text, str):
        raise MoneyError(f"amount must be text in yuan like '7.00', got {type(text).__name__} {_shown(text)}")
    m = _YUAN_RE.match(text.strip())
    if m is None:
        raise MoneyError(f"not an amount in yuan with at most 2 decimals: {_shown(text)}")
    sign, whole, frac = m.groups()
    if len(whole.lstrip("0")) > MAX_YUAN_DIGITS:
        raise MoneyError(f"amount out of range: {_shown(text)}")
    fen = int(whole) * 100 + int((frac or "").ljust(2, "0"))
    if sign == "-" and fen != 0:
        if not allow_negative:
            raise MoneyError(f"negative amount not allowed here: {_shown(text)}")
        fen = -fen
    return within_ceiling(fen, max_fen)


def within_ceiling(fen: int, max_fen: Optional[int]) -> int:
    """`fen` when its size is at most `max_fen` (None: no ceiling); MoneyError otherwise. Platforms' amounts
    pass here, so an absurd one is a clear refusal instead of a number every later step must survive."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise MoneyError(f"fen must be an int, got {type(fen).__name__} {_shown(fen)}")
    if max_fen is not None and abs(fen) > max_fen:
        whole = str(abs(fen) // 100)
        size = whole if len(whole) <= 20 else f"a {len(whole)}-digit number of"
        raise MoneyError(f"amount of {size} yuan is over the ceiling of {fen_to_yuan(max_fen)} yuan")
    return fen


def fen_to_yuan(fen: int) -> str:
    """Integer fen -> yuan text with two decimals: 700 -> "7.00", 10 -> "0.10", -5 -> "-0.05"."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise MoneyError(f"fen must be an int, got {type(fen).__name__} {fen!r}")
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"


def yuan_words(fen: int) -> str:
    """Money as a board says it (and the lane's record notes write it): 700 -> "7元", 750 -> "7元50分",
    5 -> "0元05分"."""
    return f"{fen // 100}元{fen % 100:02d}分".replace("元00分", "元")
