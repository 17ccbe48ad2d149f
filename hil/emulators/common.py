"""Small pieces the platform emulators share, written from the platform documents (not from lanectl).

Both XFT (/work/shared/protocols/xft.md, "Transport and signing") and tdzn (tdzn.md, doc 2.2) sign the same
way: every non-empty top-level parameter except `sign`, sorted by name (ASCII, case-sensitive), `name=value`
joined with `&`, then `&key=<KEY>`; MD5 of the UTF-8 text, upper-case hex. Nested objects are signed as their
compact JSON text (no spaces, non-ASCII kept). This module must import nothing from lanectl: the emulators
exist to check the daemon's codecs, not to share them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from typing import Any, Mapping


def compact_json(value: Any) -> str:
    """JSON text without spaces, non-ASCII as is, keys in the order given."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def param_text(value: Any) -> str:
    """What one parameter contributes to the signing string ("" means: left out)."""
    if value is None or value in ({}, []):  # an empty object or list is an empty value too: not signed
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, dict, list, tuple)):
        return compact_json(value)  # true / false as JSON writes them
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"cannot sign a {type(value).__name__}: {value!r}")


def signing_string(params: Mapping[str, Any], key: str) -> str:
    """`a=1&b=2&...&key=KEY` over the non-empty params except `sign`, names sorted by code point."""
    pairs = []
    for name in sorted(params):
        text = param_text(params[name])
        if name != "sign" and text != "":
            pairs.append(name + "=" + text)
    pairs.append("key=" + key)
    return "&".join(pairs)


def md5_upper(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def md5_sign(params: Mapping[str, Any], key: str) -> str:
    return md5_upper(signing_string(params, key))


def same_sign(expected: str, given: Any) -> bool:
    """Constant-time comparison, any hex case; a non-text or non-ASCII `given` is simply wrong."""
    if not isinstance(given, str) or not given or not given.isascii():
        return False
    return hmac.compare_digest(expected.upper().encode(), given.upper().encode())


_SEPARATORS = re.compile(r"[\s·•\-_.]+")


def plate_key(text: str) -> str:
    """A plate as the emulators file it, per lane-hardware.md: spaces out, full-width to half-width, upper
    case, and O -> 0, I -> 1 in the last five characters (real camera confusions; plates use neither letter
    there)."""
    t = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text or "")).upper()
    head, tail = t[:-5], t[-5:]
    return head + tail.replace("O", "0").replace("I", "1")
