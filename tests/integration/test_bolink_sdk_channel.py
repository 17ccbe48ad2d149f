"""Bolink's SDK channel as real lot-side clients see it (issue 13), over real aiohttp on 127.0.0.1.

Part 1 plays a public Java SDK client against the platform emulator in HTTP mode: its uplink envelope
(service_name, sign, data, token), `inpark` / `outpark` uploads that must land in the order book, unknown
services that must be refused, and a client that never logs in again after token无效 and must not spin.
Part 2 runs the lane's own downlink (BolinkDownlink + BolinkInbound + SQLite) and sends every downlink the SDK
knows through POST /__control__/push: each must arrive flat (fields at the top level) and be answered in the
SDK channel's field set, and the platform must match each answer to its push."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from datetime import timedelta
from typing import Any, Optional
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from hil.emulators import bolink as emu
from hil.emulators import bolink_wire as w
from lanectl.providers.bolink.downlink import BolinkDownlink
from lanectl.adapters.clock import SystemClock
from lanectl.adapters.store import SqliteStore
from lanectl.config.base import SecretRef
from lanectl.providers.bolink.config import BolinkConfig
from lanectl.core import effects as fx
from lanectl.core.rules import CardRenewal
from lanectl.providers.bolink.inbound import BolinkInbound, PriceQuote
from tests.fakes import SettlementResults as Results

TZ = ZoneInfo("Asia/Shanghai")
CLOCK = SystemClock(TZ)
KEY = "8403A41ED5EF20BC"
UNION = 200208
PARK = "21835"
PLATE = "粤B12345"


async def eventually(pred: Any, timeout: float = 3.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


class SdkClient:
    """What the public Java SDK client sends: service_name, sign, data, token in that order; data an object."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url, self.token = http, url, ""

    async def post(self, path: str, body: bytes) -> tuple[float, Any]:
        t0 = time.monotonic()
        async with self.http.post(self.url + path, data=body, headers={"Authorization": "Basic Og=="}) as r:
            raw = await r.read()
        return time.monotonic() - t0, json.loads(raw, parse_float=Decimal)  # money as written, never a float

    async def upload(self, service_name: str, data: dict[str, Any]) -> dict[str, Any]:
        text = w.dumps(data)
        sig = w.sign(text, KEY)
        body = ('{"service_name":"%s","sign":"%s","data":%s,"token":"%s"}' % (service_name, sig, text, self.token))
        return (await self.post(w.UPLOAD_PATH, body.encode()))[1]

    async def login(self) -> dict[str, Any]:
        text = w.dumps({"union_id": str(UNION), "park_id": PARK, "local_id": "0071cc97102b_1001"})
        body = '{"service_name":"login","sign":"%s","data":%s}' % (w.sign(text, KEY), text)
        answer = (await self.post(w.UPLOAD_PATH, body.encode()))[1]
        self.token = answer.get("token", "")
        return answer

    async def poll(self) -> tuple[float, Any]:
        return await self.post(w.DOWNLOAD_PATH, json.dumps({"token": self.token}).encode())


@pytest.fixture
async def platform():
    p = emu.BolinkPlatform(key=KEY, union_id=UNION, hold_s=0.3, ack_timeout_s=0.5, push_interval_s=0.05,
                           push_attempts=2, bad_token_hold_s=0.25, notify_car_owner=False, fetch_images=False)
    p.downlink[PARK] = "http_mode"
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


# ------------------------------------------------------------------------------------- part 1: the SDK uplink

def inpark(order_id: str, plate: str = PLATE) -> dict[str, Any]:
    return {"car_number": plate, "in_time": int(time.time()) - 3600, "order_id": order_id, "empty_plot": 12,
            "park_id": PARK, "car_type": "小车", "ddd": "extra"}


def outpark(order_id: str, pay_type: str, plate: str = PLATE, auth_code: str = "") -> dict[str, Any]:
    return {"car_number": plate, "in_time": int(time.time()) - 3600, "out_time": int(time.time()),
            "order_id": order_id, "empty_plot": 13, "park_id": PARK, "total": "7.00", "pay_type": pay_type,
            "auth_code": auth_code}


async def test_sdk_entries_and_exits_land_in_the_order_book(platform, http):
    c = SdkClient(http, platform.url)
    assert (await c.login())["state"] == 1 and platform.logins == 1
    a = await c.upload("inpark", inpark("L1_1"))
    assert a["state"] == 1
    o = platform.order(PARK, "L1_1")
    assert o is not None and o.entry is not None and o.car_number == PLATE and o.status == "in"
    assert (await c.upload("inpark", inpark("L1_1")))["state"] == 0, "a repeated entry is no second order"
    assert (await c.upload("outpark", outpark("L1_1", "cash")))["state"] == 1
    assert (o.status, o.total_fen, o.pay_type) == ("cash", 700, "cash")
    # a sweepcode exit is paid on the booth scanner's code: the answer carries trade_no, total, state
    await c.upload("inpark", inpark("L1_2", "粤B22222"))
    paid = await c.upload("outpark", outpark("L1_2", "sweepcode", "粤B22222", "1" * 18))
    assert paid["state"] == 1 and paid["trade_no"] and w.fen(paid["total"]) == 700
    assert platform.order(PARK, "L1_2").status == "paid"  # type: ignore[union-attr]
    assert [u.path for u in platform.uploads].count("/bpd/upload.do:outpark") == 2


async def test_an_outpark_reply_is_not_an_exit_and_an_unknown_service_is_refused(platform, http):
    c = SdkClient(http, platform.url)
    await c.login()
    await c.upload("inpark", inpark("L1_3"))
    # a reply to a 5.5 push (trade_no + state, no out_time) settles no exit and books nothing
    reply = await c.upload("outpark", {"state": 1, "trade_no": "BL1", "errmsg": "", "order_id": "L1_3"})
    assert reply["state"] == 1 and platform.order(PARK, "L1_3").exits == []  # type: ignore[union-attr]
    for name in ("in_parkk", "login2", "update_balance"):
        answer = await c.upload(name, {"car_number": PLATE, "park_id": PARK})
        assert answer["state"] == 0 and name in answer["errmsg"], f"{name} answered {answer}"
    assert len(platform.orders) == 1


async def test_a_client_that_never_logs_in_again_cannot_spin_on_token_invalid(platform, http):
    c = SdkClient(http, platform.url)
    await c.login()
    platform._tokens.clear()  # the platform forgot the token (restart, expiry)
    took, answer = await c.poll()
    assert answer["errmsg"] == w.ERR_TOKEN and took >= platform.bad_token_hold_s * 0.9
    # the Java client re-polls ~10 ms after any answer and never logs in again
    t0, polls = time.monotonic(), 0
    while time.monotonic() - t0 < 1.0:
        await c.poll()
        await asyncio.sleep(0.01)
        polls += 1
    assert polls <= 5, f"{polls} token无效 answers in 1 s"
    assert platform.bad_token_polls == polls + 1


async def test_a_prepay_reply_without_trade_no_is_matched_by_order_id(platform, http):
    c = SdkClient(http, platform.url)
    await c.login()
    push = asyncio.ensure_future(platform.push_prepay(PARK, order_id="L1_4", total_fen=500, car_number=PLATE))
    _, msg = await c.poll()
    assert msg["service_name"] == "prepay_order" and "data" not in msg and "trade_no" not in msg
    assert (msg["order_id"], msg["prepay_type"], w.fen(msg["prepay"])) == ("L1_4", 1, 500)
    answer = await c.upload("prepay_order", {"service_name": "prepay_order", "data_target": "bolink", "state": 1,
                                             "errmsg": "", "prepay": "5.00", "order_id": "L1_4", "park_id": PARK})
    assert answer["state"] == 1
    [p] = await asyncio.wait_for(push, 2.0)
    assert p.acked


# ------------------------------------------------------------------------ part 2: the lane's downlink, on demand

@pytest.fixture
async def lane(platform, tmp_path):
    store = SqliteStore(tmp_path / "lanectl.db", destinations=["bolink"])
    await store.open()
    now = CLOCK.now()
    await store.commit_lane("in1", {"phase": "idle", "seq": 1}, [fx.NewRecord(
        "in1_1", "in1", "entry", PLATE, "blue", (now - timedelta(hours=2)).isoformat(), "inside", "temporary",
        "temporary")], now)
    results = Results()
    renewals: list[tuple[CardRenewal, str, int]] = []
    admitted: list[tuple[str, str]] = []

    async def quote(plate: str, order_id: str, channel: str) -> Optional[PriceQuote]:
        if plate == PLATE or order_id == "in1_1":
            return PriceQuote("in1_1", 700, 700, now - timedelta(hours=2), 120)
        return None

    async def renew(r: CardRenewal, trade_no: str, fen: int) -> None:
        renewals.append((r, trade_no, fen))

    async def admit(channel: str, car: str) -> tuple[bool, str]:
        admitted.append((channel, car))
        return True, ""

    inbound = BolinkInbound(KEY, PARK, store, results, CLOCK, lanes_by_channel={"A1": "out1"}, quote=quote,
                            renew=renew, admit=admit)
    cfg = BolinkConfig(base_url=platform.url, union_id=UNION, park_id=PARK, key=SecretRef(env="UNUSED"),
                       downlink="http_mode", timeout_s=1.0)
    session = aiohttp.ClientSession()
    downlink = BolinkDownlink(cfg, KEY, session, inbound.handle_downlink, min_poll_interval_s=0.05)
    task = asyncio.create_task(downlink.run())
    await eventually(lambda: downlink.status()["logged_in"] and platform.polls > 0, what="login")
    ns = type("Lane", (), {})()
    ns.store, ns.results, ns.renewals, ns.admitted, ns.downlink = store, results, renewals, admitted, downlink
    yield ns
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await session.close()
    await store.close()


async def control_push(http: aiohttp.ClientSession, platform: emu.BolinkPlatform, msg: dict[str, Any]) -> dict:
    async with http.post(platform.url + emu.CONTROL_PUSH, data=json.dumps(msg, ensure_ascii=False).encode()) as r:
        assert r.status == 200
        return await r.json()


def flat(out: dict[str, Any], service_name: str) -> dict[str, Any]:
    """The body the lane fetched: flat, service_name first, a sign at the top level, no data member."""
    body = json.loads(out["pushes"][-1]["body"])
    assert list(body)[0] == "service_name" and body["service_name"] == service_name
    assert "data" not in body and "sign" in body
    return body


def reply_of(platform: emu.BolinkPlatform, service_name: str) -> dict[str, Any]:
    return [u for u in platform.uploads if u.path == f"/bpd/upload.do:{service_name}"][-1].data


async def test_login_happens_once_with_the_sdk_login_data(platform, lane):
    [login] = [u for u in platform.uploads if u.path == "/bpd/upload.do:login"]
    assert login.data == {"union_id": str(UNION), "park_id": PARK, "local_id": PARK}


async def test_outpark_pushed_on_demand_is_settled_and_acknowledged(platform, lane, http):
    out = await control_push(http, platform, {
        "service_name": "outpark", "state": 1, "order_id": "in1_1", "trade_no": "BL9", "pay_type": "wallet",
        "pay_channel": 2, "total": 7.0, "pay_time": int(time.time()), "car_number": PLATE, "out_channel_id": "A1",
        "park_id": PARK})
    assert out["state"] == 1 and out["transport"] == "http_mode"
    flat(out, "outpark")
    [(provider, ref, answer, lane_id)] = lane.results.calls
    assert (provider, ref, answer.status, answer.trade_no, answer.amount_fen, lane_id) == (
        "bolink", "in1_1", "paid", "BL9", 700, "out1")
    r = reply_of(platform, "outpark")
    assert (r["state"], r["trade_no"], r["order_id"]) == (1, "BL9", "in1_1")


@pytest.mark.parametrize("scene", [0, 1])
async def test_query_price_pushed_on_demand_is_answered_with_the_sdk_fields(platform, lane, http, scene):
    msg: dict[str, Any] = {"service_name": "query_price", "park_id": PARK, "union_id": UNION, "pay_scene": scene,
                           "car_number": PLATE}
    if scene == 1:
        msg.update(out_channel_id="A1", query_order_no="Q123")
    else:
        msg["order_id"] = "in1_1"
    out = await control_push(http, platform, msg)
    assert out["state"] == 1
    flat(out, "query_price")
    r = reply_of(platform, "query_price")
    assert {"service_name", "state", "errmsg", "order_id", "park_id", "price", "duration", "total",
            "free_out_time", "query_time", "derate_money", "derate_duration", "query_order_no"} <= set(r)
    assert (r["state"], r["errmsg"], r["price"], r["order_id"]) == (1, "success", "7.00", "in1_1")
    assert r["query_order_no"] == ("Q123" if scene == 1 else "")
    assert "data_target" not in r, "seed 003: HTTP mode sends no data_target"


async def test_query_price_for_an_unknown_order_keeps_the_fields(platform, lane, http):
    out = await control_push(http, platform, {"service_name": "query_price", "park_id": PARK, "pay_scene": 0,
                                              "car_number": "粤B99999", "order_id": "in9_9"})
    assert out["pushes"][-1]["acked"] is False and out["pushes"][-1]["answer"]["state"] == 0
    r = reply_of(platform, "query_price")
    assert (r["state"], r["errmsg"], r["order_id"]) == (0, "未查询到此订单", "in9_9") and "price" in r


async def test_prepay_order_pushed_on_demand_is_kept_and_answered_without_trade_no(platform, lane, http):
    msg = {"service_name": "prepay_order", "park_id": PARK, "order_id": "in1_1", "car_number": PLATE,
           "prepay": 5.0, "prepay_type": 1, "pay_time": int(time.time())}
    out = await control_push(http, platform, msg)
    assert out["state"] == 1
    flat(out, "prepay_order")
    r = reply_of(platform, "prepay_order")
    assert r == {"service_name": "prepay_order", "state": 1, "errmsg": "", "prepay": "5.00", "order_id": "in1_1",
                 "park_id": PARK}
    assert lane.store.inside()[PLATE].paid_fen == 500
    # delivered again (a reply lost on the way): answered again, kept once
    again = await control_push(http, platform, msg)
    assert again["state"] == 1 and lane.store.inside()[PLATE].paid_fen == 500
    assert [p["reference"] for p in await lane.store.payments("in1_1")] == [f"in1_1:500:1:{msg['pay_time']}"]


async def test_monthcard_pay_with_pay_money_is_applied_and_answered(platform, lane, http):
    out = await control_push(http, platform, {
        "service_name": "monthcard_pay", "trade_no": "M77", "out_trade_no": "", "card_id": "C1", "park_id": PARK,
        "pay_money": 300.0, "state": 1, "pay_time": int(time.time()), "car_number": PLATE,
        "start_time": "2026-12-01", "end_time": "2026-12-31"})
    assert out["state"] == 1
    flat(out, "monthcard_pay")
    [(renewal, trade_no, fen)] = lane.renewals
    assert (renewal.card_id, renewal.plate, str(renewal.end), trade_no, fen) == (
        "C1", PLATE, "2026-12-31", "M77", 30000)
    r = reply_of(platform, "monthcard_pay")
    assert r == {"service_name": "monthcard_pay", "state": 1, "errmsg": "", "trade_no": "M77", "park_id": PARK,
                 "pay_money": "300.00"}


async def test_nolicence_in_park_pushed_on_demand_admits_and_is_answered(platform, lane, http):
    out = await control_push(http, platform, {"service_name": "nolicence_in_park", "car_number": "wx_abc123",
                                              "park_id": PARK, "union_id": UNION, "channel_id": "A9",
                                              "timetemp": 1765000000000})
    assert out["state"] == 1
    flat(out, "nolicence_in_park")
    assert lane.admitted == [("A9", "wx_abc123")]
    r = reply_of(platform, "nolicence_in_park")
    assert r.pop("park_id") == PARK  # added by the emulator from the login, as for every upload
    assert r == {"service_name": "nolicence_in_park", "state": 1, "car_number": "wx_abc123", "errmsg": ""}


async def test_update_balance_pushed_on_demand_marks_the_plate_without_a_reply(platform, lane, http):
    out = await control_push(http, platform, {"service_name": "update_balance", "car_number": PLATE,
                                              "balance": "12.00", "autopay": 1})
    assert out["state"] == 1
    body = flat(out, "update_balance")
    assert (body["car_number"], body["autopay"]) == (PLATE, 1)
    await eventually(lambda: lane.downlink.status()["messages"] >= 1, what="message handled")
    assert await lane.store.mark("bolink", PLATE, "signfree") == "1"
    assert not [u for u in platform.uploads if u.path == "/bpd/upload.do:update_balance"]


async def test_an_unsigned_flat_downlink_is_taken_on_the_token_and_a_forged_one_is_not(platform, lane, http):
    platform.sign_downlinks = False
    out = await control_push(http, platform, {"service_name": "update_balance", "car_number": "粤B7", "balance":
                                              "0.00", "autopay": 1})
    assert out["state"] == 1 and "sign" not in json.loads(out["pushes"][-1]["body"])
    await eventually(lambda: lane.downlink.status()["messages"] >= 1, what="message handled")
    assert await lane.store.mark("bolink", "粤B7", "signfree") == "1"
    platform.sign_downlinks = True
    forged = await platform.push_outpark(PARK, "in1_1", state=1, total_fen=700, trade_no="F1",
                                         key="0000000000000000")
    assert all(p.answer == "no reply" for p in forged) and not lane.results.calls
    assert lane.downlink.status()["bad_signature"] == len(forged)


async def test_control_push_refuses_what_is_not_a_message(platform, http):
    async with http.post(platform.url + emu.CONTROL_PUSH, data=b'{"car_number":"x"}') as r:
        assert r.status == 400 and "service_name" in (await r.json())["errmsg"]
    async with http.post(platform.url + emu.CONTROL_PUSH, data=b"[1") as r:
        assert r.status == 400
    async with http.post(platform.url + emu.CONTROL_PUSH, data=b'{"service_name":"update_balance"}') as r:
        assert r.status == 400 and "park" in (await r.json())["errmsg"]  # nobody logged in: which park?


# ------------------------------------------------------------------ part 3: the lane's own SDK uplink (uplink: sdk)

def outbox_item(n: int, kind: str, payload: dict[str, Any]) -> Any:
    from lanectl.service.outbox import OutboxItem
    return OutboxItem(n, "bolink", kind, f"{kind}:{payload['record_id']}", payload, 0, CLOCK.now())


async def test_an_sdk_only_lot_uploads_entries_and_exits_over_upload_do_sharing_one_login(platform, http, tmp_path):
    from lanectl.providers.bolink.client import BolinkClient, BolinkProvider, BolinkPublisher
    from lanectl.service.outbox import PublishResult
    from lanectl.service.settlement import Attempt

    cfg = BolinkConfig(base_url=platform.url, union_id=UNION, park_id=PARK, key=SecretRef(env="UNUSED"),
                       downlink="http_mode", uplink="sdk", timeout_s=1.0)
    session = aiohttp.ClientSession()
    client = BolinkClient(cfg, KEY, session)
    publisher = BolinkPublisher(client, {"in1": "A1", "out1": "B1"})
    store = SqliteStore(tmp_path / "lanectl.db", destinations=["bolink"])
    await store.open()
    inbound = BolinkInbound(KEY, PARK, store, Results(), CLOCK, lanes_by_channel={}, quote=_no_quote)
    downlink = BolinkDownlink(cfg, KEY, session, inbound.handle_downlink, min_poll_interval_s=0.05,
                              login=client.sdk_login)
    task = asyncio.create_task(downlink.run())
    try:
        await eventually(lambda: platform.polls > 0, what="downlink polling")
        now = CLOCK.now()
        entered = (now - timedelta(hours=1)).isoformat()
        entry = {"record_id": "in1_20261207_1", "lane_id": "in1", "plate": PLATE, "color": "blue", "at": entered,
                 "status": "inside"}
        assert (await publisher.publish(outbox_item(1, "entry", entry))).result is PublishResult.DONE
        o = platform.order(PARK, "in1_20261207_1")
        assert o is not None and o.entry is not None and o.entry["in_channel_id"] == "A1"
        assert "union_id" not in o.entry, "the SDK channel carries no union_id outside login"
        # the same item again (a lost answer, a restart): idempotent, one order
        assert (await publisher.publish(outbox_item(1, "entry", entry))).result is PublishResult.DONE
        assert platform.duplicates == 1 and len(platform.orders) == 1
        # the platform forgets the token: the next upload logs in again and goes through
        platform._tokens.clear()
        exit_ = {"record_id": "out1_20261207_1", "lane_id": "out1", "plate": PLATE, "color": "blue",
                 "at": now.isoformat(), "entered_at": entered, "entry_record_id": "in1_20261207_1",
                 "payments": [{"method": "cash", "amount_fen": 700}]}
        assert (await publisher.publish(outbox_item(2, "exit", exit_))).result is PublishResult.DONE
        assert (o.status, o.pay_type, o.total_fen) == ("cash", "cash", 700)
        assert platform.logins == 2, "one login shared by uplink and downlink, one more after token无效"
        # the downlink picks up the uplink's new token instead of logging in a third time
        await eventually(lambda: downlink.status()["logged_in"] and platform.polls > 1, what="downlink back")
        # a sweepcode exit over the SDK channel: the booth scanner's code, paid in the answer
        await publisher.publish(outbox_item(3, "entry", {**entry, "record_id": "in1_20261207_2",
                                                          "plate": "粤B22222"}))
        provider = BolinkProvider(client, store, {"out1": "B1"})
        order = fx.StartSettlement("out1_20261207_2", "out1", "粤B22222", "blue", 700, 700, now.isoformat(),
                                   entered_at=entered, entry_record_id="in1_20261207_2")
        answer = await provider.charge_code(order, Attempt(1, order.record_id, "out1", "bolink", "in1_20261207_2",
                                                           700, "charging", time.time()), "1" * 18)
        assert answer.status == "paid" and answer.trade_no and answer.amount_fen == 700
        assert platform.order(PARK, "in1_20261207_2").status == "paid"  # type: ignore[union-attr]
        paths = [u.path for u in platform.uploads]
        assert paths.count("/bpd/upload.do:inpark") == 3
        outs = [u.answer["errmsg"] if u.answer["state"] == 0 else u.answer["state"]  # type: ignore[index]
                for u in platform.uploads if u.path == "/bpd/upload.do:outpark"]
        assert outs == [w.ERR_TOKEN, 1, 1], "refused once for the lost token, then the same exit went through"
        assert not [p for p in paths if p.startswith("/unionapi/")], "nothing went to the API paths"
        assert platform.logins == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await session.close()
        await store.close()


async def _no_quote(plate: str, order_id: str, channel: str) -> Optional[PriceQuote]:
    return None


async def test_a_query_by_plate_alone_is_matched_to_its_answer(platform, lane, http):
    out = await control_push(http, platform, {"service_name": "query_price", "park_id": PARK, "pay_scene": 0,
                                              "car_number": PLATE})
    assert out["state"] == 1 and out["pushes"][-1]["answer"]["order_id"] == "in1_1"


async def test_the_lane_still_takes_a_downlink_in_the_envelope_form(platform, lane, http):
    platform.downlink_form = "envelope"
    out = await control_push(http, platform, {"service_name": "outpark", "state": 1, "order_id": "in1_1",
                                              "trade_no": "ENV1", "total": 7.0, "pay_type": "wallet",
                                              "out_channel_id": "A1"})
    assert out["state"] == 1 and "data" in json.loads(out["pushes"][-1]["body"])
    assert [c[2].trade_no for c in lane.results.calls] == ["ENV1"]
    forged = await platform.push_outpark(PARK, "in1_1", state=1, total_fen=700, trade_no="ENV2",
                                         key="0000000000000000")
    assert all(p.answer == "no reply" for p in forged) and len(lane.results.calls) == 1
