"""Bolink (泊链) codec: signed envelopes, lane requests, platform answers and callbacks, SDK HTTP mode.

    body = {"union_id": 200208, "sign": "<32 HEX>", "data": {...}}      API envelope (lane <-> platform)
    body = {"service_name": "...", "sign": "...", "data": {...}, "token": "..."}   SDK HTTP mode
    sign = MD5_hex(DATA + "key=" + KEY).upper()

DATA is the exact text of `data` as sent. So a sender serializes once and signs those bytes
(`dumps_data` -> `encode_request`), and a receiver hashes the raw `data` span of the body it received
(`decode_signed`): re-serializing would change key order, whitespace and the `\\u003d` escapes Java
clients write, and the hash with them.

Pure: bytes / JSON in, typed values out, and back. Money is integer fen; JSON numbers are parsed as Decimal
and converted exactly. Times are unix seconds (int), or timezone-aware datetimes in the request builders.
Every malformed input raises BolinkError (a ValueError) and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, Optional, Union

from lanectl.core.money import MAX_YUAN_DIGITS, MoneyError, fen_to_yuan, within_ceiling, yuan_to_fen

PATHS = {
    "entry": "/unionapi/neworder/addorder",  # 3.1
    "exit": "/unionapi/neworder/updateorder",  # 3.2
    "etc": "/unionapi/etcPayApi",  # 3.7
    "order_state": "/unionapi/neworder/queryOrderState",  # 4.3
}
HTTP_MODE_PATHS = {"upload": "/bpd/upload.do", "download": "/bpd/download.do"}

PAY_TYPES = ("wallet", "sweepcode", "cash", "scancode", "escape")
E_PAY_TYPES = ("wallet", "sweepcode", "scancode")  # settled by a 5.5 outpark push, not by the sync answer
ETC_PAY_TYPES = ("my", "cj", "jyyh", "ystx")

ERR_SIGNATURE = "签名错误"
ERR_TOKEN = "token无效"
ERR_NOT_LOGGED_IN = "车场没有登录"
ERR_RATE_LIMIT = "请求过快"
ERR_DUPLICATE = ("数据已处理过", "订单已存在")
ERR_NO_SUCH_ORDER = "未查询到此订单"  # what real clients answer a query_price for an unknown order

_ORDER_ID_RE = re.compile(r"^[0-9A-Za-z_]{1,48}$")
_HEX32_RE = re.compile(r"^[0-9A-Fa-f]{32}$")
_DIGITS_RE = re.compile(r"^[0-9]+$")
_WS = " \t\n\r"
MAX_UNIX_TIME = 253402300799  # 9999-12-31 23:59:59 UTC, the last second a datetime can hold


class BolinkError(ValueError):
    """Malformed Bolink input or an argument the protocol cannot carry; the message says what and where."""


class BadSignature(BolinkError):
    """Missing or wrong `sign` (or a body whose data cannot be hashed in the signing charset)."""


class BadAmount(BolinkError, MoneyError):
    """An amount that is not exact non-negative yuan with at most two decimals (both a BolinkError and a
    MoneyError, so callers of either family catch it)."""


class Refused(BolinkError):
    """A well-formed answer with state 0 where the caller needed data (login, order state query)."""

    def __init__(self, what: str, errmsg: str) -> None:
        super().__init__(f"{what} refused: {errmsg or '(no errmsg)'}")
        self.errmsg = errmsg


# ---------------------------------------------------------------------------------------------------- signing

def sign(data_text: Union[str, bytes], key: str, *, encoding: str = "utf-8") -> str:
    """MD5_hex(DATA + "key=" + KEY).upper(). Bytes are hashed as given; text is encoded with `encoding`
    ("gbk" models a Java client on a Chinese Windows host)."""
    if not isinstance(key, str) or not key:
        raise BolinkError("sign: key must be non-empty text")
    try:
        if isinstance(data_text, (bytes, bytearray)):
            raw = bytes(data_text) + ("key=" + key).encode(encoding)
        elif isinstance(data_text, str):
            raw = (data_text + "key=" + key).encode(encoding)
        else:
            raise BolinkError(f"sign: data must be str or bytes, got {type(data_text).__name__}")
    except (UnicodeError, LookupError) as e:
        raise BolinkError(f"sign: data cannot be encoded as {encoding}: {e}") from None
    return hashlib.md5(raw).hexdigest().upper()


def verify(data_text: Union[str, bytes], key: str, signature: str, *, encoding: str = "utf-8") -> bool:
    """Constant-time check of a received sign (hex case ignored). False, never an exception, for junk."""
    if not isinstance(signature, str) or not _HEX32_RE.fullmatch(signature):
        return False
    try:
        expected = sign(data_text, key, encoding=encoding)
    except BolinkError:
        return False
    return hmac.compare_digest(expected.encode("ascii"), signature.upper().encode("ascii"))


# ---------------------------------------------------------------------------------------------- serializing

def dumps_data(data: Mapping[str, Any]) -> str:
    """Compact JSON, non-ASCII unescaped, keys in the given order: the exact text that is signed and sent.

    Decimal is written as a plain JSON number (how the platform writes amounts); float is refused, money
    travels as fen ints or yuan text."""
    if not isinstance(data, Mapping):
        raise BolinkError(f"data must be a mapping, got {type(data).__name__}")
    out: list[str] = []
    _dump(data, out, "data")
    text = "".join(out)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BolinkError("data holds text that is not valid Unicode (lone surrogate)") from None
    return text


def _dump(value: Any, out: list[str], where: str) -> None:
    if value is None:
        out.append("null")
    elif value is True or value is False:
        out.append("true" if value else "false")
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise BolinkError(f"{where}: {value} is not a JSON number")
        out.append(format(value, "f"))
    elif isinstance(value, float):
        raise BolinkError(f"{where}: float {value!r} refused (money is fen ints or yuan text)")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, Mapping):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if not isinstance(k, str):
                raise BolinkError(f"{where}: key {k!r} is not text")
            if i:
                out.append(",")
            out.append(json.dumps(k, ensure_ascii=False))
            out.append(":")
            _dump(v, out, f"{where}.{k}")
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _dump(v, out, f"{where}[{i}]")
        out.append("]")
    else:
        raise BolinkError(f"{where}: {type(value).__name__} cannot be sent as JSON")


def _data_text(data: Union[Mapping[str, Any], str]) -> str:
    """A mapping is serialized once; text is taken as the exact data text (checked to be a JSON object)."""
    if isinstance(data, str):
        _loads_object(data, "data text")
        return data
    return dumps_data(data)


def _union_id(value: Any) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10 ** 18
    ok = ok or (isinstance(value, str) and len(value) <= 18 and _DIGITS_RE.fullmatch(value) is not None)
    if not ok:
        raise BolinkError(f"union_id must be a number, got {value!r}")
    return int(value)


def encode_request(union_id: int, data: Union[Mapping[str, Any], str], key: str) -> bytes:
    """API envelope {"union_id":<int>,"sign":"<HEX>","data":<data text>} in UTF-8; the data bytes in the body
    are the bytes that were signed."""
    text = _data_text(data)
    return ('{"union_id":%d,"sign":"%s","data":%s}' % (_union_id(union_id), sign(text, key), text)).encode("utf-8")


def encode_upload(service_name: str, data: Union[Mapping[str, Any], str], key: str, token: Optional[str] = None,
                  data_target: Optional[str] = None) -> bytes:
    """SDK HTTP-mode envelope, key order service_name, sign, data, token (what real clients send).

    Login carries no token; its data is `login_data(...)`. `data_target` ("bolink"/"cloud") is appended to
    data when given; seed 003 says HTTP mode leaves it out, so the default is not to send it."""
    if not isinstance(service_name, str) or not service_name:
        raise BolinkError("encode_upload: service_name must be non-empty text")
    if data_target is not None:
        if isinstance(data, str):
            raise BolinkError("encode_upload: data_target needs data as a mapping")
        if "data_target" not in data:
            data = {**data, "data_target": data_target}
    text = _data_text(data)
    head = '{"service_name":%s,"sign":"%s","data":%s' % (json.dumps(service_name, ensure_ascii=False),
                                                          sign(text, key), text)
    if token is not None:
        head += ',"token":%s' % json.dumps(token, ensure_ascii=False)
    return (head + "}").encode("utf-8")


def login_data(union_id: Union[int, str], park_id: str, local_id: str) -> dict[str, str]:
    """HTTP-mode login data; the SDK doc's signing example sends all three as text."""
    return {"union_id": str(_union_id(union_id)), "park_id": _req_text("park_id", park_id),
            "local_id": _req_text("local_id", local_id)}


def compact(obj: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON of an (unsigned) answer."""
    return dumps_data(obj).encode("utf-8")


# ------------------------------------------------------------------------------------------------- decoding

def _raise(msg: str) -> Any:
    raise BolinkError(msg)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        # {"state":0,"state":1}: which one did the sender mean? A repeat of the same value (seed 003's example
        # repeats "account_type":1) is harmless.
        if k in d and d[k] != v:
            raise BolinkError(f"member {k!r} appears twice with different values")
        d[k] = v
    return d


_DECODER = json.JSONDecoder(parse_float=Decimal, object_pairs_hook=_object,
                            parse_constant=lambda c: _raise(f"{c} is not a JSON number"))


def _loads_object(text: str, what: str) -> dict[str, Any]:
    try:
        value, end = _DECODER.raw_decode(text, _skip_ws(text, 0))
    except BolinkError:
        raise
    except json.JSONDecodeError as e:
        raise BolinkError(f"{what}: invalid JSON at offset {e.pos}: {e.msg}") from None
    except (ValueError, RecursionError) as e:  # huge integers, absurd nesting
        raise BolinkError(f"{what}: unreadable JSON ({type(e).__name__})") from None
    if _skip_ws(text, end) != len(text):
        raise BolinkError(f"{what}: trailing characters at offset {_skip_ws(text, end)}")
    if not isinstance(value, dict):
        raise BolinkError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _decode_body(body: bytes, encoding: str, what: str) -> str:
    if not isinstance(body, (bytes, bytearray)):
        raise BolinkError(f"{what}: body must be bytes, got {type(body).__name__}")
    try:
        text = bytes(body).decode(encoding)
    except (UnicodeDecodeError, LookupError) as e:
        raise BolinkError(f"{what}: body is not {encoding}: {e}") from None
    return text


def _members(text: str, what: str, name_starts: Optional[dict[str, int]] = None) -> dict[str, tuple[Any, int, int]]:
    """Top-level members of a JSON object: name -> (value, start, end) character span of the value's raw text
    (and, into `name_starts`, where each member's name begins). Duplicate names are refused: with two `data`
    members, which one did the sign cover?"""
    members: dict[str, tuple[Any, int, int]] = {}
    i = _skip_ws(text, 0)
    try:
        if i >= len(text) or text[i] != "{":
            raise BolinkError(f"{what}: expected a JSON object at offset {i}")
        i = _skip_ws(text, i + 1)
        if i < len(text) and text[i] == "}":
            i += 1
        else:
            while True:
                if i >= len(text) or text[i] != '"':
                    raise BolinkError(f"{what}: expected a member name at offset {i}")
                name_at = i
                name, i = _DECODER.raw_decode(text, i)
                i = _skip_ws(text, i)
                if i >= len(text) or text[i] != ":":
                    raise BolinkError(f"{what}: expected ':' after {name!r} at offset {i}")
                start = _skip_ws(text, i + 1)
                value, end = _DECODER.raw_decode(text, start)
                if name in members:
                    raise BolinkError(f"{what}: member {name!r} appears twice")
                members[name] = (value, start, end)
                if name_starts is not None:
                    name_starts[name] = name_at
                i = _skip_ws(text, end)
                if i < len(text) and text[i] == ",":
                    i = _skip_ws(text, i + 1)
                    continue
                if i < len(text) and text[i] == "}":
                    i += 1
                    break
                raise BolinkError(f"{what}: expected ',' or '}}' at offset {i}")
    except BolinkError:
        raise
    except json.JSONDecodeError as e:
        raise BolinkError(f"{what}: invalid JSON at offset {e.pos}: {e.msg}") from None
    except (ValueError, RecursionError) as e:
        raise BolinkError(f"{what}: unreadable JSON ({type(e).__name__})") from None
    if _skip_ws(text, i) != len(text):
        raise BolinkError(f"{what}: trailing characters at offset {_skip_ws(text, i)}")
    return members


@dataclass(frozen=True)
class SignedMessage:
    union_id: Optional[int]
    sign: str
    data: dict[str, Any]  # JSON numbers as Decimal / int
    data_text: str  # the exact text the sign covers
    service_name: str  # from data (signed) or the HTTP-mode envelope
    token: str
    data_bytes: bytes = b""  # the bytes that were hashed
    form: str = "envelope"  # "envelope" ({.., sign, data}) or "flat" (an SDK downlink: fields at the top level)


def decode_signed(body: bytes, key: Optional[str], *, encoding: str = "utf-8",
                  data_encoding: Optional[str] = None) -> SignedMessage:
    """Parse an API envelope {union_id, sign, data} or an HTTP-mode one {service_name, sign, data, token}.

    The sign is checked over the raw `data` span of the body (or the content of `data` when it arrived as a
    JSON string), in any key order or whitespace the sender chose. `key=None` skips the check.
    `data_encoding` is the charset the sender signed in ("gbk" for Java on Chinese Windows) when it differs
    from the body's `encoding`. Envelope fields outside `data` are not signed, so when union_id or
    service_name appear both outside and inside data they must agree."""
    text = _decode_body(body, encoding, "envelope")
    bom = 1 if text.startswith("\ufeff") else 0  # a UTF-8 BOM is framing, not content
    members = _members(text[bom:], "envelope")
    if "data" not in members:
        raise BolinkError("envelope: missing member 'data'")
    value, start, end = members["data"]
    if isinstance(value, dict):
        data_text = text[bom + start:bom + end]
        data = value
        if data_encoding is None or data_encoding.replace("-", "").lower() == encoding.replace("-", "").lower():
            # the received bytes themselves: offsets in text -> offsets in body
            b0 = len(text[:bom + start].encode(encoding))
            data_bytes = bytes(body[b0:b0 + len(data_text.encode(encoding))])
        else:
            data_bytes = _encode_for_sign(data_text, data_encoding)
    elif isinstance(value, str):
        data_text = value
        data = _loads_object(value, "envelope.data (string)")
        data_bytes = _encode_for_sign(value, data_encoding or encoding)
    else:
        raise BolinkError(f"envelope: 'data' must be an object or a JSON string, got {type(value).__name__}")

    sig = members.get("sign", ("", 0, 0))[0]
    if not isinstance(sig, str):
        raise BolinkError("envelope: 'sign' must be text")
    if key is not None:
        if not sig:
            raise BadSignature("envelope: missing sign")
        if not data_bytes or not verify(data_bytes, key, sig):
            raise BadSignature("envelope: sign does not match the data")

    union_id = _agree("union_id", members.get("union_id", (None,))[0], data.get("union_id"), _opt_union_id)
    service_name = _agree("service_name", members.get("service_name", (None,))[0], data.get("service_name"),
                          _opt_name)
    token = members.get("token", ("",))[0]
    if token is None:
        token = ""
    if not isinstance(token, str):
        raise BolinkError("envelope: 'token' must be text")
    return SignedMessage(union_id, sig, data, data_text, service_name or "", token, data_bytes)


def _encode_for_sign(text: str, encoding: str) -> bytes:
    try:
        return text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return b""  # cannot have been signed in that charset: fails verification, never raises


def _opt_union_id(v: Any) -> Optional[int]:
    return None if v is None or v == "" else _union_id(v)


def _opt_name(v: Any) -> Optional[str]:
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise BolinkError(f"service_name must be text, got {v!r}")
    return v


def _agree(name: str, outside: Any, inside: Any, conv: Any) -> Any:
    a, b = conv(outside), conv(inside)
    if a is not None and b is not None and a != b:
        raise BolinkError(f"envelope: {name} outside data ({a!r}) differs from the signed one ({b!r})")
    return b if b is not None else a


# ---------------------------------------------------------------------------------------------------- money

def yuan_text(fen: int) -> str:
    """700 -> "7.00": the yuan text requests carry."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise BadAmount(f"fen must be an int, got {type(fen).__name__} {fen!r}")
    if fen < 0:
        raise BadAmount(f"negative amount {fen} fen")
    return fen_to_yuan(fen)


def parse_yuan(value: Any, max_fen: Optional[int] = None) -> int:
    """Yuan -> fen, exactly: "0.04", Decimal("0.04") (a JSON number read with parse_float=Decimal), int 1, "1".
    Refused: float, bool, negatives, more than two decimals, NaN/Infinity, more than MAX_YUAN_DIGITS whole
    digits, and more than `max_fen` when given (the site's payments.max_amount_fen)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise BadAmount(f"amount must be yuan text, a Decimal or an int, got {type(value).__name__} {_shown(value)}")
    if isinstance(value, int):
        if value < 0:
            raise BadAmount(f"negative amount {_shown(value)}")
        if value >= 10 ** MAX_YUAN_DIGITS:
            raise BadAmount(f"amount out of range: {_shown(value)}")
        return _ceiling(value * 100, max_fen)
    if isinstance(value, Decimal):
        if not value.is_finite() or value.is_signed() and value != 0:
            raise BadAmount(f"not a non-negative amount: {_shown(value)}")
        exp = value.as_tuple().exponent
        if not isinstance(exp, int) or exp < -2:
            raise BadAmount(f"more than two decimals in yuan amount {_shown(value)}")
        if value.adjusted() >= MAX_YUAN_DIGITS:  # also keeps int() cheap
            raise BadAmount(f"amount out of range: {_shown(value)}")
        try:
            return _ceiling(int(value.scaleb(2)), max_fen)
        except (InvalidOperation, OverflowError, ValueError):
            raise BadAmount(f"amount out of range: {_shown(value)}") from None
    if isinstance(value, str):
        try:
            return yuan_to_fen(value, max_fen=max_fen)
        except MoneyError as e:
            raise BadAmount(str(e)) from None
    raise BadAmount(f"amount must be yuan text, a Decimal or an int, got {type(value).__name__} {_shown(value)}")


def _ceiling(fen: int, max_fen: Optional[int]) -> int:
    try:
        return within_ceiling(fen, max_fen)
    except MoneyError as e:
        raise BadAmount(str(e)) from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:32]}... ({len(text)} characters)"


def is_order_id(s: Any) -> bool:
    """Bolink order ids: 1..48 of [0-9A-Za-z_]."""
    return isinstance(s, str) and _ORDER_ID_RE.fullmatch(s) is not None


# ------------------------------------------------------------------------------------------ request builders
# Keyword-only; amounts in fen (int), times as unix seconds (int) or timezone-aware datetimes. Each returns a
# dict in the doc's field order with optional fields left out when None; the caller serializes it once.

def _req_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BolinkError(f"{name} must be non-empty text, got {value!r}")
    return value


def _unix(name: str, value: Any) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise BolinkError(f"{name}: naive datetime (give a timezone or unix seconds)")
        return int(value.timestamp())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BolinkError(f"{name} must be unix seconds (int >= 0) or an aware datetime, got {value!r}")
    return value


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BolinkError(f"{name} must be an int >= 0, got {value!r}")
    return value


def _order_id(value: Any) -> str:
    if not is_order_id(value):
        raise BolinkError(f"order_id must be 1..48 of [0-9A-Za-z_], got {value!r}")
    return value


def _put(d: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        d[name] = value


def entry_data(*, park_id: str, union_id: int, car_number: str, in_time: Union[int, datetime], order_id: str,
               empty_plot: int, in_channel_id: Optional[str] = None, car_type: Optional[str] = None,
               inpark_img: Optional[str] = None, license_color: Optional[int] = None,
               remark: Optional[str] = None) -> dict[str, Any]:
    """3.1 addorder data."""
    d: dict[str, Any] = {"park_id": _req_text("park_id", park_id), "union_id": _union_id(union_id),
                         "car_number": _req_text("car_number", car_number), "in_time": _unix("in_time", in_time),
                         "order_id": _order_id(order_id), "empty_plot": _count("empty_plot", empty_plot)}
    _put(d, "in_channel_id", in_channel_id)
    _put(d, "car_type", car_type)
    _put(d, "inpark_img", inpark_img)
    _put(d, "license_color", None if license_color is None else _count("license_color", license_color))
    _put(d, "remark", remark)
    return d


def exit_data(*, park_id: str, union_id: int, car_number: str, in_time: Union[int, datetime],
              out_time: Union[int, datetime], order_id: str, empty_plot: int, total_fen: int, pay_type: str,
              out_channel_id: str, auth_code: Optional[str] = None, outpark_img: Optional[str] = None,
              license_color: Optional[int] = None, remark: Optional[str] = None) -> dict[str, Any]:
    """3.2 updateorder data. `total` is what is due now, as yuan text. `auth_code` goes with sweepcode only."""
    if pay_type not in PAY_TYPES:
        raise BolinkError(f"pay_type must be one of {', '.join(PAY_TYPES)}, got {pay_type!r}")
    if pay_type == "sweepcode":
        _req_text("auth_code (sweepcode)", auth_code)
    elif auth_code is not None:
        raise BolinkError(f"auth_code only goes with pay_type sweepcode, not {pay_type}")
    d: dict[str, Any] = {"park_id": _req_text("park_id", park_id), "union_id": _union_id(union_id),
                         "car_number": _req_text("car_number", car_number), "in_time": _unix("in_time", in_time),
                         "out_time": _unix("out_time", out_time), "order_id": _order_id(order_id),
                         "empty_plot": _count("empty_plot", empty_plot), "total": yuan_text(total_fen),
                         "pay_type": pay_type}
    _put(d, "auth_code", auth_code)
    d["out_channel_id"] = _req_text("out_channel_id", out_channel_id)
    _put(d, "outpark_img", outpark_img)
    _put(d, "license_color", None if license_color is None else _count("license_color", license_color))
    _put(d, "remark", remark)
    return d


def etc_data(*, park_id: str, car_number: str, in_time: Union[int, datetime], out_time: Union[int, datetime],
             pay_type: str, total_fen: int, order_id: str, out_channel_id: str, in_channel_id: str,
             parking_time_min: int, lane_no: str, empty_plot: Optional[int] = None,
             total_original_fen: Optional[int] = None, inpark_img: Optional[str] = None,
             outpark_img: Optional[str] = None, license_color: Optional[int] = None) -> dict[str, Any]:
    """3.7 etcPayApi data in seed 002's field order (union_id rides in the envelope only). `parking_time` is
    text in minutes as in the seed. pay_type `my` also needs empty_plot, total_original and both images."""
    if pay_type not in ETC_PAY_TYPES:
        raise BolinkError(f"ETC pay_type must be one of {', '.join(ETC_PAY_TYPES)}, got {pay_type!r}")
    if pay_type == "my":
        for name, v in (("empty_plot", empty_plot), ("total_original_fen", total_original_fen),
                        ("inpark_img", inpark_img), ("outpark_img", outpark_img)):
            if v is None:
                raise BolinkError(f"ETC pay_type my needs {name}")
    d: dict[str, Any] = {"park_id": _req_text("park_id", park_id), "car_number": _req_text("car_number", car_number),
                         "in_time": _unix("in_time", in_time), "out_time": _unix("out_time", out_time),
                         "pay_type": pay_type}
    _put(d, "empty_plot", None if empty_plot is None else _count("empty_plot", empty_plot))
    _put(d, "total_original", None if total_original_fen is None else yuan_text(total_original_fen))
    d["total"] = yuan_text(total_fen)
    d["order_id"] = _order_id(order_id)
    d["out_channel_id"] = _req_text("out_channel_id", out_channel_id)
    _put(d, "inpark_img", inpark_img)
    _put(d, "outpark_img", outpark_img)
    d["in_channel_id"] = _req_text("in_channel_id", in_channel_id)
    d["parking_time"] = str(_count("parking_time_min", parking_time_min))
    d["lane_no"] = _req_text("lane_no", lane_no)
    _put(d, "license_color", None if license_color is None else _count("license_color", license_color))
    return d


def order_state_data(*, park_id: str, union_id: int, order_id: Optional[str] = None,
                     car_number: Optional[str] = None, trade_no: Optional[str] = None) -> dict[str, Any]:
    """4.3 queryOrderState data: order_id and/or car_number."""
    if order_id is None and car_number is None:
        raise BolinkError("order state query needs order_id or car_number")
    d: dict[str, Any] = {"park_id": _req_text("park_id", park_id), "union_id": _union_id(union_id)}
    _put(d, "order_id", None if order_id is None else _order_id(order_id))
    _put(d, "car_number", None if car_number is None else _req_text("car_number", car_number))
    _put(d, "trade_no", None if trade_no is None else _req_text("trade_no", trade_no))
    return d


# ------------------------------------------------------------------------------------- field readers (input)

def _fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """Member names with surrounding whitespace trimmed (seed 003's example has " car_number"); an exact name
    wins over a padded one."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        s = k.strip()
        if s not in out or s == k:
            out[s] = v
    return out


def _get(f: Mapping[str, Any], name: str, where: str, required: bool) -> Any:
    v = f.get(name)
    if v is None and required:
        raise BolinkError(f"{where}: missing field {name!r}")
    return v


def _text(f: Mapping[str, Any], name: str, where: str, *, required: bool = False) -> str:
    v = _get(f, name, where, required)
    if v is None:
        return ""
    if isinstance(v, bool) or isinstance(v, (dict, list)):
        raise BolinkError(f"{where}: field {name!r} must be text, got {v!r}")
    if isinstance(v, (int, Decimal)):
        return str(v)  # ids sent as numbers keep their digits (Decimal keeps them as written)
    if not isinstance(v, str):
        raise BolinkError(f"{where}: field {name!r} must be text, got {v!r}")
    if required and not v.strip():
        raise BolinkError(f"{where}: field {name!r} is empty")
    return v


def _int(f: Mapping[str, Any], name: str, where: str, *, required: bool = False,
         choices: Optional[tuple[int, ...]] = None) -> Optional[int]:
    v = _get(f, name, where, required)
    if v is None or v == "":
        if required:
            raise BolinkError(f"{where}: field {name!r} is empty")
        return None
    n: Optional[int] = None
    if isinstance(v, int) and not isinstance(v, bool):
        n = v
    elif isinstance(v, str) and _DIGITS_RE.fullmatch(v.strip()) and len(v) < 20:
        n = int(v.strip())
    elif isinstance(v, Decimal) and v.is_finite() and v == v.to_integral_value() and abs(v) < 10 ** 19:
        n = int(v)
    if n is None:
        raise BolinkError(f"{where}: field {name!r} must be an integer, got {v!r}")
    if choices is not None and n not in choices:
        raise BolinkError(f"{where}: field {name!r} must be one of {choices}, got {n}")
    return n


def _money(f: Mapping[str, Any], name: str, where: str, *, required: bool = False,
           max_fen: Optional[int] = None) -> Optional[int]:
    v = _get(f, name, where, required)
    if v is None or v == "":
        if required:
            raise BolinkError(f"{where}: field {name!r} is empty")
        return None
    try:
        return parse_yuan(v, max_fen)
    except BadAmount as e:
        raise BadAmount(f"{where}: field {name!r}: {e}") from None


def _parse_json_object(body: bytes, what: str) -> dict[str, Any]:
    text = _decode_body(body, "utf-8", what)
    return _loads_object(text.lstrip("\ufeff"), what)


# ------------------------------------------------------------------------------------------- sync answers

@dataclass(frozen=True, slots=True)
class Answer:
    """A sync answer of 3.1/3.2/3.7/4.x (unsigned). `state` 1 on an e-payment 3.2 without a trade_no means
    accepted, not paid: the money result comes by 5.5 (see `paid`)."""
    state: int
    errmsg: str = ""
    trade_no: str = ""
    total_fen: Optional[int] = None
    order_id: str = ""
    pay_type: str = ""
    pay_time: Optional[int] = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def accepted(self) -> bool:
        return self.state == 1

    @property
    def pending(self) -> bool:
        return self.state == 2

    @property
    def paid(self) -> bool:
        """state 1 carrying a trade_no and an amount: a payment, not just an accepted upload."""
        return self.state == 1 and bool(self.trade_no) and self.total_fen is not None

    @property
    def duplicate(self) -> bool:
        return any(t in self.errmsg for t in ERR_DUPLICATE)

    @property
    def rate_limited(self) -> bool:
        return ERR_RATE_LIMIT in self.errmsg

    @property
    def bad_signature(self) -> bool:
        return ERR_SIGNATURE in self.errmsg


def parse_answer(body: bytes) -> Answer:
    d = _parse_json_object(body, "answer")
    f = _fields(d)
    w = "answer"
    state = _int(f, "state", w, required=True, choices=(0, 1, 2))
    assert state is not None
    errmsg = f.get("errmsg")
    return Answer(state=state, errmsg=errmsg if isinstance(errmsg, str) else "",
                  trade_no=_text(f, "trade_no", w), total_fen=_money(f, "total", w), order_id=_text(f, "order_id", w),
                  pay_type=_text(f, "pay_type", w), pay_time=_int(f, "pay_time", w), raw=d)


@dataclass(frozen=True, slots=True)
class OrderState:
    """One payment of an order per 4.3 (shape inferred). Only state 1 is paid."""
    state: Optional[int]
    trade_no: str = ""
    total_fen: Optional[int] = None
    pay_time: Optional[int] = None
    pay_type: str = ""
    order_id: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def paid(self) -> bool:
        return self.state == 1


def parse_order_state(body: bytes) -> list[OrderState]:
    """4.3 answer, read defensively: `{state, data:[{trade_no, state, total, pay_time, pay_type}]}`, data as a
    single object, or no data (-> []). Top-level state 0 raises Refused with the errmsg."""
    d = _parse_json_object(body, "order state")
    f = _fields(d)
    top = _int(f, "state", "order state", choices=(0, 1, 2))
    items = f.get("data")
    if top == 0 and not items:
        raise Refused("order state query", f.get("errmsg") if isinstance(f.get("errmsg"), str) else "")
    if items is None or items == "":
        return []
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise BolinkError(f"order state: 'data' must be a list or an object, got {type(items).__name__}")
    out = []
    for i, item in enumerate(items):
        w = f"order state data[{i}]"
        if not isinstance(item, dict):
            raise BolinkError(f"{w}: expected an object")
        g = _fields(item)
        out.append(OrderState(state=_int(g, "state", w, choices=(0, 1, 2)), trade_no=_text(g, "trade_no", w),
                              total_fen=_money(g, "total", w), pay_time=_int(g, "pay_time", w),
                              pay_type=_text(g, "pay_type", w), order_id=_text(g, "order_id", w), raw=item))
    return out


# ------------------------------------------------------------------------------- callbacks (platform -> lane)

@dataclass(frozen=True, slots=True)
class QueryPrice:
    """5.1 / SDK 3.1: what does this car owe now? pay_scene 0 in the lot, 1 at an exit lane, 2 plate-less."""
    park_id: str
    pay_scene: int
    car_number: str = ""
    order_id: str = ""
    out_channel_id: str = ""
    query_order_no: str = ""
    union_id: Optional[int] = None


@dataclass(frozen=True, slots=True)
class NoticeCarOwner:
    """5.2: is this plate sign-free (is_union_user 1)? `rand` must not repeat (replay)."""
    car_number: str
    is_union_user: int
    rand: str
    park_id: str = ""
    order_id: str = ""
    union_id: Optional[int] = None


@dataclass(frozen=True, slots=True)
class Outpark:
    """5.5 / SDK 3.4 e-payment result. Only state 1 is paid; trade_no is the idempotency key."""
    state: int
    order_id: str
    trade_no: str
    total_fen: Optional[int]  # required when state == 1
    pay_type: str = ""
    pay_channel: Optional[int] = None  # 0 WeChat, 1 Alipay, 2 balance, 3 UnionPay
    pay_time: Optional[int] = None
    car_number: str = ""
    out_channel_id: str = ""
    arrive_money_fen: Optional[int] = None
    fee_fen: Optional[int] = None
    account_type: Optional[int] = None
    remark: str = ""
    errmsg: str = ""
    park_id: str = ""
    union_id: Optional[int] = None

    @property
    def paid(self) -> bool:
        return self.state == 1


@dataclass(frozen=True, slots=True)
class NolicenceInPark:
    """5.7: a plate-less car scanned the entry QR. car_number is the platform's id for it, kept whole;
    timetemp is kept as sent (number or text) because the answer echoes it."""
    car_number: str
    park_id: str
    channel_id: str
    timetemp: Union[int, str]
    order_id: str = ""
    union_id: Optional[int] = None


@dataclass(frozen=True, slots=True)
class MonthcardPay:
    """5.8 (seed 001): a monthly card renewal was paid; idempotent by trade_no."""
    trade_no: str
    park_id: str
    amount_fen: int
    state: Optional[int] = None
    out_trade_no: str = ""
    card_id: str = ""
    car_number: str = ""
    pay_time: Optional[int] = None
    start_time: str = ""  # YYYY-MM-DD
    end_time: str = ""
    attach: str = ""  # returned as sent; an object attach becomes its compact JSON text
    arrive_money_fen: Optional[int] = None
    fee_fen: Optional[int] = None
    account_type: Optional[int] = None
    remark: str = ""
    license_color: Optional[int] = None
    union_id: Optional[int] = None
    amount_field: str = "amount"  # the SDK channel calls it pay_money

    @property
    def paid(self) -> bool:
        return self.state in (None, 1)  # third-party renewals may omit state; 0 is a failed payment


@dataclass(frozen=True, slots=True)
class PrepayOrder:
    """5.3 / SDK 3.2 (fields inferred): a car paid ahead inside the lot. Amount read from `prepay`, `total`
    or `money`, whichever is present first. The SDK channel sends no trade_no (then "") and says how it was
    paid in `prepay_type`: 1 electronically, 2 cash at a pay station."""
    order_id: str
    trade_no: str
    total_fen: int
    prepay_type: Optional[int] = None
    car_number: str = ""
    park_id: str = ""
    pay_time: Optional[int] = None
    pay_type: str = ""
    pay_channel: Optional[int] = None
    free_out_time_min: Optional[int] = None
    union_id: Optional[int] = None


@dataclass(frozen=True, slots=True)
class UpdateBalance:
    """HTTP-mode form of 5.2: {car_number, balance, autopay 0/1}; no reply."""
    car_number: str
    autopay: int
    balance_fen: Optional[int] = None


Callback = Union[QueryPrice, NoticeCarOwner, Outpark, NolicenceInPark, MonthcardPay, PrepayOrder, UpdateBalance]
CALLBACKS = ("query_price", "notice_car_owner", "outpark", "nolicence_in_park", "monthcard_pay", "prepay_order",
             "update_balance")


def callback_name(msg: SignedMessage, expected: Optional[str] = None) -> str:
    """The service a message is for: data.service_name / the envelope's, or `expected` for a dedicated URL."""
    name = msg.service_name or ""
    if expected is not None:
        if name and name != expected:
            raise BolinkError(f"callback: service_name {name!r} arrived where {expected!r} was expected")
        name = expected
    if not name:
        raise BolinkError("callback: no service_name (a dedicated URL must say which service it serves)")
    if name not in CALLBACKS:
        raise BolinkError(f"callback: unknown service_name {name!r}")
    return name


def parse_callback(msg: SignedMessage, expected: Optional[str] = None, *,
                   max_fen: Optional[int] = None) -> Callback:
    """Typed value of a (verified) platform message, routed by service_name; `expected` names the service of
    a dedicated URL (5.8 monthcard_pay arrives without service_name there). Amounts over `max_fen` (the site's
    payments.max_amount_fen) are refused with BadAmount; unix times must be before the year 10000."""
    name = callback_name(msg, expected)
    f = _fields(msg.data)
    uid = msg.union_id
    if name == "query_price":
        return QueryPrice(park_id=_text(f, "park_id", name, required=True),
                          pay_scene=_int(f, "pay_scene", name, choices=(0, 1, 2)) or 0,
                          car_number=_text(f, "car_number", name), order_id=_text(f, "order_id", name),
                          out_channel_id=_text(f, "out_channel_id", name),
                          query_order_no=_text(f, "query_order_no", name), union_id=uid)
    if name == "notice_car_owner":
        return NoticeCarOwner(car_number=_text(f, "car_number", name, required=True),
                              is_union_user=_req_int(f, "is_union_user", name, (0, 1)),
                              rand=_text(f, "rand", name, required=True), park_id=_text(f, "park_id", name),
                              order_id=_text(f, "order_id", name), union_id=uid)
    if name == "outpark":
        state = _req_int(f, "state", name, (0, 1, 2))
        return Outpark(state=state, order_id=_text(f, "order_id", name, required=True),
                       trade_no=_text(f, "trade_no", name, required=True),
                       total_fen=_money(f, "total", name, required=state == 1, max_fen=max_fen),
                       pay_type=_text(f, "pay_type", name), pay_channel=_int(f, "pay_channel", name),
                       pay_time=_unix_time(f, "pay_time", name), car_number=_text(f, "car_number", name),
                       out_channel_id=_text(f, "out_channel_id", name),
                       arrive_money_fen=_money(f, "arrive_money", name, max_fen=max_fen),
                       fee_fen=_money(f, "fee", name, max_fen=max_fen),
                       account_type=_int(f, "account_type", name), remark=_text(f, "remark", name),
                       errmsg=_text(f, "errmsg", name), park_id=_text(f, "park_id", name), union_id=uid)
    if name == "nolicence_in_park":
        tt = _get(f, "timetemp", name, True)
        if isinstance(tt, bool) or not isinstance(tt, (int, str)) or tt == "":
            raise BolinkError(f"{name}: field 'timetemp' must be a number or text, got {tt!r}")
        car = f.get("car_number")
        if not isinstance(car, str) or not car:
            raise BolinkError(f"{name}: missing field 'car_number'")
        return NolicenceInPark(car_number=car, park_id=_text(f, "park_id", name, required=True),
                               channel_id=_text(f, "channel_id", name, required=True), timetemp=tt,
                               order_id=_text(f, "order_id", name), union_id=uid)
    if name == "monthcard_pay":
        amount_name = "amount" if f.get("amount") is not None or f.get("pay_money") is None else "pay_money"
        attach = f.get("attach")
        if isinstance(attach, (dict, list)):
            out: list[str] = []
            _dump(attach, out, "attach")
            attach = "".join(out)  # compact text of the object
        return MonthcardPay(trade_no=_text(f, "trade_no", name, required=True),
                            park_id=_text(f, "park_id", name, required=True),
                            amount_fen=_req_money(f, amount_name, name, max_fen=max_fen),
                            amount_field=amount_name, state=_int(f, "state", name, choices=(0, 1)),
                            out_trade_no=_text(f, "out_trade_no", name), card_id=_text(f, "card_id", name),
                            car_number=_text(f, "car_number", name), pay_time=_unix_time(f, "pay_time", name),
                            start_time=_text(f, "start_time", name), end_time=_text(f, "end_time", name),
                            attach="" if attach is None else _text({"attach": attach}, "attach", name),
                            arrive_money_fen=_money(f, "arrive_money", name, max_fen=max_fen),
                       fee_fen=_money(f, "fee", name, max_fen=max_fen),
                            account_type=_int(f, "account_type", name), remark=_text(f, "remark", name),
                            license_color=_int(f, "license_color", name), union_id=uid)
    if name == "prepay_order":
        amount_name = next((n for n in ("prepay", "total", "money") if f.get(n) is not None), "prepay")
        return PrepayOrder(order_id=_text(f, "order_id", name, required=True),
                           trade_no=_text(f, "trade_no", name),
                           total_fen=_req_money(f, amount_name, name, max_fen=max_fen),
                           prepay_type=_int(f, "prepay_type", name),  # 1 / 2 known; kept as sent
                           car_number=_text(f, "car_number", name),
                           park_id=_text(f, "park_id", name), pay_time=_unix_time(f, "pay_time", name),
                           pay_type=_text(f, "pay_type", name), pay_channel=_int(f, "pay_channel", name),
                           free_out_time_min=_int(f, "free_out_time", name), union_id=uid)
    # update_balance
    return UpdateBalance(car_number=_text(f, "car_number", name, required=True),
                         autopay=_req_int(f, "autopay", name, (0, 1)),
                         balance_fen=_money(f, "balance", name, max_fen=max_fen))


def _unix_time(f: Mapping[str, Any], name: str, where: str) -> Optional[int]:
    n = _int(f, name, where)
    if n is not None and n > MAX_UNIX_TIME:  # datetime cannot hold it: a handler would fail on it later
        raise BolinkError(f"{where}: field {name!r} is no unix time: {n}")
    return n


def _req_int(f: Mapping[str, Any], name: str, where: str, choices: tuple[int, ...]) -> int:
    n = _int(f, name, where, required=True, choices=choices)
    assert n is not None
    return n


def _req_money(f: Mapping[str, Any], name: str, where: str, max_fen: Optional[int] = None) -> int:
    n = _money(f, name, where, required=True, max_fen=max_fen)
    assert n is not None
    return n


# -------------------------------------------------------------------------------- answers (lane -> platform)
# `*_reply` give the dict (HTTP mode sends it as upload data); `answer_*` give the compact bytes of a callback
# answer.

def query_price_reply(*, park_id: str, order_id: str, price_fen: int, duration_min: int, state: int = 1,
                      errmsg: str = "", query_order_no: str = "", free_out_time_min: int = 10, derate_fen: int = 0,
                      total_fen: Optional[int] = None, in_time: Optional[int] = None,
                      query_time: Optional[int] = None, derate_duration_min: Optional[int] = None,
                      data_target: Optional[str] = None) -> dict[str, Any]:
    """5.1 answer: the union of the API doc's fields and what real SDK clients send (total = price unless
    given). For an unknown order use `query_price_unknown`."""
    d: dict[str, Any] = {"service_name": "query_price"}
    _put(d, "data_target", data_target)
    d.update({"state": _state(state), "errmsg": errmsg, "order_id": order_id, "park_id": park_id,
              "price": yuan_text(price_fen), "duration": _count("duration_min", duration_min),
              "total": yuan_text(price_fen if total_fen is None else total_fen),
              "free_out_time": _count("free_out_time_min", free_out_time_min)})
    _put(d, "query_time", None if query_time is None else _unix("query_time", query_time))
    d["derate_money"] = yuan_text(derate_fen)
    _put(d, "derate_duration", None if derate_duration_min is None else _count("derate_duration_min",
                                                                               derate_duration_min))
    d["query_order_no"] = query_order_no
    _put(d, "in_time", None if in_time is None else _unix("in_time", in_time))
    return d


def query_price_unknown(*, park_id: str = "", order_id: str = "", query_order_no: str = "",
                        errmsg: str = ERR_NO_SUCH_ORDER, data_target: Optional[str] = None) -> dict[str, Any]:
    d: dict[str, Any] = {"service_name": "query_price"}
    _put(d, "data_target", data_target)
    d.update({"state": 0, "errmsg": errmsg, "order_id": order_id, "park_id": park_id,
              "query_order_no": query_order_no})
    return d


def outpark_reply(trade_no: str, order_id: str, state: int = 1, errmsg: str = "",
                  data_target: Optional[str] = None) -> dict[str, Any]:
    d: dict[str, Any] = {"service_name": "outpark"}
    _put(d, "data_target", data_target)
    d.update({"state": _state(state), "errmsg": errmsg, "trade_no": trade_no, "order_id": order_id})
    return d


def monthcard_reply(trade_no: str, state: int = 1) -> dict[str, Any]:
    return {"state": _state(state), "trade_no": trade_no}


def notice_reply(state: int = 1, errmsg: str = "") -> dict[str, Any]:
    return {"state": _state(state), "errmsg": errmsg}


def nolicence_reply(car_number: str, timetemp: Union[int, str], state: int = 1, errmsg: str = "") -> dict[str, Any]:
    """5.7 answer: 1 ok (the lane opens channel_id and uploads 3.1), 0 refused, 2 processing."""
    return {"state": _state(state, (0, 1, 2)), "car_number": car_number, "timetemp": timetemp, "errmsg": errmsg}


def prepay_reply(trade_no: str, order_id: str, state: int = 1, errmsg: str = "") -> dict[str, Any]:
    return {"state": _state(state), "errmsg": errmsg, "trade_no": trade_no, "order_id": order_id}


# The SDK channel's reply field sets (what real lot-side clients upload); HTTP mode sends no data_target (seed
# 003: "SDK模式必传,HTTP模式不传").

def monthcard_reply_sdk(trade_no: str, park_id: str, pay_money_fen: int, state: int = 1,
                        errmsg: str = "") -> dict[str, Any]:
    return {"service_name": "monthcard_pay", "state": _state(state), "errmsg": errmsg, "trade_no": trade_no,
            "park_id": park_id, "pay_money": yuan_text(pay_money_fen)}


def prepay_reply_sdk(order_id: str, park_id: str, prepay_fen: int, state: int = 1,
                     errmsg: str = "") -> dict[str, Any]:
    """No trade_no: the platform matches the reply to its push by order_id."""
    return {"service_name": "prepay_order", "state": _state(state), "errmsg": errmsg,
            "prepay": yuan_text(prepay_fen), "order_id": order_id, "park_id": park_id}


def nolicence_reply_sdk(car_number: str, state: int = 1, errmsg: str = "") -> dict[str, Any]:
    return {"service_name": "nolicence_in_park", "state": _state(state, (0, 1, 2)), "car_number": car_number,
            "errmsg": errmsg}


def query_price_unknown_sdk(*, park_id: str, order_id: str = "", query_order_no: str = "",
                            free_out_time_min: int = 10, query_time: Optional[int] = None,
                            errmsg: str = ERR_NO_SUCH_ORDER) -> dict[str, Any]:
    """An unknown order as SDK clients answer it: state 0 with the same fields present."""
    d = query_price_reply(park_id=park_id, order_id=order_id, price_fen=0, duration_min=0, state=0, errmsg=errmsg,
                          query_order_no=query_order_no, free_out_time_min=free_out_time_min,
                          query_time=query_time, derate_duration_min=0)
    return d


def error_reply(errmsg: str, service_name: str = "") -> dict[str, Any]:
    d: dict[str, Any] = {"service_name": service_name} if service_name else {}
    d.update({"state": 0, "errmsg": errmsg})
    return d


def _state(state: int, choices: tuple[int, ...] = (0, 1)) -> int:
    if isinstance(state, bool) or state not in choices:
        raise BolinkError(f"answer state must be one of {choices}, got {state!r}")
    return state


def answer_query_price(**kw: Any) -> bytes:
    return compact(query_price_reply(**kw))


def answer_outpark(trade_no: str, order_id: str, state: int = 1, errmsg: str = "") -> bytes:
    return compact(outpark_reply(trade_no, order_id, state, errmsg))


def answer_monthcard(trade_no: str, state: int = 1) -> bytes:
    return compact(monthcard_reply(trade_no, state))


def answer_notice(state: int = 1, errmsg: str = "") -> bytes:
    return compact(notice_reply(state, errmsg))


def answer_nolicence(car_number: str, timetemp: Union[int, str], state: int = 1, errmsg: str = "") -> bytes:
    return compact(nolicence_reply(car_number, timetemp, state, errmsg))


def answer_prepay(trade_no: str, order_id: str, state: int = 1, errmsg: str = "") -> bytes:
    return compact(prepay_reply(trade_no, order_id, state, errmsg))


def answer_error(errmsg: str, service_name: str = "") -> bytes:
    return compact(error_reply(errmsg, service_name))


# ------------------------------------------------------------------------------------------ SDK HTTP mode

def parse_login_answer(body: bytes) -> str:
    """The token of a login answer (top level or inside data); state 0 raises Refused with its errmsg."""
    d = _parse_json_object(body, "login answer")
    f = _fields(d)
    state = _int(f, "state", "login answer", choices=(0, 1, 2))
    token = f.get("token")
    inner = f.get("data")
    if token is None and isinstance(inner, dict):
        token = inner.get("token")
    if state == 0 or (state is None and not token):
        errmsg = f.get("errmsg")
        raise Refused("login", errmsg if isinstance(errmsg, str) else "")
    if not isinstance(token, str) or not token:
        raise BolinkError("login answer: missing field 'token'")
    return token


def parse_download(body: bytes, key: Optional[str] = None, *, encoding: str = "utf-8",
                   data_encoding: Optional[str] = None) -> Optional[SignedMessage]:
    """One download.do answer -> the message it carries, or None for "no message": an empty body, a non-JSON
    body (a 500 page), a JSON value that is not an object, an object without service_name (neither in the
    envelope nor in data). A body that does carry a service_name is decoded (and verified when `key` is
    given) like any signed envelope, so a forged or broken message raises BolinkError / BadSignature."""
    if not isinstance(body, (bytes, bytearray)):
        raise BolinkError(f"download: body must be bytes, got {type(body).__name__}")
    try:
        members = _members(_decode_body(body, encoding, "download").lstrip("\ufeff"), "download")
    except BolinkError:
        return None
    name = members.get("service_name", (None,))[0]
    inner = members.get("data", (None,))[0]
    if isinstance(inner, str):
        try:
            inner = _loads_object(inner, "download data")
        except BolinkError:
            inner = None
    if not name and not (isinstance(inner, dict) and inner.get("service_name")):
        return None
    if isinstance(inner, dict) or isinstance(members.get("data", (None,))[0], str):
        return decode_signed(bytes(body), key, encoding=encoding, data_encoding=data_encoding)
    return decode_flat(bytes(body), key, encoding=encoding, data_encoding=data_encoding)


def decode_flat(body: bytes, key: Optional[str], *, encoding: str = "utf-8",
                data_encoding: Optional[str] = None) -> SignedMessage:
    """A download.do message in the SDK client's form: `service_name` and every field at the top level.

    The SDK client reads no sign on download.do: the token (over TLS) is the trust, so a message without `sign`
    is accepted. A `sign` that is present is verified (with `key`) over the raw body with the sign member and
    the comma that joins it removed (inferred: the documents describe no signed flat form; the platform
    emulator appends it last). `data` is every member but sign and token; `data_text` the text that is
    covered."""
    text = _decode_body(body, encoding, "download")
    bom = 1 if text.startswith("\ufeff") else 0
    starts: dict[str, int] = {}
    members = _members(text[bom:], "download", starts)
    name = _opt_name(members.get("service_name", (None,))[0])
    if not name:
        raise BolinkError("download: missing service_name")
    data = {k: v[0] for k, v in members.items() if k not in ("sign", "token")}
    sig = members.get("sign", (None,))[0]
    if "sign" in members:
        _, _, end = members["sign"]
        cut0, cut1 = bom + starts["sign"], bom + end
        j = _skip_ws(text, cut1)
        if j < len(text) and text[j] == ",":  # not the last member: take the comma after it
            cut1 = _skip_ws(text, j + 1)
        else:  # the last member: take the comma before it
            k = cut0 - 1
            while k > bom and text[k] in _WS:
                k -= 1
            if text[k] == ",":
                cut0 = k
    else:
        cut0 = cut1 = len(text)
    covered = text[bom:cut0] + text[cut1:]
    if data_encoding is None or data_encoding.replace("-", "").lower() == encoding.replace("-", "").lower():
        b0, b1 = len(text[:cut0].encode(encoding)), len(text[:cut1].encode(encoding))
        covered_bytes = bytes(body[len(text[:bom].encode(encoding)):b0]) + bytes(body[b1:])
    else:
        covered_bytes = _encode_for_sign(covered, data_encoding)
    if "sign" in members:
        if not isinstance(sig, str):
            raise BolinkError("download: 'sign' must be text")
        if key is not None and not verify(covered_bytes, key, sig):
            raise BadSignature("download: sign does not match the message")
    union_id = _opt_union_id(data.get("union_id"))
    return SignedMessage(union_id, sig or "", data, covered, name, "", covered_bytes, "flat")
