"""XFT aggregation parking API v2 (sign-free / 无感 payment): sign and verify, build requests, parse answers
and the asynchronous notify. Bytes in, typed values out, and back; the adapter owns the HTTP.

    POST <base>query/signed/relation/v2   is this plate signed up for sign-free payment?
    POST <base>entry/v2                   tell the platform a car came in
    POST <base>entrance/v2                exit + charge: is_allow SUCCESS (let out) / FAIL / INIT (undecided)
    POST <base>query/charge/v2            order state 00 paid, 01 failed, 09 awaiting payment, ...
    platform -> notify_url                order settled (00 / 01); the lane answers SUCCESS

Signing (digest of XFT's payment API, inferred for parking): every top-level field except `sign`
(`sign_type` included), empty values dropped, keys sorted by ASCII, `k=v` joined with `&` using raw values,
`&key=<key>` appended, MD5, upper hex. Nested objects (`extra`, `credential`) travel and are signed as their
compact JSON text. What we send is exactly what we sign: empty fields are left out of the body too.

Where the documents are silent this module decides (and says so): see EMPTY, parse_exit_answer,
ChargeState, parse_notify and NOTIFY_NACK.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Literal, Mapping, Optional

from lanectl.core.plates import normalize_plate

DEFAULT_BASE_URL = "https://xlink.91xft.cn/parking/aggegation/"  # sic: "aggegation" is XFT's spelling
PATHS = {
    "signed_relation": "query/signed/relation/v2",
    "entry": "entry/v2",
    "exit": "entrance/v2",
    "charge_query": "query/charge/v2",
}
SIGN_TYPE = "MD5"
TRADE_SCENE = "PARKING"
TIME_FORMAT = "%Y%m%d%H%M%S"  # XFT's yyyyMMddHHmmss, wall time in the lot's zone

# The lane's answers to a notify. XFT only says "SUCCESS, any case" once recorded; anything else makes it
# retry. FAIL is our refusal (bad signature, missing field): plain text, HTTP 200, never a traceback or a 500.
NOTIFY_ACK = b"SUCCESS"
NOTIFY_NACK = b"FAIL"

MAX_BODY = 64 * 1024  # a real answer is < 2 KiB; a bigger one is not XFT talking
MAX_DEPTH = 8  # answer > data > credential is 3 deep; signing a 500-deep list would blow the recursion limit
MAX_FEN_DIGITS = 12  # 10^12 fen is ten billion yuan: longer digit strings are garbage, not a parking fee

# Order states of XFT's payment API (inferred to apply to query/charge/v2 and the notify).
STATE_PAID = "00"
STATE_FAILED = "01"
STATE_WAITING = "09"
FAILED_STATES = frozenset({"01", "06", "98", "99"})  # failed, cancelled, closed, timed out
REFUND_STATES = frozenset({"03", "04", "05"})  # part refunded, refunded, refunding: paid once, not now
# query/charge/v2 answers meaning "no order under this out_trade_no". Seed 000 lists no codes and says nothing
# about querying an order it does not know; ORDER_NOT_EXIST is what XFT's gateway (and the emulator) answer,
# the others are the spellings of the same refusal on the payment APIs XFT fronts (inferred).
ORDER_ABSENT_CODES = frozenset({"ORDER_NOT_EXIST", "ORDER_NOT_EXISTS", "ORDERNOTEXIST", "TRADE_NOT_EXIST",
                                "ORDER_NOT_FOUND"})
ORDER_ABSENT_WORDS = ("订单不存在",)
# Seed 000 (query/signed/relation/v2, extra.plate_number): "channel为WECHAT时sub_openid和车牌号必传".
CHANNEL_NEEDS_SUB_OPENID = frozenset({"WECHAT"})

IsAllow = Literal["SUCCESS", "FAIL", "INIT"]

_OUT_TRADE_NO_RE = re.compile(r"^[0-9A-Za-z_\-]{1,64}$")
_DIGITS_RE = re.compile(r"^[0-9]+$")  # ASCII only: str.isdigit() would also take "²" and other scripts
_STATE_RE = re.compile(r"^[0-9]{2}$")
# Keys that make a top-level object a transport wrapper around `data` rather than an answer itself.
_WRAPPER_KEYS = frozenset({"code", "message", "msg", "result", "success", "sign", "sign_type", "data"})


class XftError(ValueError):
    """A request we refuse to build, or bytes that are not an XFT answer / notify we accept."""


class BadSignature(XftError):
    """The signature is wrong, or missing where one is required."""


class MissingField(XftError):
    """A field the message cannot do without is absent or empty."""

    def __init__(self, name: str, where: str) -> None:
        super().__init__(f"{where}: missing field {name!r}")
        self.field = name


class XftRefused(XftError):
    """A wrapped answer `{code, message, data}` that carries no data: the platform refused the call itself."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"XFT refused the call: code={code!r} message={message!r}")
        self.code, self.message = code, message


class _RawNumber(str):
    """A JSON number with a fraction or exponent, kept as the text received: signatures hash what was sent,
    and money must never pass through float."""


# ---------------------------------------------------------------------------------------------- signing

def _is_empty(value: Any) -> bool:
    # EMPTY: None, "" and an empty object/list are "no value": unsigned and never sent. An empty `extra`
    # would otherwise be sent as "{}" and signed by some implementations and not by others.
    return value is None or value == "" or (isinstance(value, (dict, list, tuple)) and len(value) == 0)


def compact_json(value: Any) -> str:
    """JSON text as XFT's nested fields travel: no spaces, non-ASCII kept, key order as given.
    Numbers received with a fraction are written back exactly as received."""
    if isinstance(value, _RawNumber):
        return str(value)
    if isinstance(value, Mapping):
        items = (json.dumps(str(k), ensure_ascii=False) + ":" + compact_json(v) for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(compact_json(v) for v in value) + "]"
    if isinstance(value, float):
        raise XftError(f"no floats in XFT messages (money is integer fen): {value!r}")
    if value is None or isinstance(value, (str, int)):
        return json.dumps(value, ensure_ascii=False)
    raise XftError(f"cannot write a {type(value).__name__} as JSON: {value!r}")


def _sign_text(value: Any) -> str:
    """The text a field contributes to the signing string."""
    if isinstance(value, str):
        return value  # includes _RawNumber: the digits as received
    if isinstance(value, bool):
        return "true" if value else "false"  # what a Java platform's toString() gives
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (Mapping, list, tuple)):
        return compact_json(value)
    raise XftError(f"cannot sign a {type(value).__name__} value: {value!r}")


def signing_string(params: Mapping[str, Any], key: str) -> str:
    """What is hashed: `a=1&b=2&...&key=<key>` (exposed so integrators can compare with XFT's examples)."""
    if not isinstance(key, str) or not key:
        raise XftError("the XFT merchant key is empty")
    parts = [f"{k}={_sign_text(params[k])}" for k in sorted(params)
             if k != "sign" and not _is_empty(params[k])]
    parts.append(f"key={key}")
    return "&".join(parts)


def sign(params: Mapping[str, Any], key: str) -> str:
    """MD5 of the signing string, upper-case hex."""
    return hashlib.md5(signing_string(params, key).encode("utf-8")).hexdigest().upper()


def verify(params: Mapping[str, Any], key: str) -> bool:
    """True when params carry a `sign` equal (any hex case, constant time) to the one computed from them."""
    given = params.get("sign")
    if not isinstance(given, str) or not given:
        return False
    try:
        expected = sign(params, key)
    except XftError:
        return False
    # bytes: compare_digest refuses non-ASCII str, and a hostile sign may be anything
    return hmac.compare_digest(given.upper().encode("utf-8"), expected.encode("ascii"))


def signed_fields(params: Mapping[str, Any], key: str) -> dict[str, str]:
    """The flat body XFT expects: every value a string (nested objects as compact JSON text), empty values
    left out, `sign_type` MD5 added when absent, `sign` computed over exactly these fields."""
    body: dict[str, str] = {}
    for k, v in params.items():
        if not isinstance(k, str) or not k:
            raise XftError(f"field names must be non-empty text, got {k!r}")
        if k == "sign" or _is_empty(v):
            continue
        if isinstance(v, (bool, float)):
            raise XftError(f"field {k!r}: send text or integers, not {type(v).__name__} {v!r}")
        body[k] = _sign_text(v)
    body.setdefault("sign_type", SIGN_TYPE)
    if body["sign_type"] != SIGN_TYPE:
        raise XftError(f"only sign_type {SIGN_TYPE} is supported, got {body['sign_type']!r}")
    body["sign"] = sign(body, key)
    return body


def encode_request(params: Mapping[str, Any], key: str) -> bytes:
    """Signed UTF-8 JSON body for one call (the builders below make `params`)."""
    return compact_json(signed_fields(params, key)).encode("utf-8")


# ---------------------------------------------------------------------------------------------- money

def fen_to_wire(fen: Any, *, name: str = "amount") -> str:
    """Integer fen -> XFT's amount text ("700")."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise XftError(f"{name} must be integer fen, got {type(fen).__name__} {fen!r}")
    if fen < 0:
        raise XftError(f"{name} must not be negative: {fen}")
    return str(fen)


def fen_from_wire(value: Any, *, name: str = "amount", max_fen: Optional[int] = None) -> int:
    """XFT amount -> integer fen. Text of ASCII digits (XFT's form) or a JSON integer; never a float, a sign,
    a decimal point or spaces: "7.00" would be yuan, and a guess about units is how a lane charges 100x.
    At most MAX_FEN_DIGITS digits, and at most `max_fen` when given (the site's payments.max_amount_fen)."""
    if isinstance(value, _RawNumber):
        raise XftError(f"{name} must be whole fen, got the decimal number {_shown(value)}")
    if isinstance(value, bool) or isinstance(value, float):
        raise XftError(f"{name} must be whole fen, got {type(value).__name__} {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise XftError(f"{name} must not be negative: {_shown(value)}")
        if value >= 10 ** MAX_FEN_DIGITS:
            raise XftError(f"{name} is out of range: {_shown(value)}")
        fen = value
    elif isinstance(value, str) and _DIGITS_RE.match(value) and len(value) <= MAX_FEN_DIGITS:
        fen = int(value)
    else:
        raise XftError(f"{name} is not whole fen in digits: {_shown(value)}")
    if max_fen is not None and fen > max_fen:
        raise XftError(f"{name} of {fen} fen is over the ceiling of {max_fen} fen")
    return fen


def _shown(value: Any) -> str:
    """A value for an error message: hostile input can be megabytes long."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:32]}... ({len(text)} characters)"


# ---------------------------------------------------------------------------------------------- builders

def _need(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise XftError(f"{name} is required (non-empty text), got {value!r}")
    return value


def _trade_no(value: Any, name: str = "out_trade_no") -> str:
    if not isinstance(value, str) or not _OUT_TRADE_NO_RE.match(value):
        raise XftError(f"{name} must be 1-64 characters of [0-9A-Za-z_-], got {value!r}")
    return value


def _xft_time(moment: datetime, zone: tzinfo, name: str) -> str:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise XftError(f"{name} must be an aware datetime (a naive one has no zone to convert from)")
    return moment.astimezone(zone).strftime(TIME_FORMAT)


def _opt_count(value: Any, name: str) -> Optional[str]:
    """Optional whole number (seconds, per WeChat's scene_info that XFT mirrors)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise XftError(f"{name} must be a whole number >= 0, got {value!r}")
    return str(value)


def _client_ip(value: Any) -> str:
    if not isinstance(value, str):
        raise XftError(f"client_ip must be text, got {value!r}")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise XftError(f"client_ip is not an IP address: {value!r}") from None


def _common(app_id: str, merchant_code: str, store_code: Optional[str], channel: Optional[str]) -> dict[str, Any]:
    params: dict[str, Any] = {"app_id": _need(app_id, "app_id"), "merchant_code": _need(merchant_code, "merchant_code")}
    if store_code is not None:
        params["store_code"] = _need(store_code, "store_code")
    if channel is not None:
        params["channel"] = _need(channel, "channel")
    return params


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def signed_relation_params(*, app_id: str, merchant_code: str, store_code: str, channel: Optional[str],
                           plate_number: str, sub_openid: Optional[str] = None, openid: Optional[str] = None,
                           jump_scene: Optional[str] = None, trade_scene: str = TRADE_SCENE) -> dict[str, Any]:
    """query/signed/relation/v2. Seed 000: with channel WECHAT, sub_openid and the plate are both required, so
    WECHAT without sub_openid is refused here (XftError). A lane at the barrier knows the plate, not the
    driver's WeChat sub_openid: it asks with `channel=None` — the plate alone, no channel named — and the
    answer's `channel` says which payment method the user has opened (seed: 用户开通的支付方式)."""
    if channel is not None and channel in CHANNEL_NEEDS_SUB_OPENID and not sub_openid:
        raise XftError(f"channel {channel} needs sub_openid with the plate (seed 000); ask without a channel")
    return _common(app_id, merchant_code, store_code, channel) | {"extra": _drop_none({
        "trade_scene": trade_scene, "plate_number": _need(plate_number, "plate_number"),
        "sub_openid": sub_openid, "openid": openid, "jump_scene": jump_scene})}


def entry_params(*, app_id: str, merchant_code: str, store_code: str, channel: str, out_trade_no: str,
                 plate_number: str, start_time: datetime, zone: tzinfo, car_type: Optional[str] = None,
                 free_time: Optional[int] = None, trade_scene: str = TRADE_SCENE) -> dict[str, Any]:
    """entry/v2. start_time is written as yyyyMMddHHmmss wall time in the lot's `zone`; free_time is whole
    seconds (inferred from WeChat's parking scene_info, which this API mirrors — confirm with XFT)."""
    return _common(app_id, merchant_code, store_code, channel) | {
        "out_trade_no": _trade_no(out_trade_no),
        "extra": _drop_none({
            "trade_scene": trade_scene, "plate_number": _need(plate_number, "plate_number"),
            "start_time": _xft_time(start_time, zone, "start_time"), "car_type": car_type,
            "free_time": _opt_count(free_time, "free_time")}),
    }


def exit_params(*, app_id: str, merchant_code: str, store_code: str, channel: str, out_trade_no: str,
                amount_fen: int, notify_url: str, plate_number: str, start_time: datetime, end_time: datetime,
                zone: tzinfo, client_ip: str, subject: str = "停车费", body: Optional[str] = None,
                description: Optional[str] = None, car_type: Optional[str] = None,
                charging_time: Optional[int] = None, sub_app_id: Optional[str] = None,
                trade_scene: str = TRADE_SCENE) -> dict[str, Any]:
    """entrance/v2: exit and charge `amount_fen`. A zero fee is a free exit decided by the rules, never a
    charge. charging_time is the charged duration in whole seconds, end - start by default (inferred, as
    free_time)."""
    if fen_to_wire(amount_fen, name="amount_fen") == "0":
        raise XftError("amount_fen must be > 0: a free exit is not charged")
    if not isinstance(notify_url, str) or not notify_url.startswith(("http://", "https://")):
        raise XftError(f"notify_url must be an http(s) URL, got {notify_url!r}")
    start = _xft_time(start_time, zone, "start_time")
    end = _xft_time(end_time, zone, "end_time")
    if end_time < start_time:
        raise XftError(f"end_time {end} is before start_time {start}")
    if charging_time is None:
        charging_time = int((end_time - start_time).total_seconds())
    return _common(app_id, merchant_code, store_code, channel) | _drop_none({
        "out_trade_no": _trade_no(out_trade_no),
        "amount": fen_to_wire(amount_fen),
        "notify_url": notify_url,
        "body": body if body is not None else subject,
        "subject": _need(subject, "subject"),
        "description": description,
        "client_ip": _client_ip(client_ip),
        "extra": _drop_none({
            "start_time": start, "end_time": end, "charging_time": _opt_count(charging_time, "charging_time"),
            "plate_number": _need(plate_number, "plate_number"), "car_type": car_type,
            "trade_scene": trade_scene, "sub_app_id": sub_app_id}),
    })


def charge_query_params(*, app_id: str, merchant_code: str, out_trade_no: str,
                        third_trade_no: Optional[str] = None, client_ip: Optional[str] = None,
                        store_code: Optional[str] = None, channel: Optional[str] = None,
                        extra: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """query/charge/v2. XFT lists no store_code/channel for this call: they are sent only when given."""
    return _common(app_id, merchant_code, store_code, channel) | _drop_none({
        "out_trade_no": _trade_no(out_trade_no),
        "third_trade_no": third_trade_no or None,
        "client_ip": _client_ip(client_ip) if client_ip is not None else None,
        "extra": dict(extra) if extra else None,
    })


# ---------------------------------------------------------------------------------------------- decoding

def _no_constants(name: str) -> Any:
    raise XftError(f"not JSON XFT sends: {name}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:  # two different values for one field: which one was signed is anybody's guess
            raise XftError(f"field {k!r} appears twice")
        out[k] = v
    return out


def _loads(text: str) -> Any:
    try:
        value = json.loads(text, parse_float=_RawNumber, parse_constant=_no_constants,
                           object_pairs_hook=_unique_keys)
    except XftError:
        raise
    except (ValueError, RecursionError) as exc:
        raise XftError(f"not JSON: {exc}") from None
    _check_depth(value)
    return value


def _check_depth(value: Any) -> None:
    stack = [(value, 1)]
    while stack:  # iterative: the point is not to recurse on hostile input
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise XftError(f"JSON nested deeper than {MAX_DEPTH} levels")
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))


def _percent_decode(text: str) -> str:
    """application/x-www-form-urlencoded value -> text ('+' is a space; %XX are UTF-8 bytes). urllib is
    off limits for the pure codecs (no I/O modules), and this is all of it that we need."""
    raw = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "%":
            pair = text[i + 1:i + 3]
            if len(pair) != 2 or not all(ch in "0123456789abcdefABCDEF" for ch in pair):
                raise XftError(f"bad percent escape in form body near {text[i:i + 3]!r}")
            raw.append(int(pair, 16))
            i += 3
            continue
        raw += b" " if c == "+" else c.encode("utf-8")
        i += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise XftError("form body is not UTF-8 after percent-decoding") from None


def _form(text: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for part in text.strip().split("&"):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise XftError(f"form field without '=': {part[:40]!r}")
        name = _percent_decode(name)
        if name in fields:
            raise XftError(f"field {name!r} appears twice")
        fields[name] = _percent_decode(value)
    if not fields:
        raise XftError("empty form body")
    return fields


def _text(body: Any) -> str:
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise XftError(f"expected the raw body as bytes, got {type(body).__name__}")
    if len(body) > MAX_BODY:
        raise XftError(f"body of {len(body)} bytes is larger than {MAX_BODY}")
    try:
        return bytes(body).decode("utf-8-sig")  # a BOM is editor noise, not content
    except UnicodeDecodeError:
        raise XftError("body is not UTF-8") from None


def _as_object(value: Any, what: str) -> Optional[dict[str, Any]]:
    """An object, or the JSON text of one (XFT sends nested objects as strings); None when empty."""
    if _is_empty(value):
        return None
    if isinstance(value, str) and not isinstance(value, _RawNumber):
        value = _loads(value)
    if not isinstance(value, dict):
        raise XftError(f"{what} is not a JSON object")
    return value


def nested_object(value: Any, what: str = "extra") -> dict[str, Any]:
    """A nested field (`extra`, `credential`) as a dict, whether it came as an object or as its JSON text;
    {} when empty."""
    return _as_object(value, what) or {}


Fields = dict[str, Any]


def decode_fields(body: bytes, *, content_type: Optional[str] = None) -> tuple[Fields, Optional[Fields]]:
    """Raw body -> (fields, wrapper). Accepts a flat JSON object, the same wrapped as
    `{code, message, result, data}` (data an object or its JSON text), a JSON string holding the object
    ("json 格式字符串"), and application/x-www-form-urlencoded. `wrapper` is the outer object when there was
    one. Without a content type, a body starting with '{', '[' or '"' is JSON, anything else a form."""
    text = _text(body)
    ctype = (content_type or "").lower()
    stripped = text.lstrip()
    if "x-www-form-urlencoded" in ctype or (not ctype and not stripped.startswith(("{", '"', "["))):
        obj: Any = _form(text)
    else:
        obj = _loads(text)
        if isinstance(obj, str):  # the whole object sent once more as a JSON string
            obj = _loads(obj)
    if not isinstance(obj, dict):
        raise XftError(f"expected a JSON object, got {type(obj).__name__}")
    if "data" in obj and set(obj) <= _WRAPPER_KEYS:
        inner = _as_object(obj["data"], "data")
        if inner is None:
            raise XftRefused(_field_text(obj, "code"), _field_text(obj, "message") or _field_text(obj, "msg"))
        return inner, obj
    return obj, None


def _field_text(fields: Mapping[str, Any], name: str) -> str:
    """A scalar field as text ("" when absent). Objects are not text."""
    value = fields.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise XftError(f"field {name!r} should be text, got {type(value).__name__}")
    return str(value)


def _check_signature(fields: dict[str, Any], wrapper: Optional[dict[str, Any]], key: Optional[str],
                     require_signature: bool, where: str) -> bool:
    """True when verified; False when unsigned and that is allowed. The sign is looked for in the data first,
    then in the wrapper (whose `data`, if an object, is then signed as its compact JSON text)."""
    if require_signature and not key:
        raise ValueError("require_signature needs the merchant key")
    signed = fields if "sign" in fields else wrapper if wrapper is not None and "sign" in wrapper else None
    if not key:
        return False
    if signed is None:
        if require_signature:
            raise BadSignature(f"{where}: not signed")
        return False
    if not verify(signed, key):
        raise BadSignature(f"{where}: signature does not match")
    return True


def _decode(body: bytes, key: Optional[str], require_signature: bool, where: str,
            content_type: Optional[str] = None) -> tuple[dict[str, Any], bool]:
    fields, wrapper = decode_fields(body, content_type=content_type)
    return fields, _check_signature(fields, wrapper, key, require_signature, where)


def _check_order(fields: Mapping[str, Any], expect: Optional[str], where: str) -> str:
    out_trade_no = _field_text(fields, "out_trade_no")
    if expect is not None and out_trade_no and out_trade_no != expect:
        raise XftError(f"{where}: answer for order {out_trade_no!r}, expected {expect!r}")
    return out_trade_no


def _state(fields: Mapping[str, Any], name: str = "state") -> str:
    """Order state "00".."99". A JSON integer is tolerated (0 -> "00"); anything else is garbage."""
    value = fields.get(name)
    if value is None or value == "":
        return ""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 99:
        return f"{value:02d}"
    if isinstance(value, str) and not isinstance(value, _RawNumber) and _STATE_RE.match(value):
        return value
    raise XftError(f"{name} is not a two-digit state code: {value!r}")


def _opt_fen(fields: Mapping[str, Any], name: str = "amount", max_fen: Optional[int] = None) -> Optional[int]:
    value = fields.get(name)
    return None if value is None or value == "" else fen_from_wire(value, name=name, max_fen=max_fen)


# ---------------------------------------------------------------------------------------------- answers

@dataclass(frozen=True, slots=True)
class SignedRelation:
    sign_flag: bool  # "1" signed up for sign-free payment; "0", absent (error answers) -> False
    plates: tuple[str, ...]  # normalized, the user's plates ("粤B1;粤B2")
    channel: str = ""
    failure_code: str = ""
    failure_msg: str = ""
    credential: Optional[dict[str, Any]] = field(default=None, compare=False)
    signed: bool = False  # True only when the signature was checked and matched


def parse_signed_relation(body: bytes, key: Optional[str] = None, *,
                          require_signature: bool = False) -> SignedRelation:
    fields, signed = _decode(body, key, require_signature, "signed relation")
    flag = _field_text(fields, "sign_flag")
    if flag not in ("", "0", "1"):
        raise XftError(f"sign_flag is neither 0 nor 1: {flag!r}")
    raw_plates = re.split(r"[;；]", _field_text(fields, "plate_number"))
    plates = tuple(p for p in (normalize_plate(x) for x in raw_plates) if p)
    return SignedRelation(flag == "1", plates, _field_text(fields, "channel"), _field_text(fields, "failure_code"),
                          _field_text(fields, "failure_msg"), _as_object(fields.get("credential"), "credential"),
                          signed)


@dataclass(frozen=True, slots=True)
class EntryAnswer:
    ok: bool  # state "1"; "0" or absent -> False (the entry is retried from the outbox)
    state: str
    store_code: str = ""
    plate_number: str = ""
    failure_code: str = ""
    failure_msg: str = ""
    signed: bool = False


def parse_entry_answer(body: bytes, key: Optional[str] = None, *, require_signature: bool = False) -> EntryAnswer:
    fields, signed = _decode(body, key, require_signature, "entry answer")
    state = _field_text(fields, "state")
    if state not in ("", "0", "1"):
        raise XftError(f"entry state is neither 0 nor 1: {state!r}")
    return EntryAnswer(state == "1", state, _field_text(fields, "store_code"),
                       normalize_plate(_field_text(fields, "plate_number")), _field_text(fields, "failure_code"),
                       _field_text(fields, "failure_msg"), signed)


@dataclass(frozen=True, slots=True)
class ExitAnswer:
    is_allow: IsAllow
    out_trade_no: str = ""
    third_trade_no: str = ""  # WeChat fills it only in the notify
    failure_code: str = ""
    failure_msg: str = ""
    channel: str = ""
    raw_is_allow: str = ""  # as received, for the log when it was not one of the three
    signed: bool = False

    @property
    def allowed(self) -> bool:
        return self.is_allow == "SUCCESS"


def parse_exit_answer(body: bytes, key: Optional[str] = None, *, require_signature: bool = False,
                      expect_out_trade_no: Optional[str] = None) -> ExitAnswer:
    """entrance/v2 answer. Only the exact text SUCCESS lets the car out. FAIL is FAIL. INIT, an absent
    is_allow, and any other value are INIT: undecided, so the lane polls query/charge/v2 and takes the notify —
    never an open on a guess, and never a fallback charge while an XFT charge may still go through.
    An answer naming another order than `expect_out_trade_no` is refused."""
    fields, signed = _decode(body, key, require_signature, "exit answer")
    out_trade_no = _check_order(fields, expect_out_trade_no, "exit answer")
    raw = _field_text(fields, "is_allow")
    is_allow: IsAllow = "SUCCESS" if raw == "SUCCESS" else "FAIL" if raw == "FAIL" else "INIT"
    return ExitAnswer(is_allow, out_trade_no, _field_text(fields, "third_trade_no"),
                      _field_text(fields, "failure_code"), _field_text(fields, "failure_msg"),
                      _field_text(fields, "channel"), raw, signed)


@dataclass(frozen=True, slots=True)
class ChargeState:
    """query/charge/v2. Exactly one of paid / failed / refunded / pending is true. pending covers 09, an
    absent state (e.g. an ORDER_NOT_EXIST answer just after entrance/v2) and codes we do not know."""

    state: str
    amount_fen: Optional[int] = None
    out_trade_no: str = ""
    third_trade_no: str = ""
    id: str = ""  # XFT's order id
    payer_id: str = ""
    channel: str = ""
    store_code: str = ""
    failure_code: str = ""
    failure_msg: str = ""
    signed: bool = False

    @property
    def paid(self) -> bool:
        return self.state == STATE_PAID

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES

    @property
    def refunded(self) -> bool:
        return self.state in REFUND_STATES

    @property
    def pending(self) -> bool:
        return not (self.paid or self.failed or self.refunded)

    @property
    def absent(self) -> bool:
        """The platform says it has no such order (no state, an ORDER_NOT_EXIST refusal). Also pending: what it
        means depends on whether entrance/v2 was ever answered for the order (the settlement decides)."""
        return not self.state and (self.failure_code.upper() in ORDER_ABSENT_CODES
                                   or any(w in self.failure_msg for w in ORDER_ABSENT_WORDS))


def parse_charge_query(body: bytes, key: Optional[str] = None, *, require_signature: bool = False,
                       expect_out_trade_no: Optional[str] = None) -> ChargeState:
    fields, signed = _decode(body, key, require_signature, "charge query answer")
    out_trade_no = _check_order(fields, expect_out_trade_no, "charge query answer")
    return ChargeState(_state(fields), _opt_fen(fields), out_trade_no, _field_text(fields, "third_trade_no"),
                       _field_text(fields, "id"), _field_text(fields, "payer_id"), _field_text(fields, "channel"),
                       _field_text(fields, "store_code"), _field_text(fields, "failure_code"),
                       _field_text(fields, "failure_msg"), signed)


# ---------------------------------------------------------------------------------------------- notify

@dataclass(frozen=True, slots=True)
class Notify:
    out_trade_no: str
    third_trade_no: str
    store_code: str
    amount_fen: Optional[int]  # always present when paid
    channel: str
    state: str  # "00" paid, "01" failed (others tolerated, never paid)
    failure_code: str = ""
    failure_msg: str = ""
    signed: bool = False

    @property
    def paid(self) -> bool:
        return self.state == STATE_PAID

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES


def parse_notify(body: bytes, key: str, *, content_type: Optional[str] = None,
                 require_signature: bool = True, max_fen: Optional[int] = None) -> Notify:
    """A notify POSTed to the lane's notify_url (JSON per XFT; a form body is accepted too — the content
    type, or the first byte when there is none, decides).

    XFT's parking page lists no `sign` among the notify fields (the payment API signs its notifies). So a
    signature is required by default; `require_signature=False` accepts an unsigned notify with
    signed=False, and the lane must then confirm it with query/charge/v2 before opening. A present but wrong
    signature is always BadSignature. Required: out_trade_no and state; amount too when state is 00. An amount
    over `max_fen` (the site's payments.max_amount_fen) is refused with XftError."""
    fields, signed = _decode(body, key, require_signature, "notify", content_type)
    for name in ("out_trade_no", "state"):
        if not _field_text(fields, name):
            raise MissingField(name, "notify")
    state = _state(fields)
    amount = _opt_fen(fields, max_fen=max_fen)
    if state == STATE_PAID and amount is None:
        raise MissingField("amount", "paid notify")
    return Notify(_field_text(fields, "out_trade_no"), _field_text(fields, "third_trade_no"),
                  _field_text(fields, "store_code"), amount, _field_text(fields, "channel"), state,
                  _field_text(fields, "failure_code"), _field_text(fields, "failure_msg"), signed)


def parse_notify_form(text: str, key: str, *, require_signature: bool = True) -> Notify:
    """parse_notify for an application/x-www-form-urlencoded body already read as text."""
    if not isinstance(text, str):
        raise XftError(f"expected form text, got {type(text).__name__}")
    return parse_notify(text.encode("utf-8"), key, content_type="application/x-www-form-urlencoded",
                        require_signature=require_signature)


def notify_fields(*, out_trade_no: str, state: str, amount_fen: Optional[int], third_trade_no: str = "",
                  store_code: str = "", channel: str = "", failure_code: str = "", failure_msg: str = "",
                  **more: Any) -> dict[str, Any]:
    """Unsigned notify fields, as a platform (or the HIL emulator) sends them; sign with signed_fields."""
    if not _STATE_RE.match(state or ""):
        raise XftError(f"state must be two digits, got {state!r}")
    return _drop_none({
        "out_trade_no": _trade_no(out_trade_no), "third_trade_no": third_trade_no, "store_code": store_code,
        "amount": fen_to_wire(amount_fen) if amount_fen is not None else None, "channel": channel,
        "state": state, "failure_code": failure_code, "failure_msg": failure_msg, **more})
