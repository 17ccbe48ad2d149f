"""The Bolink emulator's own wire code (hil/emulators/bolink_wire.py): the published signing vector byte for byte,
envelopes verified over the raw bytes received, flat downlinks as the SDK client reads them — and that the
emulator imports nothing from lanectl. The lane's codec appears only to check that the two sides, written
apart, agree on the wire."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from decimal import Decimal

import pytest

from hil.emulators import bolink_wire as w
from hil.emulators.bolink import is_exit_upload
from lanectl.providers.bolink import codec as bl

# the published vectors of /work/shared/protocols/bolink.md (from the SDK doc): (DATA, key, sign)
VECTORS = [
    ('{"union_id":"200208","park_id":"21835","local_id":"0071cc97102b_1001_qh321_quanhao-atest1"}',
     "8403A41ED5EF20BC", "CB649425CB5548A375099103AB04CC1E"),
]
KEY = "8403A41ED5EF20BC"


@pytest.mark.parametrize("data,key,expected", VECTORS)
def test_the_emulator_signer_reproduces_each_published_vector_byte_for_byte(data, key, expected):
    assert w.sign(data, key) == expected
    assert w.sign(data.encode("utf-8"), key) == expected
    assert w.sign_ok(data.encode(), key, expected) and w.sign_ok(data.encode(), key, expected.lower())
    assert not w.sign_ok(data.encode() + b" ", key, expected)
    # the emulator writes the vector's data back to the same bytes, so what it signs is what it sends
    assert w.dumps(json.loads(data)) == data
    body = w.upload_envelope("login", data, key)
    assert body == ('{"service_name":"login","sign":"%s","data":%s}' % (expected, data)).encode()


def test_a_received_envelope_is_verified_over_its_raw_data_bytes():
    data, _, sig = VECTORS[0]
    spaced = data.replace(",", ", ")  # the sender's own spacing: the sign covers those bytes, not ours
    raw = ('{ "data" : %s , "token":"t", "sign":"%s", "service_name":"inpark"}' % (spaced, w.sign(spaced, KEY)))
    env = w.read_envelope(raw.encode(), KEY)
    assert (env.service_name, env.token, env.data["park_id"], env.data_text) == ("inpark", "t", "21835", spaced)
    with pytest.raises(w.BadSign):  # re-serialized it would hash differently: only the raw bytes verify
        w.read_envelope(raw.replace(spaced, data).encode(), KEY)
    with pytest.raises(w.BadSign):
        w.read_envelope(raw.encode(), "0000000000000000")
    # a Gson sender escapes '=' inside strings and signs the escaped bytes
    escaped = '{"car_number":"\\u003d1","park_id":"21835"}'
    env = w.read_envelope(w.upload_envelope("inpark", escaped, KEY, "t"), KEY)
    assert env.data["car_number"] == "=1"
    # a GBK-host client signs the GBK bytes of the same text
    text = '{"car_number":"粤B12345"}'
    gbk_sig = hashlib.md5(text.encode("gbk") + b"key=" + KEY.encode()).hexdigest().upper()
    gbk_body = ('{"service_name":"inpark","sign":"%s","data":%s}' % (gbk_sig, text)).encode("utf-8")
    assert w.read_envelope(gbk_body, KEY, "gbk").data["car_number"] == "粤B12345"
    with pytest.raises(w.BadSign):
        w.read_envelope(gbk_body, KEY)
    for junk in (b"", b"[]", b'{"sign":"x"}', b'{"data":1,"sign":"x"}', b'{"data":{}} x'):
        with pytest.raises(w.WireError):
            w.read_envelope(junk, KEY)


def test_a_downlink_is_flat_and_its_optional_sign_covers_the_body_without_it():
    msg = {"service_name": "outpark", "state": 1, "order_id": "in1_1", "trade_no": "T1", "total": Decimal("7.0")}
    raw = w.flat_downlink(msg, KEY)
    top = json.loads(raw)
    assert list(top)[0] == "service_name" and "data" not in top and top["order_id"] == "in1_1"
    unsigned = w.flat_downlink(msg, None)
    assert raw.startswith(unsigned[:-1]) and top["sign"] == w.sign(unsigned, KEY)
    assert b'"total":7.0' in raw  # money as the platform writes it, not re-rounded
    # the lane, written apart, reads it: verified when signed, taken on the token's trust when not
    got = bl.parse_download(raw, KEY)
    assert got is not None and got.form == "flat" and got.data["trade_no"] == "T1" and got.service_name == "outpark"
    assert bl.parse_download(unsigned, KEY).data == got.data  # type: ignore[union-attr]
    with pytest.raises(bl.BadSignature):
        bl.parse_download(w.flat_downlink(msg, "0000000000000000"), KEY)
    with pytest.raises(bl.BadSignature):  # a field changed after signing
        bl.parse_download(raw.replace(b'"T1"', b'"T2"'), KEY)
    esc = w.flat_downlink({"service_name": "update_balance", "car_number": "粤B=1", "balance": "1.00",
                           "autopay": 1}, KEY, escape=True)
    assert b"\\u003d" in esc and bl.parse_download(esc, KEY).data["car_number"] == "粤B=1"  # type: ignore[union-attr]


def test_an_outpark_exit_upload_is_told_from_a_reply_to_a_push():
    assert is_exit_upload({"car_number": "粤B1", "out_time": 1, "total": "7.00", "pay_type": "cash"})
    assert is_exit_upload({"order_id": "a", "total": "7.00", "pay_type": "sweepcode", "auth_code": "1" * 18})
    assert not is_exit_upload({"state": 1, "trade_no": "T1", "errmsg": "", "order_id": "a"})
    assert not is_exit_upload({"state": 1, "trade_no": "T1", "order_id": "a", "total": "7.00"})


def test_money_and_ids():
    assert [w.fen(v) for v in ("7.00", "0.04", Decimal("12.5"), 3, "0")] == [700, 4, 1250, 300, 0]
    for bad in (0.1, True, "-1", "1.234", "abc", Decimal("NaN"), None):
        with pytest.raises(w.WireError):
            w.fen(bad)
    assert w.yuan(704) == "7.04" and w.java_number(700) == Decimal("7.0") and w.java_number(4) == Decimal("0.04")
    with pytest.raises(w.WireError):
        w.dumps({"total": 0.1})
    assert w.is_order_id("in1_20261207_1") and not w.is_order_id("a-b") and not w.is_order_id("x" * 49)


def test_the_emulator_imports_nothing_from_lanectl():
    code = ("import sys, hil.emulators.bolink, hil.emulators.bolink_wire; "
            "bad = sorted(m for m in sys.modules if m == 'lanectl' or m.startswith('lanectl.')); "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"the emulator pulled in {r.stdout.strip()} {r.stderr[-500:]}"
