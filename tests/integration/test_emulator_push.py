"""POST /__control__/push on the XFT and tdzn emulators: a script makes the platform send any callback now,
signed by the emulator's own code. The lane end here verifies with the daemon's codecs, so these tests also
check that the emulators' independent signing agrees with lanectl's verifiers."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hil.emulators.tdzn import TdznPlatform
from hil.emulators.xft import XftPlatform, init_forever
from lanectl.providers.tdzn import codec as lane_tdzn
from lanectl.providers.xft import codec as lane_xft

XFT_KEY = "push-test-key"
PID, TDZN_KEY = "123456", "45DC1F8604F940829E75D6A76595C299"


class Lane:
    """A lane's callback endpoint in a few lines: verify with the daemon's codec, answer as the docs say."""

    def __init__(self) -> None:
        self.got: list[tuple[str, Any]] = []  # (verdict, parsed or error)

    async def xft(self, request: web.Request) -> web.Response:
        try:
            notify = lane_xft.parse_notify(await request.read(), XFT_KEY, content_type=request.content_type)
        except lane_xft.XftError as exc:
            self.got.append(("refused", type(exc).__name__))
            return web.Response(text="FAIL")
        self.got.append(("ok", notify))
        return web.Response(text="success")  # any case

    async def tdzn(self, request: web.Request) -> web.Response:
        try:
            req = lane_tdzn.decode_request(await request.read(), TDZN_KEY, pid=PID)
        except lane_tdzn.TdznError as exc:
            self.got.append(("refused", exc.code))
            return web.Response(body=lane_tdzn.answer(exc.code or 500), content_type="application/json")
        self.got.append(("ok", req))
        return web.Response(body=lane_tdzn.answer(200, data={"seen": req.service_name}),
                            content_type="application/json")


@pytest.fixture
async def lane():
    lane = Lane()
    app = web.Application()
    app.router.add_post("/xft", lane.xft)
    app.router.add_post("/tdzn", lane.tdzn)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    lane.url = str(server.make_url("/"))  # type: ignore[attr-defined]
    yield lane
    await server.close()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def control(session: aiohttp.ClientSession, port: int, spec: Any) -> tuple[int, dict[str, Any]]:
    async with session.post(f"http://127.0.0.1:{port}/__control__/push",
                            data=spec if isinstance(spec, bytes) else json.dumps(spec).encode()) as resp:
        return resp.status, await resp.json()


async def test_xft_push_any_notify(lane, session):
    platform = XftPlatform(key=XFT_KEY, notify_interval_s=0.01)
    await platform.start()
    try:
        fields = {"out_trade_no": "in1_20240301_1", "third_trade_no": "42001", "store_code": "S1",
                  "amount": "700", "channel": "WECHAT", "state": "00"}
        status, out = await control(session, platform.port, {"callback": "notify", "url": lane.url + "xft",
                                                             "fields": fields})
        assert status == 200 and out["acked"] and out["attempts"] == [{"status": 200, "answer": "success",
                                                                      "acked": True}]
        assert out["sent"]["sign_type"] == "MD5" and out["sent"]["amount"] == "700"
        verdict, notify = lane.got[-1]
        assert verdict == "ok" and notify.signed and notify.paid and notify.amount_fen == 700
        assert (notify.out_trade_no, notify.third_trade_no, notify.store_code) == ("in1_20240301_1", "42001", "S1")

        # a forged one (signed with another key) and an unsigned one: the lane refuses, the emulator retries
        status, out = await control(session, platform.port, {"url": lane.url + "xft", "fields": fields,
                                                             "signature": "bad", "attempts": 2})
        assert status == 200 and not out["acked"] and [a["answer"] for a in out["attempts"]] == ["FAIL", "FAIL"]
        assert lane.got[-2:] == [("refused", "BadSignature")] * 2
        status, out = await control(session, platform.port, {"url": lane.url + "xft", "fields": fields,
                                                             "signature": "none", "format": "form"})
        assert not out["acked"] and "sign" not in out["sent"] and lane.got[-1] == ("refused", "BadSignature")

        # an order of the platform's own: it fills in the rest and knows where to send
        platform.sign_plate("粤B12345")
        platform.script("粤B12345", init_forever())
        params = lane_xft.exit_params(
            app_id="A", merchant_code="M", store_code="S9", channel="WECHAT", out_trade_no="out1_1",
            amount_fen=1500, notify_url=lane.url + "xft", plate_number="粤B12345",
            start_time=datetime(2024, 3, 1, 8, tzinfo=timezone.utc),
            end_time=datetime(2024, 3, 1, 9, tzinfo=timezone.utc),
            zone=timezone.utc, client_ip="127.0.0.1")
        async with session.post(platform.url + "entrance/v2", data=lane_xft.encode_request(params, XFT_KEY),
                                headers={"Content-Type": "application/json"}) as resp:
            assert lane_xft.parse_exit_answer(await resp.read(), XFT_KEY, require_signature=True).is_allow == "INIT"
        status, out = await control(session, platform.port, {"fields": {"out_trade_no": "out1_1",
                                                                        "state": "01", "failure_code": "X"}})
        assert status == 200 and out["acked"] and out["url"] == lane.url + "xft"
        notify = lane.got[-1][1]
        assert (notify.state, notify.amount_fen, notify.store_code, notify.failure_code) == ("01", 1500, "S9", "X")

        for bad in (b"nope", {"callback": "refund"}, {"fields": {"out_trade_no": "unknown"}}, {"fields": "x"},
                    {"url": lane.url + "xft", "fields": {}, "signature": "maybe"}):
            status, out = await control(session, platform.port, bad)
            assert status == 400 and out["error"]
    finally:
        await platform.stop()


async def test_tdzn_push_any_request(lane, session):
    platform = TdznPlatform(pid=PID, key=TDZN_KEY, lane_url=lane.url + "tdzn", park_code="TEST/1P1")
    await platform.start()
    try:
        biz = {"orderNo": "TD1", "type": 2, "recordNo": "R1", "paidFee": 700, "payType": 1, "discountFee": 0}
        status, out = await control(session, platform.port, {"service": "payNotify", "biz": biz})
        assert status == 200 and out["answer"] == {"code": 200, "msg": "ok", "data": {"seen": "payNotify"}}
        verdict, req = lane.got[-1]
        assert verdict == "ok" and req.service_name == "payNotify"
        assert req.biz == {**biz, "parkCode": "TEST/1P1", "payTime": req.biz["payTime"]}
        assert out["sent"]["bizContent"] == req.biz_text and out["sent"]["sign"] == req.sign

        status, out = await control(session, platform.port, {"service": "remoteDev", "signature": "bad",
                                                             "biz": {"channelid": "2", "type": 2, "cmd": 1}})
        assert status == 200 and out["answer"]["code"] == 401 and lane.got[-1] == ("refused", 401)
        status, out = await control(session, platform.port, {"service": "queryParkFee", "signature": "none",
                                                             "biz": {"parkCode": "TEST/1P1", "payScene": 1}})
        assert out["answer"]["code"] == 400 and out["sent"]["sign"] == ""
        status, out = await control(session, platform.port, {"service": "queryParkFee", "age_s": 3600,
                                                             "biz": {"parkCode": "TEST/1P1", "plateNum": "粤B1"}})
        assert out["answer"]["code"] == 200 and out["sent"]["timestamp"] == lane.got[-1][1].timestamp
        assert [e.service for e in platform.exchanges(direction="out")] == [
            "payNotify", "remoteDev", "queryParkFee", "queryParkFee"]

        for bad in (b"[]", {"biz": {}}, {"service": "payNotify", "biz": []}):
            status, out = await control(session, platform.port, bad)
            assert status == 400 and out["error"]
    finally:
        await platform.stop()
