"""tdzn parking platform ("HTTP 对接文档"): signed JSON envelopes, lane → platform notifications, platform → lane
requests and the answers to both. Pure: bytes and values in, bytes and typed values out; the clock comes in as
arguments (`timestamp`, `now`, aware datetimes with the lot's `tz`).

Envelope (doc 2.2): POST `{"pid", "serviceName", "timestamp", "bizContent", "sign"}`, answered `{code, msg, data?}`.

Signature: every non-empty top-level param except `sign`, sorted by name (ASCII, case-sensitive), joined `k=v&...`,
then `&key=<KEY>`, MD5, upper hex. Each value is signed as the text it was sent as (ARCHITECTURE rule 5):
- a JSON string: its decoded content, verbatim — so `bizContent` sent as a string is signed exactly as sent;
- a number / true / false: its JSON token as received (`1539571096`, never re-rendered);
- an object or array (`bizContent` sent as an object): its raw text from the body with insignificant whitespace
  (space, tab, CR, LF outside strings) removed and NOTHING else changed — key order, escapes (`\\u7ca4` stays
  escaped) and number spelling (`1.0`, `1e2`) are kept. A sender that re-orders or re-escapes while signing
  will not verify, on purpose: we never guess a canonical form.
- null and "" are empty and left out.
We send `bizContent` as a JSON string (compact, ensure_ascii=False), so the signed text is unambiguous.

Decisions where the doc is silent (kept here so the lane and the emulator agree):
- Duplicate keys (top level or inside bizContent) are refused as bad JSON (4021): which one was signed is unknowable.
- NaN/Infinity and floats on money or enum fields are refused (402); integers may also arrive as ASCII-digit
  strings ("100"), which Java platforms sometimes send. Strings may arrive as integers (channel ids).
- A replay outside ±window_s raises ReplayRefused, a TdznError with code 402 (the timestamp is an illegal value);
  the signature is checked first, so an unsigned caller learns nothing about our clock.
- Only code 200 means paid/ok. 405 and 6006 mean "already done" (duplicate), never "paid".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Mapping, Optional, Sequence

CODES: dict[int, str] = {
    200: "ok",
    400: "missing param",
    401: "bad signature",
    402: "illegal param",
    404: "not found",
    405: "duplicate request",
    500: "server error",
    4021: "bad JSON",
    6001: "park not answering",
    6003: "no entry record",
    6004: "fee lookup failed",
    6005: "pay notify failed",
    6006: "duplicate pay notify",
}
DUPLICATE_CODES = frozenset({405, 6006})

PAY_TYPES: dict[int, str] = {1: "WeChat", 2: "Alipay", 3: "platform balance", 4: "cash", 5: "UnionPay",
                             6: "other", 10: "platform coupon", 11: "points"}

# lane → platform services we send, platform → lane services we serve
ENTER_NOTIFY, LEAVE_NOTIFY, PRE_LEAVE_NOTIFY, PRE_ENTER_NOTIFY = (
    "enterNotify", "leaveNotify", "preLeaveNotify", "preEnterNotify")
QUERY_PARK_FEE, PAY_NOTIFY, REMOTE_DEV = "queryParkFee", "payNotify", "remoteDev"

# bizContent fields the doc marks required (是), per service; used by the emulator and by the builder tests
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    ENTER_NOTIFY: ("parkCode", "recordNo", "plateNum", "carType", "carSubType", "entrance", "enterTime",
                   "remainParkNum", "totalParkNum"),
    LEAVE_NOTIFY: ("parkCode", "recordNo", "plateNum", "carType", "carSubType", "exitdesc", "leaveTime",
                   "remainParkNum", "totalParkNum", "payableFee", "discountFee", "cashFee", "mobileFee", "payOrders"),
    PRE_LEAVE_NOTIFY: ("parkCode", "recordNo", "plateNum", "carType", "carSubType", "enterTime", "leaveTime",
                       "payableFee", "discountFee", "paidFee", "sweepCode", "plateId"),
    PRE_ENTER_NOTIFY: ("parkCode", "recordNo", "plateNum", "carType", "carSubType", "entrance", "enterTime"),
}
_ENVELOPE = ("pid", "serviceName", "timestamp", "bizContent", "sign")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class TdznError(ValueError):
    """A request or answer we refuse; `code` is the platform return code to answer the sender with."""

    code: int = 402

    def __init__(self, msg: str, code: Optional[int] = None) -> None:
        super().__init__(msg)
        if code is not None:
            self.code = code

    @property
    def msg(self) -> str:
        return str(self)[:200]  # what the answer carries: never megabytes of what was sent


class MissingParam(TdznError):
    code = 400


class BadSignature(TdznError):
    code = 401


class IllegalParam(TdznError):
    code = 402


class ReplayRefused(IllegalParam):
    """Timestamp outside the accepted window: an old (replayed) or far-future request."""


class UnknownService(TdznError):
    code = 404


class BadJson(TdznError):
    code = 4021


# ---------------------------------------------------------------- JSON text: compact dump, scanner, compaction

_WS = " \t\n\r"


def _refuse_constant(name: str) -> Any:
    raise BadJson(f"not JSON: {name}")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise BadJson(f"duplicate key {k!r}")
        out[k] = v
    return out


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_pairs, parse_constant=_refuse_constant)


def compact_json(value: Any) -> str:
    """The text we sign and send: compact, non-ASCII kept, keys in the given order, no floats/NaN."""
    _no_floats(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _no_floats(value: Any) -> None:
    if isinstance(value, float):
        raise IllegalParam(f"float {value!r} in a tdzn message: money is integer fen, times are text")
    if isinstance(value, Mapping):
        for v in value.values():
            _no_floats(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _no_floats(v)


def compact_raw(raw: str) -> str:
    """Valid JSON text minus whitespace outside strings; everything else (order, escapes, numbers) unchanged."""
    out: list[str] = []
    in_string = escaped = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in _WS:
            continue
        out.append(ch)
    return "".join(out)


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _scan_object(text: str) -> list[tuple[str, Any, str]]:
    """Top-level object members as (name, value, raw value text), in body order. raw_decode gives exact spans."""
    try:
        i = _skip_ws(text, 0)
        if text[i:i + 1] != "{":
            raise BadJson("body is not a JSON object")
        i = _skip_ws(text, i + 1)
        members: list[tuple[str, Any, str]] = []
        if text[i:i + 1] == "}":
            i += 1
        else:
            while True:
                if text[i:i + 1] != '"':
                    raise BadJson(f"expected a member name at {i}")
                name, i = _DECODER.raw_decode(text, i)
                i = _skip_ws(text, i)
                if text[i:i + 1] != ":":
                    raise BadJson(f"expected ':' at {i}")
                start = i = _skip_ws(text, i + 1)
                value, i = _DECODER.raw_decode(text, i)
                members.append((name, value, text[start:i]))
                i = _skip_ws(text, i)
                sep = text[i:i + 1]
                if sep == "}":
                    i += 1
                    break
                if sep != ",":
                    raise BadJson(f"expected ',' or '}}' at {i}")
                i = _skip_ws(text, i + 1)
        if _skip_ws(text, i) != len(text):
            raise BadJson("extra data after the JSON object")
    except TdznError:
        raise
    except (ValueError, RecursionError) as e:  # JSONDecodeError, int digit limits, absurd nesting
        raise BadJson(f"bad JSON: {e}") from None
    names = [m[0] for m in members]
    if len(set(names)) != len(names):
        raise BadJson("duplicate top-level key")
    return members


def _loads(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except TdznError:
        raise
    except (ValueError, RecursionError) as e:
        raise BadJson(f"bad JSON: {e}") from None


def _body_text(body: bytes) -> str:
    try:
        text = bytes(body).decode("utf-8")
    except (UnicodeDecodeError, TypeError) as e:
        raise BadJson(f"body is not UTF-8 JSON: {e}") from None
    return text[1:] if text.startswith("\ufeff") else text  # a BOM is framing, not content


# ---------------------------------------------------------------- signing

def _param_text(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (Mapping, list, tuple)):
        return compact_json(value)
    raise IllegalParam(f"param {name} cannot be signed: {type(value).__name__}")


def signing_string(params: Mapping[str, Any], key: str) -> str:
    """`k=v&...&key=KEY` over the non-empty params except `sign`. Mapping values are signed as compact JSON in
    their given order; str values verbatim (pass the received bizContent text to verify)."""
    parts = []
    for name in sorted(params):
        value = params[name]
        if name == "sign" or value is None:
            continue
        text = _param_text(name, value)
        if text != "":
            parts.append(f"{name}={text}")
    parts.append(f"key={key}")
    return "&".join(parts)


def sign(params: Mapping[str, Any], key: str) -> str:
    return hashlib.md5(signing_string(params, key).encode("utf-8")).hexdigest().upper()


def _same_sign(expected: str, got: str) -> bool:
    # hex case carries no information; compare as bytes so non-ASCII garbage cannot raise
    return hmac.compare_digest(expected.encode("ascii"), got.upper().encode("utf-8"))


# ---------------------------------------------------------------- envelopes

@dataclass(frozen=True, slots=True)
class Request:
    pid: str
    service_name: str
    timestamp: int
    biz: dict[str, Any]
    biz_text: str  # the bizContent text the signature covers
    sign: str


def encode_request(pid: str, service_name: str, biz: Mapping[str, Any], key: str, timestamp: int, *,
                   sort_keys: bool = False) -> bytes:
    """A signed request body. bizContent is serialized once and sent as a JSON string of that text.

    sort_keys=True sorts bizContent keys (the doc's examples are sorted — useful if a platform re-serializes
    before verifying); by default keys go in the given (doc) order."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise IllegalParam(f"timestamp must be unix seconds (int), got {timestamp!r}")
    biz_text = compact_json(dict(sorted(biz.items())) if sort_keys else dict(biz))
    params = {"pid": pid, "serviceName": service_name, "timestamp": timestamp, "bizContent": biz_text}
    envelope = dict(params, sign=sign(params, key))
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_request(body: bytes, key: str, *, now: Optional[float] = None, window_s: int = 300,
                   pid: Optional[str] = None) -> Request:
    """Parse and verify a signed request. Raises TdznError whose `code` is the answer to give:
    4021 bad JSON, 400 missing param, 402 illegal param / unknown pid / ReplayRefused, 401 BadSignature.
    `now` (unix s) enables the replay window; `pid` (ours) refuses other partners' requests."""
    members = _scan_object(_body_text(body))
    values = {name: value for name, value, _ in members}
    signed: dict[str, Any] = {}
    for name, value, raw in members:
        if name == "sign" or value is None:
            continue
        if isinstance(value, str):
            signed[name] = value
        elif isinstance(value, (dict, list)):
            signed[name] = compact_raw(raw)
        else:
            signed[name] = raw  # numbers and true/false: the token as received
    for name in _ENVELOPE:
        if values.get(name) in (None, ""):
            raise MissingParam(f"missing param: {name}")
    got_pid = _text_value("pid", values["pid"])
    service = values["serviceName"]
    got_sign = values["sign"]
    if not isinstance(service, str) or not isinstance(got_sign, str):
        raise IllegalParam("serviceName and sign must be strings")
    timestamp = _int_value("timestamp", values["timestamp"])
    biz_value = values["bizContent"]
    if isinstance(biz_value, str):
        biz_text = biz_value
        biz = _loads(biz_text)
    else:
        biz_text, biz = signed["bizContent"], biz_value
    if not isinstance(biz, dict):
        raise IllegalParam("bizContent must be a JSON object")
    if pid is not None and got_pid != pid:
        raise IllegalParam(f"unknown pid {got_pid!r}")
    if not _same_sign(sign(signed, key), got_sign):
        raise BadSignature("bad signature")
    if now is not None and abs(now - timestamp) > window_s:
        raise ReplayRefused(f"timestamp {timestamp} outside ±{window_s}s of now")
    return Request(got_pid, service, timestamp, biz, biz_text, got_sign)


@dataclass(frozen=True, slots=True)
class Answer:
    code: int
    msg: str
    data: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def duplicate(self) -> bool:
        """Already done by an earlier request (405 / 6006): settled, but never 'paid' by itself."""
        return self.code in DUPLICATE_CODES


def answer(code: int, msg: str = "", data: Optional[Mapping[str, Any]] = None) -> bytes:
    """`{code, msg[, data]}`; msg defaults to the code's meaning, data is left out when None."""
    out: dict[str, Any] = {"code": code, "msg": msg or CODES.get(code, "")}
    if data is not None:
        out["data"] = dict(data)
    return compact_json(out).encode("utf-8")


def parse_answer(body: bytes) -> Answer:
    """Tolerant of extra fields, a missing/null data and code or data sent as strings; raises TdznError else."""
    value = _loads(_body_text(body))
    if not isinstance(value, dict):
        raise BadJson("answer is not a JSON object")
    if value.get("code") in (None, ""):
        raise MissingParam("answer without code")
    code = _int_value("code", value["code"], allow_negative=True)
    msg = value.get("msg")
    msg = "" if msg is None else msg if isinstance(msg, str) else str(msg)
    data = value.get("data")
    if isinstance(data, str) and data.strip():
        data = _loads(data)
    if data in (None, "", []):
        data = {}
    if not isinstance(data, dict):
        raise IllegalParam("answer data is not an object")
    return Answer(code, msg, data)


# ---------------------------------------------------------------- values

_INT_RE = re.compile(r"^-?[0-9]+$")
MAX_INT = 10 ** 15  # bigger integers are refused whatever the field (fen, unix seconds, codes)
_TIME_RE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})$")


def _int_value(name: str, value: Any, *, allow_negative: bool = False) -> int:
    if isinstance(value, str) and _INT_RE.match(value) and len(value) < 20:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise IllegalParam(f"{name} must be an integer, got {_shown(value)}")
    if value < 0 and not allow_negative:
        raise IllegalParam(f"{name} must not be negative, got {_shown(value)}")
    if abs(value) >= MAX_INT:  # no field of the doc is this big; later arithmetic (floats, datetimes) would fail
        raise IllegalParam(f"{name} is out of range: {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    """A value for an error message: hostile input can be megabytes long."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:32]}... ({len(text)} characters)"


def _money(biz: Mapping[str, Any], name: str, max_fen: Optional[int], required: bool = True) -> int:
    """A fen amount (integer, or ASCII digits as text) of at most `max_fen` (the site's payments.max_amount_fen)."""
    fen = _int(biz, name, required)
    if max_fen is not None and fen > max_fen:
        raise IllegalParam(f"{name} of {fen} fen is over the ceiling of {max_fen} fen")
    return fen


def _text_value(name: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise IllegalParam(f"{name} must be text, got {value!r}")
    return value


def format_time(at: datetime, tz: tzinfo) -> str:
    """Aware datetime -> `YYYY-MM-DD HH:mm:ss` in the lot's zone."""
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise IllegalParam(f"need an aware datetime, got {at!r}")
    return at.astimezone(tz).strftime(TIME_FORMAT)


def parse_time(text: str, tz: tzinfo) -> datetime:
    """`YYYY-MM-DD HH:mm:ss` (ASCII digits, exactly) in the lot's zone -> aware datetime."""
    m = _TIME_RE.match(text) if isinstance(text, str) else None
    if m is None:
        raise IllegalParam(f"time must be 'YYYY-MM-DD HH:mm:ss', got {text!r}")
    try:
        return datetime(*(int(g) for g in m.groups()), tzinfo=tz)  # type: ignore[misc]
    except ValueError as e:
        raise IllegalParam(f"no such time {text!r}: {e}") from None


def _fen(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise IllegalParam(f"{name} must be whole non-negative fen (int), got {value!r}")
    return value


# ---------------------------------------------------------------- car types

_SUBTYPES = "ABCDE"
_CLASS_BASE = {"temporary": 9, "monthly": 8, "stored_value": 7, "free": 1, "whitelist": 1, "special": 1}
_FIXED = {"police": (1, 16), "military": (1, 16), "vip": (1, 17)}


def car_type(vehicle_class: str, subtype: Optional[str] = "A") -> tuple[int, int]:
    """(carType, carSubType) for our vehicle class and tariff subtype A–E (None means A):
    temporary 9/91–95, monthly 8/81–85, stored_value 7/71–75, free|whitelist|special 1/11–15,
    police|military 1/16, vip 1/17 (those two ignore the subtype). A subtype may also be police/military/vip."""
    cls = vehicle_class.lower()
    sub = (subtype or "A").upper() if isinstance(subtype, str) or subtype is None else ""
    if cls in _FIXED:
        return _FIXED[cls]
    if cls in ("free", "whitelist", "special") and sub.lower() in _FIXED:
        return _FIXED[sub.lower()]
    if cls not in _CLASS_BASE:
        raise IllegalParam(f"no tdzn car type for vehicle class {vehicle_class!r}")
    if len(sub) != 1 or sub not in _SUBTYPES:
        raise IllegalParam(f"subtype must be A-E, got {subtype!r}")
    base = _CLASS_BASE[cls]
    return base, base * 10 + 1 + _SUBTYPES.index(sub)


# ---------------------------------------------------------------- lane → platform bizContent (doc order)

def _optional(biz: dict[str, Any], **fields: Any) -> dict[str, Any]:
    # optional fields are left out rather than sent empty
    biz.update({k: v for k, v in fields.items() if v not in (None, "")})
    return biz


def enter_notify(*, park_code: str, record_no: str, plate: str, entrance: str, enter_time: datetime, tz: tzinfo,
                 remain_park_num: int, total_park_num: int, vehicle_class: str = "temporary",
                 subtype: Optional[str] = "A", enter_pic: Optional[str] = None,
                 in_channel_id: Optional[str] = None) -> dict[str, Any]:
    ct, cst = car_type(vehicle_class, subtype)
    biz = {"parkCode": park_code, "recordNo": record_no, "plateNum": plate, "carType": ct, "carSubType": cst,
           "entrance": entrance, "enterTime": format_time(enter_time, tz),
           "remainParkNum": _fen("remainParkNum", remain_park_num), "totalParkNum": _fen("totalParkNum", total_park_num)}
    return _optional(biz, enterPic=enter_pic, inChannelid=in_channel_id)


@dataclass(frozen=True, slots=True)
class PayOrder:
    """One payment of a stay, as leaveNotify lists it."""
    order_no: str
    paid_fee_fen: int
    pay_type: int
    pay_time: datetime


def leave_notify(*, park_code: str, record_no: str, plate: str, exit_desc: str, leave_time: datetime, tz: tzinfo,
                 remain_park_num: int, total_park_num: int, payable_fee: int, discount_fee: int = 0,
                 cash_fee: int = 0, mobile_fee: int = 0, pay_orders: Sequence[PayOrder] = (),
                 vehicle_class: str = "temporary", subtype: Optional[str] = "A",
                 out_channel_id: Optional[str] = None, leave_pic: Optional[str] = None) -> dict[str, Any]:
    ct, cst = car_type(vehicle_class, subtype)
    orders = [{"orderNo": o.order_no, "paidFee": _fen("paidFee", o.paid_fee_fen), "payType": o.pay_type,
               "payTime": format_time(o.pay_time, tz)} for o in pay_orders]
    biz = {"parkCode": park_code, "recordNo": record_no, "plateNum": plate, "carType": ct, "carSubType": cst,
           "exitdesc": exit_desc, "leaveTime": format_time(leave_time, tz),
           "remainParkNum": _fen("remainParkNum", remain_park_num), "totalParkNum": _fen("totalParkNum", total_park_num),
           "payableFee": _fen("payableFee", payable_fee), "discountFee": _fen("discountFee", discount_fee),
           "cashFee": _fen("cashFee", cash_fee), "mobileFee": _fen("mobileFee", mobile_fee), "payOrders": orders}
    return _optional(biz, outChannelid=out_channel_id, leavePic=leave_pic)


def pre_leave_notify(*, park_code: str, record_no: str, plate: str, plate_id: str, enter_time: datetime,
                     leave_time: datetime, tz: tzinfo, payable_fee: int, discount_fee: int, paid_fee: int,
                     vehicle_class: str = "temporary", subtype: Optional[str] = "A",
                     out_channel_id: Optional[str] = None, order_no: Optional[str] = None,
                     sweep_auth_code: Optional[str] = None) -> dict[str, Any]:
    """Seed 004 (3.3). `paid_fee` is the amount due now (当前需付金额). A scanner auth code makes sweepCode 1."""
    ct, cst = car_type(vehicle_class, subtype)
    biz = {"parkCode": park_code, "recordNo": record_no, "plateNum": plate, "carType": ct, "carSubType": cst,
           "enterTime": format_time(enter_time, tz), "leaveTime": format_time(leave_time, tz),
           "payableFee": _fen("payableFee", payable_fee), "discountFee": _fen("discountFee", discount_fee),
           "paidFee": _fen("paidFee", paid_fee)}
    _optional(biz, outChannelid=out_channel_id, orderNo=order_no)
    biz["sweepCode"] = 1 if sweep_auth_code else 0
    _optional(biz, sweepAuthCode=sweep_auth_code)
    biz["plateId"] = plate_id
    return biz


def pre_enter_notify(*, park_code: str, record_no: str, plate: str, entrance: str, enter_time: datetime,
                     tz: tzinfo, vehicle_class: str = "temporary", subtype: Optional[str] = "A") -> dict[str, Any]:
    ct, cst = car_type(vehicle_class, subtype)
    return {"parkCode": park_code, "recordNo": record_no, "plateNum": plate, "carType": ct, "carSubType": cst,
            "entrance": entrance, "enterTime": format_time(enter_time, tz)}


def missing_fields(service_name: str, biz: Mapping[str, Any]) -> list[str]:
    """Doc-required bizContent fields that are absent or empty (sweepAuthCode when sweepCode is 1)."""
    need = list(REQUIRED_FIELDS.get(service_name, ()))
    if service_name == PRE_LEAVE_NOTIFY and biz.get("sweepCode") in (1, "1"):
        need.append("sweepAuthCode")
    return [name for name in need if biz.get(name) in (None, "")]


# ---------------------------------------------------------------- platform → lane requests

def _field(biz: Mapping[str, Any], name: str, required: bool = True) -> Any:
    value = biz.get(name)
    if value in (None, "") and required:
        raise MissingParam(f"missing param: {name}")
    return value


def _text(biz: Mapping[str, Any], name: str, required: bool = True) -> str:
    value = _field(biz, name, required)
    return "" if value in (None, "") else _text_value(name, value)


def _int(biz: Mapping[str, Any], name: str, required: bool = True, default: int = 0,
         choices: Optional[tuple[int, ...]] = None) -> int:
    value = _field(biz, name, required)
    if value in (None, ""):
        return default
    n = _int_value(name, value)
    if choices is not None and n not in choices:
        raise IllegalParam(f"{name} must be one of {choices}, got {n}")
    return n


def _expect(req: Request, service: str) -> None:
    if req.service_name != service:
        raise UnknownService(f"expected serviceName {service}, got {req.service_name!r}")


@dataclass(frozen=True, slots=True)
class QueryParkFee:
    park_code: str
    pay_scene: int  # 0 prepay inside the lot, 1 exit-lane QR with plate, 2 plate-less (by exit channel)
    plate: str
    record_no: str
    out_channel_id: str


def parse_query_park_fee(req: Request) -> QueryParkFee:
    """parkCode and payScene required; a plate unless payScene is 2, then an outChannelid."""
    _expect(req, QUERY_PARK_FEE)
    b = req.biz
    scene = _int(b, "payScene", choices=(0, 1, 2))
    return QueryParkFee(_text(b, "parkCode"), scene, _text(b, "plateNum", required=scene != 2),
                        _text(b, "recordNo", required=False), _text(b, "outChannelid", required=scene == 2))


@dataclass(frozen=True, slots=True)
class PayNotify:
    park_code: str
    order_no: str
    pay_time: datetime  # aware, in the lot's zone
    pay_time_text: str  # as sent
    type: int  # 0 prepaid in the lot, 1 exit QR paid, 2 sign-free async success
    out_channel_id: str
    record_no: str
    paid_fee_fen: int
    pay_type: int  # PAY_TYPES; unknown values are kept, not refused
    discount_fee_fen: int


def parse_pay_notify(req: Request, tz: tzinfo, *, max_fen: Optional[int] = None) -> PayNotify:
    """Required: parkCode, orderNo, payTime, type, paidFee, payType, and recordNo or outChannelid (a payment that
    names neither can never be bound to a car, so it is refused with 400). paidFee and discountFee over
    `max_fen` are refused with 402."""
    _expect(req, PAY_NOTIFY)
    b = req.biz
    record_no, channel = _text(b, "recordNo", required=False), _text(b, "outChannelid", required=False)
    if not record_no and not channel:
        raise MissingParam("missing param: recordNo or outChannelid")
    time_text = _text(b, "payTime")
    return PayNotify(_text(b, "parkCode"), _text(b, "orderNo"), parse_time(time_text, tz), time_text,
                     _int(b, "type", choices=(0, 1, 2)), channel, record_no, _money(b, "paidFee", max_fen),
                     _int(b, "payType"), _money(b, "discountFee", max_fen, required=False))


@dataclass(frozen=True, slots=True)
class RemoteDev:
    channel_id: str
    type: int  # 0 confirm release, 1 cancel, 2 free / abnormal release
    plate_id: str
    operator: str  # required: an operator release must name who
    cmd: int  # 0 in/out, 1 manual raise
    open_gate_case: str  # the reason; "" when not sent (the lane decides whether that is enough)


def parse_remote_dev(req: Request) -> RemoteDev:
    _expect(req, REMOTE_DEV)
    b = req.biz
    return RemoteDev(_text(b, "channelid"), _int(b, "type", choices=(0, 1, 2)), _text(b, "plateId", required=False),
                     _text(b, "operator"), _int(b, "cmd", choices=(0, 1)), _text(b, "openGateCase", required=False))


_LANE_PARSERS = {QUERY_PARK_FEE: parse_query_park_fee, REMOTE_DEV: parse_remote_dev}


def parse_lane_request(req: Request, tz: tzinfo, *, max_fen: Optional[int] = None
                       ) -> QueryParkFee | PayNotify | RemoteDev:
    """Route a verified platform → lane request by serviceName; 404 for a service the lane does not serve.
    `max_fen`: the ceiling of a payNotify's amounts."""
    if req.service_name == PAY_NOTIFY:
        return parse_pay_notify(req, tz, max_fen=max_fen)
    parser = _LANE_PARSERS.get(req.service_name)
    if parser is None:
        raise UnknownService(f"serviceName {req.service_name!r} is not served here")
    return parser(req)


def query_park_fee_answer(*, record_no: str, plate: str, enter_time: datetime, leave_time: datetime, tz: tzinfo,
                          payable_fee: int, discount_fee: int, paid_fee: int, park_code: Optional[str] = None,
                          extra: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """`data` for a queryParkFee answer. `paid_fee` is the amount due now, as in 3.3; useTime is whole seconds."""
    use_s = int((leave_time - enter_time).total_seconds())
    data: dict[str, Any] = {"recordNo": record_no, "plateNum": plate, "enterTime": format_time(enter_time, tz),
                            "leaveTime": format_time(leave_time, tz), "useTime": max(use_s, 0),
                            "payableFee": _fen("payableFee", payable_fee), "discountFee": _fen("discountFee", discount_fee),
                            "paidFee": _fen("paidFee", paid_fee)}
    _optional(data, parkCode=park_code)
    if extra:
        data.update(extra)
    _no_floats(data)
    return data


@dataclass(frozen=True, slots=True)
class PreLeaveResult:
    code: int
    msg: str
    order_no: str
    pay_type: Optional[int]
    pay_time: str  # as sent; "" when absent
    pay_at: Optional[datetime]  # parsed when a tz was given and the text is well formed

    @property
    def paid(self) -> bool:
        """Seed 004: code 200 is paid (sign-free or scanner); any other code is not paid — wait or fall back."""
        return self.code == 200


def parse_pre_leave_answer(body: bytes, tz: Optional[tzinfo] = None) -> PreLeaveResult:
    """Raises TdznError only for an unreadable answer (treat as not paid). With code 200 the data fields are read
    best-effort: the platform says the money was taken, so a malformed payType does not turn it into 'unpaid'."""
    a = parse_answer(body)
    d = a.data
    order_no = d.get("orderNo")
    order_no = _text_value("orderNo", order_no) if isinstance(order_no, (str, int)) and not isinstance(
        order_no, bool) else ""
    try:
        pay_type: Optional[int] = _int_value("payType", d.get("payType")) if d.get("payType") is not None else None
    except TdznError:
        pay_type = None
    pay_time = d.get("payTime") if isinstance(d.get("payTime"), str) else ""
    pay_at = None
    if tz is not None and pay_time:
        try:
            pay_at = parse_time(pay_time, tz)
        except TdznError:
            pay_at = None
    return PreLeaveResult(a.code, a.msg, order_no, pay_type, pay_time, pay_at)
