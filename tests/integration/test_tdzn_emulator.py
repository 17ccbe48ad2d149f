"""The tdzn platform emulator over real aiohttp on 127.0.0.1: what the lane sends is verified and answered like the
platform would; every preLeave script, payNotify retry, duplicate and replay is observable from a tiny lane."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from typing import Any, Optional
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hil.emulators import tdzn as emu
from lanectl.providers.tdzn import codec as tdzn
from lanectl.providers.tdzn.codec import TdznError

TZ = ZoneInfo("Asia/Shanghai")
PID, KEY, PARK = "123456", "45DC1F8604F940829E75D6A76595C299", "TEST/1P1"
pytestmark = pytest.mark.timeout(10)


class FakeLane:
    """The lane's tdzn endpoint: verifies like a lane should (window against its own clock + `skew`), books each
    payNotify orderNo once (6006 on a repeat), and answers the next scripted step first when there is one."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, Optional[tdzn.Request], int]] = []  # (body, request, code answered)
        self.script: list[Any] = []  # an int tdzn code, "http500", or seconds (float) to stall
        self.booked: dict[str, tdzn.PayNotify] = {}
        self.skew = 0.0
        self.url = ""

    def of(self, service: str) -> list[tdzn.Request]:
        return [r for _, r, _ in self.requests if r is not None and r.service_name == service]

    def answered(self, service: Optional[str] = None) -> list[int]:
        return [c for _, r, c in self.requests if service is None or (r is not None and r.service_name == service)]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        step = self.script.pop(0) if self.script else None
        if isinstance(step, float):
            await asyncio.sleep(step)
        if step == "http500":
            self.requests.append((body, None, 500))
            return web.Response(status=500, text="boom")
        try:
            req = tdzn.decode_request(body, KEY, now=time.time() + self.skew, pid=PID)
        except TdznError as e:
            self.requests.append((body, None, e.code))
            return web.Response(body=tdzn.answer(e.code, str(e)), content_type="application/json")
        code, data = (step, None) if isinstance(step, int) else self._serve(req)
        self.requests.append((body, req, code))
        return web.Response(body=tdzn.answer(code, data=data), content_type="application/json")

    def _serve(self, req: tdzn.Request) -> tuple[int, Optional[dict]]:
        try:
            value = tdzn.parse_lane_request(req, TZ)
        except TdznError as e:
            return e.code, None
        if isinstance(value, tdzn.PayNotify):
            if value.order_no in self.booked:
                return 6006, None
            self.booked[value.order_no] = value
            return 200, None
        if isinstance(value, tdzn.QueryParkFee):
            t_in = datetime(2024, 3, 1, 8, tzinfo=TZ)
            return 200, tdzn.query_park_fee_answer(record_no="L1_20240301080000_1", plate=value.plate,
                                                   enter_time=t_in, leave_time=t_in + timedelta(hours=2), tz=TZ,
                                                   payable_fee=700, discount_fee=0, paid_fee=700)
        return 200, None


@pytest.fixture
async def lane():
    lane = FakeLane()
    app = web.Application()
    app.router.add_post("/tdzn", lane.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    lane.url = str(server.make_url("/tdzn"))
    yield lane
    await server.close()


@pytest.fixture
async def platform(lane):
    p = emu.TdznPlatform(pid=PID, key=KEY, lane_url=lane.url, park_code=PARK, notify_interval_s=0.02,
                         notify_attempts=4, lane_timeout_s=2.0)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
        yield s


T_IN = datetime(2024, 3, 1, 8, 0, tzinfo=TZ)


def enter_biz(record_no: str = "R1", plate: str = "粤B12345") -> dict:
    return tdzn.enter_notify(park_code=PARK, record_no=record_no, plate=plate, entrance="东门", enter_time=T_IN, tz=TZ,
                             remain_park_num=9, total_park_num=10)


def pre_leave_biz(record_no: str = "R1", plate: str = "粤B12345", order_no: Optional[str] = "O1",
                  paid_fee: int = 700) -> dict:
    return tdzn.pre_leave_notify(park_code=PARK, record_no=record_no, plate=plate, plate_id="p1", enter_time=T_IN,
                                 leave_time=T_IN + timedelta(hours=2), tz=TZ, payable_fee=paid_fee, discount_fee=0,
                                 paid_fee=paid_fee, out_channel_id="2", order_no=order_no)


async def send(session, platform, service: str, biz: dict, *, key: str = KEY, ts: Optional[int] = None,
               timeout: Optional[float] = None) -> tuple[int, bytes]:
    body = tdzn.encode_request(PID, service, biz, key, int(time.time()) if ts is None else ts)
    kw = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout else {}
    async with session.post(platform.url, data=body, **kw) as resp:
        return resp.status, await resp.read()


async def code_of(session, platform, service: str, biz: dict, **kw) -> int:
    status, raw = await send(session, platform, service, biz, **kw)
    assert status == 200
    return tdzn.parse_answer(raw).code


async def enter(session, platform, record_no: str = "R1", plate: str = "粤B12345") -> None:
    assert await code_of(session, platform, "enterNotify", enter_biz(record_no, plate)) == 200


async def until(cond, timeout: float = 1.5) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


# ---------------------------------------------------------------- lane → platform: verification, idempotency

async def test_enter_leave_preenter_are_idempotent_by_record(platform, session):
    assert platform.url.endswith("/api") and platform.port
    await enter(session, platform)
    assert await code_of(session, platform, "enterNotify", enter_biz()) == 405
    assert platform.entries["R1"]["plateNum"] == "粤B12345"
    leave = tdzn.leave_notify(park_code=PARK, record_no="R1", plate="粤B12345", exit_desc="西门", tz=TZ,
                              leave_time=T_IN + timedelta(hours=1), remain_park_num=10, total_park_num=10,
                              payable_fee=700, mobile_fee=700,
                              pay_orders=[tdzn.PayOrder("O1", 700, 1, T_IN + timedelta(minutes=59))])
    assert await code_of(session, platform, "leaveNotify", leave) == 200
    assert await code_of(session, platform, "leaveNotify", leave) == 405
    assert await code_of(session, platform, "leaveNotify", dict(leave, recordNo="R9")) == 6003
    pre = tdzn.pre_enter_notify(park_code=PARK, record_no="R2", plate="粤B2", entrance="东门", enter_time=T_IN, tz=TZ)
    assert [await code_of(session, platform, "preEnterNotify", pre) for _ in range(2)] == [200, 405]
    assert platform.codes("enterNotify") == [200, 405]
    assert platform.counters["in:leaveNotify:405"] == 1


async def test_entry_not_required_when_configured(platform, session):
    platform.require_entry = False
    assert await code_of(session, platform, "preLeaveNotify", pre_leave_biz()) == 200


async def test_refusals_carry_the_platform_codes(platform, session):
    assert await code_of(session, platform, "enterNotify", enter_biz(), key="wrong") == 401
    assert await code_of(session, platform, "enterNotify", enter_biz(), ts=int(time.time()) - 600) == 402
    assert await code_of(session, platform, "enterNotify", enter_biz(), ts=int(time.time()) + 600) == 402
    assert await code_of(session, platform, "fixedCarNotify", enter_biz()) == 404
    biz = enter_biz()
    del biz["entrance"]
    assert await code_of(session, platform, "enterNotify", biz) == 400
    assert await code_of(session, platform, "enterNotify", dict(enter_biz(), parkCode="OTHER")) == 402
    assert await code_of(session, platform, "enterNotify", dict(enter_biz(), remainParkNum="9")) == 402
    # the dictionaries: a subtype of another class, an unknown class
    assert await code_of(session, platform, "enterNotify", dict(enter_biz(), carType=9, carSubType=81)) == 402
    assert await code_of(session, platform, "enterNotify", dict(enter_biz(), carType=3, carSubType=31)) == 402
    assert await code_of(session, platform, "enterNotify", dict(enter_biz(), enterTime="2024-03-01T08:00")) == 402
    # a sloppy sender's float money (our encoder refuses floats, so sign it by hand)
    biz_text = json.dumps(dict(pre_leave_biz(), paidFee=7.5), ensure_ascii=False, separators=(",", ":"))
    env = {"pid": PID, "serviceName": "preLeaveNotify", "timestamp": int(time.time()), "bizContent": biz_text}
    body = json.dumps(dict(env, sign=tdzn.sign(env, KEY)), ensure_ascii=False).encode()
    await enter(session, platform)
    async with session.post(platform.url, data=body) as resp:
        assert tdzn.parse_answer(await resp.read()).code == 402
    async with session.post(platform.url, data=b"{not json") as resp:
        assert tdzn.parse_answer(await resp.read()).code == 4021
    body = tdzn.encode_request("999", "enterNotify", enter_biz(), KEY, int(time.time()))
    async with session.post(platform.url, data=body) as resp:
        assert tdzn.parse_answer(await resp.read()).code == 402
    platform.available = False
    status, _ = await send(session, platform, "enterNotify", enter_biz())
    assert status == 503
    assert list(platform.entries) == ["R1"] and platform.bills == {}  # nothing refused was kept


# ---------------------------------------------------------------- preLeaveNotify scripts

async def test_pay_at_preleave_answers_200_with_the_order_and_replays_it_on_a_repeat(platform, session):
    await enter(session, platform)
    status, raw = await send(session, platform, "preLeaveNotify", pre_leave_biz())
    r = tdzn.parse_pre_leave_answer(raw, TZ)
    assert status == 200 and r.paid and (r.order_no, r.pay_type) == ("O1", 3)
    assert r.pay_at is not None and abs(r.pay_at.timestamp() - time.time()) < 5
    assert platform.bills["O1"].paid
    _, again = await send(session, platform, "preLeaveNotify", pre_leave_biz())
    assert again == raw  # the charge happened: the same answer, not a second charge
    platform.replay_paid_preleave = False
    assert await code_of(session, platform, "preLeaveNotify", pre_leave_biz()) == 405


async def test_pre_leave_without_entry_is_6003_and_may_retry_after_it(platform, session):
    assert await code_of(session, platform, "preLeaveNotify", pre_leave_biz()) == 6003
    await enter(session, platform)
    assert await code_of(session, platform, "preLeaveNotify", pre_leave_biz()) == 200


async def test_bill_without_order_no_is_keyed_by_record_and_gets_a_platform_order(platform, session):
    await enter(session, platform)
    r = tdzn.parse_pre_leave_answer((await send(session, platform, "preLeaveNotify", pre_leave_biz(order_no=None)))[1])
    assert r.paid and r.order_no.startswith("TD") and platform.bills["R1"].order_no == r.order_no


async def test_pay_later_notifies_the_lane_signed_and_bound_to_the_record(platform, lane, session):
    platform.script("粤B12345", emu.pay_later(0.05, type=2, pay_type=2))
    await enter(session, platform)
    status, raw = await send(session, platform, "preLeaveNotify", pre_leave_biz())
    r = tdzn.parse_pre_leave_answer(raw)
    assert status == 200 and not r.paid and r.code == 0
    assert lane.requests == []  # not before after_s
    await platform.idle()
    (notify,) = lane.of("payNotify")
    assert tdzn.decode_request(lane.requests[0][0], KEY).sign == notify.sign  # signed with the shared key
    assert list(notify.biz) == ["parkCode", "orderNo", "payTime", "type", "outChannelid", "recordNo", "paidFee",
                                "payType", "discountFee"]
    assert lane.booked["O1"] == tdzn.PayNotify(PARK, "O1", lane.booked["O1"].pay_time, notify.biz["payTime"], 2, "2",
                                               "R1", 700, 2, 0)
    assert platform.codes("payNotify", "out") == [200]


async def test_never_pay_answers_not_paid_and_stays_silent(platform, lane, session):
    platform.default = emu.never_pay()
    await enter(session, platform)
    assert await code_of(session, platform, "preLeaveNotify", pre_leave_biz()) == 0
    await asyncio.sleep(0.1)
    await platform.idle()
    assert lane.requests == [] and not platform.bills["O1"].paid
    assert await code_of(session, platform, "preLeaveNotify", pre_leave_biz()) == 405  # same bill again


async def test_pay_notify_retries_until_the_lane_says_done(platform, lane):
    lane.script = ["http500", 6005]  # HTTP 500, a refusal, then the lane books it
    ans = await platform.pay_notify(order_no="O7", paid_fee=500, record_no="R7")
    assert ans is not None and ans.ok
    assert lane.answered() == [500, 6005, 200]
    assert platform.codes("payNotify", "out") == [None, 6005, 200]
    assert all(json.loads(json.loads(b)["bizContent"])["orderNo"] == "O7" for b, _, _ in lane.requests)
    # a lane that never agrees: notify_attempts tries, then the last answer
    lane.script = [6005] * 10
    assert (await platform.pay_notify(order_no="O8", paid_fee=1, record_no="R8")).code == 6005
    assert lane.answered()[3:] == [6005] * 4
    # 6006 (already booked) ends the retries too
    lane.script = [6006]
    assert (await platform.pay_notify(order_no="O7", paid_fee=500, record_no="R7")).duplicate
    assert len(lane.requests) == 8


async def test_duplicate_notify_sends_the_same_payment_twice(platform, lane, session):
    platform.script("粤B12345", emu.duplicate_notify())
    await enter(session, platform)
    assert await code_of(session, platform, "preLeaveNotify", pre_leave_biz()) == 0
    await platform.idle()
    notifies = lane.of("payNotify")
    assert [n.biz["orderNo"] for n in notifies] == ["O1", "O1"]
    assert lane.answered("payNotify") == [200, 6006] and len(lane.booked) == 1


async def test_replayed_timestamp_resends_the_old_bytes(platform, lane, session):
    platform.script("粤B12345", emu.replayed_timestamp(replay_after_s=0.2))
    await enter(session, platform)
    await send(session, platform, "preLeaveNotify", pre_leave_biz())
    await until(lambda: len(lane.requests) == 1)
    lane.skew = 1000  # the lane's clock has moved on by the time the replay arrives
    await platform.idle()
    (first, _, c1), (replay, req, c2) = lane.requests
    assert replay == first and (c1, c2) == (200, 402) and req is None
    assert [e.note for e in platform.exchanges("payNotify", "out")] == ["replayed_timestamp attempt 1", "replay"]


async def test_replay_inside_the_window_is_a_duplicate(platform, lane, session):
    platform.script("粤B12345", emu.replayed_timestamp(replay_after_s=0.0))
    await enter(session, platform)
    await send(session, platform, "preLeaveNotify", pre_leave_biz())
    await platform.idle()
    assert lane.answered("payNotify") == [200, 6006] and lane.requests[0][0] == lane.requests[1][0]


async def test_stale_timestamp_and_bad_signature_are_refused_on_every_attempt(platform, lane, session):
    platform.script("粤B1", emu.stale_timestamp(age_s=3600))
    platform.script("粤B2", emu.bad_signature())
    await enter(session, platform, "R1", "粤B1")
    await enter(session, platform, "R2", "粤B2")
    await send(session, platform, "preLeaveNotify", pre_leave_biz("R1", "粤B1", "O1"))
    await send(session, platform, "preLeaveNotify", pre_leave_biz("R2", "粤B2", "O2"))
    await platform.idle()
    assert sorted(lane.answered()) == [401] * 4 + [402] * 4
    assert lane.booked == {}
    stale = [json.loads(b)["timestamp"] for b, _, c in lane.requests if c == 402]
    assert all(abs(time.time() - 3600 - ts) < 5 for ts in stale)


async def test_http_500_then_the_next_step(platform, session):
    platform.script("粤B12345", emu.http_500(), emu.pay_at_preleave(pay_type=1))
    await enter(session, platform)
    status, raw = await send(session, platform, "preLeaveNotify", pre_leave_biz())
    assert status == 500 and b"Internal" in raw
    with pytest.raises(TdznError):
        tdzn.parse_pre_leave_answer(raw)
    _, raw = await send(session, platform, "preLeaveNotify", pre_leave_biz())  # the lane's retry, same bill
    r = tdzn.parse_pre_leave_answer(raw)
    assert r.paid and r.pay_type == 1
    assert [e.http_status for e in platform.exchanges("preLeaveNotify")] == [500, 200]


async def test_slow_answer_is_a_late_success(platform, session):
    platform.script("粤B12345", emu.slow(0.4))
    await enter(session, platform)
    t0 = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await send(session, platform, "preLeaveNotify", pre_leave_biz(), timeout=0.1)  # the lane gives up
    await until(lambda: "O1" in platform.bills)
    assert time.monotonic() - t0 >= 0.35 and platform.bills["O1"].paid  # ... but the platform charged
    _, raw = await send(session, platform, "preLeaveNotify", pre_leave_biz())
    assert tdzn.parse_pre_leave_answer(raw).paid  # the lane's retry learns it


async def test_slow_then_pay_later(platform, lane, session):
    platform.script("粤B12345", emu.slow(0.1, emu.pay_later(0.0)))
    await enter(session, platform)
    assert await code_of(session, platform, "preLeaveNotify", pre_leave_biz()) == 0
    await platform.idle()
    assert lane.answered("payNotify") == [200]


# ---------------------------------------------------------------- platform → lane calls

async def test_query_park_fee_and_remote_dev(platform, lane):
    a = await platform.query_park_fee("粤B12345", pay_scene=1, out_channel_id="2")
    assert a.ok and a.data["payableFee"] == 700 and a.data["useTime"] == 7200
    (q,) = lane.of("queryParkFee")
    assert tdzn.parse_query_park_fee(q) == tdzn.QueryParkFee(PARK, 1, "粤B12345", "", "2")
    a = await platform.remote_dev("2", 2, plate_id="p1", operator="张三", cmd=1, open_gate_case="道闸故障")
    assert a.ok
    assert tdzn.parse_remote_dev(lane.of("remoteDev")[0]) == tdzn.RemoteDev("2", 2, "p1", "张三", 1, "道闸故障")
    assert (await platform.remote_dev("2", 2)).code == 400  # no operator: the lane refuses
    assert platform.codes("remoteDev", "out") == [200, 400]


async def test_lane_down_is_recorded_not_raised(lane):
    p = emu.TdznPlatform(pid=PID, key=KEY, lane_url="http://127.0.0.1:9/tdzn", notify_attempts=2,
                         notify_interval_s=0.01)
    await p.start()
    try:
        assert await p.pay_notify(order_no="O1", paid_fee=1, record_no="R1") is None
        assert await p.query_park_fee("粤B1") is None
        assert [e.code for e in p.log] == [None, None, None] and "ClientConnectorError" in p.log[0].note
    finally:
        await p.stop()


async def test_stop_cancels_pending_notifies_and_slow_answers(lane, session):
    p = emu.TdznPlatform(pid=PID, key=KEY, lane_url=lane.url, require_entry=False)
    await p.start()
    p.script("粤B1", emu.pay_later(30))
    p.script("粤B2", emu.slow(30))
    await send(session, p, "preLeaveNotify", pre_leave_biz("R1", "粤B1", "O1"))
    slow_call = asyncio.create_task(send(session, p, "preLeaveNotify", pre_leave_biz("R2", "粤B2", "O2")))
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    await p.stop()
    assert time.monotonic() - t0 < 1.0
    status, _ = await slow_call  # the slow answer was cut short by stop(), not left hanging
    assert status == 200 and lane.requests == []


def test_parse_spec():
    assert emu.parse_spec("pay_later:2:2") == emu.pay_later(2.0, type=2)
    assert emu.parse_spec("slow:3") == emu.slow(3.0)
    assert emu.parse_spec("never_pay") == emu.never_pay()
    assert emu.parse_spec("pay_at_preleave:1") == emu.pay_at_preleave(1)
    with pytest.raises(ValueError):
        emu.parse_spec("free_beer")
