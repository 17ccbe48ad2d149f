"""tdzn codec: the doc's signing vector byte for byte, both bizContent forms, the replay window, every error code
path, and fuzzing (random bytes only ever give a Request/Answer or a TdznError)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanectl.providers.tdzn import codec as tdzn
from lanectl.providers.tdzn.codec import (
    CODES,
    REQUIRED_FIELDS,
    Answer,
    BadSignature,
    PayOrder,
    ReplayRefused,
    TdznError,
    answer,
    car_type,
    decode_request,
    encode_request,
    missing_fields,
    parse_answer,
    parse_pre_leave_answer,
    sign,
    signing_string,
)

TZ = ZoneInfo("Asia/Shanghai")
KEY = "45DC1F8604F940829E75D6A76595C299"
TS = 1539571096
VECTOR_BIZ = {"enterTime": "2018-01-01 11:00:00", "parkCode": "TEST/1P1", "plateNum": "粤B12345"}
VECTOR_STRING = ('bizContent={"enterTime":"2018-01-01 11:00:00","parkCode":"TEST/1P1","plateNum":"粤B12345"}'
                 "&pid=123456&serviceName=enterNotify&timestamp=1539571096&key=45DC1F8604F940829E75D6A76595C299")
VECTOR_SIGN = "EE454BE0DE3D211559865DA33745E589"
VECTOR_BIZ_TEXT = '{"enterTime":"2018-01-01 11:00:00","parkCode":"TEST/1P1","plateNum":"粤B12345"}'


def params(biz=VECTOR_BIZ, service="enterNotify", ts=TS, pid="123456"):
    return {"bizContent": biz, "pid": pid, "serviceName": service, "timestamp": ts}


def raw_body(biz_json: str, sign_value: str, *, ts: str = "1539571096", pid: str = '"123456"',
             service: str = "enterNotify") -> bytes:
    """A body with bizContent as a JSON object written exactly as given."""
    return (f'{{"pid":{pid},"serviceName":"{service}","timestamp":{ts},"bizContent":{biz_json},'
            f'"sign":"{sign_value}"}}').encode("utf-8")


def signed_body(biz: dict, service: str, ts: int = TS, key: str = KEY) -> bytes:
    return encode_request("123456", service, biz, key, ts)


def assert_code(exc_info, code: int) -> None:
    assert exc_info.value.code == code, (exc_info.value, exc_info.value.code)


# ---------------------------------------------------------------- the published vector

def test_signing_string_and_sign_reproduce_the_doc_vector():
    assert signing_string(params(), KEY) == VECTOR_STRING
    assert sign(params(), KEY) == VECTOR_SIGN
    # bizContent given as its text signs the same
    assert sign(params(biz=VECTOR_BIZ_TEXT), KEY) == VECTOR_SIGN
    # timestamp as text, as in the doc's request example
    assert sign(params(ts="1539571096"), KEY) == VECTOR_SIGN


def test_signing_leaves_out_sign_and_empty_params_and_sorts_case_sensitively():
    p = dict(params(), sign="whatever", empty="", none=None)
    assert signing_string(p, KEY) == VECTOR_STRING
    # ASCII order: upper case sorts before lower case
    assert signing_string({"b": "1", "B": "2", "a": "3"}, "K") == "B=2&a=3&b=1&key=K"


def test_encode_request_bytes_are_exact():
    body = encode_request("123456", "enterNotify", VECTOR_BIZ, KEY, TS)
    expected = ('{"pid":"123456","serviceName":"enterNotify","timestamp":1539571096,"bizContent":'
                + json.dumps(VECTOR_BIZ_TEXT, ensure_ascii=False) + ',"sign":"' + VECTOR_SIGN + '"}')
    assert body == expected.encode("utf-8")
    assert json.loads(body)["bizContent"] == VECTOR_BIZ_TEXT


def test_encode_request_sort_keys_and_refusals():
    body = encode_request("1", "x", {"b": 1, "a": 2}, "K", 5, sort_keys=True)
    assert json.loads(body)["bizContent"] == '{"a":2,"b":1}'
    with pytest.raises(TdznError) as e:
        encode_request("1", "x", {"fee": 1.5}, "K", 5)  # no float on a money path
    assert_code(e, 402)
    for bad_ts in (1.5, -1, True, "5"):
        with pytest.raises(TdznError):
            encode_request("1", "x", {}, "K", bad_ts)  # type: ignore[arg-type]


# ---------------------------------------------------------------- decode: both bizContent forms

def test_round_trip():
    body = encode_request("123456", "preLeaveNotify", {"plateNum": "粤B12345", "paidFee": 700, "n": [1, {"x": "y"}]},
                          KEY, TS)
    req = decode_request(body, KEY, now=TS + 10)
    assert req == tdzn.Request("123456", "preLeaveNotify", TS,
                               {"plateNum": "粤B12345", "paidFee": 700, "n": [1, {"x": "y"}]},
                               '{"plateNum":"粤B12345","paidFee":700,"n":[1,{"x":"y"}]}', req.sign)
    assert req.sign == sign(params(req.biz, "preLeaveNotify"), KEY)


def test_biz_as_string_is_signed_verbatim_even_with_spaces():
    text = '{"enterTime": "2018-01-01 11:00:00", "parkCode": "TEST/1P1", "plateNum": "粤B12345"}'
    good = sign(params(biz=text), KEY)
    body = json.dumps({"pid": "123456", "serviceName": "enterNotify", "timestamp": TS, "bizContent": text,
                       "sign": good}, ensure_ascii=False).encode()
    req = decode_request(body, KEY)
    assert req.biz_text == text and req.biz == VECTOR_BIZ
    # the same content signed compactly does not match the spaced text that was sent
    bad = json.dumps({"pid": "123456", "serviceName": "enterNotify", "timestamp": TS, "bizContent": text,
                      "sign": VECTOR_SIGN}, ensure_ascii=False).encode()
    with pytest.raises(BadSignature):
        decode_request(bad, KEY)


def test_biz_as_object_with_odd_whitespace_verifies_against_the_vector():
    biz = ' {\n\t"enterTime" :\t"2018-01-01 11:00:00" ,\r\n  "parkCode":   "TEST/1P1",\n"plateNum":"粤B12345"\n} '
    body = (' \r\n{ "pid" : "123456" ,\n "serviceName":"enterNotify", "timestamp" : "1539571096" ,\t'
            f'"bizContent": {biz}, "sign": "{VECTOR_SIGN.lower()}" }}\n').encode("utf-8")
    req = decode_request(body, KEY)
    assert req.biz == VECTOR_BIZ and req.biz_text == VECTOR_BIZ_TEXT and req.timestamp == TS


def test_biz_object_keeps_spaces_inside_strings_escapes_and_number_spelling():
    # whitespace inside strings is content; "\u7ca4" stays escaped; 1.0 and 1e2 are not re-rendered
    biz = '{ "a" : "x  y\\t\\"q\\" ", "plate" : "\\u7ca4B1" , "n" : 1.0, "m": 1e2, "l": [ 1 , true , null ] }'
    compact = '{"a":"x  y\\t\\"q\\" ","plate":"\\u7ca4B1","n":1.0,"m":1e2,"l":[1,true,null]}'
    good = sign(params(biz=compact, service="s"), KEY)
    req = decode_request(raw_body(biz, good, service="s"), KEY)
    assert req.biz_text == compact and req.biz["plate"] == "粤B1"
    # a sender who signed the unescaped text does not verify: we never guess a canonical form
    unescaped = sign(params(biz=compact.replace("\\u7ca4", "粤"), service="s"), KEY)
    with pytest.raises(BadSignature):
        decode_request(raw_body(biz, unescaped, service="s"), KEY)


def test_reordered_object_is_verified_over_the_order_as_sent():
    reordered = '{"plateNum":"粤B12345","parkCode":"TEST/1P1","enterTime":"2018-01-01 11:00:00"}'
    with pytest.raises(BadSignature) as e:  # the vector was signed over the sorted order
        decode_request(raw_body(reordered, VECTOR_SIGN), KEY)
    assert_code(e, 401)
    as_sent = sign(params(biz=reordered), KEY)
    req = decode_request(raw_body(reordered, as_sent), KEY)
    assert list(req.biz) == ["plateNum", "parkCode", "enterTime"]
    assert req.biz_text == reordered


def test_the_seed_request_example_shape_verifies():
    # seed 004: timestamp as a string, bizContent as an (alphabetically ordered) object, pretty-printed
    biz = """{
"carSubType": 91,
"carType": 9,
"discountFee": 0,
"enterTime": "2018-10-24 16:03:24",
"leaveTime": "2018-10-24 16:08:35",
"orderNo": "TC2018102416084073508",
"outChannelid": "2",
"paidFee": 1,
"parkCode": "TEST/1P1",
"payableFee": 1,
"plateNum": "津L62538",
"recordNo": "152_20181024160324000"
}"""
    s = sign({"pid": "123456", "serviceName": "preLeaveNotify", "timestamp": "1536547465",
              "bizContent": json.loads(biz)}, KEY)
    body = ('{\n"pid": "123456",\n"serviceName": "preLeaveNotify",\n"sign": "' + s + '",\n'
            '"timestamp": "1536547465",\n"bizContent": ' + biz + "\n}").encode()
    req = decode_request(body, KEY)
    assert req.biz["plateNum"] == "津L62538" and req.timestamp == 1536547465


def test_extra_top_level_params_are_signed_like_the_rest():
    s = sign(dict(params(), version="1.0", n=7), KEY)
    body = raw_body(json.dumps(VECTOR_BIZ, ensure_ascii=False), s)[:-1] + b',"version":"1.0","n":7}'
    assert decode_request(body, KEY).biz == VECTOR_BIZ
    with pytest.raises(BadSignature):  # unsigned extra: the signature no longer covers everything sent
        decode_request(encode_request("123456", "enterNotify", VECTOR_BIZ, KEY, TS)[:-1] + b',"x":"1"}', KEY)


def test_bom_is_tolerated():
    assert decode_request(b"\xef\xbb\xbf" + signed_body(VECTOR_BIZ, "enterNotify"), KEY).biz == VECTOR_BIZ


# ---------------------------------------------------------------- replay window

def test_timestamp_window():
    body = signed_body(VECTOR_BIZ, "enterNotify")
    assert decode_request(body, KEY).timestamp == TS  # no `now`: no window
    for now in (TS, TS + 300, TS - 300, TS + 299.5):
        decode_request(body, KEY, now=now)
    for now in (TS + 301, TS - 301, TS + 86400):
        with pytest.raises(ReplayRefused) as e:
            decode_request(body, KEY, now=now)
        assert_code(e, 402)
    with pytest.raises(ReplayRefused):
        decode_request(body, KEY, now=TS + 11, window_s=10)


def test_signature_is_checked_before_the_window():
    body = encode_request("123456", "enterNotify", VECTOR_BIZ, "wrong key", TS)
    with pytest.raises(BadSignature):
        decode_request(body, KEY, now=TS + 10_000)


# ---------------------------------------------------------------- every error code path

GOOD = json.loads(signed_body(VECTOR_BIZ, "enterNotify"))


def body_with(**changes) -> bytes:
    d = dict(GOOD)
    for k, v in changes.items():
        if v is ...:
            del d[k]
        else:
            d[k] = v
    return json.dumps(d, ensure_ascii=False).encode()


@pytest.mark.parametrize("body", [
    b"", b"   ", b"not json", b"[]", b'"x"', b"null", b"{", b'{"pid":"1",}', b'{"pid" "1"}', b"\xff\xfe{}",
    b'garbage{"pid":"1"}', signed_body(VECTOR_BIZ, "enterNotify") + b"garbage",
    signed_body(VECTOR_BIZ, "enterNotify") + b"{}", b'{"pid":1,"pid":2}',
    body_with(bizContent="{not json"), body_with(bizContent='{"a":1,"a":2}'), body_with(bizContent="NaN"),
    b'{"pid":"1","serviceName":"s","timestamp":NaN,"bizContent":"{}","sign":"x"}',
    b'{"pid":"1","serviceName":"s","timestamp":1,"bizContent":{"a":Infinity},"sign":"x"}',
    b"{" * 100_000, b'{"a":' + b"[" * 100_000,
    b'{"pid":"1","serviceName":"s","timestamp":' + b"9" * 5000 + b',"bizContent":"{}","sign":"x"}',
], ids=lambda b: repr(b[:30]))
def test_bad_json_is_4021(body):
    with pytest.raises(TdznError) as e:
        decode_request(body, KEY)
    assert_code(e, 4021)


@pytest.mark.parametrize("name", ["pid", "serviceName", "timestamp", "bizContent", "sign"])
def test_missing_or_empty_envelope_param_is_400(name):
    for value in (..., "", None):
        with pytest.raises(TdznError) as e:
            decode_request(body_with(**{name: value}), KEY)
        assert_code(e, 400)


@pytest.mark.parametrize("changes", [
    {"timestamp": 1.5}, {"timestamp": -1}, {"timestamp": "abc"}, {"timestamp": True}, {"timestamp": [1]},
    {"bizContent": "[1,2]"}, {"bizContent": [1, 2]}, {"bizContent": "5"}, {"serviceName": 5}, {"sign": 5},
    {"pid": {"a": 1}}, {"pid": True},
], ids=str)
def test_illegal_param_is_402(changes):
    with pytest.raises(TdznError) as e:
        decode_request(body_with(**changes), KEY)
    assert_code(e, 402)


def test_unknown_pid_is_402_and_bad_sign_is_401():
    body = signed_body(VECTOR_BIZ, "enterNotify")
    assert decode_request(body, KEY, pid="123456").pid == "123456"
    with pytest.raises(TdznError) as e:
        decode_request(body, KEY, pid="999")
    assert_code(e, 402)
    for bad in ("0" * 32, VECTOR_SIGN[:-1], "粤" * 32, "x"):
        with pytest.raises(BadSignature) as e:
            decode_request(body_with(sign=bad), KEY)
        assert_code(e, 401)
    with pytest.raises(BadSignature):
        decode_request(body, "another key")
    with pytest.raises(BadSignature):  # signed content changed in flight
        decode_request(body.replace(b"TEST/1P1", b"TEST/1P2"), KEY)


def test_codes_table():
    assert set(CODES) == {200, 400, 401, 402, 404, 405, 500, 4021, 6001, 6003, 6004, 6005, 6006}
    assert (tdzn.MissingParam("x").code, BadSignature("x").code, tdzn.IllegalParam("x").code,
            ReplayRefused("x").code, tdzn.UnknownService("x").code, tdzn.BadJson("x").code) == (
        400, 401, 402, 402, 404, 4021)
    assert TdznError("boom", 6004).code == 6004 and TdznError("boom", 6004).msg == "boom"
    assert issubclass(TdznError, ValueError)


# ---------------------------------------------------------------- answers

def test_answer_and_parse_answer():
    assert answer(200) == b'{"code":200,"msg":"ok"}'
    assert answer(401, "签名错误") == '{"code":401,"msg":"签名错误"}'.encode()
    assert answer(200, "成功", {"fee": 700}) == '{"code":200,"msg":"成功","data":{"fee":700}}'.encode()
    a = parse_answer(answer(200, data={"a": 1}))
    assert a == Answer(200, "ok", {"a": 1}) and a.ok and not a.duplicate
    for dup in (405, 6006):
        assert parse_answer(answer(dup)).duplicate and not parse_answer(answer(dup)).ok
    # tolerant: extra fields, missing/null data, data as a JSON string, code as digits
    assert parse_answer(b'{"code":"200","msg":null,"data":null,"extra":1}') == Answer(200, "", {})
    assert parse_answer(b'{"code":0,"msg":"x","data":"{\\"orderNo\\":\\"A\\"}"}').data == {"orderNo": "A"}
    assert parse_answer(b'{"code":-1}').code == -1


@pytest.mark.parametrize("body,code", [
    (b"", 4021), (b"<html>500</html>", 4021), (b"[]", 4021), (b"{}", 400), (b'{"code":null}', 400),
    (b'{"code":200.0}', 402), (b'{"code":true}', 402), (b'{"code":"ok"}', 402), (b'{"code":200,"data":[1]}', 402),
    (b'{"code":200,"data":"nope"}', 4021),
])
def test_parse_answer_errors(body, code):
    with pytest.raises(TdznError) as e:
        parse_answer(body)
    assert_code(e, code)


@pytest.mark.parametrize("code", [0, 1, 2, 199, 201, 400, 401, 405, 500, 6003, 6006, -200, 2000])
def test_only_code_200_is_paid(code):
    body = answer(code, data={"orderNo": "TC1", "payType": 3, "payTime": "2018-10-24 16:08:40"})
    r = parse_pre_leave_answer(body)
    assert not r.paid and r.code == code


def test_pre_leave_paid_answer_from_the_seed():
    body = '{"code":200,"msg":"成功","data":{"orderNo":"TC2018102416084073508","payType":3,' \
           '"payTime":"2018-10-24 16:08:40"}}'.encode()
    r = parse_pre_leave_answer(body, TZ)
    assert r.paid and (r.order_no, r.pay_type, r.pay_time) == ("TC2018102416084073508", 3, "2018-10-24 16:08:40")
    assert r.pay_at == datetime(2018, 10, 24, 16, 8, 40, tzinfo=TZ) and r.msg == "成功"
    # 200 with malformed data: still paid (the money was taken); fields best-effort
    r = parse_pre_leave_answer(b'{"code":200,"data":{"payType":"x","payTime":"yesterday"}}', TZ)
    assert r.paid and (r.order_no, r.pay_type, r.pay_time, r.pay_at) == ("", None, "yesterday", None)
    assert parse_pre_leave_answer(b'{"code":"200"}').paid
    with pytest.raises(TdznError):  # unreadable: the caller treats it as not paid
        parse_pre_leave_answer(b"Internal Server Error")


# ---------------------------------------------------------------- car types, builders

@pytest.mark.parametrize("cls,sub,expected", [
    ("temporary", "A", (9, 91)), ("temporary", "e", (9, 95)), ("temporary", None, (9, 91)),
    ("monthly", "A", (8, 81)), ("monthly", "E", (8, 85)), ("stored_value", "C", (7, 73)),
    ("free", "A", (1, 11)), ("whitelist", "E", (1, 15)), ("special", "B", (1, 12)),
    ("police", "A", (1, 16)), ("military", "C", (1, 16)), ("vip", "A", (1, 17)),
    ("free", "vip", (1, 17)), ("whitelist", "police", (1, 16)),
])
def test_car_type(cls, sub, expected):
    assert car_type(cls, sub) == expected


@pytest.mark.parametrize("cls,sub", [("temporary", "F"), ("temporary", "AB"), ("bus", "A"), ("monthly", "vip")])
def test_car_type_refuses(cls, sub):
    with pytest.raises(TdznError):
        car_type(cls, sub)


T_IN = datetime(2018, 10, 24, 16, 3, 24, tzinfo=TZ)
T_OUT = datetime(2018, 10, 24, 8, 8, 35, tzinfo=timezone.utc)  # 16:08:35 in Shanghai


def test_enter_and_pre_enter_notify():
    biz = tdzn.enter_notify(park_code="TEST/1P1", record_no="L1_20181024160324_1", plate="粤B12345",
                            entrance="东门入口", enter_time=T_IN, tz=TZ, remain_park_num=10, total_park_num=100,
                            vehicle_class="monthly", subtype="B", in_channel_id="1")
    assert list(biz) == ["parkCode", "recordNo", "plateNum", "carType", "carSubType", "entrance", "enterTime",
                         "remainParkNum", "totalParkNum", "inChannelid"]
    assert (biz["carType"], biz["carSubType"], biz["enterTime"]) == (8, 82, "2018-10-24 16:03:24")
    assert missing_fields("enterNotify", biz) == []
    pre = tdzn.pre_enter_notify(park_code="P", record_no="R", plate="粤B12345", entrance="E", enter_time=T_IN, tz=TZ)
    assert list(pre) == list(REQUIRED_FIELDS["preEnterNotify"]) and missing_fields("preEnterNotify", pre) == []


def test_leave_notify_with_pay_orders():
    biz = tdzn.leave_notify(park_code="P", record_no="R", plate="粤B12345", exit_desc="西门出口", leave_time=T_OUT,
                            tz=TZ, remain_park_num=11, total_park_num=100, payable_fee=700, discount_fee=100,
                            cash_fee=0, mobile_fee=600, out_channel_id="2",
                            pay_orders=[PayOrder("TC1", 600, 1, T_OUT - timedelta(minutes=1))])
    assert biz["leaveTime"] == "2018-10-24 16:08:35"
    assert biz["payOrders"] == [{"orderNo": "TC1", "paidFee": 600, "payType": 1, "payTime": "2018-10-24 16:07:35"}]
    assert list(biz)[-1] == "outChannelid" and "leavePic" not in biz
    assert missing_fields("leaveNotify", biz) == []


def test_pre_leave_notify_doc_order_and_sweep_code():
    kw = dict(park_code="TEST/1P1", record_no="152_20181024160324000", plate="津L62538", plate_id="p1",
              enter_time=T_IN, leave_time=T_OUT, tz=TZ, payable_fee=1, discount_fee=0, paid_fee=1)
    biz = tdzn.pre_leave_notify(**kw, out_channel_id="2", order_no="TC2018102416084073508")
    assert list(biz) == ["parkCode", "recordNo", "plateNum", "carType", "carSubType", "enterTime", "leaveTime",
                         "payableFee", "discountFee", "paidFee", "outChannelid", "orderNo", "sweepCode", "plateId"]
    assert (biz["carType"], biz["carSubType"], biz["sweepCode"]) == (9, 91, 0)
    assert missing_fields("preLeaveNotify", biz) == []
    swept = tdzn.pre_leave_notify(**kw, sweep_auth_code="134567890123456789")
    assert (swept["sweepCode"], swept["sweepAuthCode"]) == (1, "134567890123456789")
    assert missing_fields("preLeaveNotify", dict(swept, sweepAuthCode="")) == ["sweepAuthCode"]


@pytest.mark.parametrize("bad", [dict(paid_fee=1.0), dict(paid_fee=-1), dict(paid_fee=True),
                                 dict(enter_time=datetime(2018, 1, 1)), dict(paid_fee="1")], ids=str)
def test_builders_refuse_floats_negative_money_and_naive_times(bad):
    kw = dict(park_code="P", record_no="R", plate="粤B1", plate_id="p", enter_time=T_IN, leave_time=T_OUT, tz=TZ,
              payable_fee=1, discount_fee=0, paid_fee=1)
    with pytest.raises(TdznError):
        tdzn.pre_leave_notify(**dict(kw, **bad))


# ---------------------------------------------------------------- platform → lane parsers

def req(service: str, biz: dict) -> tdzn.Request:
    return decode_request(signed_body(biz, service), KEY)


def test_parse_query_park_fee():
    q = tdzn.parse_query_park_fee(req("queryParkFee", {"parkCode": "P", "payScene": 1, "plateNum": "粤B12345",
                                                       "outChannelid": 2, "extra": "ignored"}))
    assert q == tdzn.QueryParkFee("P", 1, "粤B12345", "", "2")
    q = tdzn.parse_query_park_fee(req("queryParkFee", {"parkCode": "P", "payScene": "2", "outChannelid": "3"}))
    assert (q.pay_scene, q.plate, q.out_channel_id) == (2, "", "3")
    for biz, code in [({"payScene": 1, "plateNum": "x"}, 400), ({"parkCode": "P", "payScene": 1}, 400),
                      ({"parkCode": "P", "payScene": 2}, 400), ({"parkCode": "P", "payScene": 3, "plateNum": "x"}, 402),
                      ({"parkCode": "P", "payScene": 1.0, "plateNum": "x"}, 402)]:
        with pytest.raises(TdznError) as e:
            tdzn.parse_query_park_fee(req("queryParkFee", biz))
        assert_code(e, code)
    with pytest.raises(TdznError) as e:
        tdzn.parse_query_park_fee(req("payNotify", {}))
    assert_code(e, 404)


PAY = {"parkCode": "P", "orderNo": "TC1", "payTime": "2018-10-24 16:08:40", "type": 1, "outChannelid": "2",
       "recordNo": "R1", "paidFee": 700, "payType": 1, "discountFee": 100}


def test_parse_pay_notify():
    n = tdzn.parse_pay_notify(req("payNotify", PAY), TZ)
    assert n == tdzn.PayNotify("P", "TC1", datetime(2018, 10, 24, 16, 8, 40, tzinfo=TZ), "2018-10-24 16:08:40", 1,
                               "2", "R1", 700, 1, 100)
    assert n.pay_time.utcoffset() == timedelta(hours=8)
    n = tdzn.parse_pay_notify(req("payNotify", dict(PAY, paidFee="700", discountFee=None, outChannelid="")), TZ)
    assert (n.paid_fee_fen, n.discount_fee_fen, n.out_channel_id) == (700, 0, "")
    assert tdzn.parse_pay_notify(req("payNotify", dict(PAY, payType=99)), TZ).pay_type == 99  # kept, not refused


@pytest.mark.parametrize("change,code", [
    ({"orderNo": ""}, 400), ({"payTime": None}, 400), ({"recordNo": "", "outChannelid": ""}, 400),
    ({"paidFee": 7.0}, 402), ({"paidFee": -1}, 402), ({"type": 3}, 402), ({"payTime": "2018/10/24 16:08:40"}, 402),
    ({"payTime": "2018-02-30 16:08:40"}, 402), ({"payTime": "２018-10-24 16:08:40"}, 402), ({"payType": "WeChat"}, 402),
    ({"orderNo": ["x"]}, 402),
], ids=str)
def test_parse_pay_notify_errors(change, code):
    with pytest.raises(TdznError) as e:
        tdzn.parse_pay_notify(req("payNotify", dict(PAY, **change)), TZ)
    assert_code(e, code)


def test_parse_remote_dev_and_router():
    biz = {"channelid": "2", "type": 2, "plateId": "p1", "operator": "张三", "cmd": 1, "openGateCase": "设备故障"}
    r = tdzn.parse_lane_request(req("remoteDev", biz), TZ)
    assert r == tdzn.RemoteDev("2", 2, "p1", "张三", 1, "设备故障")
    assert tdzn.parse_remote_dev(req("remoteDev", dict(biz, openGateCase=None))).open_gate_case == ""
    for change, code in [({"operator": ""}, 400), ({"channelid": None}, 400), ({"cmd": 2}, 402), ({"type": -1}, 402)]:
        with pytest.raises(TdznError) as e:
            tdzn.parse_remote_dev(req("remoteDev", dict(biz, **change)))
        assert_code(e, code)
    assert isinstance(tdzn.parse_lane_request(req("payNotify", PAY), TZ), tdzn.PayNotify)
    assert isinstance(tdzn.parse_lane_request(req("queryParkFee", {"parkCode": "P", "payScene": 0, "plateNum": "x"}),
                                              TZ), tdzn.QueryParkFee)
    with pytest.raises(TdznError) as e:
        tdzn.parse_lane_request(req("fixedCarNotify", {}), TZ)
    assert_code(e, 404)


def test_query_park_fee_answer():
    data = tdzn.query_park_fee_answer(record_no="R", plate="粤B12345", enter_time=T_IN, leave_time=T_OUT, tz=TZ,
                                      payable_fee=700, discount_fee=100, paid_fee=600, extra={"parkCode": "P"})
    assert data == {"recordNo": "R", "plateNum": "粤B12345", "enterTime": "2018-10-24 16:03:24",
                    "leaveTime": "2018-10-24 16:08:35", "useTime": 311, "payableFee": 700, "discountFee": 100,
                    "paidFee": 600, "parkCode": "P"}
    assert parse_answer(answer(200, data=data)).data == data
    with pytest.raises(TdznError):
        tdzn.query_park_fee_answer(record_no="R", plate="x", enter_time=T_IN, leave_time=T_OUT, tz=TZ,
                                   payable_fee=7.0, discount_fee=0, paid_fee=0)  # type: ignore[arg-type]


def test_time_helpers():
    assert tdzn.format_time(datetime(2024, 3, 1, 0, 0, 5, tzinfo=timezone.utc), TZ) == "2024-03-01 08:00:05"
    assert tdzn.parse_time("2024-03-01 08:00:05", TZ) == datetime(2024, 3, 1, 8, 0, 5, tzinfo=TZ)
    for bad in ("2024-03-01T08:00:05", "2024-03-01 8:00:05", "2024-03-01 24:00:00", " 2024-03-01 08:00:05", 5):
        with pytest.raises(TdznError):
            tdzn.parse_time(bad, TZ)  # type: ignore[arg-type]


# ---------------------------------------------------------------- fuzzing: TdznError or success, nothing else

def jsonish(floats: bool = True):
    scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    if floats:
        scalars |= st.floats(allow_nan=False)
    return st.recursive(scalars, lambda kids: st.lists(kids, max_size=3)
                        | st.dictionaries(st.text(max_size=5), kids, max_size=3), max_leaves=8)


JSONISH = jsonish()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_anything_but_tdzn_error(data):
    good = signed_body(VECTOR_BIZ, "enterNotify")
    for body in (data, good[: len(data) % (len(good) + 1)] + data, data + good):
        for call in (lambda b: decode_request(b, KEY, now=TS), parse_answer, parse_pre_leave_answer):
            try:
                call(body)
            except TdznError:
                pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(["flip", "drop", "insert"]))
def test_mutated_signed_bodies_verify_only_when_the_signed_text_is_intact(pos, byte, how):
    good = signed_body({"plateNum": "粤B12345", "paidFee": 700, "orderNo": "TC1"}, "payNotify")
    i = pos % len(good)
    bad = {"flip": good[:i] + bytes([good[i] ^ (byte or 1)]) + good[i + 1:], "drop": good[:i] + good[i + 1:],
           "insert": good[:i] + bytes([byte]) + good[i:]}[how]
    try:
        r = decode_request(bad, KEY)
    except TdznError:
        return
    # accepted only if nothing signed changed (e.g. whitespace inserted between tokens, or hex case of the sign)
    assert (r.pid, r.service_name, r.timestamp, r.biz) == ("123456", "payNotify", TS,
                                                            {"plateNum": "粤B12345", "paidFee": 700, "orderNo": "TC1"})


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["pid", "serviceName", "timestamp", "bizContent", "sign", "code", "msg",
                                        "data", "x"]), JSONISH, max_size=6))
def test_random_envelopes_give_request_or_tdzn_error(d):
    body = json.dumps(d, ensure_ascii=False).encode()
    for call in (lambda b: decode_request(b, KEY, now=TS), parse_answer, lambda b: parse_pre_leave_answer(b, TZ)):
        try:
            call(body)
        except TdznError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), jsonish(floats=False), max_size=5),
       st.integers(0, 2**40), st.sampled_from(["", " ", "\n\t ", "\r\n  "]))
def test_any_biz_round_trips_as_string_and_as_reformatted_object(biz, ts, ws):
    # anything float-free round-trips, and the object form verifies however it is spaced
    body = encode_request("p", "s", biz, KEY, ts)
    assert decode_request(body, KEY).biz == biz
    text = json.dumps(biz, ensure_ascii=False, separators=(",", ":"))
    spaced = json.dumps(biz, ensure_ascii=False, indent=1 if ws else None).replace("\n", "\n" + ws)
    s = sign({"pid": "p", "serviceName": "s", "timestamp": ts, "bizContent": text}, KEY)
    obj_body = f'{{{ws}"pid":"p","serviceName":"s","timestamp":{ts},"bizContent":{ws}{spaced}{ws},"sign":"{s}"}}'
    req = decode_request(obj_body.encode(), KEY)
    assert req.biz == biz and req.biz_text == text


@settings(max_examples=200, deadline=None)
@given(JSONISH)
def test_parsers_on_random_biz_give_value_or_tdzn_error(value):
    biz = value if isinstance(value, dict) else {"payScene": value, "type": value, "paidFee": value,
                                                  "payTime": value, "cmd": value, "operator": value}
    for service in ("queryParkFee", "payNotify", "remoteDev"):
        try:
            tdzn.parse_lane_request(tdzn.Request("1", service, 1, biz, "", ""), TZ)
        except TdznError:
            pass


# ---------------------------------------------------------------- bounds (issue 14)

def test_pay_notify_amount_ceiling_is_inclusive_and_402():
    assert tdzn.parse_pay_notify(req("payNotify", dict(PAY, paidFee=10_000_000)), TZ, max_fen=10_000_000
                                 ).paid_fee_fen == 10_000_000
    for change in ({"paidFee": 10_000_001}, {"paidFee": "10000001"}, {"discountFee": 10_000_001}):
        with pytest.raises(TdznError, match="over the ceiling") as e:
            tdzn.parse_lane_request(req("payNotify", dict(PAY, **change)), TZ, max_fen=10_000_000)
        assert_code(e, 402)


@pytest.mark.parametrize("fee", [10 ** 4000, "9" * 5000, "7.00", "1e3", True, None, [700], {"fen": 700}, "-1"])
def test_pay_notify_fees_that_are_not_whole_fen_are_refused(fee):
    with pytest.raises(TdznError) as e:
        tdzn.parse_pay_notify(req("payNotify", dict(PAY, paidFee=fee)), TZ, max_fen=10_000_000)
    assert e.value.code in (400, 402)
    assert len(e.value.msg) <= 200


def test_a_huge_signed_timestamp_is_an_illegal_param_not_an_overflow():
    # 10**400 - now used to raise OverflowError (int too large for a float): a traceback and a 500 answer
    with pytest.raises(TdznError, match="out of range") as e:
        decode_request(signed_body(PAY, "payNotify", ts=10 ** 400), KEY, now=1_600_000_000.0)
    assert_code(e, 402)
