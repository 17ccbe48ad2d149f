"""Issue 14, in process: the HTTP fuzzer's requests (hil/fuzz/messages.py — hostile values, huge numbers, deep
nesting, bad encodings, doubled keys; signed the way each platform signs, so they get past the signature) fed
straight to each platform's codec. Whatever the bytes, a codec raises only its own error type, which the inbound
handler answers in the platform's form; anything else would be a 500."""

from __future__ import annotations

import time
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings

from hil.fuzz.messages import Keys, bolink_requests, camera_requests, tdzn_requests, xft_requests
from lanectl.core.money import DEFAULT_MAX_FEN
from lanectl.providers.bolink import codec as bl
from lanectl.protocols import vzenith_http
from lanectl.providers.tdzn import codec as tdzn
from lanectl.providers.xft import codec as xft

KEYS = Keys(bolink_key="8403A41ED5EF20BC", bolink_union_id=200208, bolink_park="21835", xft_key="xft-test-key",
            xft_store="S1", tdzn_key="45DC1F8604F940829E75D6A76595C299", tdzn_pid="123456", tdzn_park="P1",
            channels={"in1": "E1", "out1": "A1"})
TZ = ZoneInfo("Asia/Shanghai")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(bolink_requests("/bolink", KEYS))
def test_bolink_callbacks_raise_only_bolink_errors(request):
    try:
        msg = bl.decode_signed(request.body, KEYS.bolink_key)
        bl.parse_callback(msg, max_fen=DEFAULT_MAX_FEN)
    except bl.BolinkError:
        pass


@FUZZ
@given(xft_requests("/xft/notify", KEYS))
def test_xft_notifies_raise_only_xft_errors(request):
    try:
        notify = xft.parse_notify(request.body, KEYS.xft_key, content_type=request.headers.get("Content-Type"),
                                  require_signature=True, max_fen=DEFAULT_MAX_FEN)
    except xft.XftError:
        return
    assert notify.amount_fen is None or 0 <= notify.amount_fen <= DEFAULT_MAX_FEN


@FUZZ
@given(tdzn_requests("/tdzn", KEYS))
def test_tdzn_requests_raise_only_tdzn_errors(request):
    try:
        req = tdzn.decode_request(request.body, KEYS.tdzn_key, now=time.time(), window_s=300, pid=KEYS.tdzn_pid)
        value = tdzn.parse_lane_request(req, TZ, max_fen=DEFAULT_MAX_FEN)
    except tdzn.TdznError as exc:
        assert len(exc.msg) <= 200
        return
    if isinstance(value, tdzn.PayNotify):
        assert 0 <= value.paid_fee_fen <= DEFAULT_MAX_FEN


@FUZZ
@given(camera_requests("/camera/in1", KEYS))
def test_camera_pushes_raise_only_vzenith_errors(request):
    try:
        vzenith_http.parse_push(request.body, max_image_bytes=1024 * 1024)
    except vzenith_http.VzenithError:
        pass
