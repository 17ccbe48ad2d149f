"""The emulators' own codecs against the documents (/work/shared/protocols/, seeds), byte for byte, and the rule
that keeps them independent: nothing under hil/emulators/ imports lanectl.

The expected strings and bytes below are written out by hand from the documents, not computed by either
codec, so a signing or framing bug shared by the daemon and an emulator cannot pass here."""

from __future__ import annotations

import ast
import hashlib
import json
from datetime import datetime
from pathlib import Path

import pytest

from hil.emulators import camera_http, common, led_board, plate_camera, tdzn, xft
from hil.emulators.barrier_io import PointMap

EMULATORS = Path(__file__).resolve().parents[2] / "hil" / "emulators"

# Modules allowed to import lanectl, each with the reason: none. An emulator that shares the daemon's code can
# share its bugs; nothing may be added here.
LANECTL_IMPORT_ALLOWED: set[str] = set()


# ---------------------------------------------------------------- the import rule

def _lanectl_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "lanectl"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "lanectl":
            found.append(node.module or "")
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in
              ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
              and str(node.args[0].value).split(".")[0] == "lanectl"):
            found.append(str(node.args[0].value))
    return found


def test_no_emulator_imports_lanectl():
    files = sorted(EMULATORS.glob("*.py"))
    assert len(files) >= 10, files  # the walk really sees the emulators
    offenders = {p.name: _lanectl_imports(p) for p in files if p.name not in LANECTL_IMPORT_ALLOWED}
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_the_import_check_catches_every_form(tmp_path):
    src = tmp_path / "x.py"
    src.write_text("import os\nimport lanectl.core as c\nfrom lanectl.protocols import xft\n"
                   "def f():\n    from lanectl import bootstrap\n    return importlib.import_module('lanectl.cli')\n"
                   "from .lanectl_like import y\n", encoding="utf-8")
    assert _lanectl_imports(src) == ["lanectl.core", "lanectl.protocols", "lanectl", "lanectl.cli"]


def test_the_allowlist_only_names_files_that_still_need_it():
    for name in LANECTL_IMPORT_ALLOWED:  # stale entries must go: an allowlist that lies hides a regression
        assert _lanectl_imports(EMULATORS / name), f"{name} no longer imports lanectl: drop it from the allowlist"


# ---------------------------------------------------------------- tdzn (tdzn.md 2.2, seed 004)

TDZN_KEY = "45DC1F8604F940829E75D6A76595C299"
TDZN_VECTOR = ('bizContent={"enterTime":"2018-01-01 11:00:00","parkCode":"TEST/1P1","plateNum":"粤B12345"}'
               '&pid=123456&serviceName=enterNotify&timestamp=1539571096&key=45DC1F8604F940829E75D6A76595C299')
TDZN_VECTOR_SIGN = "EE454BE0DE3D211559865DA33745E589"
VECTOR_BIZ = {"enterTime": "2018-01-01 11:00:00", "parkCode": "TEST/1P1", "plateNum": "粤B12345"}


def test_tdzn_signing_vector():
    params = {"timestamp": 1539571096, "serviceName": "enterNotify", "pid": "123456",
              "bizContent": json.dumps(VECTOR_BIZ, ensure_ascii=False, separators=(",", ":")), "sign": "ignored"}
    assert common.signing_string(params, TDZN_KEY) == TDZN_VECTOR
    assert tdzn.sign(params, TDZN_KEY) == TDZN_VECTOR_SIGN
    assert hashlib.md5(TDZN_VECTOR.encode("utf-8")).hexdigest().upper() == TDZN_VECTOR_SIGN  # the doc agrees


def test_tdzn_envelope_carries_the_signed_text_and_verifies():
    body = tdzn.encode_request("123456", "enterNotify", VECTOR_BIZ, TDZN_KEY, 1539571096)
    assert body == ('{"pid":"123456","serviceName":"enterNotify","timestamp":1539571096,"bizContent":'
                    '"{\\"enterTime\\":\\"2018-01-01 11:00:00\\",\\"parkCode\\":\\"TEST/1P1\\",'
                    '\\"plateNum\\":\\"粤B12345\\"}","sign":"EE454BE0DE3D211559865DA33745E589"}').encode("utf-8")
    req = tdzn.decode_request(body, TDZN_KEY, now=1539571096 + 299, pid="123456")
    assert (req.service_name, req.biz, req.sign) == ("enterNotify", VECTOR_BIZ, TDZN_VECTOR_SIGN)


@pytest.mark.parametrize("mutate, code", [
    (lambda e: e.update(sign=e["sign"].lower()), None),  # hex case carries nothing
    (lambda e: e.update(sign="0" * 32), 401),
    (lambda e: e.update(bizContent=e["bizContent"].replace("粤", "京")), 401),
    (lambda e: e.update(timestamp=e["timestamp"] + 1), 401),
    (lambda e: e.pop("sign"), 400),
    (lambda e: e.update(pid="654321"), 402),
    (lambda e: e.update(bizContent="[1]"), 402),
    (lambda e: e.update(bizContent="{"), 4021),
])
def test_tdzn_verifier_refusals(mutate, code):
    env = json.loads(tdzn.encode_request("123456", "enterNotify", VECTOR_BIZ, TDZN_KEY, 1539571096))
    mutate(env)
    body = json.dumps(env, ensure_ascii=False).encode("utf-8")
    if code is None:
        tdzn.decode_request(body, TDZN_KEY, pid="123456")
        return
    with pytest.raises(tdzn.TdznError) as err:
        tdzn.decode_request(body, TDZN_KEY, pid="123456")
    assert err.value.code == code


def test_tdzn_replay_window():
    body = tdzn.encode_request("123456", "enterNotify", VECTOR_BIZ, TDZN_KEY, 1539571096)
    with pytest.raises(tdzn.TdznError) as err:
        tdzn.decode_request(body, TDZN_KEY, now=1539571096 + 301, window_s=300)
    assert err.value.code == 402


def test_tdzn_seed_004_request_example_is_read():
    """Seed 004's preLeaveNotify example sends timestamp as a string and bizContent as an object: both forms
    verify (bizContent signed as its compact JSON text, the keys in the order sent)."""
    biz = {"carSubType": 91, "carType": 9, "discountFee": 0, "enterTime": "2018-10-24 16:03:24",
           "leaveTime": "2018-10-24 16:08:35", "orderNo": "TC2018102416084073508", "outChannelid": "2",
           "paidFee": 1, "parkCode": "TEST/1P1", "payableFee": 1, "plateNum": "津L62538",
           "recordNo": "152_20181024160324000"}
    text = ('{"carSubType":91,"carType":9,"discountFee":0,"enterTime":"2018-10-24 16:03:24",'
            '"leaveTime":"2018-10-24 16:08:35","orderNo":"TC2018102416084073508","outChannelid":"2","paidFee":1,'
            '"parkCode":"TEST/1P1","payableFee":1,"plateNum":"津L62538","recordNo":"152_20181024160324000"}')
    signing = f"bizContent={text}&pid=123456&serviceName=preLeaveNotify&timestamp=1536547465&key={TDZN_KEY}"
    sign = hashlib.md5(signing.encode("utf-8")).hexdigest().upper()
    body = ('{\n"pid": "123456",\n"serviceName": "preLeaveNotify",\n"sign": "' + sign + '",\n'
            '"timestamp": "1536547465",\n"bizContent": ' + json.dumps(biz, ensure_ascii=False, indent=1) + "\n}")
    req = tdzn.decode_request(body.encode("utf-8"), TDZN_KEY)
    assert (req.service_name, req.timestamp, req.biz, req.biz_text) == ("preLeaveNotify", 1536547465, biz, text)
    assert tdzn.missing_fields("preLeaveNotify", req.biz) == ["sweepCode", "plateId"]  # the example omits them


def test_tdzn_seed_004_answer_example():
    raw = ('{\n"code": 200,\n"msg": "成功",\n"data": {\n"orderNo": "TC2018102416084073508",\n"payType": 3,\n'
           '"payTime": "2018-10-24 16:08:40"\n}\n}').encode("utf-8")
    ans = tdzn.parse_answer(raw)
    assert ans.ok and not ans.duplicate and ans.data == {"orderNo": "TC2018102416084073508", "payType": 3,
                                                         "payTime": "2018-10-24 16:08:40"}
    assert tdzn.parse_answer(b'{"code":"6006","msg":"dup","extra":1}').duplicate
    assert tdzn.answer(200, "成功", {"orderNo": "O1"}) == '{"code":200,"msg":"成功","data":{"orderNo":"O1"}}'.encode()
    assert tdzn.answer(401) == '{"code":401,"msg":"签名错误"}'.encode()


# ---------------------------------------------------------------- XFT (xft.md "Transport and signing")
# xft.md publishes the rule but no worked example, so the signing string is written out here by hand from the
# rule: every top-level field but sign (sign_type included), empties dropped, ASCII order, raw values, extra as
# its compact JSON text, then &key=.

XFT_KEY = "xft-test-key"


def test_xft_signing_string_follows_the_rule():
    fields = {"app_id": "APP1", "merchant_code": "M001", "store_code": "S01", "channel": "WECHAT",
              "out_trade_no": "in1_20240301080000_1", "amount": "700", "notify_url": "http://lane/xft?a=1&b=2",
              "extra": {"plate_number": "粤B12345", "trade_scene": "PARKING"}, "description": "",
              "sign_type": "MD5"}
    expected = ('amount=700&app_id=APP1&channel=WECHAT'
                '&extra={"plate_number":"粤B12345","trade_scene":"PARKING"}&merchant_code=M001'
                '&notify_url=http://lane/xft?a=1&b=2&out_trade_no=in1_20240301080000_1&sign_type=MD5'
                '&store_code=S01&key=xft-test-key')
    assert common.signing_string(fields, XFT_KEY) == expected
    body = xft.sign_fields(fields, XFT_KEY)
    assert body["sign"] == hashlib.md5(expected.encode("utf-8")).hexdigest().upper()
    assert "description" not in body and body["extra"] == '{"plate_number":"粤B12345","trade_scene":"PARKING"}'
    assert xft.signature_ok(body, XFT_KEY)
    assert xft.signature_ok(dict(body, sign=body["sign"].lower()), XFT_KEY)
    assert not xft.signature_ok(dict(body, amount="701"), XFT_KEY)
    assert not xft.signature_ok(dict(body, sign_type="SHA256"), XFT_KEY)  # sign_type is MD5 and signed
    assert not xft.signature_ok({k: v for k, v in body.items() if k != "sign_type"}, XFT_KEY)


def test_xft_notify_is_the_seed_field_list_signed():
    fields = xft.notify_fields(out_trade_no="T1", third_trade_no="4200001", store_code="S01", amount="700",
                               channel="WECHAT", state="00", failure_code="", failure_msg="", body="停车费")
    body = xft.sign_fields(fields, XFT_KEY)
    expected = ("amount=700&body=停车费&channel=WECHAT&out_trade_no=T1&sign_type=MD5&state=00"
                "&store_code=S01&third_trade_no=4200001&key=xft-test-key")
    assert body["sign"] == hashlib.md5(expected.encode("utf-8")).hexdigest().upper()
    assert set(body) == {"out_trade_no", "third_trade_no", "store_code", "amount", "channel", "state", "body",
                         "sign_type", "sign"}


def test_xft_reads_json_json_text_and_forms():
    signed = xft.sign_fields({"out_trade_no": "T1", "extra": {"plate_number": "粤B1"}}, XFT_KEY)
    as_json = json.dumps(signed, ensure_ascii=False).encode()
    assert xft.read_fields(as_json) == signed
    assert xft.read_fields(json.dumps(json.dumps(signed, ensure_ascii=False)).encode()) == signed  # "json 格式字符串"
    form = "&".join(f"{k}={v}" for k, v in signed.items()).replace("{", "%7B").replace('"', "%22")
    assert xft.read_fields(form.encode(), "application/x-www-form-urlencoded") == signed
    assert xft.nested(signed["extra"]) == {"plate_number": "粤B1"} and xft.nested(None) == {}
    for bad in (b"\xff", b"[1]", b"{nope"):
        with pytest.raises(xft.Unreadable):
            xft.read_fields(bad)
    assert xft.xft_time_ok("20240301080000") and not xft.xft_time_ok("2024-03-01 08:00:00")
    assert not xft.xft_time_ok("20240230080000") and not xft.xft_time_ok(20240301080000)
    assert xft.fen("700") == 700 and xft.fen(7) == 7
    for bad in ("7.00", "-1", "", "７", 7.0, True):
        with pytest.raises(xft.Unreadable):
            xft.fen(bad)


# ---------------------------------------------------------------- plates (lane-hardware.md)

def test_plate_key_per_the_document():
    assert common.plate_key(" 粤b 12345 ") == "粤B12345"
    assert common.plate_key("粤Ｂ１２３４５") == "粤B12345"  # full-width
    assert common.plate_key("粤BO12I5") == "粤B01215"  # O/I in the last five are 0/1
    assert common.plate_key("粤O12345") == "粤O12345"  # not before them


# ---------------------------------------------------------------- devices (lane-hardware.md)

def test_plate_line_example():
    # "粤B12345,blue,96": 粤 is D4 C1 in GBK, E7 B2 A4 in UTF-8
    assert plate_camera.plate_line("粤B12345", "blue", 96) == b"\xd4\xc1B12345,blue,96\r\n"
    assert plate_camera.plate_line("粤B12345", "blue", 96, encoding="utf-8") == b"\xe7\xb2\xa4B12345,blue,96\r\n"
    assert plate_camera.plate_line("粤B12345", "blue", 96, delimiter="|") == b"\xd4\xc1B12345|blue|96\r\n"


def test_crc16_modbus_check_value_and_a_hand_built_frame():
    assert led_board.crc16_modbus(b"123456789") == 0x4B37  # the CRC-16/MODBUS check value
    # show line 0, colour 2, "OK": DA 00, VR 64, PN FF FF, CMD 62, DL 04, DATA 00 02 4F 4B, CRC low byte first
    head = bytes.fromhex("0064ffff6204" "00024f4b")
    crc = led_board.crc16_modbus(head)
    frame = head + bytes([crc & 0xFF, crc >> 8])
    assert led_board.frame_bytes(0x62, b"\x00\x02OK") == frame
    board = led_board.LedBoard()
    assert board.feed(b"\x00\x64" + frame + frame[:-1] + bytes([frame[-1] ^ 1])) == [
        led_board.BoardOutput(0, 0x62, lines=(led_board.ShownLine(0, "OK", 2),))]
    assert board.stats.frames == 1 and board.stats.bad_crc >= 1 and board.lines == ["OK"]


def test_led_board_layouts():
    gbk = "粤B12345".encode("gbk")
    voice = "一路顺风".encode("gbk")
    multi = bytes([1, 0, 3, len(gbk)]) + gbk + bytes([1, len(voice)]) + voice
    board = led_board.LedBoard()
    for cmd, data in ((0x6E, multi), (0x05, bytes([24, 5, 17, 8, 30, 5, 5])), (0xE1, b"https://p/1"),
                      (0x30, b"\x01" + voice)):
        board.feed(led_board.frame_bytes(cmd, data))
    assert board.lines == ["粤B12345"] and board.screen[0].colour == 3
    assert board.speech == ["一路顺风", "一路顺风"] and board.qr == "https://p/1"
    assert board.clock == datetime(2024, 5, 17, 8, 30, 5)  # a Friday: weekday byte 5
    for cmd, data in ((0x05, bytes([24, 5, 17, 8, 30, 5, 1])), (0x6E, multi + b"x"), (0x62, b"\x00"),
                      (0xE1, b"")):
        board.feed(led_board.frame_bytes(cmd, data))
    assert [f.command for f, _ in board.rejected] == [0x05, 0x6E, 0x62, 0xE1]


def test_vzenith_push_has_the_documented_shape():
    doc = camera_http.plate_push("粤B12345", camera_http.color_type("green"), plate_id=7, when=1700000000.25,
                                 image=b"\xff\xd8", fragment=b"\xff\xd9")
    plate = doc["AlarmInfoPlate"]["result"]["PlateResult"]
    assert set(doc["AlarmInfoPlate"]) == {"channel", "deviceName", "ipaddr", "serialno", "result"}
    assert set(plate) == {"license", "colorType", "type", "confidence", "triggerType", "plateid", "isoffline",
                          "timeStamp", "imageFile", "imageFragmentFile"}
    assert plate["colorType"] == 5 and plate["timeStamp"] == {"Timeval": {"sec": 1700000000, "usec": 250000}}
    assert plate["imageFile"] == "/9g=" and plate["imageFragmentFile"] == "/9k="
    assert [camera_http.color_type(c) for c in ("unknown", "blue", "yellow", "white", "black", "green",
                                                "yellow-green", "蓝", "黄绿")] == [0, 1, 2, 3, 4, 5, 6, 1, 6]


def test_vzenith_reply_reading():
    open_ = camera_http.read_reply(b'{"Response_AlarmInfoPlate":{"info":"ok","serialData":'
                                   b'[{"serialChannel":0,"data":"AGT/","dataLen":3}]}}')
    assert open_ == camera_http.CameraCommands(True, ((0, b"\x00\x64\xff"),))
    assert not camera_http.read_reply(b'{"Response_AlarmInfoPlate":{"info":"no"}}').open_gate
    for bad in (b'{"Response_AlarmInfoPlate":{"info":"ok","serialData":[{"data":"AGT/","dataLen":4}]}}',
                b'{"Response_AlarmInfoPlate":{"info":"ok","serialData":[{"data":"***"}]}}',
                b'{"info":"ok"}', b"ok"):
        with pytest.raises(camera_http.ReplyError):
            camera_http.read_reply(bad)


def test_point_map_defaults_are_the_documents():
    p = PointMap()
    assert (p.open, p.close, p.stop) == (0, 1, 2)
    assert (p.arming, p.safety, p.up_limit, p.down_limit, p.anti_smash) == (0, 1, 2, 3, 4)


# ---------------------------------------------------------------- the daemon's codecs agree with the emulators'
# Each side signs, the other verifies, over varied fields. A disagreement here is settled by the document tests
# above, not by picking a side.

def _varied_fields(seed: int) -> dict:
    import random
    rnd = random.Random(seed)
    alphabet = "aZ09_-/:?&=+ 粤京停车费%{}\"\\"
    fields = {}
    for i in range(rnd.randint(1, 8)):
        name = rnd.choice(["amount", "app_id", "out_trade_no", "store_code", "x", "A", "b_c", "Z9"]) + str(i)
        kind = rnd.random()
        if kind < 0.6:
            fields[name] = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
        elif kind < 0.8:
            fields[name] = {"plate_number": "粤B12345", "n": rnd.randint(0, 99), "s": "a b"}
        else:
            fields[name] = str(rnd.randint(0, 10**6))
    return fields


@pytest.mark.parametrize("seed", range(40))
def test_xft_signers_agree_with_the_daemon(seed):
    from lanectl.providers.xft import codec as daemon_xft
    fields = _varied_fields(seed)
    ours = xft.sign_fields(fields, XFT_KEY)
    assert daemon_xft.verify(ours, XFT_KEY)
    theirs = daemon_xft.signed_fields(fields, XFT_KEY)
    assert xft.signature_ok(theirs, XFT_KEY) and theirs == ours


@pytest.mark.parametrize("seed", range(40))
def test_tdzn_envelopes_agree_with_the_daemon(seed):
    from lanectl.providers.tdzn import codec as daemon_tdzn
    biz = _varied_fields(seed)
    ts = 1700000000 + seed
    ours = tdzn.encode_request("123456", "payNotify", biz, TDZN_KEY, ts)
    assert daemon_tdzn.decode_request(ours, TDZN_KEY, pid="123456").biz == biz
    theirs = daemon_tdzn.encode_request("123456", "enterNotify", biz, TDZN_KEY, ts)
    assert tdzn.decode_request(theirs, TDZN_KEY, pid="123456").biz == biz
    assert theirs == tdzn.encode_request("123456", "enterNotify", biz, TDZN_KEY, ts)
