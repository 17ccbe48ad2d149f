"""Vzenith-style camera HTTP push: payloads written out as literal JSON from the published field list; every
malformed body is a VzenithError carrying the HTTP status to answer, never any other exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanectl.core.plates import COLORS
from lanectl.protocols.vzenith_http import (
    CameraCommands,
    Heartbeat,
    PlateResult,
    VzenithError,
    build_response,
    parse_push,
    parse_response,
)

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\xff\xd9"  # base64: /9j/4AAQSkZJRgD/2Q==
CROP = b"\xff\xd8\xff\xd9"  # base64: /9j/2Q==

PUSH = """{"AlarmInfoPlate": {"channel": 0, "deviceName": "IVS", "ipaddr": "192.168.1.100",
  "serialno": "e6a5c8d9-73e1a0b2",
  "result": {"PlateResult": {"license": "粤B12345", "colorType": 1, "type": 1, "confidence": 96,
    "triggerType": 8, "plateid": 1017, "isoffline": 0,
    "timeStamp": {"Timeval": {"sec": 1715905805, "usec": 250000}},
    "imageFile": "/9j/4AAQSkZJRgD/2Q==", "imageFragmentFile": "/9j/2Q=="}}}}"""

MINIMAL = '{"AlarmInfoPlate": {"result": {"PlateResult": {"license": "%s"}}}}'


def push(**plate_fields) -> bytes:
    """The full push with some PlateResult fields replaced (None removes the field)."""
    doc = json.loads(PUSH)
    pr = doc["AlarmInfoPlate"]["result"]["PlateResult"]
    for key, value in plate_fields.items():
        if value is None:
            pr.pop(key, None)
        else:
            pr[key] = value
    return json.dumps(doc, ensure_ascii=False).encode()


def error(body: bytes, **kw) -> VzenithError:
    with pytest.raises(VzenithError) as info:
        parse_push(body, **kw)
    assert type(info.value) is VzenithError and isinstance(info.value, ValueError)
    return info.value


# -- plate results --------------------------------------------------------------------------------------
def test_full_push():
    assert parse_push(PUSH.encode()) == PlateResult(
        plate="粤B12345", color="blue", confidence=96, license="粤B12345", color_type=1, plate_type=1,
        trigger_type=8, plate_id=1017, offline=False, channel=0, device_name="IVS", ipaddr="192.168.1.100",
        serialno="e6a5c8d9-73e1a0b2", time_sec=1715905805, time_usec=250000, image=JPEG, plate_image=CROP)


@pytest.mark.parametrize("code, colour", [(0, "unknown"), (1, "blue"), (2, "yellow"), (3, "white"), (4, "black"),
                                          (5, "green"), (6, "yellow-green"), (7, "unknown"), (99, "unknown"),
                                          (-1, "unknown")])
def test_every_color_type(code, colour):
    result = parse_push(push(colorType=code))
    assert (result.color, result.color_type) == (colour, code)
    assert result.color in COLORS


@pytest.mark.parametrize("license_", ["无牌车", "", "_无_", "无 牌 车", "NONE"])
def test_plateless_car(license_):
    result = parse_push((MINIMAL % license_).encode())
    assert (result.plate, result.license) == ("", license_)


@pytest.mark.parametrize("license_, plate", [("粤b 12345", "粤B12345"), ("粤B1234O", "粤B12340"),
                                             ("粤Ｂ１２３４５", "粤B12345"), ("粤·BD12345", "粤BD12345")])
def test_plate_is_normalized_at_the_edge(license_, plate):
    assert parse_push((MINIMAL % license_).encode()).plate == plate


@pytest.mark.parametrize("license_", ["HELLO", "粤12345", "粤B123", "-"])
def test_not_a_plate_shape(license_):
    assert "not a plate" in str(error((MINIMAL % license_).encode()))


def test_a_site_prefix_passes_only_where_the_site_names_it():
    body = (MINIMAL % "VA12345").encode()
    assert "not a plate" in str(error(body))  # not a default prefix (WJ, 使)
    assert parse_push(body, special_prefixes=("WJ", "使", "VA")).plate == "VA12345"


def test_only_the_license_is_required_and_null_is_missing():
    expected = PlateResult(plate="京A12345", color="unknown", confidence=0, license="京A12345")
    assert parse_push((MINIMAL % "京A12345").encode()) == expected
    body = ('{"AlarmInfoPlate": {"channel": null, "deviceName": null, "result": {"PlateResult": {'
            '"license": "京A12345", "colorType": null, "timeStamp": null, "imageFile": null, "imageFragmentFile": ""'
            '}}}}')
    assert parse_push(body.encode()) == expected
    assert parse_push(push(timeStamp={"Timeval": {}})).time_sec is None
    assert parse_push(push(timeStamp={})).time_sec is None


@pytest.mark.parametrize("body, message", [
    ('{"AlarmInfoPlate": {"result": {"PlateResult": {"colorType": 1}}}}', "license is missing"),
    ('{"AlarmInfoPlate": {"result": {"PlateResult": {"license": null}}}}', "license is missing"),
    ('{"AlarmInfoPlate": {"result": {}}}', "PlateResult is missing"),
    ('{"AlarmInfoPlate": {"result": null}}', "PlateResult is missing"),
    ('{"AlarmInfoPlate": {"deviceName": "IVS"}}', "PlateResult is missing"),
    ('{"AlarmInfoPlate": null}', "null"),
])
def test_missing_required_parts(body, message):
    err = error(body.encode())
    assert err.status == 400 and message in str(err)


@pytest.mark.parametrize("field, value", [
    ("license", 123), ("license", ["粤B12345"]), ("colorType", "1"), ("colorType", 1.0), ("confidence", True),
    ("confidence", 96.5), ("type", "1"), ("triggerType", {}), ("plateid", "1017"), ("isoffline", "0"),
    ("timeStamp", []), ("timeStamp", {"Timeval": "1715905805"}), ("timeStamp", {"Timeval": {"sec": "1"}}),
    ("timeStamp", {"Timeval": {"sec": 1, "usec": 0.5}}), ("imageFile", 5), ("imageFragmentFile", ["/9j/"]),
])
def test_wrong_types_in_plate_result(field, value):
    err = error(push(**{field: value}))
    assert err.status == 400 and (field in str(err) or "Timeval" in str(err))


@pytest.mark.parametrize("body", [
    '{"AlarmInfoPlate": []}', '{"AlarmInfoPlate": "x"}', '{"AlarmInfoPlate": {"result": "x"}}',
    '{"AlarmInfoPlate": {"result": {"PlateResult": []}}}',
    '{"AlarmInfoPlate": {"channel": "0", "result": {"PlateResult": {"license": "粤B12345"}}}}',
    '{"AlarmInfoPlate": {"serialno": 5, "result": {"PlateResult": {"license": "粤B12345"}}}}',
    '{"AlarmInfoPlate": {"deviceName": "\\ud800", "result": {"PlateResult": {"license": "粤B12345"}}}}',
])
def test_wrong_types_around_the_plate_result(body):
    assert error(body.encode()).status == 400


@pytest.mark.parametrize("value, offline", [(0, False), (1, True), (True, True), (False, False)])
def test_isoffline_marks_a_late_cached_recognition(value, offline):
    assert parse_push(push(isoffline=value)).offline is offline


@pytest.mark.parametrize("value, clamped", [(0, 0), (100, 100), (150, 100), (-5, 0)])
def test_confidence_is_clamped(value, clamped):
    assert parse_push(push(confidence=value)).confidence == clamped


# -- images ---------------------------------------------------------------------------------------------
def test_images_decode_and_tolerate_line_breaks():
    result = parse_push(push(imageFile="/9j/4AAQ\r\nSkZJRgD/\n2Q==", imageFragmentFile=None))
    assert (result.image, result.plate_image) == (JPEG, None)


@pytest.mark.parametrize("value", ["abc", "!!!!", "/9j/2Q=", "/9j/2Q===", "/9j=/2Q=", "/9j/2Qé=", "é"])
@pytest.mark.parametrize("field", ["imageFile", "imageFragmentFile"])
def test_bad_base64_is_400(field, value):
    err = error(push(**{field: value}))
    assert err.status == 400 and "base64" in str(err)


def test_image_size_bound_is_413_and_exact_size_passes():
    assert parse_push(push(), max_image_bytes=len(JPEG)).image == JPEG
    err = error(push(), max_image_bytes=len(JPEG) - 1)
    assert err.status == 413 and "imageFile" in str(err)
    err = error(push(imageFile=None), max_image_bytes=len(CROP) - 1)
    assert err.status == 413 and "imageFragmentFile" in str(err)
    big = "A" * 4_000_000  # 3 MB decoded: refused before it is decoded
    assert error(push(imageFile=big), max_image_bytes=1_000_000).status == 413
    assert len(parse_push(push(imageFile=big)).image) == 3_000_000  # no bound given: the adapter bounds the body


# -- heartbeats -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, expected", [
    ('{"heartbeat": {"serialno": "e6a5c8d9-73e1a0b2", "deviceName": "IVS", "countid": 7}}',
     Heartbeat("e6a5c8d9-73e1a0b2", "IVS")),
    ('{"heartbeat": 1}', Heartbeat()),
    ('{"AlarmGioIn": {"deviceName": "IVS", "ipaddr": "192.168.1.100", "serialno": "sn1",'
     ' "result": {"TriggerResult": {"source": 0, "value": 1}}}}', Heartbeat("sn1", "IVS")),
    ('{"AlarmInfoPlate": {"deviceName": "IVS", "serialno": "sn2", "heartbeat": 1}}', Heartbeat("sn2", "IVS")),
    ('{"type": "heartbeat", "serialno": "sn3", "deviceName": "gate-1"}', Heartbeat("sn3", "gate-1")),
    ('{"type": "HeartBeat"}', Heartbeat()),
])
def test_heartbeat_shapes(body, expected):
    assert parse_push(body.encode()) == expected


def test_a_plate_push_is_never_taken_for_a_heartbeat():
    body = '{"heartbeat": 1, "AlarmInfoPlate": {"heartbeat": 1, "result": {"PlateResult": {"license": "粤B12345"}}}}'
    assert parse_push(body.encode()).plate == "粤B12345"


@pytest.mark.parametrize("body", ['{"heartbeat": {"serialno": 5}}', '{"AlarmGioIn": 5}',
                                  '{"type": "heartbeat", "deviceName": []}', '{"type": "alarm"}', '{"type": 1}'])
def test_bad_heartbeats(body):
    assert error(body.encode()).status == 400


# -- bodies that are not pushes -------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    b"", b" ", b"not json", b"\xff\xfe\x00", b"{", b'{"AlarmInfoPlate": }', b"[1, 2]", b'"text"', b"null", b"42",
    b"{}", b'{"other": 1}', b"NaN", b'{"AlarmInfoPlate": {"result": {"PlateResult": {"license": "x"}}}} trailing',
    b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"AlarmInfoPlate": {"result": {"PlateResult": {"license": "\xe7\xb2\xa4B12345", "confidence": 1'
    + b"0" * 5000 + b"}}}}",  # more digits than int() takes
])
def test_non_push_bodies_are_400(body):
    assert error(body).status == 400


def test_gbk_body_and_utf8_bom_are_read():
    gbk_body = (MINIMAL % "粤B12345").encode("gbk")
    assert parse_push(gbk_body).plate == "粤B12345"
    assert parse_push(b"\xef\xbb\xbf" + (MINIMAL % "粤B12345").encode()).plate == "粤B12345"
    assert parse_push(bytearray(PUSH.encode())).plate == "粤B12345"


def test_a_body_that_is_not_bytes_is_an_error_too():
    assert error(PUSH).status == 400  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
FIELDS = ["license", "colorType", "type", "confidence", "triggerType", "plateid", "isoffline", "timeStamp",
          "imageFile", "imageFragmentFile"]


@settings(max_examples=500, deadline=None)
@given(body=st.binary(max_size=400))
def test_property_random_bytes_only_vzenith_errors(body):
    try:
        parse_push(body, max_image_bytes=1000)
    except VzenithError as err:
        assert err.status in (400, 413)


@settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4),
       outer=st.dictionaries(st.sampled_from(["channel", "deviceName", "ipaddr", "serialno", "result"]),
                             json_values, max_size=2))
def test_property_any_field_values_give_a_result_or_a_vzenith_error(changes, outer):
    doc = json.loads(PUSH)
    doc["AlarmInfoPlate"]["result"]["PlateResult"].update(changes)
    doc["AlarmInfoPlate"].update(outer)
    try:
        result = parse_push(json.dumps(doc).encode(), max_image_bytes=100)
    except VzenithError as err:
        assert err.status in (400, 413)
    else:
        assert isinstance(result, (PlateResult, Heartbeat))
        if isinstance(result, PlateResult):
            assert result.color in COLORS and 0 <= result.confidence <= 100


@settings(max_examples=300, deadline=None)
@given(doc=json_values)
def test_property_any_json_document_gives_a_result_or_a_vzenith_error(doc):
    try:
        parse_push(json.dumps(doc).encode())
    except VzenithError:
        pass


# -- the reply -----------------------------------------------------------------------------------------
LED_FRAME = bytes.fromhex("0064ffff62130002bbb6d3adb9e2c1d920d4c1423132333435a842")  # 欢迎光临 粤B12345


def test_response_open_gate_only_says_ok():
    assert build_response(open_gate=True) == b'{"Response_AlarmInfoPlate":{"info":"ok"}}'
    assert build_response() == b'{"Response_AlarmInfoPlate":{}}'
    assert build_response(open_gate=False) == b'{"Response_AlarmInfoPlate":{}}'


def test_response_with_serial_data():
    assert build_response(open_gate=True, serial_data=[(0, LED_FRAME)]) == (
        b'{"Response_AlarmInfoPlate":{"info":"ok","serialData":['
        b'{"serialChannel":0,"data":"AGT//2ITAAK7ttOtueLB2SDUwUIxMjM0NahC","dataLen":27}]}}')
    assert build_response(serial_data=[(0, b"\x01"), (1, b"\xff\xfe")]) == (
        b'{"Response_AlarmInfoPlate":{"serialData":['
        b'{"serialChannel":0,"data":"AQ==","dataLen":1},{"serialChannel":1,"data":"//4=","dataLen":2}]}}')


@pytest.mark.parametrize("kw", [
    {"open_gate": "yes"}, {"open_gate": 1}, {"open_gate": None}, {"serial_data": [(0, b"")]},
    {"serial_data": [(0, "text")]}, {"serial_data": [(-1, b"x")]}, {"serial_data": [(True, b"x")]},
    {"serial_data": [(0, b"x", 1)]}, {"serial_data": [b"x"]},
])
def test_response_refuses_bad_arguments(kw):
    with pytest.raises(VzenithError) as info:
        build_response(**kw)
    assert info.value.status == 500


def test_parse_response_reads_what_the_camera_acts_on():
    assert parse_response(build_response(open_gate=True, serial_data=[(0, LED_FRAME)])) == \
        CameraCommands(True, ((0, LED_FRAME),))
    assert parse_response(build_response()) == CameraCommands(False)
    for info in ('"no"', '"OK"', '"ok "', "true", "1", "null"):
        assert parse_response(('{"Response_AlarmInfoPlate":{"info":%s}}' % info).encode()).open_gate is False


@pytest.mark.parametrize("body", [
    b"", b"{}", b'{"Response_AlarmInfoPlate": []}', b'{"Response_AlarmInfoPlate": {"serialData": {}}}',
    b'{"Response_AlarmInfoPlate": {"serialData": [1]}}',
    b'{"Response_AlarmInfoPlate": {"serialData": [{"serialChannel": 0, "data": "AQ", "dataLen": 1}]}}',
    b'{"Response_AlarmInfoPlate": {"serialData": [{"serialChannel": 0, "data": "AQ==", "dataLen": 2}]}}',
    b'{"Response_AlarmInfoPlate": {"serialData": [{"serialChannel": 0, "data": "\xc3\xa9", "dataLen": 2}]}}',
])
def test_parse_response_refuses_what_a_camera_could_not_act_on(body):
    with pytest.raises(VzenithError):
        parse_response(body)
