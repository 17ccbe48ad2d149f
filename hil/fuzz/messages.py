"""Hypothesis strategies for one HTTP request at one route of the daemon: platform callbacks built from a valid
message and then broken (fields dropped, added, doubled, given hostile values — amounts above all), signed the
way each platform signs so they reach past the signature check, or left unsigned or wrongly signed; camera
pushes; and anything at all for routes nobody taught this module (a new route is fuzzed generically).

Signing is written from /work/shared/protocols/*.md (and the emulators' helpers, which are written from them
too), never from lanectl's codecs: the point is to check those.

    bolink  sign = MD5(DATA + "key=" + KEY) upper hex, DATA the exact text of `data` as sent (bolink.md)
    xft     MD5 of the non-empty top-level fields but `sign`, sorted, "k=v" joined by "&", "&key=KEY" (xft.md)
    tdzn    the same over pid, serviceName, timestamp, bizContent (tdzn.md 2.2)
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import quote

from hypothesis import strategies as st

from hil.emulators.bolink_wire import sign as bolink_sign
from hil.fuzz.values import MONEY_TEXTS, Pairs, Raw, dumps, huge_digits, numbers, texts, to_bytes, values


@dataclass(frozen=True)
class Keys:
    """Who the daemon under test is, on each platform (test keys only)."""

    bolink_key: str = ""
    bolink_union_id: int = 0
    bolink_park: str = ""
    xft_key: str = ""
    xft_store: str = ""
    tdzn_key: str = ""
    tdzn_pid: str = ""
    tdzn_park: str = ""
    channels: dict[str, str] = field(default_factory=dict)  # lane id -> channel id
    camera_basic: dict[str, str] = field(default_factory=dict)  # lane id -> "user:password" of its camera


@dataclass(frozen=True)
class Request:
    label: str  # what was sent, for the report ("bolink outpark signed")
    method: str
    path: str  # already percent-encoded
    headers: dict[str, str]
    body: bytes = b""


CONTENT_TYPES = ["application/json", "application/json;charset=utf-8", "application/json; charset=gbk",
                 "application/x-www-form-urlencoded", "text/plain", "", "multipart/form-data; boundary=x",
                 "application/octet-stream", "application/json; charset=nonsense", "\u00e9/\u00e8"]
OTHER_METHODS = ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "POST"]
PLATES = ["粤B12345", "京A00001", "粤B00001", "粤B66666", "粤C55555", "无牌车", "", "-", "WJ01警1234", "使014123",
          "粤B1234港", "竑B55502", "ABCDEFG"]


def md5_upper(text: str) -> str:
    """MD5 of the UTF-8 text, upper hex (lone surrogates hashed as the invalid bytes that are sent)."""
    return hashlib.md5(to_bytes(text)).hexdigest().upper()


# --------------------------------------------------------------------------------------------- mutation

@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any], money: tuple[str, ...] = ()) -> Any:
    """`template` broken in a few ways, or sometimes left whole (so the handler behind the parse is reached)."""
    fields: dict[str, Any] = dict(template)
    dup: list[tuple[str, Any]] = []
    for i in range(draw(st.integers(0, 3))):
        # amounts first and most: they are what issue 14 found answered 500
        op = "money" if i == 0 and money and draw(st.booleans()) else \
            draw(st.sampled_from(["money", "wrong", "wrong", "drop", "extra", "dup", "blank"]))
        names = sorted(fields) or ["x"]
        if op == "money" and money:
            fields[draw(st.sampled_from(money))] = draw(st.one_of(st.sampled_from(MONEY_TEXTS), numbers(),
                                                                  huge_digits()))
        elif op == "wrong" or op == "money":
            fields[draw(st.sampled_from(names))] = draw(values())
        elif op == "drop" and fields:
            fields.pop(draw(st.sampled_from(names)))
        elif op == "extra":
            fields[draw(st.text(max_size=12))] = draw(values())
        elif op == "dup":
            dup.append((draw(st.sampled_from(names)), draw(values())))
        elif op == "blank" and fields:
            fields[draw(st.sampled_from(names))] = draw(st.sampled_from(["", None, " ", [], {}]))
    if draw(st.integers(0, 40)) == 0:
        return draw(values())  # not an object at all
    return Pairs([*fields.items(), *dup]) if dup else fields


def _content_type(default: str) -> st.SearchStrategy[str]:
    return st.one_of(st.just(default), st.just(default), st.just(default), st.sampled_from(CONTENT_TYPES))


@st.composite
def _encoded(draw: st.DrawFn, text: str) -> bytes:
    """Usually UTF-8; sometimes another charset, a BOM, a cut, or a few bytes flipped."""
    how = draw(st.integers(0, 19))
    if how == 0:
        return text.encode("gbk", "replace")
    if how == 1:
        return text.encode("utf-16", "surrogatepass")
    if how == 2:
        return b"\xef\xbb\xbf" + to_bytes(text)
    raw = to_bytes(text)
    if how == 3 and raw:
        return raw[:draw(st.integers(0, len(raw) - 1))]
    if how == 4 and raw:
        buf = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        return bytes(buf)
    return raw


# -------------------------------------------------------------------------------------------------- bolink

def _bolink_templates(k: Keys) -> dict[str, tuple[dict[str, Any], tuple[str, ...]]]:
    now = int(time.time())
    exit_ch = next(iter(k.channels.values()), "A1")
    return {
        "outpark": ({"service_name": "outpark", "state": 1, "order_id": "out1_20260101080000_1", "trade_no": "T1",
                     "total": "5.00", "pay_type": "wallet", "pay_channel": 0, "pay_time": now,
                     "car_number": "粤B12345", "out_channel_id": exit_ch, "arrive_money": "5.00", "fee": "0.00",
                     "park_id": k.bolink_park}, ("total", "arrive_money", "fee")),
        "notice_car_owner": ({"service_name": "notice_car_owner", "union_id": k.bolink_union_id,
                              "park_id": k.bolink_park, "order_id": "in1_1", "car_number": "粤B12345",
                              "is_union_user": 1, "rand": "r1"}, ()),
        "query_price": ({"service_name": "query_price", "park_id": k.bolink_park, "pay_scene": 1,
                         "car_number": "粤B12345", "order_id": "in1_1", "out_channel_id": exit_ch,
                         "query_order_no": "Q1"}, ()),
        "monthcard_pay": ({"service_name": "monthcard_pay", "trade_no": "M1", "park_id": k.bolink_park,
                           "amount": "300.00", "state": 1, "card_id": "C1", "car_number": "粤B12345",
                           "start_time": "2026-01-01", "end_time": "2026-12-31", "pay_time": now},
                          ("amount", "pay_money", "arrive_money", "fee")),
        "prepay_order": ({"service_name": "prepay_order", "order_id": "in1_1", "trade_no": "P1", "prepay": "5.00",
                          "car_number": "粤B12345", "park_id": k.bolink_park, "pay_time": now, "prepay_type": 1},
                         ("prepay", "total", "money")),
        "nolicence_in_park": ({"service_name": "nolicence_in_park", "car_number": "BL123456",
                               "park_id": k.bolink_park, "channel_id": "E1", "timetemp": now}, ()),
        "update_balance": ({"service_name": "update_balance", "car_number": "粤B12345", "autopay": 1,
                            "balance": "20.00"}, ("balance",)),
        "unknown": ({"service_name": "no_such_service", "park_id": k.bolink_park}, ()),
    }


@st.composite
def bolink_requests(draw: st.DrawFn, path: str, k: Keys) -> Request:
    templates = _bolink_templates(k)
    service = draw(st.sampled_from(sorted(templates)))
    template, money = templates[service]
    fields = dict(template)
    if draw(st.booleans()):  # fresh ids, so a whole message is not just a repeat of the last one
        for name in ("trade_no", "rand", "order_id"):
            if name in fields:
                fields[name] = f"{fields[name]}_{draw(st.integers(0, 10 ** 6))}"
    data = draw(mutated(fields, money))
    data_text = dumps(data)
    form = draw(st.sampled_from(["signed", "signed", "signed", "as string", "unsigned", "wrong sign",
                                 "hostile envelope"]))
    union = str(k.bolink_union_id)
    if form == "signed":
        body = f'{{"union_id":{union},"sign":"{bolink_sign(to_bytes(data_text), k.bolink_key)}","data":{data_text}}}'
    elif form == "as string":
        inner = dumps(data_text)
        body = f'{{"union_id":{union},"sign":"{bolink_sign(to_bytes(data_text), k.bolink_key)}","data":{inner}}}'
    elif form == "unsigned":
        body = f'{{"union_id":{union},"data":{data_text}}}'
    elif form == "wrong sign":
        body = f'{{"union_id":{union},"sign":"{"0" * 32}","data":{data_text}}}'
    else:  # the envelope itself broken, data still signed
        envelope = draw(mutated({"union_id": k.bolink_union_id,
                                 "sign": bolink_sign(to_bytes(data_text), k.bolink_key), "data": Raw(data_text)}))
        body = dumps(envelope)
    ctype = draw(_content_type("application/json;charset=utf-8"))
    return Request(f"bolink {service} {form}", "POST", path, {"Content-Type": ctype}, draw(_encoded(body)))


# ----------------------------------------------------------------------------------------------------- xft

def _xft_sign_text(value: Any) -> str:
    """What a field contributes to XFT's signing string, as the daemon reads it from JSON: text as is,
    numbers as written, true/false, nested objects as their compact JSON text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return str(value)
    return dumps(value)


def _xft_empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, (dict, list)) and not value)


def xft_sign(fields: dict[str, Any], key: str) -> str:
    text = "&".join(f"{name}={_xft_sign_text(fields[name])}" for name in sorted(fields)
                    if name != "sign" and not _xft_empty(fields[name]))
    return md5_upper(text + "&key=" + key)


@st.composite
def xft_requests(draw: st.DrawFn, path: str, k: Keys) -> Request:
    template = {"out_trade_no": f"out1_20260101080000_{draw(st.integers(0, 10 ** 6))}",
                "third_trade_no": f"42000{draw(st.integers(0, 10 ** 6))}", "store_code": k.xft_store,
                "amount": "500", "channel": "WECHAT", "state": draw(st.sampled_from(["00", "01", "09"])),
                "sign_type": "MD5"}
    data = draw(mutated(template, ("amount",)))
    form = draw(st.sampled_from(["signed", "signed", "signed", "form", "wrapped", "unsigned", "wrong sign"]))
    if isinstance(data, dict) and form != "unsigned":
        data = {**data, "sign": "0" * 32 if form == "wrong sign" else xft_sign(data, k.xft_key)}
    ctype = "application/json"
    if form == "form" and isinstance(data, dict):
        body = "&".join(f"{quote(to_bytes(str(n)))}={quote(to_bytes(_xft_sign_text(v)))}" for n, v in data.items())
        ctype = "application/x-www-form-urlencoded"
    elif form == "wrapped":
        body = dumps({"code": "SUCCESS", "data": dumps(data)})
    else:
        body = dumps(data)
    return Request(f"xft notify {form}", "POST", path, {"Content-Type": draw(_content_type(ctype))},
                   draw(_encoded(body)))


# ---------------------------------------------------------------------------------------------------- tdzn

def _tdzn_templates(k: Keys) -> dict[str, tuple[dict[str, Any], tuple[str, ...]]]:
    exit_ch = next(iter(k.channels.values()), "A1")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return {
        "payNotify": ({"parkCode": k.tdzn_park, "orderNo": "TC1", "payTime": stamp, "type": 1,
                       "outChannelid": exit_ch, "recordNo": "out1_20260101080000_1", "paidFee": 500, "payType": 1,
                       "discountFee": 0}, ("paidFee", "discountFee")),
        "queryParkFee": ({"parkCode": k.tdzn_park, "payScene": 1, "plateNum": "粤B12345",
                          "outChannelid": exit_ch}, ()),
        "remoteDev": ({"channelid": exit_ch, "type": 1, "plateId": "p1", "operator": "fuzz", "cmd": 0,
                       "openGateCase": "fuzz"}, ()),
        "unknown": ({"parkCode": k.tdzn_park}, ()),
    }


def _tdzn_param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return str(value)
    return dumps(value)


@st.composite
def tdzn_requests(draw: st.DrawFn, path: str, k: Keys) -> Request:
    templates = _tdzn_templates(k)
    service = draw(st.sampled_from(sorted(templates)))
    template, money = templates[service]
    template = dict(template)
    if "orderNo" in template:
        template["orderNo"] = f"TC{draw(st.integers(0, 10 ** 6))}"
    biz = draw(mutated(template, money))
    biz_text = dumps(biz)
    stamp: Any = Raw(str(int(time.time())))
    if draw(st.integers(0, 9)) == 0:
        stamp = draw(st.one_of(numbers(), texts(), st.just(Raw("1" + "0" * 400))))
    params: dict[str, Any] = {"pid": k.tdzn_pid, "serviceName": "no_such" if service == "unknown" else service,
                              "timestamp": stamp,
                              "bizContent": biz_text if draw(st.integers(0, 3)) else Raw(biz_text)}
    form = draw(st.sampled_from(["signed", "signed", "signed", "unsigned", "wrong sign", "hostile envelope"]))
    if form == "hostile envelope":
        params = draw(mutated(params))
    if isinstance(params, dict) and form != "unsigned":
        signed = {n: v for n, v in params.items() if v is not None and _tdzn_param_text(v) != ""}
        text = "&".join(f"{n}={_tdzn_param_text(signed[n])}" for n in sorted(signed))
        params = {**params, "sign": "0" * 32 if form == "wrong sign" else md5_upper(text + "&key=" + k.tdzn_key)}
    body = dumps(params)
    return Request(f"tdzn {service} {form}", "POST", path,
                   {"Content-Type": draw(_content_type("application/json"))}, draw(_encoded(body)))


# -------------------------------------------------------------------------------------------------- camera

_JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(64) + b"\xff\xd9").decode()


@st.composite
def camera_requests(draw: st.DrawFn, path: str, k: Keys) -> Request:
    plate = {"license": draw(st.one_of(st.sampled_from(PLATES), texts())), "colorType": 1, "type": 1,
             "confidence": 96, "triggerType": 8, "plateid": 17, "isoffline": 0,
             "timeStamp": {"Timeval": {"sec": int(time.time()), "usec": 0}}, "imageFile": _JPEG}
    kind = draw(st.sampled_from(["push", "push", "push", "heartbeat", "gio", "typed heartbeat"]))
    if kind == "push":
        inner = {"channel": 0, "deviceName": "IVS", "ipaddr": "127.0.0.1", "serialno": "fuzz",
                 "result": {"PlateResult": draw(mutated(plate, ("confidence", "colorType")))}}
        doc: Any = {"AlarmInfoPlate": draw(mutated(inner))}
    elif kind == "heartbeat":
        doc = {"heartbeat": draw(mutated({"serialno": "fuzz", "deviceName": "IVS"}))}
    elif kind == "gio":
        doc = {"AlarmGioIn": draw(values())}
    else:
        doc = draw(mutated({"type": "heartbeat", "serialno": "fuzz"}))
    if draw(st.integers(0, 19)) == 0:
        doc = draw(values())
    headers = {"Content-Type": draw(_content_type("application/json"))}
    # most pushes carry the camera's credentials, so they reach the parser; the rest test the 401 path
    credentials = k.camera_basic.get(path.rstrip("/").rpartition("/")[2], "")
    auth = draw(st.sampled_from(["right"] * 8 + ["none", "wrong"]))
    if auth != "none":
        user_pw = credentials if auth == "right" else "cam:" + draw(st.text(max_size=20))
        headers["Authorization"] = "Basic " + base64.b64encode(user_pw.encode("utf-8", "surrogatepass")).decode()
    return Request(f"camera {kind} ({auth} credentials)", "POST", path, headers, draw(_encoded(dumps(doc))))


# ------------------------------------------------------------------------------------------------- generic

SEGMENTS = st.one_of(st.sampled_from(["in1", "out1", "x.jpg", "..", "%2e%2e", "a" * 300, "%00", "%ff%fe", "~"]),
                     st.text(min_size=1, max_size=20).map(lambda s: quote(to_bytes(s), safe="")))


@st.composite
def concrete_path(draw: st.DrawFn, pattern: str) -> str:
    """A route's path with each {variable} filled, percent-encoded, sometimes with a query string."""
    parts = []
    for part in pattern.split("/"):
        parts.append(draw(SEGMENTS) if part.startswith("{") and part.endswith("}") else quote(part, safe=":@"))
    path = "/".join(parts)
    if draw(st.integers(0, 4)) == 0:
        path += "?" + draw(st.sampled_from(["t=1", "t=" + "9" * 5000, "a=%ff", "&&==", "t=%00"]))
    return path


@st.composite
def generic_requests(draw: st.DrawFn, path: str, method: str) -> Request:
    body = draw(st.one_of(st.just(b""), st.binary(max_size=256), values().map(lambda v: to_bytes(dumps(v)))))
    return Request(f"{method} generic", method, path, {"Content-Type": draw(st.sampled_from(CONTENT_TYPES))},
                   body if method not in ("GET", "HEAD") or draw(st.integers(0, 9)) == 0 else b"")


Kind = Callable[[str, Keys], st.SearchStrategy[Request]]
KINDS: dict[str, Kind] = {"bolink": bolink_requests, "xft": xft_requests, "tdzn": tdzn_requests,
                          "camera": camera_requests}


@st.composite
def route_requests(draw: st.DrawFn, method: str, pattern: str, kind: Optional[str], k: Keys) -> Request:
    """One request at one route: the route's own kind of message (when known), or generic; sometimes with
    another method."""
    path = draw(concrete_path(pattern))
    other = draw(st.integers(0, 14)) == 0
    if kind in KINDS and not other:
        return draw(KINDS[kind](path, k))
    return draw(generic_requests(path, draw(st.sampled_from(OTHER_METHODS)) if other else method))
