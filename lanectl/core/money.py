"""Money as integer fen (1 元 = 100 fen). Text in yuan converts exactly, never through float."""

from __future__ import annotations

import re

# "7", "7.0", "7.00", "0.10", optionally signed; ASCII digits only (\d would also accept other scripts).
_YUAN_RE = re.compile(r"^([+-]?)([0-9]+)(?:\.([0-9]{1,2}))?$")


class MoneyError(ValueError):
    """Text or a value that is not an amount of money we accept."""


def yuan_to_fen(text: str, *, allow_negative: bool = False) -> int:
    """Yuan text -> integer fen: "7" -> 700, "7.5" -> 750, "0.10" -> 10.

    At most two decimals (fen is the smallest unit); no exponents, no thousands separators, no empty text.
    Negative amounts only with allow_negative=True (refunds, corrections)."""
    if not isinstance(text, str):
        raise MoneyError(f"amount must be text in yuan like '7.00', got {type(text).__name__} {text!r}")
    m = _YUAN_RE.match(text.strip())
    if m is None:
        raise MoneyError(f"not an amount in yuan with at most 2 decimals: {text!r}")
    sign, whole, frac = m.groups()
    fen = int(whole) * 100 + int((frac or "").ljust(2, "0"))
    if sign == "-" and fen != 0:
        if not allow_negative:
            raise MoneyError(f"negative amount not allowed here: {text!r}")
        fen = -fen
    return fen


def fen_to_yuan(fen: int) -> str:
    """Integer fen -> yuan text with two decimals: 700 -> "7.00", 10 -> "0.10", -5 -> "-0.05"."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise MoneyError(f"fen must be an int, got {type(fen).__name__} {fen!r}")
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"
