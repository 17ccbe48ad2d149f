"""The XFT platform emulator over real HTTP on 127.0.0.1: the four calls signed and verified with the codec,
every exit script observable, and notifies POSTed to a tiny aiohttp "lane" that parses them with the codec
and answers SUCCESS / FAIL as scripted."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime
from typing import Callable
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hil.emulators import xft as emu
from hil.emulators.xft import XftPlatform
from lanectl.providers.xft import codec as xft

KEY = "k3y-for-tests"
TZ = ZoneInfo("Asia/Shanghai")
PLATE = "粤B12345"
COMMON = {"app_id": "wx8888", "merchant_code": "M100", "store_code": "S01", "channel": "WECHAT"}


class Lane:
    """The lane's notify endpoint. Answers the next scripted (status, text) once a notify parses, SUCCESS when
    the script is empty, and FAIL (xft.NOTIFY_NACK) to a notify the codec refuses."""

    def __init__(self) -> None:
        self.received: list[xft.Notify] = []
        self.refused: list[xft.XftError] = []
        self.content_types: list[str] = []
        self.script: list[tuple[int, str]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.content_types.append(request.content_type)
        try:
            notify = xft.parse_notify(await request.read(), KEY, content_type=request.content_type)
        except xft.XftError as exc:
            self.refused.append(exc)
            return web.Response(body=xft.NOTIFY_NACK)
        self.received.append(notify)
        if self.script:
            status, text = self.script.pop(0)
            return web.Response(status=status, text=text)
        return web.Response(body=xft.NOTIFY_ACK)


@pytest.fixture
async def lane():
    lane = Lane()
    app = web.Application()
    app.router.add_post("/xft/notify", lane.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    lane.url = str(server.make_url("/xft/notify"))
    yield lane
    await server.close()


@pytest.fixture
async def platform():
    p = XftPlatform(key=KEY, notify_interval_s=0.02, notify_attempts=4)
    p.sign_plate(PLATE)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def call(session, platform, name: str, params: dict, key: str = KEY, timeout: float = 2.0,
               raw: bytes | None = None) -> tuple[int, bytes]:
    body = raw if raw is not None else xft.encode_request(params, key)
    async with session.post(platform.url + xft.PATHS[name], data=body,
                            headers={"Content-Type": "application/json"},
                            timeout=aiohttp.ClientTimeout(total=timeout)) as r:
        return r.status, await r.read()


def exit_request(lane: Lane, plate: str = PLATE, out_trade_no: str = "L1_20240301100000_1",
                 amount_fen: int = 700) -> dict:
    return xft.exit_params(**COMMON, out_trade_no=out_trade_no, amount_fen=amount_fen, notify_url=lane.url,
                           plate_number=plate, start_time=datetime(2024, 3, 1, 8, tzinfo=TZ),
                           end_time=datetime(2024, 3, 1, 10, tzinfo=TZ), zone=TZ, client_ip="127.0.0.1")


async def leave(session, platform, lane, **kw) -> xft.ExitAnswer:
    status, body = await call(session, platform, "exit", exit_request(lane, **kw))
    assert status == 200
    return xft.parse_exit_answer(body, KEY, require_signature=True)


async def query(session, platform, out_trade_no: str = "L1_20240301100000_1") -> xft.ChargeState:
    params = xft.charge_query_params(app_id="wx8888", merchant_code="M100", out_trade_no=out_trade_no)
    status, body = await call(session, platform, "charge_query", params)
    assert status == 200
    return xft.parse_charge_query(body, KEY, require_signature=True, expect_out_trade_no=out_trade_no)


async def until(cond: Callable[[], bool], timeout: float = 1.5) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------------------------------ relation, entry

async def test_signed_relation_answers_from_the_table(platform, session):
    platform.sign_plate("京A88888", "京A99999", channel="WECHAT")
    rel = lambda plate, channel="WECHAT": xft.signed_relation_params(**{**COMMON, "channel": channel},  # noqa: E731
                                                                     plate_number=plate, sub_openid="oSub1")
    r = xft.parse_signed_relation((await call(session, platform, "signed_relation", rel("京A99999")))[1], KEY,
                                  require_signature=True)
    assert (r.sign_flag, r.plates, r.channel, r.signed) == (True, ("京A88888", "京A99999"), "WECHAT", True)
    assert r.credential and "path" in r.credential
    r = xft.parse_signed_relation((await call(session, platform, "signed_relation", rel("沪C00001")))[1], KEY)
    assert r.sign_flag is False and r.failure_code == ""
    r = xft.parse_signed_relation((await call(session, platform, "signed_relation", rel(PLATE, "ALIPAY")))[1], KEY)
    assert r.sign_flag is False  # signed up on WECHAT only
    platform.unsign_plate(PLATE)
    r = xft.parse_signed_relation((await call(session, platform, "signed_relation", rel(PLATE)))[1], KEY)
    assert r.sign_flag is False
    assert platform.calls["signed_relation"] == 4


async def test_require_sub_openid_knob(platform, session):
    """Seed 000: with channel WECHAT, sub_openid and the plate are required. Off by default (a lane seldom knows
    the driver's sub_openid); on, a query without it is PARAM_ERROR and nothing reads as signed."""
    platform.sign_plate(PLATE)
    platform.require_sub_openid = True
    # The daemon no longer builds this request (it asks WECHAT lanes by plate alone): signed by the emulator's own
    # code, as a client that does send channel WECHAT without a sub_openid would.
    body = emu.sign_fields({**COMMON, "extra": {"trade_scene": "PARKING", "plate_number": PLATE}}, KEY)
    raw = json.dumps(body, ensure_ascii=False).encode()
    r = xft.parse_signed_relation((await call(session, platform, "signed_relation", {}, raw=raw))[1], KEY,
                                  require_signature=True)
    assert (r.sign_flag, r.failure_code) == (False, "PARAM_ERROR") and "sub_openid" in r.failure_msg
    params = xft.signed_relation_params(**COMMON, plate_number=PLATE, sub_openid="oSub123")
    r = xft.parse_signed_relation((await call(session, platform, "signed_relation", params))[1], KEY,
                                  require_signature=True)
    assert r.sign_flag is True


async def test_entry_is_recorded_once_per_out_trade_no(platform, session):
    params = xft.entry_params(**COMMON, out_trade_no="L1_20240301080000_1", plate_number=PLATE,
                              start_time=datetime(2024, 3, 1, 8, tzinfo=TZ), zone=TZ)
    for _ in range(2):
        a = xft.parse_entry_answer((await call(session, platform, "entry", params))[1], KEY, require_signature=True)
        assert (a.ok, a.plate_number, a.store_code) == (True, PLATE, "S01")
    assert list(platform.entries) == ["L1_20240301080000_1"] and platform.entry_repeats == 1
    assert platform.entries["L1_20240301080000_1"].start_time == "20240301080000"


async def test_times_must_be_the_documents_format(platform, session, lane):
    """Seed 000 writes start_time (and the exit's times) as yyyyMMddHHmmss: anything else is PARAM_ERROR."""
    params = xft.entry_params(**COMMON, out_trade_no="L1_2", plate_number=PLATE,
                              start_time=datetime(2024, 3, 1, 8, tzinfo=TZ), zone=TZ)
    params["extra"] = {**params["extra"], "start_time": "2024-03-01 08:00:00"}
    a = xft.parse_entry_answer((await call(session, platform, "entry", params))[1], KEY, require_signature=True)
    assert (a.ok, a.failure_code) == (False, "PARAM_ERROR") and platform.entries == {}
    platform.sign_plate(PLATE)
    params = exit_request(lane)
    params["extra"] = {**params["extra"], "end_time": "202403011000"}
    status, body = await call(session, platform, "exit", params)
    answer = xft.parse_exit_answer(body, KEY, require_signature=True)
    assert (answer.is_allow, answer.failure_code) == ("FAIL", "PARAM_ERROR") and platform.orders == {}


# ------------------------------------------------------------------------------------------ signatures

REQUESTS = {
    "signed_relation": lambda lane: xft.signed_relation_params(**COMMON, plate_number=PLATE, sub_openid="oSub1"),
    "entry": lambda lane: xft.entry_params(**COMMON, out_trade_no="L1_1", plate_number=PLATE,
                                           start_time=datetime(2024, 3, 1, 8, tzinfo=TZ), zone=TZ),
    "exit": exit_request,
    "charge_query": lambda lane: xft.charge_query_params(app_id="wx8888", merchant_code="M100",
                                                         out_trade_no="L1_20240301100000_1"),
}


@pytest.mark.parametrize("name", list(REQUESTS))
async def test_wrong_signature_is_refused_with_sign_error(platform, session, lane, name):
    status, body = await call(session, platform, name, REQUESTS[name](lane), key="not-the-key")
    assert status == 200
    fields, _ = xft.decode_fields(body)
    assert fields["failure_code"] == "SIGN_ERROR" and xft.verify(fields, KEY)  # refusals are signed too
    assert fields.get("sign_flag", "0") == "0" and fields.get("state", "0") == "0"
    assert fields.get("is_allow", "FAIL") == "FAIL"
    assert platform.sign_errors == 1 and not platform.orders and not platform.entries


async def test_unsigned_or_other_sign_type_is_a_sign_error(platform, session, lane):
    fields = xft.signed_fields(exit_request(lane), KEY)
    for bad in ({k: v for k, v in fields.items() if k != "sign"},
                xft.signed_fields({**exit_request(lane), "sign_type": "MD5"}, KEY) | {"sign_type": "RSA"}):
        _, body = await call(session, platform, "exit", {}, raw=xft.compact_json(bad).encode())
        a = xft.parse_exit_answer(body, KEY)
        assert (a.is_allow, a.failure_code) == ("FAIL", "SIGN_ERROR")
    assert platform.sign_errors == 2 and not platform.orders


async def test_unreadable_request(platform, session):
    _, body = await call(session, platform, "exit", {}, raw=b"not json at all {")
    assert xft.parse_exit_answer(body, KEY).failure_code == "PARAM_ERROR"
    platform.answer_style = "wrapped"
    _, body = await call(session, platform, "exit", {}, raw=b"{")
    with pytest.raises(xft.XftRefused) as e:
        xft.parse_exit_answer(body, KEY)
    assert e.value.code == "4000" and platform.param_errors == 2


@pytest.mark.parametrize("style", ["flat", "wrapped", "wrapped_text"])
async def test_answer_styles_parse_and_verify(platform, session, lane, style):
    platform.answer_style = style
    a = await leave(session, platform, lane)
    assert a.allowed and a.signed
    assert (await query(session, platform)).paid


@pytest.mark.parametrize("mode,signed", [("none", False), ("bad", None)])
async def test_answer_signature_knob(platform, session, lane, mode, signed):
    platform.answer_signature = mode
    _, body = await call(session, platform, "exit", exit_request(lane))
    if signed is None:
        with pytest.raises(xft.BadSignature):
            xft.parse_exit_answer(body, KEY)
    else:
        assert xft.parse_exit_answer(body, KEY).signed is False
        with pytest.raises(xft.BadSignature):
            xft.parse_exit_answer(body, KEY, require_signature=True)


# ------------------------------------------------------------------------------------------ exit scripts

async def test_success(platform, session, lane):
    a = await leave(session, platform, lane)
    assert (a.is_allow, a.out_trade_no, a.third_trade_no) == ("SUCCESS", "L1_20240301100000_1", "")  # WeChat: async
    await platform.idle()
    [n] = lane.received
    assert n.paid and n.amount_fen == 700 and n.out_trade_no == "L1_20240301100000_1" and n.third_trade_no
    assert [x.acked for x in platform.notifies] == [True]
    q = await query(session, platform)
    assert q.paid and q.amount_fen == 700 and q.third_trade_no == n.third_trade_no


async def test_fail(platform, session, lane):
    platform.script(PLATE, emu.fail("NOTENOUGH", "余额不足"))
    a = await leave(session, platform, lane)
    assert (a.is_allow, a.failure_code, a.failure_msg) == ("FAIL", "NOTENOUGH", "余额不足")
    await platform.idle()
    assert not lane.received and not platform.notifies
    assert (await query(session, platform)).failed


async def test_unsigned_plate_fails_not_signed_without_an_order(platform, session, lane):
    a = await leave(session, platform, lane, plate="沪C00001")
    assert (a.is_allow, a.failure_code) == ("FAIL", "NOT_SIGNED")
    q = await query(session, platform)
    assert q.pending and q.failure_code == "ORDER_NOT_EXIST" and platform.not_signed == 1


@pytest.mark.parametrize("state", ["00", "01"])
async def test_init_then_settles_with_query_and_notify(platform, session, lane, state):
    platform.script(PLATE, emu.init_then(state, after_s=0.2))
    t0 = time.monotonic()
    a = await leave(session, platform, lane)
    assert a.is_allow == "INIT"
    q = await query(session, platform)
    assert q.state == "09" and q.pending
    await until(lambda: bool(lane.received))
    assert time.monotonic() - t0 >= 0.2
    [n] = lane.received
    assert n.state == state and (await query(session, platform)).state == state
    if state == "01":
        assert n.failed and n.failure_code == "PAY_FAIL"


async def test_init_forever(platform, session, lane):
    platform.script(PLATE, emu.init_forever())
    assert (await leave(session, platform, lane)).is_allow == "INIT"
    await asyncio.sleep(0.15)
    assert (await query(session, platform)).state == "09"
    assert not lane.received and not platform.notifies


async def test_duplicate_notify(platform, session, lane):
    platform.script(PLATE, emu.duplicate_notify(copies=3))
    assert (await leave(session, platform, lane)).is_allow == "INIT"
    await platform.idle()
    assert len(lane.received) == 3 and len(set(lane.received)) == 1  # the very same notify, three times
    assert [(x.copy, x.acked) for x in platform.notifies] == [(1, True), (2, True), (3, True)]


async def test_out_of_order_notify_arrives_before_the_answer(platform, session, lane):
    platform.script(PLATE, emu.out_of_order_notify())
    status, body = await call(session, platform, "exit", exit_request(lane))
    assert len(lane.received) == 1 and lane.received[0].paid  # already in when the answer comes
    assert xft.parse_exit_answer(body, KEY).is_allow == "INIT"
    assert (await query(session, platform)).paid


@pytest.mark.parametrize("created", [False, True])
async def test_http_500(platform, session, lane, created):
    platform.script(PLATE, emu.http_500(order_created=created))
    status, body = await call(session, platform, "exit", exit_request(lane))
    assert status == 500 and platform.http_errors == 1
    with pytest.raises(xft.XftError):
        xft.parse_exit_answer(body, KEY)
    await platform.idle()
    q = await query(session, platform)
    if created:  # charged behind the error: only query / notify tell the lane
        assert q.paid and len(lane.received) == 1
    else:
        assert q.failure_code == "ORDER_NOT_EXIST" and not lane.received


async def test_slow_answer_times_the_lane_out_and_stop_does_not_wait_for_it(platform, session, lane):
    platform.script(PLATE, emu.slow(0.3))
    t0 = time.monotonic()
    await leave(session, platform, lane)
    assert time.monotonic() - t0 >= 0.3
    platform.script(PLATE, emu.slow(5.0))
    with pytest.raises(asyncio.TimeoutError):
        await call(session, platform, "exit", exit_request(lane, out_trade_no="L1_2"), timeout=0.1)
    t0 = time.monotonic()
    await platform.stop()
    assert time.monotonic() - t0 < 1.0


async def test_bad_signature_notify_is_refused_and_retried(platform, session, lane):
    platform.script(PLATE, emu.bad_signature_notify())
    assert (await leave(session, platform, lane)).is_allow == "INIT"
    await platform.idle()
    assert not lane.received and len(lane.refused) == 4
    assert all(isinstance(e, xft.BadSignature) for e in lane.refused)
    assert [(x.attempt, x.answer, x.acked) for x in platform.notifies] == [(i, "FAIL", False) for i in range(1, 5)]
    assert (await query(session, platform)).paid  # the truth is in the (signed) query


async def test_notify_for_another_order(platform, session, lane):
    platform.script(PLATE, emu.notify_other_order())
    assert (await leave(session, platform, lane)).is_allow == "INIT"
    await platform.idle()
    [n] = lane.received
    assert n.paid and n.signed and n.out_trade_no != "L1_20240301100000_1"
    assert (await query(session, platform)).state == "09"


async def test_notify_retries_until_success_any_case(platform, session, lane):
    lane.script = [(200, "FAIL"), (500, "oops"), (200, " success\n")]
    await leave(session, platform, lane)
    await platform.idle()
    assert [(x.status, x.acked) for x in platform.notifies] == [(200, False), (500, False), (200, True)]
    assert len(lane.received) == 3


async def test_notify_gives_up_after_the_attempts_and_survives_a_dead_lane(platform, session, lane):
    dead = "http://127.0.0.1:9/xft/notify"  # discard port: nothing listens
    params = exit_request(lane) | {"notify_url": dead}
    status, _ = await call(session, platform, "exit", params)
    await platform.idle()
    assert status == 200 and len(platform.notifies) == 4
    assert all(x.status is None and not x.acked for x in platform.notifies)


async def test_form_notifies(platform, session, lane):
    platform.notify_format = "form"
    await leave(session, platform, lane)
    await platform.idle()
    assert lane.content_types == ["application/x-www-form-urlencoded"] and lane.received[0].paid


async def test_repeated_exit_is_idempotent(platform, session, lane):
    platform.script(PLATE, emu.init_forever())
    assert (await leave(session, platform, lane)).is_allow == "INIT"
    assert (await leave(session, platform, lane)).is_allow == "INIT"
    platform.orders["L1_20240301100000_1"].state = "00"
    assert (await leave(session, platform, lane)).is_allow == "SUCCESS"
    a = await leave(session, platform, lane, amount_fen=800)
    assert (a.is_allow, a.failure_code) == ("FAIL", "OUT_TRADE_NO_USED")
    assert len(platform.orders) == 1 and platform.exit_repeats == 3


async def test_runs_standalone():
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hil.emulators.xft", "--port", "0",
                                                "--key", KEY, "--sign-plate", PLATE,
                                                stdout=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert b"/parking/aggegation/" in line
    finally:
        proc.terminate()
        await proc.wait()
