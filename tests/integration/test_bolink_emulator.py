"""The Bolink platform emulator over real aiohttp on 127.0.0.1: a client plays the lane's uplink, a tiny aiohttp
receiver plays the lane's callback URL (verifying every push with the codec). Each scripted behaviour must be
observable from the lane's side."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any, Optional

import aiohttp
import pytest
from aiohttp import web

from hil.emulators.bolink import (
    NO_MESSAGE,
    BolinkPlatform,
    bad_signature,
    duplicate_push,
    fail,
    http_500,
    java_escape,
    never_settle,
    out_of_order,
    pending_then_paid,
    push_before_answer,
    push_other_order,
    slow,
)
from lanectl.providers.bolink import codec as bl

KEY = "8403A41ED5EF20BC"
UNION = 200208
PARK = "21835"
PLATE = "粤B12345"
OTHER = "粤B99999"


class Lane:
    """The lane's callback URL: verifies, records, and answers each push (by `script`: "ok", "fail" or a status)."""

    def __init__(self) -> None:
        self.got: list[tuple[float, bl.Callback]] = []
        self.raw: list[bytes] = []
        self.refused = 0
        self.script: list[Any] = []
        self.url = ""
        self.monthcard_url = ""

    def callbacks(self, kind: type) -> list[Any]:
        return [c for _, c in self.got if isinstance(c, kind)]

    async def handle(self, request: web.Request, expected: Optional[str] = None) -> web.Response:
        body = await request.read()
        self.raw.append(body)
        try:
            msg = bl.decode_signed(body, KEY)
            cb = bl.parse_callback(msg, expected=expected)
        except bl.BadSignature:
            self.refused += 1
            return web.Response(body=bl.answer_error(bl.ERR_SIGNATURE))
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, int):
            return web.Response(status=step, text="lane busy")
        if step == "fail":
            return web.Response(body=bl.answer_error("store busy"))
        self.got.append((time.monotonic(), cb))
        return web.Response(body=answer_for(cb), content_type="application/json")

    async def handle_monthcard(self, request: web.Request) -> web.Response:
        return await self.handle(request, expected="monthcard_pay")


def answer_for(cb: bl.Callback) -> bytes:
    if isinstance(cb, bl.Outpark):
        return bl.answer_outpark(cb.trade_no, cb.order_id)
    if isinstance(cb, bl.NoticeCarOwner):
        return bl.answer_notice()
    if isinstance(cb, bl.QueryPrice):
        return bl.answer_query_price(park_id=cb.park_id, order_id=cb.order_id, price_fen=700, duration_min=60,
                                     query_order_no=cb.query_order_no)
    if isinstance(cb, bl.MonthcardPay):
        return bl.answer_monthcard(cb.trade_no)
    if isinstance(cb, bl.NolicenceInPark):
        return bl.answer_nolicence(cb.car_number, cb.timetemp)
    if isinstance(cb, bl.PrepayOrder):
        return bl.answer_prepay(cb.trade_no, cb.order_id)
    return bl.answer_error("unexpected")


@pytest.fixture
async def lane():
    ln = Lane()
    app = web.Application()
    app.router.add_post("/bolink", ln.handle)
    app.router.add_post("/monthcard", ln.handle_monthcard)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ln.url, ln.monthcard_url = f"http://127.0.0.1:{port}/bolink", f"http://127.0.0.1:{port}/monthcard"
    yield ln
    await runner.cleanup()


@pytest.fixture
async def emu(lane):
    e = BolinkPlatform(key=KEY, union_id=UNION, callback_url=lane.url, push_interval_s=0.02, push_timeout_s=1.0,
                       ack_timeout_s=0.3, hold_s=0.3, etc_pending_s=0.05)
    await e.start()
    yield e
    await e.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


async def post(http: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, bytes]:
    async with http.post(url, data=body, headers={"Content-Type": "application/json;charset=utf-8"}) as r:
        return r.status, await r.read()


async def call(http, emu, kind: str, data: dict, key: str = KEY) -> bl.Answer:
    status, body = await post(http, emu.url + bl.PATHS[kind], bl.encode_request(UNION, data, key))
    assert status == 200, body
    return bl.parse_answer(body)


def entry(order_id: str = "L1_1", plate: str = PLATE) -> dict:
    return bl.entry_data(park_id=PARK, union_id=UNION, car_number=plate, in_time=1_700_000_000, order_id=order_id,
                         empty_plot=20, in_channel_id="A1")


def exit_(order_id: str = "L1_1", plate: str = PLATE, pay_type: str = "wallet", total_fen: int = 700, **kw) -> dict:
    return bl.exit_data(park_id=PARK, union_id=UNION, car_number=plate, in_time=1_700_000_000,
                        out_time=1_700_003_600, order_id=order_id, empty_plot=21, total_fen=total_fen,
                        pay_type=pay_type, out_channel_id="B1", **kw)


async def until(pred, timeout: float = 1.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.01)


async def order_states(http, emu, order_id: str = "L1_1") -> list[bl.OrderState]:
    status, body = await post(http, emu.url + bl.PATHS["order_state"],
                              bl.encode_request(UNION, bl.order_state_data(park_id=PARK, union_id=UNION,
                                                                           order_id=order_id), KEY))
    return bl.parse_order_state(body)


# ------------------------------------------------------------------------------------------- uplink basics

async def test_entry_is_idempotent_and_notifies_the_car_owner(emu, lane, http):
    emu.sign_free.add(PLATE)
    assert (await call(http, emu, "entry", entry("L1_1"))).accepted
    again = await call(http, emu, "entry", entry("L1_1"))
    assert again.state == 0 and again.duplicate and emu.duplicates == 1 and len(emu.orders) == 1
    assert (await call(http, emu, "entry", entry("L1_2", OTHER))).accepted
    await emu.idle()
    notices = sorted(lane.callbacks(bl.NoticeCarOwner), key=lambda n: n.order_id)
    assert [(n.order_id, n.car_number, n.is_union_user) for n in notices] == [("L1_1", PLATE, 1), ("L1_2", OTHER, 0)]
    assert notices[0].rand != notices[1].rand and notices[0].park_id == PARK
    emu.duplicate_errmsg = "数据已处理过"
    assert (await call(http, emu, "entry", entry("L1_2", OTHER))).duplicate


async def test_bad_signatures_are_refused(emu, http):
    ans = await call(http, emu, "entry", entry(), key="wrong-key-123456")
    assert ans.state == 0 and ans.bad_signature and emu.bad_signatures == 1 and not emu.orders
    status, body = await post(http, emu.url + bl.PATHS["entry"], b'{"union_id":200208,"data":')
    assert status == 200 and bl.parse_answer(body).state == 0
    # a Gson client's HTML-escaped body verifies over its raw bytes
    text = java_escape(bl.dumps_data(entry() | {"inpark_img": "http://x/?a=1&b=<2>"}))
    assert "\\u003d" in text
    assert (await call(http, emu, "entry", text)).accepted  # type: ignore[arg-type]
    assert emu.order(PARK, "L1_1").entry["inpark_img"] == "http://x/?a=1&b=<2>"


async def test_gbk_signing_client(emu, http):
    emu.sign_charset = "gbk"
    text = bl.dumps_data(entry())
    body = ('{"union_id":%d,"sign":"%s","data":%s}' % (UNION, bl.sign(text, KEY, encoding="gbk"), text)).encode()
    status, raw = await post(http, emu.url + bl.PATHS["entry"], body)
    assert bl.parse_answer(raw).accepted
    assert (await call(http, emu, "entry", entry("L1_2"))).bad_signature  # UTF-8 signed 粤: not what GBK hashes


async def test_rate_limit_per_park(emu, http):
    answers = [await call(http, emu, "entry", entry(f"L1_{i}")) for i in range(11)]
    assert [a.accepted for a in answers] == [True] * 9 + [False] * 2
    assert answers[9].rate_limited and emu.rate_limited == 2 and len(emu.orders) == 9
    other_park = entry("L1_x") | {"park_id": "99999"}
    assert (await call(http, emu, "entry", other_park)).accepted


# --------------------------------------------------------------------------------------- exit behaviours

async def test_pay_now_wallet_for_a_sign_free_plate(emu, lane, http):
    emu.sign_free.add(PLATE)
    await call(http, emu, "entry", entry())
    ans = await call(http, emu, "exit", exit_())
    assert ans.paid and ans.total_fen == 700 and ans.trade_no
    await emu.idle()
    [out] = lane.callbacks(bl.Outpark)
    assert out.paid and out.trade_no == ans.trade_no and out.total_fen == 700 and out.pay_type == "wallet"
    assert [p.acked for p in emu.pushes_for("outpark")] == [True]
    assert [s.paid for s in await order_states(http, emu)] == [True]
    again = await call(http, emu, "exit", exit_())  # the exit may be repeated: same payment
    assert again.paid and again.duplicate and again.trade_no == ans.trade_no


async def test_wallet_needs_a_sign_free_plate_and_sweepcode_an_auth_code(emu, http):
    assert (await call(http, emu, "exit", exit_())).state == 0
    ans = await call(http, emu, "exit", exit_(pay_type="sweepcode", auth_code="134567890123456789"))
    assert ans.paid


async def test_exit_without_entry_and_cash(emu, lane, http):
    ans = await call(http, emu, "exit", exit_("L1_9", pay_type="cash"))
    assert ans.accepted and not ans.paid
    o = emu.order(PARK, "L1_9")
    assert o.no_entry and o.status == "cash" and len(o.exits) == 1
    await emu.idle()
    assert lane.got == [] and await order_states(http, emu, "L1_9") == []


async def test_pending_then_paid(emu, lane, http):
    emu.scripts[PLATE] = pending_then_paid(0.15)
    t0 = time.monotonic()
    ans = await call(http, emu, "exit", exit_(pay_type="scancode"))
    assert ans.pending and not ans.paid
    assert [s.state for s in await order_states(http, emu)] == [2]
    assert (await call(http, emu, "exit", exit_(pay_type="scancode"))).pending  # re-issued while paying
    await until(lambda: lane.callbacks(bl.Outpark))
    assert time.monotonic() - t0 >= 0.15
    assert lane.callbacks(bl.Outpark)[0].paid
    assert [s.paid for s in await order_states(http, emu)] == [True]


async def test_accepted_without_payment(emu, lane, http):
    emu.default = pending_then_paid(0.05, sync_state=1)
    ans = await call(http, emu, "exit", exit_(pay_type="scancode"))
    assert ans.accepted and not ans.paid and ans.trade_no == ""
    await until(lambda: lane.callbacks(bl.Outpark))


async def test_fail_and_default_behaviour(emu, lane, http):
    emu.default = fail()
    ans = await call(http, emu, "exit", exit_(plate=OTHER, pay_type="scancode"))
    assert ans.state == 0 and "失败" in ans.errmsg
    await emu.idle()
    [out] = lane.callbacks(bl.Outpark)
    assert out.state == 0 and not out.paid and out.errmsg
    assert [s.state for s in await order_states(http, emu)] == [0]


async def test_never_settle(emu, lane, http):
    emu.scripts[PLATE] = never_settle()
    assert (await call(http, emu, "exit", exit_(pay_type="scancode"))).pending
    await asyncio.sleep(0.1)
    await emu.idle()
    assert lane.callbacks(bl.Outpark) == [] and [s.state for s in await order_states(http, emu)] == [2]


async def test_duplicate_push(emu, lane, http):
    emu.scripts[PLATE] = duplicate_push()
    ans = await call(http, emu, "exit", exit_(pay_type="scancode"))
    await emu.idle()
    outs = lane.callbacks(bl.Outpark)
    assert len(outs) == 2 and outs[0] == outs[1] and outs[0].trade_no == ans.trade_no
    assert [p.acked for p in emu.pushes_for("outpark")] == [True, True]


async def test_out_of_order(emu, lane, http):
    emu.scripts[PLATE] = out_of_order()
    assert (await call(http, emu, "exit", exit_(pay_type="scancode"))).pending
    await emu.idle()
    outs = lane.callbacks(bl.Outpark)
    assert [o.state for o in outs] == [1, 2] and outs[0].trade_no == outs[1].trade_no


async def test_push_before_answer(emu, lane, http):
    emu.scripts[PLATE] = push_before_answer()
    ans = await call(http, emu, "exit", exit_(pay_type="scancode"))
    assert ans.pending
    [out] = lane.callbacks(bl.Outpark)  # already there when the HTTP answer arrived
    assert out.paid and out.trade_no == ans.trade_no


async def test_http_500_then_pay(emu, http):
    emu.scripts[PLATE] = http_500(times=1)
    status, body = await post(http, emu.url + bl.PATHS["exit"], bl.encode_request(UNION, exit_(pay_type="scancode"),
                                                                                   KEY))
    assert status == 500 and emu.http_500s == 1
    with pytest.raises(bl.BolinkError):
        bl.parse_answer(body)
    assert (await call(http, emu, "exit", exit_(pay_type="scancode"))).paid
    assert emu.uploads[0].answer == 500


async def test_slow_answer(emu, http):
    emu.scripts[PLATE] = slow(0.2, then=never_settle())
    t0 = time.monotonic()
    assert (await call(http, emu, "exit", exit_(pay_type="scancode"))).pending
    assert time.monotonic() - t0 >= 0.2


async def test_bad_signature_push_is_retried_and_refused(emu, lane, http):
    emu.scripts[PLATE] = bad_signature()
    assert (await call(http, emu, "exit", exit_(pay_type="scancode"))).pending
    await emu.idle()
    assert lane.refused == emu.push_attempts == 3 and lane.got == []
    assert [p.acked for p in emu.pushes_for("outpark")] == [False] * 3
    assert [s.paid for s in await order_states(http, emu)] == [True]  # paid on the platform: 4.3 tells the truth


async def test_push_other_order(emu, lane, http):
    emu.scripts[PLATE] = push_other_order("L2_7")
    ans = await call(http, emu, "exit", exit_(pay_type="scancode"))
    await emu.idle()
    [out] = lane.callbacks(bl.Outpark)
    assert out.paid and out.order_id == "L2_7" and out.trade_no != ans.trade_no
    assert [s.state for s in await order_states(http, emu)] == [2]


async def test_pushes_are_retried_until_acknowledged(emu, lane, http):
    lane.script = ["fail", 503]
    ans = await call(http, emu, "exit", exit_(pay_type="scancode"))
    await emu.idle()
    pushes = emu.pushes_for("outpark")
    assert [(p.attempt, p.status, p.acked) for p in pushes] == [(1, 200, False), (2, 503, False), (3, 200, True)]
    assert pushes[0].answer == {"state": 0, "errmsg": "store busy"}
    assert [o.trade_no for o in lane.callbacks(bl.Outpark)] == [ans.trade_no]


# ----------------------------------------------------------------------------------------------- ETC

def etc(pay_type: str, order_id: str = "L1_1") -> dict:
    kw: dict[str, Any] = {}
    if pay_type == "my":
        kw = dict(empty_plot=21, total_original_fen=1, inpark_img="https://x/a.png", outpark_img="https://x/b.png")
    return bl.etc_data(park_id=PARK, car_number="川AK6F63", in_time=1621502665, out_time=1621509665,
                       pay_type=pay_type, total_fen=1, order_id=order_id, out_channel_id="出口D-(13)",
                       in_channel_id="A1", parking_time_min=60, lane_no="000139", **kw)


async def test_etc_paid_at_once_or_paying_then_pushed(emu, lane, http):
    ans = await call(http, emu, "etc", etc("my"))
    assert ans.paid and ans.pay_type == "etc" and ans.total_fen == 1 and ans.raw["fee"] == Decimal("0.0")
    box = await call(http, emu, "etc", etc("jyyh", "L1_2"))
    assert box.pending
    await until(lambda: lane.callbacks(bl.Outpark))
    assert lane.callbacks(bl.Outpark)[0].order_id == "L1_2"
    missing = etc("my", "L1_3")
    del missing["inpark_img"]
    assert (await call(http, emu, "etc", missing)).state == 0


# ------------------------------------------------------------------------------------- platform -> lane

async def test_push_helpers(emu, lane, http):
    qp = await emu.push_query_price(PARK, pay_scene=1, out_channel_id="B1")
    assert qp.acked and qp.answer["price"] == "7.00" and qp.answer["query_order_no"] == qp.data["query_order_no"]
    emu.monthcard_url = lane.monthcard_url
    [mc] = await emu.push_monthcard_pay(PARK, amount_fen=2, card_id="A1_2C", trade_no="M201", attach={"k": "v"})
    assert mc.acked and mc.body.startswith(b'{"data":{"trade_no":"M201"') and b"service_name" not in mc.body
    [card] = lane.callbacks(bl.MonthcardPay)
    assert card.amount_fen == 2 and card.attach == '{"k":"v"}'
    nl = await emu.push_nolicence_in_park(PARK, channel_id="A1")
    [car] = lane.callbacks(bl.NolicenceInPark)
    assert nl.answer["timetemp"] == car.timetemp and nl.answer["car_number"] == car.car_number
    await emu.push_prepay(PARK, order_id="L1_1", total_fen=500, car_number=PLATE)
    assert lane.callbacks(bl.PrepayOrder)[0].total_fen == 500
    [late] = await emu.push_outpark(PARK, "L1_5", total_fen=300)
    assert late.acked and lane.callbacks(bl.Outpark)[0].total_fen == 300


async def test_html_escaped_pushes_verify_over_raw_bytes(emu, lane):
    emu.html_escape = True
    [p] = await emu.push_outpark(PARK, "L1_5", total_fen=300)
    assert p.acked and b"\\u003d" not in p.body  # nothing to escape yet
    await emu.push_notice_car_owner(PARK, "粤B=<&>", order_id="L1_5")
    assert b"\\u003d" in lane.raw[-1] and lane.callbacks(bl.NoticeCarOwner)[0].car_number == "粤B=<&>"


# --------------------------------------------------------------------------------------------- HTTP mode

async def login(http, emu, park: str = PARK) -> str:
    status, body = await post(http, emu.url + "/bpd/upload.do",
                              bl.encode_upload("login", bl.login_data(UNION, park, "0071cc97102b_1001"), KEY))
    return bl.parse_login_answer(body)


async def upload(http, emu, token: str, service_name: str, data: dict) -> dict:
    status, body = await post(http, emu.url + "/bpd/upload.do", bl.encode_upload(service_name, data, KEY, token))
    return json.loads(body)


async def poll(http, emu, token: str) -> bytes:
    return (await post(http, emu.url + "/bpd/download.do", json.dumps({"token": token}).encode()))[1]


async def test_http_mode_login_and_token(emu, http):
    status, body = await post(http, emu.url + "/bpd/upload.do",
                              bl.encode_upload("login", bl.login_data(UNION, PARK, "x"), "wrong-key"))
    assert bl.parse_answer(body).bad_signature
    token = await login(http, emu)
    assert len(token) == 32 and emu.logins == 1
    assert (await upload(http, emu, "nope", "in_park", entry()))["errmsg"] == bl.ERR_TOKEN
    assert json.loads(await poll(http, emu, "nope"))["errmsg"] == bl.ERR_TOKEN
    assert (await upload(http, emu, token, "in_park", entry()))["state"] == 1


async def test_long_poll_holds_then_says_no_message(emu, http):
    emu.downlink[PARK] = "http_mode"
    token = await login(http, emu)
    t0 = time.monotonic()
    body = await poll(http, emu, token)
    assert time.monotonic() - t0 >= emu.hold_s and json.loads(body) == NO_MESSAGE
    assert bl.parse_download(body, KEY) is None


async def test_long_poll_returns_a_queued_message_at_once(emu, lane, http):
    emu.downlink[PARK] = "http_mode"
    emu.sign_free.add(PLATE)
    emu.hold_s = 1.5
    token = await login(http, emu)
    waiting = asyncio.ensure_future(poll(http, emu, token))
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    assert (await upload(http, emu, token, "in_park", entry()))["state"] == 1  # -> update_balance downlink
    msg = bl.parse_download(await waiting, KEY)
    assert time.monotonic() - t0 < 0.5
    assert msg is not None and msg.service_name == "update_balance" and msg.token == ""
    assert bl.parse_callback(msg) == bl.UpdateBalance(car_number=PLATE, autopay=1, balance_fen=0)
    assert lane.got == []  # nothing went to the callback URL


async def test_http_mode_outpark_is_redelivered_until_replied(emu, http):
    emu.downlink[PARK] = "http_mode"
    emu.notify_car_owner = False
    emu.hold_s = 1.0  # longer than the ack timeout, so the second poll sees the re-delivery
    token = await login(http, emu)
    ans = bl.parse_answer(json.dumps(await upload(http, emu, token, "outpark", exit_(pay_type="scancode"))).encode())
    assert ans.paid
    first = bl.parse_download(await poll(http, emu, token), KEY)  # delivered, not replied: comes again
    second = bl.parse_download(await poll(http, emu, token), KEY)
    assert first is not None and second is not None and first.data_text == second.data_text
    out = bl.parse_callback(second)
    assert isinstance(out, bl.Outpark) and out.paid and out.trade_no == ans.trade_no
    reply = bl.outpark_reply(out.trade_no, out.order_id)
    del reply["service_name"]
    assert (await upload(http, emu, token, "outpark", reply))["state"] == 1
    await emu.idle()
    assert [p.acked for p in emu.pushes_for("outpark")] == [False, True]
    assert [p.transport for p in emu.pushes_for("outpark")] == ["http_mode"] * 2


async def test_stop_releases_a_held_poll(lane, http):
    emu = BolinkPlatform(key=KEY, callback_url=lane.url, hold_s=10)
    await emu.start()
    token = await login(http, emu)
    waiting = asyncio.ensure_future(poll(http, emu, token))
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    await emu.stop()
    assert json.loads(await waiting) == NO_MESSAGE and time.monotonic() - t0 < 1.5


async def test_control_push_in_callback_mode_posts_a_signed_envelope_to_the_lane(emu, lane, http):
    status, body = await post(http, emu.url + "/__control__/push", json.dumps(
        {"service_name": "outpark", "park_id": PARK, "order_id": "L1_9", "trade_no": "T9", "state": 1,
         "total": 7.0, "pay_type": "wallet"}).encode())
    out = json.loads(body)
    assert status == 200 and out["state"] == 1 and out["transport"] == "callback"
    [got] = lane.callbacks(bl.Outpark)
    assert (got.trade_no, got.order_id, got.total_fen) == ("T9", "L1_9", 700)
    assert json.loads(lane.raw[-1])["sign"], "a callback is the signed API envelope"
