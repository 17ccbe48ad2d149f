"""tdzn end to end against the platform emulator: preLeaveNotify charges through the settlement service, payNotify
/ queryParkFee / remoteDev into the lane's endpoint (the real callback listener), and uploads through the
publisher. A payment reaches the lane once, only for its own record, only when paid; a release needs a name."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, Optional
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from hil.emulators import tdzn as emu
from lanectl.adapters.callback_server import CallbackServer
from lanectl.adapters.clock import SystemClock
from lanectl.adapters.store import SqliteStore
from lanectl.providers.tdzn.client import TdznClient, TdznProvider, TdznPublisher, pay_type_of
from lanectl.config.base import SecretRef
from lanectl.providers.tdzn.config import TdznConfig
from lanectl.core import effects as fx
from lanectl.core.events import PaymentConfirmed, PaymentFallback
from lanectl.providers.bolink.inbound import PriceQuote
from lanectl.service.outbox import OutboxItem, Outcome, PublishResult
from lanectl.service.settlement import SettlementService, SettlementTiming
from lanectl.providers.tdzn.inbound import TdznInbound
from tests.fakes import LaneEvents as Lanes

TZ = ZoneInfo("Asia/Shanghai")
CLOCK = SystemClock(TZ)
PID, KEY, PARK = "123456", "45DC1F8604F940829E75D6A76595C299", "TEST/1P1"
PLATE = "粤B12345"
CHANNELS = {"in1": "E1", "out1": "A1", "out2": "A2"}
# reconcile_for_s short: on Python 3.11 SettlementService.stop() can miss a reconcile task (asyncio.wait_for
# swallows a cancel that lands as the query completes), which then runs to its horizon
FAST = SettlementTiming(charge_timeout_s=0.5, poll_interval_s=0.05, window_s=1.0, reconcile_interval_s=0.1,
                        reconcile_for_s=1.8)
pytestmark = pytest.mark.timeout(10)


class ShiftClock(SystemClock):
    """The lane's clock, movable forward so a captured request can be replayed 'much later'."""

    def __init__(self, tz: ZoneInfo) -> None:
        super().__init__(tz)
        self.offset_s = 0.0

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.offset_s)




class Rig:
    """Platform emulator + the lane side: store, callback listener, client, provider, publisher, settlement."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.lanes = Lanes()
        self.clock = ShiftClock(TZ)
        self.quotes: dict[str, PriceQuote] = {}
        self.releases: list[tuple[str, str, str]] = []
        self.release_answer: dict[str, Any] = {"opened": True, "message": "released"}

    async def start(self, timing: SettlementTiming = FAST) -> "Rig":
        self.store = SqliteStore(self.tmp_path / "lanectl.db")
        await self.store.open()
        self.platform = emu.TdznPlatform(pid=PID, key=KEY, park_code=PARK, notify_attempts=3,
                                         notify_interval_s=0.05, lane_timeout_s=2.0)
        await self.platform.start()
        self.cfg = TdznConfig(url=self.platform.url, pid=PID, key=SecretRef(env="UNUSED"), park_code=PARK,
                              pre_leave_timeout_s=0.2, timeout_s=1.0, rate_per_s=50.0, total_spaces=100)
        self.session = aiohttp.ClientSession()
        self.client = TdznClient(self.cfg, KEY, self.session, TZ)
        self.provider = TdznProvider(self.client, CHANNELS)
        self.publisher = TdznPublisher(self.client, CHANNELS, TZ, total_spaces=100)
        self.settlement = SettlementService(self.store, {"tdzn": self.provider}, {"out1": ["tdzn"], "out2": ["tdzn"]},
                                            self.lanes.emit, CLOCK, timing)
        self.inbound = TdznInbound(KEY, PID, PARK, self.store, self.settlement, self.clock, TZ, window_s=300,
                                   lanes_by_channel={c: lane for lane, c in CHANNELS.items()}, quote=self._quote,
                                   release=self._release)
        self.http = CallbackServer("127.0.0.1", 0, max_body_kb=64, health=self._health)

        async def route(body: bytes, content_type: str = "") -> tuple[bytes, str]:
            return await self.inbound.handle_body(body), "application/json"
        self.http.add_post("/tdzn", route)
        await self.http.start()
        self.platform.lane_url = f"http://127.0.0.1:{self.http.port}/tdzn"
        return self

    async def stop(self) -> None:
        await self.settlement.stop()
        await self.platform.stop()
        await self.http.stop()
        await self.session.close()
        await self.store.close()

    async def _health(self) -> dict:
        return {"ok": True}

    async def _quote(self, plate: str, record_no: str, channel: str) -> Optional[PriceQuote]:
        return self.quotes.get(plate or channel)

    async def _release(self, lane_id: str, operator: str, reason: str) -> dict[str, Any]:
        if self.release_answer.get("opened"):
            self.releases.append((lane_id, operator, reason))
        return self.release_answer

    async def publish(self, kind: str, payload: dict) -> Outcome:
        return await self.publisher.publish(OutboxItem(1, "tdzn", kind, f"{kind}:{payload['record_id']}", payload,
                                                       0, CLOCK.now()))

    async def enter(self, plate: str = PLATE, record_id: str = "in1_1", hours: float = 3) -> dict:
        """Upload an entry (enterNotify) the way the outbox does."""
        payload = {"record_id": record_id, "lane_id": "in1", "kind": "entry", "plate": plate, "color": "blue",
                   "at": (CLOCK.now() - timedelta(hours=hours)).isoformat(), "status": "inside",
                   "vehicle_class": "temporary", "payments": []}
        outcome = await self.publish("entry", payload)
        assert outcome.result == PublishResult.DONE, outcome.error
        return payload

    async def exit(self, plate: str = PLATE, entry_id: str = "in1_1", record_id: str = "out1_1", due: int = 700,
                   lane: str = "out1") -> fx.StartSettlement:
        now = CLOCK.now()
        order = fx.StartSettlement(record_id, lane, plate, "blue", due, due, now.isoformat(),
                                   (now - timedelta(hours=3)).isoformat(), entry_id, "temporary", "in1")
        await self.store.commit_lane(lane, {"phase": "awaiting_payment", "seq": 1}, [
            fx.NewRecord(record_id, lane, "exit", plate, "blue", now.isoformat(), "awaiting_payment",
                         due_fen=due, total_fen=due), order], now)
        self.settlement.on_effects(lane, [order])
        return order

    async def attempt(self):
        return (await self.store.attempts(provider="tdzn"))[-1]


@pytest.fixture
async def rig(tmp_path):
    r = await Rig(tmp_path).start()
    yield r
    await r.stop()


# --- preLeaveNotify: the exit charge ------------------------------------------------------------------------------
async def test_paid_at_pre_leave_is_confirmed_once_for_its_record(rig):
    rig.platform.script(PLATE, emu.pay_at_preleave(pay_type=3))
    await rig.enter()
    await rig.exit()
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert paid == PaymentConfirmed("out1_1", "tdzn", 700, "out1_1", "3")
    [sent] = rig.platform.exchanges("preLeaveNotify", "in")
    assert sent.code == 200
    assert {k: sent.biz[k] for k in ("recordNo", "orderNo", "payableFee", "discountFee", "paidFee", "outChannelid",
                                     "plateNum", "plateId", "sweepCode", "carType", "carSubType")} == {
        "recordNo": "in1_1", "orderNo": "out1_1", "payableFee": 700, "discountFee": 0, "paidFee": 700,
        "outChannelid": "A1", "plateNum": PLATE, "plateId": PLATE, "sweepCode": 0, "carType": 9, "carSubType": 91}
    await asyncio.sleep(0.3)
    assert len(rig.lanes.events) == 1 and (await rig.attempt()).status == "paid"
    assert not rig.platform.exchanges("payNotify"), "a 200 at pre-leave is not followed by payNotify"


@pytest.mark.parametrize("pay_type_kind", [1, 2], ids=["exit-qr", "signfree-async"])
async def test_not_paid_at_pre_leave_is_confirmed_only_by_the_pay_notify(rig, pay_type_kind):
    rig.platform.script(PLATE, emu.pay_later(after_s=0.4, type=pay_type_kind, pay_type=2))
    await rig.enter()
    await rig.exit()
    await asyncio.sleep(0.25)  # preLeaveNotify answered 0, the driver has not paid yet
    assert rig.platform.codes("preLeaveNotify") == [0]
    assert not rig.lanes.events and (await rig.attempt()).status == "pending"
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert paid == PaymentConfirmed("out1_1", "tdzn", 700, "out1_1", "2")
    assert rig.platform.codes("payNotify", "out") == [200]
    assert rig.platform.exchanges("payNotify", "out")[0].biz["type"] == pay_type_kind
    assert rig.inbound.counts["accepted"] == 1
    await asyncio.sleep(0.1)
    assert len(rig.lanes.events) == 1 and not rig.lanes.of(PaymentFallback)
    assert len(rig.platform.exchanges("preLeaveNotify")) == 1, "an answered bill is never re-sent"


async def test_never_paid_falls_back_after_the_window_and_confirms_nothing(rig):
    rig.platform.script(PLATE, emu.never_pay())
    await rig.enter()
    await rig.exit()
    [fallback] = await rig.lanes.wait_for(PaymentFallback)
    assert fallback.record_id == "out1_1" and "did not settle" in fallback.reason
    assert not rig.lanes.of(PaymentConfirmed) and (await rig.attempt()).status == "fallback"
    assert rig.platform.codes("preLeaveNotify") == [0]


async def test_a_duplicate_pay_notify_is_answered_6006_and_confirms_once(rig):
    rig.platform.script(PLATE, emu.duplicate_notify(after_s=0.05))
    await rig.enter()
    await rig.exit()
    await rig.lanes.wait_for(PaymentConfirmed)
    await rig.platform.idle()
    assert rig.platform.codes("payNotify", "out") == [200, 6006]
    await asyncio.sleep(0.1)
    assert len(rig.lanes.of(PaymentConfirmed)) == 1 and rig.inbound.counts["duplicate"] == 1


@pytest.mark.parametrize(("later_s", "code"), [(400, 402), (0, 6006)], ids=["outside-window", "inside-window"])
async def test_a_replayed_pay_notify_changes_nothing(rig, later_s, code):
    rig.platform.script(PLATE, emu.replayed_timestamp(after_s=0.05, replay_after_s=0.2))
    await rig.enter()
    await rig.exit()
    await rig.lanes.wait_for(PaymentConfirmed)
    rig.clock.offset_s = later_s  # the same signed bytes, arriving this much later by the lane's clock
    await rig.platform.idle()
    assert rig.platform.codes("payNotify", "out") == [200, code]
    await asyncio.sleep(0.1)
    assert len(rig.lanes.of(PaymentConfirmed)) == 1
    assert rig.inbound.counts["replay" if code == 402 else "duplicate"] == 1


@pytest.mark.parametrize(("script", "code", "counter"), [
    (emu.bad_signature(after_s=0.05), 401, "bad_signature"),
    (emu.stale_timestamp(age_s=3600, after_s=0.05), 402, "replay"),
], ids=["bad-signature", "stale-timestamp"])
async def test_an_unverifiable_pay_notify_is_refused_and_never_opens(rig, script, code, counter):
    rig.platform.script(PLATE, script)
    await rig.enter()
    await rig.exit()
    await rig.lanes.wait_for(PaymentFallback)
    await rig.platform.idle()
    assert rig.platform.codes("payNotify", "out") == [code] * 3  # the emulator's 3 attempts, all refused
    assert not rig.lanes.of(PaymentConfirmed) and rig.inbound.counts[counter] == 3
    assert (await rig.attempt()).status == "fallback"


async def test_http_500_is_never_paid_and_the_bill_is_resent(rig):
    rig.platform.script(PLATE, emu.http_500())
    await rig.enter()
    await rig.exit()
    await rig.lanes.wait_for(PaymentFallback)
    assert not rig.lanes.of(PaymentConfirmed)
    sent = rig.platform.exchanges("preLeaveNotify")
    assert len(sent) >= 2 and {e.http_status for e in sent} == {500}
    assert {e.biz["orderNo"] for e in sent} == {"out1_1"}, "a re-send is the same bill"


async def test_a_slow_platform_beyond_the_timeout_is_not_paid(rig):
    rig.platform.script(PLATE, emu.slow(0.5, then=emu.never_pay()))
    await rig.enter()
    await rig.exit()
    await rig.lanes.wait_for(PaymentFallback)
    assert not rig.lanes.of(PaymentConfirmed)
    codes = rig.platform.codes("preLeaveNotify")
    assert 405 in codes and 200 not in codes  # a later re-send learned "have it, unpaid" and stopped re-sending


async def test_a_charge_the_lane_timed_out_on_is_learned_by_the_resend_and_confirmed_once(rig):
    rig.platform.script(PLATE, emu.slow(0.3), emu.pay_at_preleave(pay_type=3))
    await rig.enter()
    await rig.exit()
    await asyncio.sleep(0.25)
    assert not rig.lanes.events, "no answer within pre_leave_timeout_s is not paid"
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert (paid.record_id, paid.amount_fen, paid.trade_no) == ("out1_1", 700, "out1_1")
    assert len(rig.platform.exchanges("preLeaveNotify")) >= 2
    await asyncio.sleep(0.2)
    assert len(rig.lanes.of(PaymentConfirmed)) == 1


async def test_pay_notifies_that_cannot_be_bound_confirm_nothing(rig):
    rig.platform.script(PLATE, emu.never_pay())
    await rig.enter()
    await rig.exit()
    await asyncio.sleep(0.1)
    p = rig.platform
    assert (await p.pay_notify(order_no="X1", paid_fee=700, record_no="nope_1", out_channel_id="A1",
                               retry=False)).code == 200  # kept for the books, not ours to confirm
    assert (await p.pay_notify(order_no="X2", paid_fee=700, record_no="in1_1", out_channel_id="A2",
                               retry=False)).code == 200  # names another lane: mismatch
    assert (await p.pay_notify(order_no="X3", paid_fee=700, record_no="in1_1", out_channel_id="A1",
                               park_code="OTHER/1", retry=False)).code == 402
    assert (await p.pay_notify(order_no="X4", paid_fee=700, record_no="in1_1", out_channel_id="A1", type=0,
                               retry=False)).code == 200  # prepaid in the lot: kept, not applied yet
    assert (await p.send_raw("payNotify", b'{"pid":"123456","sign":')).code == 4021
    await asyncio.sleep(0.1)
    assert not rig.lanes.of(PaymentConfirmed)
    c = rig.inbound.counts
    assert (c["unapplied"], c["refused"], c["prepaid"], c["malformed"], c["accepted"]) == (2, 1, 1, 1, 0)
    # the real payment still binds afterwards
    assert (await p.pay_notify(order_no="out1_1", paid_fee=700, record_no="in1_1", out_channel_id="A1",
                               retry=False)).code == 200
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert paid.trade_no == "out1_1"


async def test_a_plate_less_car_is_billed_by_record_and_settled_by_pay_notify(rig):
    rig.platform.script("无牌车", emu.pay_later(after_s=0.1))
    rig.platform.add_entry("out1_5")  # plate-less entries are not uploaded; the platform knows the exit serial
    await rig.exit(plate="", entry_id="", record_id="out1_5", due=300)
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert paid == PaymentConfirmed("out1_5", "tdzn", 300, "out1_5", "1")
    [sent] = rig.platform.exchanges("preLeaveNotify")
    assert (sent.biz["recordNo"], sent.biz["plateNum"], sent.biz["plateId"], sent.code) == (
        "out1_5", "无牌车", "out1_5", 0)


# --- queryParkFee ----------------------------------------------------------------------------------------------------
async def test_query_park_fee_is_answered_from_the_quote(rig):
    entered = CLOCK.now().replace(microsecond=0) - timedelta(hours=3)
    rig.quotes[PLATE] = PriceQuote("in1_1", 500, 700, entered, 180)
    rig.quotes["A1"] = PriceQuote("out1_7", 300, 300, None, 90)  # plate-less, by exit channel
    a = await rig.platform.query_park_fee(PLATE, out_channel_id="A1")
    assert a is not None and a.code == 200
    assert {k: a.data[k] for k in ("recordNo", "plateNum", "payableFee", "discountFee", "paidFee", "parkCode")} == {
        "recordNo": "in1_1", "plateNum": PLATE, "payableFee": 700, "discountFee": 0, "paidFee": 500,
        "parkCode": PARK}
    assert abs(a.data["useTime"] - 3 * 3600) <= 2
    b = await rig.platform.query_park_fee("", pay_scene=2, out_channel_id="A1")
    assert b is not None and (b.code, b.data["recordNo"], b.data["paidFee"]) == (200, "out1_7", 300)
    assert abs(b.data["useTime"] - 90 * 60) <= 2
    assert (await rig.platform.query_park_fee("粤B99999")).code == 6003
    assert (await rig.platform.query_park_fee(PLATE, park_code="OTHER/1")).code == 402


# --- remoteDev -------------------------------------------------------------------------------------------------------
async def test_remote_dev_releases_through_the_audited_release(rig):
    p = rig.platform
    a = await p.remote_dev("A1", 2, plate_id=PLATE, operator="张三", open_gate_case="设备故障")
    assert a is not None and a.code == 200
    assert (await p.remote_dev("A1", 0, plate_id="粤B00002", operator="李四")).code == 200
    assert rig.releases == [("out1", "张三", "tdzn remoteDev type 2: 设备故障"),
                            ("out1", "李四", "tdzn remoteDev type 0: no reason given")]
    assert (await p.remote_dev("A1", 1, plate_id=PLATE, operator="张三")).code == 200  # cancel: nothing opens
    assert (await p.remote_dev("Z9", 2, plate_id=PLATE, operator="张三", open_gate_case="x")).code == 404
    assert (await p.remote_dev("A1", 2, plate_id="粤B00004", open_gate_case="no name")).code == 400
    first = p.exchanges("remoteDev", "out")[0]
    assert (await p.send_raw("remoteDev", first.body, "replay")).code == 405  # same signed bytes again
    assert len(rig.releases) == 2
    rig.release_answer = {"opened": False, "message": "car under the arm"}
    refused = await p.remote_dev("A1", 2, plate_id="粤B00005", operator="张三", open_gate_case="x")
    assert (refused.code, refused.msg) == (6001, "car under the arm") and len(rig.releases) == 2


# --- the publisher ----------------------------------------------------------------------------------------------------
async def test_enter_and_leave_notify_are_idempotent(rig):
    entry = await rig.enter()
    assert (await rig.publish("entry", entry)).result == PublishResult.DONE  # 405: the platform has it
    assert rig.platform.codes("enterNotify") == [200, 405]
    sent = rig.platform.entries["in1_1"]
    assert {k: sent[k] for k in ("recordNo", "plateNum", "carType", "carSubType", "entrance", "inChannelid",
                                 "remainParkNum", "totalParkNum", "parkCode")} == {
        "recordNo": "in1_1", "plateNum": PLATE, "carType": 9, "carSubType": 91, "entrance": "in1",
        "inChannelid": "E1", "remainParkNum": 100, "totalParkNum": 100, "parkCode": PARK}
    now = CLOCK.now()
    exit_ = {"record_id": "out1_1", "lane_id": "out1", "kind": "exit", "plate": PLATE, "color": "blue",
             "at": now.isoformat(), "status": "paid", "vehicle_class": "temporary", "entry_record_id": "in1_1",
             "entered_at": entry["at"], "total_fen": 900, "due_fen": 0, "paid_fen": 900, "payments": [
                 {"amount_fen": 200, "method": "cash", "reference": "王五", "at": now.isoformat(), "flag": ""},
                 {"amount_fen": 700, "method": "tdzn:3", "reference": "TD1", "at": now.isoformat(), "flag": ""},
                 {"amount_fen": 100, "method": "xft:signfree", "reference": "X9", "at": now.isoformat(),
                  "flag": "late"}]}
    assert (await rig.publish("exit", exit_)).result == PublishResult.DONE
    assert (await rig.publish("exit", exit_)).result == PublishResult.DONE
    assert rig.platform.codes("leaveNotify") == [200, 405]
    left = rig.platform.leaves["in1_1"]
    assert (left["payableFee"], left["cashFee"], left["mobileFee"], left["outChannelid"], left["exitdesc"]) == (
        900, 200, 700, "A1", "out1")
    assert [(o["orderNo"], o["paidFee"], o["payType"]) for o in left["payOrders"]] == [
        ("out1_1_1", 200, 4), ("TD1", 700, 3)]


async def test_pictures_go_as_enter_pic_and_leave_pic_links(rig):
    rig.publisher.links = lambda image: f"https://lot.example.com/p?{image}" if image else None
    rig.platform.fetch_images = False  # these links name no server
    await rig.enter()  # no picture: no enterPic
    assert "enterPic" not in rig.platform.entries["in1_1"]
    entry = dict(await rig.enter("粤B55555", "in1_5"), image="in1/a.jpg")
    assert (await rig.publish("entry", dict(entry, record_id="in1_6"))).result == PublishResult.DONE
    assert rig.platform.entries["in1_6"]["enterPic"] == "https://lot.example.com/p?in1/a.jpg"
    now = CLOCK.now()
    exit_ = {"record_id": "out1_6", "lane_id": "out1", "kind": "exit", "plate": "粤B55555", "color": "blue",
             "at": now.isoformat(), "status": "leaving", "vehicle_class": "temporary", "entry_record_id": "in1_6",
             "entered_at": entry["at"], "total_fen": 0, "payments": [], "image": "out1/b.jpg"}
    assert (await rig.publish("exit", exit_)).result == PublishResult.DONE
    assert rig.platform.leaves["in1_6"]["leavePic"] == "https://lot.example.com/p?out1/b.jpg"


async def test_the_publisher_skips_refused_and_plate_less_records_and_sorts_refusals(rig):
    base = {"lane_id": "in1", "color": "", "at": CLOCK.now().isoformat(), "vehicle_class": "", "payments": []}
    for kind, extra in [("entry", {"record_id": "in1_2", "plate": PLATE, "status": "refused"}),
                        ("entry", {"record_id": "in1_3", "plate": "", "status": "inside"}),
                        ("exit", {"record_id": "out1_3", "plate": "", "status": "released", "lane_id": "out1"}),
                        ("release", {"record_id": "out1_4", "plate": "", "status": "released"})]:
        assert (await rig.publish(kind, {**base, **extra})).result == PublishResult.DONE
    assert rig.platform.log == [], "nothing is sent for them"
    orphan = {**base, "record_id": "out1_9", "lane_id": "out1", "plate": PLATE, "status": "paid", "total_fen": 0}
    rejected = await rig.publish("exit", orphan)  # never entered at the platform: 6003, a dead letter
    assert rejected.result == PublishResult.REJECT and "6003" in rejected.error
    wrong_key = TdznPublisher(TdznClient(rig.cfg, "WRONG", rig.session, TZ), CHANNELS, TZ, total_spaces=100)
    item = OutboxItem(2, "tdzn", "entry", "entry:in1_5", {**base, "record_id": "in1_5", "plate": PLATE,
                                                           "status": "inside"}, 0, CLOCK.now())
    retried = await wrong_key.publish(item)  # 401: our key, fixable: keep the item
    assert retried.result == PublishResult.RETRY and "401" in retried.error
    rig.platform.available = False
    assert (await rig.publisher.publish(item)).result == PublishResult.RETRY  # HTTP 503
    assert [pay_type_of(m) for m in ("cash", "tdzn:2", "tdzn", "tdzn:99", "operator", "bolink:wallet")] == [
        4, 2, 6, 6, 6, 6]
