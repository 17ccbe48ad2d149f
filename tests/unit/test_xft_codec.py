"""XFT codec: the signing string byte for byte (MD5 computed here with hashlib, not by the codec), the
builders, every answer shape (flat, wrapped, data as JSON text, body as a JSON string), every is_allow and
state code, the notify (JSON and form), and garbage of every kind giving XftError and nothing else."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanectl.providers.xft import codec as xft
from lanectl.providers.xft.codec import (
    BadSignature,
    MissingField,
    XftError,
    XftRefused,
    charge_query_params,
    encode_request,
    entry_params,
    exit_params,
    parse_charge_query,
    parse_entry_answer,
    parse_exit_answer,
    parse_notify,
    parse_notify_form,
    parse_signed_relation,
    sign,
    signed_fields,
    signed_relation_params,
    signing_string,
    verify,
)

KEY = "k3y"
TZ = ZoneInfo("Asia/Shanghai")
RELATION = {
    "app_id": "wx8888", "merchant_code": "M100", "store_code": "S01", "channel": "WECHAT", "sign_type": "MD5",
    "extra": {"trade_scene": "PARKING", "plate_number": "粤B12345"},
    "openid": "", "sub_openid": None, "credential": {}, "tags": [],  # all empty: neither signed nor sent
    "sign": "WHATEVER",  # never part of what is signed
}
# Written out by hand: sorted keys, raw values, the nested object as compact JSON text, sign_type included.
RELATION_SIGNED = ('app_id=wx8888&channel=WECHAT&extra={"trade_scene":"PARKING","plate_number":"粤B12345"}'
                   "&merchant_code=M100&sign_type=MD5&store_code=S01&key=k3y")
RELATION_SIGNED_BYTES = (b'app_id=wx8888&channel=WECHAT&extra={"trade_scene":"PARKING","plate_number":"'
                         b'\xe7\xb2\xa4B12345"}&merchant_code=M100&sign_type=MD5&store_code=S01&key=k3y')
RELATION_SIGN = "2D8AEF521E7459DC88DB59E6F3BE6145"  # golden: hashlib.md5(RELATION_SIGNED_BYTES), upper


def signed_body(fields: dict, key: str = KEY) -> bytes:
    """What the platform sends: fields signed the XFT way, as compact UTF-8 JSON."""
    return json.dumps(signed_fields(fields, key), ensure_ascii=False, separators=(",", ":")).encode()


def raw_signed(fields: dict, key: str = KEY) -> bytes:
    """Signed without turning values into text: a platform that sends JSON numbers signs their digits."""
    fields = {**fields, "sign_type": "MD5"}
    return json.dumps({**fields, "sign": sign(fields, key)}).encode()


def md5_upper(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


# ------------------------------------------------------------------------------------------ signing

def test_signing_string_byte_for_byte():
    assert signing_string(RELATION, KEY) == RELATION_SIGNED
    assert RELATION_SIGNED.encode("utf-8") == RELATION_SIGNED_BYTES
    assert md5_upper(RELATION_SIGNED) == RELATION_SIGN
    assert sign(RELATION, KEY) == RELATION_SIGN


def test_empty_values_are_dropped_but_zero_and_blank_text_are_values():
    params = {"a": "", "b": None, "c": {}, "d": [], "e": "0", "f": 0, "g": " "}
    assert signing_string(params, KEY) == "e=0&f=0&g= &key=k3y"


def test_sign_type_is_signed():
    assert "&sign_type=MD5&" in signing_string(RELATION, KEY)
    assert sign({**RELATION, "sign_type": "HMAC"}, KEY) != sign(RELATION, KEY)
    assert sign({k: v for k, v in RELATION.items() if k != "sign_type"}, KEY) != sign(RELATION, KEY)


def test_keys_sort_by_ascii_and_values_stay_raw():
    params = {"b": "x y&z", "B": "1", "_u": "%2F", "a": "粤B"}
    assert signing_string(params, KEY) == "B=1&_u=%2F&a=粤B&b=x y&z&key=k3y"


def test_empty_key_is_refused():
    with pytest.raises(XftError):
        sign(RELATION, "")


def test_encode_request_signs_nested_extra_as_json_text():
    body = encode_request({k: v for k, v in RELATION.items() if k != "sign_type"}, KEY)
    sent = json.loads(body)
    assert sent["extra"] == '{"trade_scene":"PARKING","plate_number":"粤B12345"}'  # a string, not an object
    assert sent["sign_type"] == "MD5"  # added when absent
    assert sent["sign"] == RELATION_SIGN  # same as signing the nested dict: what is sent is what is signed
    assert set(sent) == {"app_id", "merchant_code", "store_code", "channel", "sign_type", "extra", "sign"}
    assert "粤B12345".encode() in body and b" " not in body  # UTF-8, compact
    assert verify(sent, KEY)


def test_encode_request_values_are_text_and_floats_or_bools_are_refused():
    assert json.loads(encode_request({"amount": 700}, KEY))["amount"] == "700"
    for bad in (7.0, True):
        with pytest.raises(XftError):
            encode_request({"amount": bad}, KEY)
    with pytest.raises(XftError):
        encode_request({"extra": {"x": 0.5}}, KEY)
    with pytest.raises(XftError):
        encode_request({"a": "1", "sign_type": "SHA256"}, KEY)


def test_verify():
    sent = json.loads(encode_request({"a": "1"}, KEY))
    assert verify(sent, KEY)
    assert verify({**sent, "sign": sent["sign"].lower()}, KEY)  # hex case is not meaning
    assert not verify({**sent, "a": "2"}, KEY)
    assert not verify(sent, "other")
    assert not verify({"a": "1"}, KEY)
    assert not verify({**sent, "sign": "粤" * 32}, KEY)  # non-ASCII: False, not an exception
    assert not verify({**sent, "sign": 12345}, KEY)


# ------------------------------------------------------------------------------------------ builders

COMMON = {"app_id": "wx8888", "merchant_code": "M100", "store_code": "S01", "channel": "WECHAT"}


def test_signed_relation_params():
    p = signed_relation_params(**COMMON, plate_number="粤B12345", sub_openid="oSub123")
    assert p == {**COMMON, "extra": {"trade_scene": "PARKING", "plate_number": "粤B12345", "sub_openid": "oSub123"}}
    # seed 000: "channel为WECHAT时sub_openid和车牌号必传" — WECHAT without sub_openid is refused, never sent
    with pytest.raises(XftError, match="sub_openid"):
        signed_relation_params(**COMMON, plate_number="粤B12345")
    # what a lane sends: the plate alone, no channel named (the answer says which channel the user opened)
    p = signed_relation_params(**{**COMMON, "channel": None}, plate_number="粤B12345")
    assert "channel" not in p and p["extra"] == {"trade_scene": "PARKING", "plate_number": "粤B12345"}
    p = signed_relation_params(**{**COMMON, "channel": "ALIPAY"}, plate_number="粤B12345")
    assert p["channel"] == "ALIPAY", "other channels: the seed asks nothing more than the plate"
    assert xft.PATHS["signed_relation"] == "query/signed/relation/v2"
    assert xft.DEFAULT_BASE_URL.endswith("/parking/aggegation/")


def test_entry_params_writes_start_time_in_the_lots_zone():
    utc = datetime(2024, 3, 1, 0, 30, 5, tzinfo=timezone.utc)
    p = entry_params(**COMMON, out_trade_no="L1_20240301083005_1", plate_number="粤B12345", start_time=utc,
                     zone=TZ, free_time=900)
    assert p["extra"] == {"trade_scene": "PARKING", "plate_number": "粤B12345", "start_time": "20240301083005",
                          "free_time": "900"}
    with pytest.raises(XftError, match="aware"):
        entry_params(**COMMON, out_trade_no="L1_1", plate_number="粤B12345", start_time=datetime(2024, 3, 1),
                     zone=TZ)
    with pytest.raises(XftError, match="out_trade_no"):
        entry_params(**COMMON, out_trade_no="a&b=c", plate_number="粤B12345", start_time=utc, zone=TZ)


def exit_kw(**over):
    kw = dict(COMMON, out_trade_no="L1_20240301100000_2", amount_fen=700, notify_url="http://10.0.0.2:8080/xft",
              plate_number="粤B12345", start_time=datetime(2024, 3, 1, 8, tzinfo=TZ),
              end_time=datetime(2024, 3, 1, 10, 0, 30, tzinfo=TZ), zone=TZ, client_ip="10.0.0.2")
    kw.update(over)
    return kw


def test_exit_params():
    p = exit_params(**exit_kw(sub_app_id="wxsub"))
    assert p["amount"] == "700" and p["subject"] == p["body"] == "停车费" and "description" not in p
    assert p["extra"] == {"start_time": "20240301080000", "end_time": "20240301100030", "charging_time": "7230",
                          "plate_number": "粤B12345", "trade_scene": "PARKING", "sub_app_id": "wxsub"}
    sent = json.loads(encode_request(p, KEY))
    assert sent["amount"] == "700" and isinstance(sent["extra"], str) and verify(sent, KEY)


@pytest.mark.parametrize("amount", [0, -1, 7.0, True, "700", None])
def test_exit_params_amount_is_positive_integer_fen(amount):
    with pytest.raises(XftError):
        exit_params(**exit_kw(amount_fen=amount))


@pytest.mark.parametrize("over", [{"notify_url": "ftp://x"}, {"client_ip": "lane-1"}, {"client_ip": 1},
                                  {"end_time": datetime(2024, 3, 1, 7, tzinfo=TZ)}, {"app_id": ""},
                                  {"plate_number": ""}])
def test_exit_params_refuses_bad_arguments(over):
    with pytest.raises(XftError):
        exit_params(**exit_kw(**over))


def test_charge_query_params_send_only_what_xft_lists():
    p = charge_query_params(app_id="wx8888", merchant_code="M100", out_trade_no="L1_2")
    assert p == {"app_id": "wx8888", "merchant_code": "M100", "out_trade_no": "L1_2"}
    p = charge_query_params(app_id="wx8888", merchant_code="M100", out_trade_no="L1_2", third_trade_no="T9",
                            client_ip="10.0.0.2")
    assert p["third_trade_no"] == "T9" and p["client_ip"] == "10.0.0.2"


# ------------------------------------------------------------------------------------------ answer shapes

EXIT_OK = {"out_trade_no": "L1_2", "third_trade_no": "T9", "is_allow": "SUCCESS", "channel": "WECHAT"}


def shapes(fields: dict) -> dict[str, bytes]:
    """One signed answer in every shape XFT (or a gateway in front of it) may use."""
    inner = signed_fields(fields, KEY)
    inner_text = json.dumps(inner, ensure_ascii=False, separators=(",", ":"))
    return {
        "flat": inner_text.encode(),
        "wrapped": json.dumps({"code": "0000", "message": "成功", "result": "SUCCESS", "data": inner},
                              ensure_ascii=False).encode(),
        "wrapped-data-string": json.dumps({"code": "0000", "message": "ok", "data": inner_text}).encode(),
        "json-string": json.dumps(inner_text).encode(),
        "bom-and-spaces": b"\xef\xbb\xbf  " + json.dumps(inner, indent=2, ensure_ascii=False).encode() + b"\n",
    }


@pytest.mark.parametrize("shape", ["flat", "wrapped", "wrapped-data-string", "json-string", "bom-and-spaces"])
def test_every_answer_shape_parses_and_verifies(shape):
    body = shapes(EXIT_OK)[shape]
    a = parse_exit_answer(body, KEY, require_signature=True, expect_out_trade_no="L1_2")
    assert (a.is_allow, a.allowed, a.out_trade_no, a.third_trade_no, a.signed) == ("SUCCESS", True, "L1_2", "T9", True)


def test_sign_on_the_wrapper_is_verified_too():
    data = '{"out_trade_no":"L1_2","is_allow":"SUCCESS"}'
    outer = {"code": "0000", "message": "ok", "data": data}
    body = json.dumps(signed_fields(outer, KEY)).encode()
    assert parse_exit_answer(body, KEY, require_signature=True).signed
    tampered = body.replace(b"SUCCESS", b"INIT")
    with pytest.raises(BadSignature):
        parse_exit_answer(tampered, KEY)


def test_signature_checks():
    good = shapes(EXIT_OK)["flat"]
    with pytest.raises(BadSignature):
        parse_exit_answer(good.replace(b"T9", b"T8"), KEY)
    with pytest.raises(BadSignature):
        parse_exit_answer(good, "wrong-key")
    unsigned = json.dumps(EXIT_OK).encode()
    assert parse_exit_answer(unsigned, KEY).signed is False  # allowed unless required; the lane sees signed
    assert parse_exit_answer(good).signed is False  # no key: nothing verified
    with pytest.raises(BadSignature, match="not signed"):
        parse_exit_answer(unsigned, KEY, require_signature=True)
    with pytest.raises(ValueError):
        parse_exit_answer(good, None, require_signature=True)


def test_wrapper_without_data_is_a_refusal():
    with pytest.raises(XftRefused) as e:
        parse_exit_answer(b'{"code":"4001","message":"sign error","data":null}', KEY)
    assert (e.value.code, e.value.message) == ("4001", "sign error")


def test_answer_for_another_order_is_refused():
    with pytest.raises(XftError, match="another|expected"):
        parse_exit_answer(shapes(EXIT_OK)["flat"], KEY, expect_out_trade_no="L1_3")
    with pytest.raises(XftError):
        parse_charge_query(shapes({"out_trade_no": "L1_2", "state": "00", "amount": "700"})["flat"], KEY,
                           expect_out_trade_no="L1_3")


@pytest.mark.parametrize("body", [b'{"is_allow":"SUCCESS","is_allow":"FAIL"}', b"[1,2]", b"{", b"",
                                  b'{"amount":NaN,"state":"00"}', b'"not an object"', b"\xff\xfe",
                                  b'{"code":"0","data":"[1]"}', b'{"is_allow":{"x":1}}'])
def test_not_an_answer(body):
    with pytest.raises(XftError):
        parse_exit_answer(body, KEY)


@pytest.mark.parametrize("depth", [9, 500, 990, 5000])
def test_deep_nesting_is_an_error_not_a_recursion_crash(depth):
    body = ('{"sign":"x","state":"00","credential":' + "[" * depth + "]" * depth + "}").encode()
    for parse in (parse_signed_relation, parse_charge_query, parse_notify):
        with pytest.raises(XftError, match="deeper|recursion"):
            parse(body, KEY)


# ------------------------------------------------------------------------------------------ signed relation

def test_signed_relation_splits_and_normalizes_plates():
    body = shapes({"sign_flag": "1", "channel": "WECHAT", "plate_number": "粤B12345;粤b 6789o；",
                   "credential": '{"path":"pages/x","wx_sub_mch_id":"1"}'})["wrapped"]
    r = parse_signed_relation(body, KEY, require_signature=True)
    assert r.sign_flag is True and r.plates == ("粤B12345", "粤B67890") and r.channel == "WECHAT"
    assert r.credential == {"path": "pages/x", "wx_sub_mch_id": "1"} and r.signed


@pytest.mark.parametrize("flag,expected", [("1", True), ("0", False), ("", False), (None, False), (1, True)])
def test_sign_flag(flag, expected):
    fields = {"channel": "WECHAT"} if flag is None else {"sign_flag": flag}
    assert parse_signed_relation(json.dumps(fields).encode()).sign_flag is expected


def test_sign_flag_garbage_and_error_answer():
    with pytest.raises(XftError):
        parse_signed_relation(b'{"sign_flag":"yes"}')
    r = parse_signed_relation(shapes({"failure_code": "SIGN_ERROR", "failure_msg": "签名错误"})["flat"], KEY)
    assert (r.sign_flag, r.plates, r.failure_code) == (False, (), "SIGN_ERROR")


# ------------------------------------------------------------------------------------------ entry

@pytest.mark.parametrize("state,ok", [("1", True), ("0", False), ("", False)])
def test_entry_answer(state, ok):
    a = parse_entry_answer(shapes({"state": state, "store_code": "S01", "plate_number": "粤B12345"})["flat"], KEY)
    assert (a.ok, a.store_code, a.plate_number, a.signed) == (ok, "S01", "粤B12345", True)


def test_entry_answer_garbage_state():
    with pytest.raises(XftError):
        parse_entry_answer(b'{"state":"2"}')


# ------------------------------------------------------------------------------------------ exit

@pytest.mark.parametrize("raw,expected", [
    ("SUCCESS", "SUCCESS"), ("FAIL", "FAIL"), ("INIT", "INIT"),
    # anything not exactly SUCCESS never lets a car out; not exactly FAIL is undecided (poll, take the notify)
    ("success", "INIT"), ("SUCCESS ", "INIT"), ("ALLOW", "INIT"), ("", "INIT"), (None, "INIT"), ("1", "INIT"),
])
def test_every_is_allow(raw, expected):
    fields = {"out_trade_no": "L1_2"} if raw is None else {"out_trade_no": "L1_2", "is_allow": raw}
    a = parse_exit_answer(shapes(fields)["flat"], KEY, require_signature=True)
    assert a.is_allow == expected and a.allowed is (expected == "SUCCESS")
    assert a.raw_is_allow == (raw or "")


def test_exit_fail_carries_the_reason():
    a = parse_exit_answer(shapes({"out_trade_no": "L1_2", "is_allow": "FAIL", "failure_code": "NOT_SIGNED",
                                  "failure_msg": "未签约"})["wrapped"], KEY)
    assert (a.is_allow, a.failure_code, a.failure_msg) == ("FAIL", "NOT_SIGNED", "未签约")


# ------------------------------------------------------------------------------------------ charge query

@pytest.mark.parametrize("state,kind", [
    ("00", "paid"), ("01", "failed"), ("06", "failed"), ("98", "failed"), ("99", "failed"),
    ("03", "refunded"), ("04", "refunded"), ("05", "refunded"),
    ("09", "pending"), ("", "pending"), ("42", "pending"), (0, "paid"), (9, "pending"),
])
def test_every_state_code(state, kind):
    body = raw_signed({"id": "X1", "out_trade_no": "L1_2", "amount": "700", "state": state})
    c = parse_charge_query(body, KEY, require_signature=True, expect_out_trade_no="L1_2")
    flags = {"paid": c.paid, "failed": c.failed, "refunded": c.refunded, "pending": c.pending}
    assert [k for k, v in flags.items() if v] == [kind]
    assert c.amount_fen == 700 and c.id == "X1"


@pytest.mark.parametrize("amount,fen", [("700", 700), (700, 700), ("0", 0), ("", None), (None, None)])
def test_amount_accepted(amount, fen):
    fields = {"state": "00"} if amount is None else {"state": "00", "amount": amount}
    assert parse_charge_query(json.dumps(fields).encode()).amount_fen == fen


@pytest.mark.parametrize("amount", ['"7.00"', "7.0", "7.5", '"-1"', "-1", "1e3", '" 7"', '"7 "', '"+7"',
                                    '"１２"', '"1_0"', "true", '"1234567890123"', "[700]"])
def test_amount_refused(amount):
    with pytest.raises(XftError, match="amount"):
        parse_charge_query(('{"state":"00","amount":%s}' % amount).encode())


@pytest.mark.parametrize("state", ['"0"', '"000"', '"ok"', "1.0", "100", "-1"])
def test_state_garbage(state):
    with pytest.raises(XftError):
        parse_charge_query(('{"state":%s}' % state).encode())


def test_order_not_found_is_pending_with_the_reason():
    c = parse_charge_query(shapes({"failure_code": "ORDER_NOT_EXIST", "failure_msg": "订单不存在"})["flat"], KEY)
    assert c.pending and c.failure_code == "ORDER_NOT_EXIST" and c.amount_fen is None
    assert c.absent, "no state and ORDER_NOT_EXIST: the platform has no such order"
    assert parse_charge_query(shapes({"failure_code": "SYSTEM_ERROR"})["flat"], KEY).absent is False
    assert parse_charge_query(shapes({"failure_msg": "订单不存在"})["flat"], KEY).absent
    assert not parse_charge_query(shapes({"state": "09", "failure_code": "ORDER_NOT_EXIST"})["flat"], KEY).absent, \
        "an answer with a state is about an order that exists"


# ------------------------------------------------------------------------------------------ notify

NOTIFY = {"out_trade_no": "L1_2", "third_trade_no": "4200001", "store_code": "S01", "amount": "700",
          "channel": "WECHAT", "state": "00", "body": "停车费"}


def test_notify_json():
    n = parse_notify(shapes(NOTIFY)["flat"], KEY, content_type="application/json; charset=utf-8")
    assert n == xft.Notify("L1_2", "4200001", "S01", 700, "WECHAT", "00", signed=True)
    assert n.paid and not n.failed
    assert xft.NOTIFY_ACK == b"SUCCESS" and xft.NOTIFY_NACK == b"FAIL"


def form_encode(fields: dict) -> str:
    """Percent-encode by hand (spaces as '+') so the test does not lean on the codec under test."""
    def enc(s: str) -> str:
        out = []
        for b in s.encode("utf-8"):
            c = chr(b)
            out.append("+" if c == " " else c if c.isalnum() and b < 128 or c in "-_.~" else f"%{b:02X}")
        return "".join(out)
    return "&".join(f"{enc(k)}={enc(v)}" for k, v in fields.items())


def test_notify_form_body():
    fields = signed_fields({**NOTIFY, "failure_msg": "a b&c=d 成功"}, KEY)
    text = form_encode(fields)
    assert "+" in text and "%26" in text
    for n in (parse_notify_form(text, KEY), parse_notify(text.encode(), KEY),  # sniffed: no '{'
              parse_notify(text.encode(), KEY, content_type="application/x-www-form-urlencoded")):
        assert n.failure_msg == "a b&c=d 成功" and n.signed and n.amount_fen == 700


def test_notify_form_wrapping_json_data():
    inner = json.dumps(signed_fields(NOTIFY, KEY), ensure_ascii=False)
    n = parse_notify(form_encode({"data": inner}).encode(), KEY, content_type="application/x-www-form-urlencoded")
    assert n.out_trade_no == "L1_2" and n.signed


def test_notify_bad_signature():
    body = shapes(NOTIFY)["flat"].replace(b'"700"', b'"1"')
    with pytest.raises(BadSignature):
        parse_notify(body, KEY)
    with pytest.raises(BadSignature):
        parse_notify(shapes(NOTIFY)["flat"], "other-key")


def test_notify_unsigned():
    body = json.dumps(NOTIFY).encode()
    with pytest.raises(BadSignature, match="not signed"):
        parse_notify(body, KEY)
    assert parse_notify(body, KEY, require_signature=False).signed is False


@pytest.mark.parametrize("missing", ["out_trade_no", "state", "amount"])
def test_notify_missing_field_is_named(missing):
    fields = {k: v for k, v in NOTIFY.items() if k != missing}
    with pytest.raises(MissingField) as e:
        parse_notify(shapes(fields)["flat"], KEY)
    assert e.value.field == missing and missing in str(e.value)


def test_failed_notify_needs_no_amount():
    n = parse_notify(shapes({"out_trade_no": "L1_2", "state": "01", "failure_code": "NOTENOUGH"})["flat"], KEY)
    assert n.failed and not n.paid and n.amount_fen is None and n.failure_code == "NOTENOUGH"


@pytest.mark.parametrize("text", ["a=%zz", "a=%e7%b2", "noequals", "", "a=1&a=2"])
def test_notify_form_garbage(text):
    with pytest.raises(XftError):
        parse_notify_form(text, KEY)


def test_notify_fields_round_trip():
    fields = xft.notify_fields(out_trade_no="L1_2", state="00", amount_fen=700, third_trade_no="T9")
    n = parse_notify(xft.encode_request(fields, KEY), KEY)
    assert (n.out_trade_no, n.state, n.amount_fen, n.third_trade_no, n.signed) == ("L1_2", "00", 700, "T9", True)


# ------------------------------------------------------------------------------------------ garbage

PARSERS = [
    lambda b: parse_signed_relation(b, KEY),
    lambda b: parse_entry_answer(b, KEY),
    lambda b: parse_exit_answer(b, KEY, expect_out_trade_no="L1_2"),
    lambda b: parse_charge_query(b, KEY, require_signature=True),
    lambda b: parse_notify(b, KEY),
    lambda b: parse_notify(b, KEY, content_type="application/x-www-form-urlencoded"),
    lambda b: parse_notify(b, KEY, require_signature=False, content_type="application/json"),
]
VALID = [shapes(NOTIFY)["flat"], shapes(EXIT_OK)["wrapped"], shapes(NOTIFY)["wrapped-data-string"],
         form_encode(signed_fields(NOTIFY, KEY)).encode()]


def only_xft_errors(body: bytes) -> None:
    for parse in PARSERS:
        try:
            parse(body)
        except XftError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_give_xft_error_or_a_value(body):
    only_xft_errors(body)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_mutated_answers_give_xft_error_or_a_value(body, data):
    i = data.draw(st.integers(0, len(body)))
    j = data.draw(st.integers(i, min(len(body), i + 8)))
    junk = data.draw(st.binary(max_size=8))
    only_xft_errors(body[:i] + junk + body[j:])


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                           max_leaves=8)
FIELD_NAMES = st.sampled_from(["out_trade_no", "state", "amount", "is_allow", "sign_flag", "plate_number", "data",
                               "sign", "code", "credential", "third_trade_no", "failure_code"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=6))
def test_random_json_objects_give_xft_error_or_a_value(obj):
    only_xft_errors(json.dumps(obj).encode())
    only_xft_errors(json.dumps({"code": "0000", "data": json.dumps(obj)}).encode())


# ------------------------------------------------------------------------------- bounds (issue 14)

def test_notify_amount_ceiling_is_inclusive():
    assert parse_notify(signed_body({**NOTIFY, "amount": "10000000"}), KEY, max_fen=10_000_000).amount_fen == 10_000_000
    with pytest.raises(XftError, match="over the ceiling of 10000000 fen"):
        parse_notify(signed_body({**NOTIFY, "amount": "10000001"}), KEY, max_fen=10_000_000)
    with pytest.raises(XftError, match="ceiling"):
        parse_notify(raw_signed({**NOTIFY, "amount": 10000001}), KEY, max_fen=10_000_000)  # a JSON integer


@pytest.mark.parametrize("amount", ["9" * 5000, 10 ** 4000, "7.00", "-1", -1, "1e3", "NaN", True, "７"])
def test_notify_amounts_that_are_not_whole_fen_in_range_are_xft_errors(amount):
    with pytest.raises(XftError):
        parse_notify(raw_signed({**NOTIFY, "amount": amount}), KEY, max_fen=10_000_000)


@pytest.mark.parametrize("raw", [b"7.00", b"1e3", b"NaN", b"-Infinity", b"1" * 5000])
def test_notify_amount_json_numbers_that_are_not_integers(raw):
    body = b'{"out_trade_no":"L1_2","state":"00","amount":' + raw + b'}'
    with pytest.raises(XftError):
        parse_notify(body, KEY, require_signature=False, max_fen=10_000_000)
