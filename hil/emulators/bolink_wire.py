"""The Bolink platform emulator's own wire code, written from the documents (seeds 001-003 and
/work/shared/protocols/bolink.md), not from lanectl: the emulator plays the other side, so it must not share
the lane's codec and its mistakes. Small on purpose — what a platform needs to read and write.

    sign = MD5_hex(DATA + "key=" + KEY).upper()     DATA: the exact bytes of `data` as sent
    API envelope     {"union_id":<n>,"sign":"<HEX>","data":{...}}
    upload.do        {"service_name":..,"sign":..,"data":{...},"token":..}
    download.do      FLAT: {"service_name":..,<fields>..[,"sign":"<HEX>"]} — what the SDK client reads.
                     The optional sign covers the body text without its "sign" member (and that member's comma):
                     the emulator appends it last, so it covers every byte before `,"sign"` plus the final `}`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, Optional

API_PATHS = {
    "entry": "/unionapi/neworder/addorder",
    "exit": "/unionapi/neworder/updateorder",
    "etc": "/unionapi/etcPayApi",
    "order_state": "/unionapi/neworder/queryOrderState",
}
UPLOAD_PATH = "/bpd/upload.do"
DOWNLOAD_PATH = "/bpd/download.do"
PAY_TYPES = ("wallet", "sweepcode", "cash", "scancode", "escape")
ETC_PAY_TYPES = ("my", "cj", "jyyh", "ystx")
ERR_SIGNATURE = "签名错误"
ERR_TOKEN = "token无效"

_ORDER_ID = re.compile(r"^[0-9A-Za-z_]{1,48}$")
_HEX32 = re.compile(r"^[0-9A-Fa-f]{32}$")
_YUAN = re.compile(r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$")
_WS = " \t\r\n"


class WireError(ValueError):
    """A body the platform cannot read."""


class BadSign(WireError):
    """A sign that is missing or does not match the bytes it should cover."""


# --------------------------------------------------------------------------------------------------- signing

def sign(data: bytes | str, key: str, charset: str = "utf-8") -> str:
    """MD5 of DATA + "key=" + KEY, upper-case hex. Text is encoded in `charset` ("gbk": a Java client on a Chinese
    Windows host signs in its default charset); bytes are hashed as they are."""
    raw = data if isinstance(data, bytes) else data.encode(charset)
    return hashlib.md5(raw + ("key=" + key).encode(charset)).hexdigest().upper()


def sign_ok(data: bytes | str, key: str, given: Any, charset: str = "utf-8") -> bool:
    if not isinstance(given, str) or not _HEX32.match(given):
        return False
    return hmac.compare_digest(sign(data, key, charset), given.upper())


# ---------------------------------------------------------------------------------------------- serializing

def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII as is, keys in the given order; Decimal as a plain number (how the platform
    writes money: 7.0, 0.04). No float: money never travels as one."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise WireError(f"not a JSON number: {value}")
        return format(value, "f")
    if isinstance(value, float):
        raise WireError("float refused: write money as Decimal or text")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    raise WireError(f"cannot write {type(value).__name__}")


def body(value: Mapping[str, Any]) -> bytes:
    return dumps(value).encode("utf-8")


def java_escape(text: str) -> str:
    """What Gson does to = < > & ' inside strings (they never occur outside strings in compact JSON)."""
    for ch, esc in (("=", "\\u003d"), ("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(ch, esc)
    return text


def api_envelope(union_id: int, data_text: str, key: str, order: str = "usd") -> bytes:
    """The API envelope; `order` is the member order (u union_id, s sign, d data; seed 001 prints "dsu")."""
    parts = {"u": f'"union_id":{union_id}', "s": f'"sign":"{sign(data_text, key)}"', "d": f'"data":{data_text}'}
    return ("{" + ",".join(parts[c] for c in order) + "}").encode("utf-8")


def upload_envelope(service_name: str, data_text: str, key: str, token: Optional[str] = None) -> bytes:
    """upload.do as an SDK client writes it: service_name, sign, data, token."""
    head = '{"service_name":%s,"sign":"%s","data":%s' % (json.dumps(service_name, ensure_ascii=False),
                                                          sign(data_text, key), data_text)
    if token is not None:
        head += ',"token":%s' % json.dumps(token, ensure_ascii=False)
    return (head + "}").encode("utf-8")


def flat_text(message: Mapping[str, Any]) -> str:
    """A downlink as the SDK reads it: service_name first, then every field at the top level."""
    name = message.get("service_name", "")
    rest = {k: v for k, v in message.items() if k not in ("service_name", "sign")}
    return dumps({"service_name": name, **rest})


def flat_downlink(message: Mapping[str, Any], key: Optional[str], *, escape: bool = False) -> bytes:
    """The download.do body of one message; signed (sign appended last) when `key` is given."""
    text = flat_text(message)
    if escape:
        text = java_escape(text)
    if key is not None:
        text = text[:-1] + ',"sign":"%s"}' % sign(text, key)
    return text.encode("utf-8")


# ------------------------------------------------------------------------------------------------- reading

_DECODER = json.JSONDecoder(parse_float=Decimal)


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def members(text: str) -> dict[str, tuple[Any, int, int, int]]:
    """Top-level members of a JSON object: name -> (value, name start, value start, value end)."""
    out: dict[str, tuple[Any, int, int, int]] = {}
    try:
        i = _skip(text, 0)
        if i >= len(text) or text[i] != "{":
            raise WireError("not a JSON object")
        i = _skip(text, i + 1)
        if i < len(text) and text[i] == "}":
            i += 1
        else:
            while True:
                name_at = i
                name, i = _DECODER.raw_decode(text, i)
                if not isinstance(name, str):
                    raise WireError(f"member name expected at {name_at}")
                i = _skip(text, i)
                if i >= len(text) or text[i] != ":":
                    raise WireError(f"':' expected at {i}")
                start = _skip(text, i + 1)
                value, end = _DECODER.raw_decode(text, start)
                if name in out:
                    raise WireError(f"member {name!r} twice")
                out[name] = (value, name_at, start, end)
                i = _skip(text, end)
                if i < len(text) and text[i] == ",":
                    i = _skip(text, i + 1)
                    continue
                if i < len(text) and text[i] == "}":
                    i += 1
                    break
                raise WireError(f"',' or '}}' expected at {i}")
    except (json.JSONDecodeError, RecursionError) as e:
        raise WireError(f"invalid JSON: {e}") from None
    if _skip(text, i) != len(text):
        raise WireError("trailing characters")
    return out


def loads_object(raw: bytes) -> dict[str, Any]:
    try:
        value = _DECODER.decode(raw.decode("utf-8").lstrip("\ufeff"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WireError(f"unreadable JSON: {e}") from None
    if not isinstance(value, dict):
        raise WireError("not a JSON object")
    return value


class Envelope:
    """A signed request the platform received: its service_name (upload.do), token, union_id and data."""

    def __init__(self, service_name: str, token: str, union_id: Any, data: dict[str, Any], data_text: str) -> None:
        self.service_name, self.token, self.union_id, self.data, self.data_text = (service_name, token, union_id,
                                                                                   data, data_text)


def read_envelope(raw: bytes, key: str, charset: str = "utf-8") -> Envelope:
    """Parse and verify an API or upload.do envelope. The sign is checked over the raw bytes of `data` as they
    arrived (or, when data came as a JSON string, that string), encoded as the sender signed them."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("body is not UTF-8") from None
    bom = 1 if text.startswith("\ufeff") else 0
    m = members(text[bom:])
    if "data" not in m:
        raise WireError("missing data")
    value, _, start, end = m["data"]
    if isinstance(value, dict):
        data_text, data = text[bom + start:bom + end], value
    elif isinstance(value, str):
        data_text = value
        data = loads_object(value.encode("utf-8"))
    else:
        raise WireError("data must be an object")
    if charset.replace("-", "").lower() == "utf8" and isinstance(value, dict):
        b0 = len(text[:bom + start].encode("utf-8"))
        signed = raw[b0:b0 + len(data_text.encode("utf-8"))]
    else:
        try:
            signed = data_text.encode(charset)
        except UnicodeEncodeError:
            raise BadSign("data cannot have been signed in " + charset) from None
    if not sign_ok(signed, key, m.get("sign", (None,))[0], "utf-8"):
        raise BadSign("sign does not match")
    name = m.get("service_name", (data.get("service_name"),))[0]
    token = m.get("token", ("",))[0]
    union_id = m["union_id"][0] if "union_id" in m else data.get("union_id")
    return Envelope(name if isinstance(name, str) else "", token if isinstance(token, str) else "", union_id,
                    dict(data), data_text)


# ---------------------------------------------------------------------------------------------------- values

def is_order_id(s: Any) -> bool:
    return isinstance(s, str) and _ORDER_ID.match(s) is not None


def fen(value: Any) -> int:
    """Yuan (text "7.00", a JSON number read as Decimal, an int) -> fen, exactly; WireError otherwise."""
    if isinstance(value, bool) or isinstance(value, float):
        raise WireError(f"amount {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise WireError(f"amount {value!r}")
        return value * 100
    if isinstance(value, Decimal):
        value = format(value, "f")
    if not isinstance(value, str) or not _YUAN.match(value.strip()):
        raise WireError(f"amount {value!r}")
    try:
        return int(Decimal(value.strip()).scaleb(2))
    except InvalidOperation:
        raise WireError(f"amount {value!r}") from None


def yuan(fen_: int) -> str:
    """700 -> "7.00"."""
    return f"{fen_ // 100}.{fen_ % 100:02d}"


def java_number(fen_: int) -> Decimal:
    """Yuan as a Java double prints it: 700 -> 7.0, 4 -> 0.04, 1250 -> 12.5 (a JSON number, as in the seeds)."""
    whole, part = divmod(fen_, 100)
    return Decimal(f"{whole}.0" if part == 0 else f"{whole}.{part:02d}".rstrip("0"))
