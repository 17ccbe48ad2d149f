"""Bolink end to end against the platform emulator: uploads through the publisher, sign-free marks from 5.2,
wallet exits through the settlement service (sync answer, 5.5 push, 4.3 polling), and every fault the
emulator can script. A payment reaches the lane once, only for its own order, and only when paid."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Optional
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from hil.emulators import bolink as emu
from lanectl.providers.bolink.client import BolinkClient, BolinkEtcProvider, BolinkProvider, BolinkPublisher
from lanectl.adapters.callback_server import CallbackServer
from lanectl.adapters.clock import SystemClock
from lanectl.adapters.store import SqliteStore
from lanectl.config.base import SecretRef
from lanectl.providers.bolink.config import BolinkConfig
from lanectl.core import effects as fx
from lanectl.core.events import PaymentConfirmed, PaymentFallback
from lanectl.core.rules import CardRenewal, RenewalError
from lanectl.providers.bolink import codec as bl
from lanectl.providers.bolink.inbound import BolinkInbound, PriceQuote
from lanectl.service.outbox import OutboxItem, PublishResult
from lanectl.service.settlement import SettlementService, SettlementTiming
from tests.fakes import LaneEvents as Lanes

TZ = ZoneInfo("Asia/Shanghai")
CLOCK = SystemClock(TZ)
KEY = "8403A41ED5EF20BC"
PARK = "21835"
PLATE = "粤B12345"
FAST = SettlementTiming(charge_timeout_s=0.5, poll_interval_s=0.1, window_s=1.5, reconcile_interval_s=0.1,
                        reconcile_for_s=5.0)




class Rig:
    """Platform emulator + the lane side: store, callback listener, client, provider, publisher, settlement."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.lanes = Lanes()
        self.quotes: dict[str, PriceQuote] = {}
        self.renewals: list[tuple[CardRenewal, str, int]] = []

    async def start(self, timing: SettlementTiming = FAST) -> "Rig":
        self.store = SqliteStore(self.tmp_path / "lanectl.db", destinations=["bolink"])
        await self.store.open()
        self.http = CallbackServer("127.0.0.1", 0, max_body_kb=256, health=self._health)
        self.platform = emu.BolinkPlatform(key=KEY, push_interval_s=0.1, push_attempts=3)
        await self.platform.start()
        self.cfg = BolinkConfig(base_url=self.platform.url, union_id=self.platform.union_id, park_id=PARK,
                                key=SecretRef(env="UNUSED"), timeout_s=1.0, rate_per_s=9.0)
        self.session = aiohttp.ClientSession()
        client = BolinkClient(self.cfg, KEY, self.session)
        self.provider = BolinkProvider(client, self.store, {"in1": "E1", "out1": "A1"})
        self.etc = BolinkEtcProvider(self.provider, {"out1": "000139"})
        self.publisher = BolinkPublisher(client, {"in1": "E1", "out1": "A1"})
        self.settlement = SettlementService(self.store, {"bolink": self.provider, "bolink_etc": self.etc},
                                            {"out1": ["bolink", "bolink_etc"]}, self.lanes.emit, CLOCK, timing)
        self.inbound = BolinkInbound(KEY, PARK, self.store, self.settlement, CLOCK,
                                     lanes_by_channel={"E1": "in1", "A1": "out1"}, quote=self._quote,
                                     renew=self._renew)

        async def route(body: bytes, content_type: str) -> tuple[bytes, str]:
            return await self.inbound.handle_body(body), "application/json"
        self.http.add_post("/bolink", route)
        await self.http.start()
        self.platform.callback_url = f"http://127.0.0.1:{self.http.port}/bolink"
        return self

    async def stop(self) -> None:
        await self.settlement.stop()
        await self.platform.stop()
        await self.http.stop()
        await self.session.close()
        await self.store.close()

    async def _health(self) -> dict:
        return {"ok": True}

    async def _quote(self, plate: str, order_id: str, channel: str) -> Optional[PriceQuote]:
        return self.quotes.get(plate or order_id)

    async def _renew(self, renewal: CardRenewal, trade_no: str, amount_fen: int) -> None:
        if renewal.plate == "粤B00001":
            raise RenewalError("粤B00001 is whitelisted")
        self.renewals.append((renewal, trade_no, amount_fen))

    async def enter(self, plate: str = PLATE, record_id: str = "in1_1", hours: float = 3) -> dict:
        """Upload an entry (3.1) the way the outbox does; the platform answers with a 5.2 for the plate."""
        at = CLOCK.now() - timedelta(hours=hours)
        payload = {"record_id": record_id, "lane_id": "in1", "kind": "entry", "plate": plate, "color": "blue",
                   "at": at.isoformat(), "status": "inside", "vehicle_class": "temporary", "payments": []}
        outcome = await self.publisher.publish(OutboxItem(1, "bolink", "entry", f"entry:{record_id}", payload, 0,
                                                          CLOCK.now()))
        assert outcome.result == PublishResult.DONE, outcome.error
        await self.platform.idle()
        return payload

    async def exit(self, plate: str = PLATE, entry_id: str = "in1_1", record_id: str = "out1_1",
                   due: int = 700, image: str = "", entry_image: str = "") -> fx.StartSettlement:
        now = CLOCK.now()
        order = fx.StartSettlement(record_id, "out1", plate, "blue", due, due, now.isoformat(),
                                   (now - timedelta(hours=3)).isoformat(), entry_id, "temporary", "in1",
                                   image=image, entry_image=entry_image)
        await self.store.commit_lane("out1", {"phase": "awaiting_payment", "seq": 1}, [
            fx.NewRecord(record_id, "out1", "exit", plate, "blue", now.isoformat(), "awaiting_payment",
                         due_fen=due, total_fen=due), order], now)
        self.settlement.on_effects("out1", [order])
        return order


@pytest.fixture
async def rig(tmp_path):
    r = await Rig(tmp_path).start()
    r.platform.etc_plates = set()  # nobody has an ETC account unless a test says so
    r.platform.fetch_images = False  # the links in these tests name no server
    yield r
    await r.stop()


async def signed_in(rig: Rig, behaviour: emu.Behaviour, plate: str = PLATE) -> None:
    rig.platform.sign_free.add(plate)
    rig.platform.scripts[plate] = behaviour
    await rig.enter(plate)
    assert await rig.store.mark("bolink", plate, "signfree") == "1"


async def test_entry_upload_is_idempotent_and_the_5_2_notice_marks_the_plate(rig):
    payload = await rig.enter()
    assert rig.platform.order(PARK, "in1_1") is not None
    assert await rig.store.mark("bolink", PLATE, "signfree") == "0"  # not a member: marked as such
    again = await rig.publisher.publish(OutboxItem(2, "bolink", "entry", "entry:in1_1", payload, 1, CLOCK.now()))
    assert again.result == PublishResult.DONE and rig.platform.duplicates == 1


async def test_sign_free_wallet_exit_paid_at_once(rig):
    await signed_in(rig, emu.pay_now())
    await rig.exit()
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert (paid.record_id, paid.provider, paid.amount_fen) == ("out1_1", "bolink", 700)
    await rig.platform.idle()
    await asyncio.sleep(0.3)
    assert len(rig.lanes.of(PaymentConfirmed)) == 1, "the sync answer and the 5.5 push confirm one payment"


async def test_pending_then_paid_settles_by_push_or_poll_once(rig):
    await signed_in(rig, emu.pending_then_paid(0.4))
    await rig.exit()
    await asyncio.sleep(0.2)
    assert not rig.lanes.of(PaymentConfirmed), "state=2 never confirms"
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert paid.amount_fen == 700
    await rig.platform.idle()
    assert len(rig.lanes.of(PaymentConfirmed)) == 1


async def test_a_failed_wallet_payment_falls_back(rig):
    await signed_in(rig, emu.fail())
    await rig.exit()
    [fallback] = await rig.lanes.wait_for(PaymentFallback)
    assert not rig.lanes.of(PaymentConfirmed) and fallback.record_id == "out1_1"


async def test_a_plate_that_is_not_sign_free_is_never_charged_on_a_wallet(rig):
    await rig.enter()
    await rig.exit()
    [fallback] = await rig.lanes.wait_for(PaymentFallback)
    assert not [u for u in rig.platform.uploads if u.path == bl.PATHS["exit"]]
    assert fallback.reason == "bolink: not a Bolink sign-free member; bolink_etc failed: 非ETC车辆"


async def test_an_etc_car_pays_by_etc_paying_then_paid_once(rig):
    rig.platform.etc_plates = {PLATE}
    rig.platform.etc_pending_s = 0.3
    await rig.enter()
    await rig.exit()
    await asyncio.sleep(0.15)
    assert not rig.lanes.of(PaymentConfirmed), "ETC state 2 (jyyh paying) never confirms"
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert (paid.provider, paid.method, paid.amount_fen) == ("bolink_etc", "etc", 700)
    [etc] = [u for u in rig.platform.uploads if u.path == bl.PATHS["etc"]]
    assert (etc.data["lane_no"], etc.data["in_channel_id"], etc.data["out_channel_id"]) == ("000139", "E1", "A1")
    await rig.platform.idle()
    await asyncio.sleep(0.3)
    assert len(rig.lanes.of(PaymentConfirmed)) == 1


@pytest.mark.parametrize("behaviour", [emu.duplicate_push(), emu.out_of_order(), emu.push_before_answer()],
                         ids=["duplicate", "out-of-order", "push-before-answer"])
async def test_repeated_and_reordered_pushes_confirm_once(rig, behaviour):
    await signed_in(rig, behaviour)
    await rig.exit()
    await rig.lanes.wait_for(PaymentConfirmed)
    await rig.platform.idle()
    await asyncio.sleep(0.3)
    assert len(rig.lanes.of(PaymentConfirmed)) == 1 and not rig.lanes.of(PaymentFallback)
    assert all(p.acked for p in rig.platform.pushes_for("outpark")), "every push is acknowledged"


async def test_pushes_with_a_bad_signature_or_for_another_order_confirm_nothing(rig):
    await signed_in(rig, emu.never_settle())
    await rig.exit()
    await asyncio.sleep(0.3)
    await rig.platform.push_outpark(PARK, "in1_1", state=1, total_fen=700, key="0000000000000000")
    await rig.platform.push_outpark(PARK, "someone_else", state=1, total_fen=700)
    await asyncio.sleep(0.3)
    assert not rig.lanes.of(PaymentConfirmed)
    assert rig.inbound.counts["bad_signature"] >= 1
    forged = [p for p in rig.platform.pushes_for("outpark") if p.data.get("order_id") == "in1_1"]
    assert forged and not any(p.acked for p in forged), "a forged push gets the platform's error answer"


@pytest.mark.parametrize("behaviour", [emu.http_500(), emu.slow(2.0)], ids=["5xx", "slow"])
async def test_no_usable_answer_is_never_paid(rig, behaviour):
    await signed_in(rig, behaviour)
    await rig.exit()
    await asyncio.sleep(0.8)
    assert not rig.lanes.of(PaymentConfirmed)


async def test_never_settling_falls_back_and_a_late_success_is_still_confirmed(rig):
    await signed_in(rig, emu.never_settle())
    await rig.exit()
    await rig.lanes.wait_for(PaymentFallback)
    assert not rig.lanes.of(PaymentConfirmed)
    await rig.platform.push_outpark(PARK, "in1_1", state=1, total_fen=700, trade_no="LATE1")
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert paid.trade_no == "LATE1"


async def test_query_price_is_answered_from_the_fee_engine_quote(rig):
    rig.quotes[PLATE] = PriceQuote("in1_1", 700, 700, CLOCK.now() - timedelta(hours=3), 180)
    push = await rig.platform.push_query_price(PARK, car_number=PLATE)
    assert (push.answer["state"], push.answer["price"], push.answer["order_id"]) == (1, "7.00", "in1_1")
    unknown = await rig.platform.push_query_price(PARK, car_number="粤B99999")
    assert unknown.answer["state"] == 0 and unknown.answer["errmsg"] == bl.ERR_NO_SUCH_ORDER


async def test_a_replayed_notice_nonce_is_refused(rig):
    await rig.platform.push_notice_car_owner(PARK, PLATE, is_union_user=1, rand="R1")
    replay = await rig.platform.push(PARK, {"service_name": "notice_car_owner", "union_id": rig.platform.union_id,
                                            "park_id": PARK, "car_number": PLATE, "is_union_user": 0,
                                            "rand": "R1"}, retry=False)
    assert replay[-1].answer["state"] == 0
    assert await rig.store.mark("bolink", PLATE, "signfree") == "1", "the replay changed nothing"


async def test_a_cash_exit_is_uploaded_as_cash_and_a_platform_paid_one_is_not_uploaded_twice(rig):
    await rig.enter()
    base = {"lane_id": "out1", "kind": "exit", "plate": PLATE, "color": "blue", "at": CLOCK.now().isoformat(),
            "entered_at": (CLOCK.now() - timedelta(hours=3)).isoformat(), "entry_record_id": "in1_1",
            "status": "released"}
    cash = dict(base, record_id="out1_1", payments=[{"amount_fen": 700, "method": "cash", "reference": "王",
                                                     "at": "", "flag": ""}])
    assert (await rig.publisher.publish(OutboxItem(3, "bolink", "exit", "exit:out1_1", cash, 0,
                                                   CLOCK.now()))).result == PublishResult.DONE
    exits = [u for u in rig.platform.uploads if u.path == bl.PATHS["exit"]]
    assert exits and exits[-1].data["pay_type"] == "cash" and exits[-1].data["total"] == "7.00"
    wallet = dict(base, record_id="out1_2", payments=[{"amount_fen": 700, "method": "bolink:wallet",
                                                       "reference": "T1", "at": "", "flag": ""}])
    before = len(rig.platform.uploads)
    assert (await rig.publisher.publish(OutboxItem(4, "bolink", "exit", "exit:out1_2", wallet, 0,
                                                   CLOCK.now()))).result == PublishResult.DONE
    assert len(rig.platform.uploads) == before


async def test_a_monthly_card_renewal_is_applied_once_and_always_acknowledged(rig):
    pushes = await rig.platform.push_monthcard_pay(PARK, amount_fen=30000, car_number=PLATE, card_id="M7",
                                                   start_time="2026-12-01", end_time="2026-12-31", trade_no="MC1")
    assert pushes[-1].acked and pushes[-1].answer == {"state": 1, "trade_no": "MC1"}
    assert rig.renewals == [(CardRenewal("M7", PLATE, date(2026, 12, 1), date(2026, 12, 31)), "MC1", 30000)]
    again = await rig.platform.push_monthcard_pay(PARK, amount_fen=30000, car_number=PLATE, card_id="M7",
                                                  start_time="2026-12-01", end_time="2026-12-31", trade_no="MC1")
    assert again[-1].acked and len(rig.renewals) == 1, "a repeated trade_no changes nothing"
    # one that cannot apply (conflicting plate) or has no period is kept and acknowledged, not applied
    for plate, end, trade in (("粤B00001", "2026-12-31", "MC2"), (PLATE, "", "MC3")):
        pushes = await rig.platform.push_monthcard_pay(PARK, amount_fen=100, car_number=plate, end_time=end,
                                                       trade_no=trade)
        assert pushes[-1].acked
    assert len(rig.renewals) == 1


@pytest.mark.parametrize("sign_free", [False, True], ids=["not-sign-free", "wallet-failed"])
async def test_a_driver_who_pays_by_scanning_the_exit_qr_is_let_out(rig, sign_free):
    """After the wallet was skipped (not a member) or failed, the driver scans the exit QR and pays the same
    order: the platform's 5.5 push (pay_type scancode) confirms it for the car still waiting."""
    if sign_free:
        await signed_in(rig, emu.fail())
    else:
        await rig.enter()
    await rig.exit()
    await rig.lanes.wait_for(PaymentFallback)
    rig.quotes[PLATE] = PriceQuote("in1_1", 700, 700, None, 180)
    asked = await rig.platform.push_query_price(PARK, pay_scene=1, out_channel_id="A1", car_number=PLATE)
    order_id = asked.answer["order_id"]
    await rig.platform.push_outpark(PARK, order_id, state=1, total_fen=700, trade_no="SCAN1")
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert (paid.record_id, paid.trade_no, paid.amount_fen) == ("out1_1", "SCAN1", 700)


async def test_a_payment_code_from_the_booth_scanner_pays_once_by_sweepcode(rig):
    rig.platform.scripts[PLATE] = emu.pending_then_paid(0.3)
    await rig.enter()
    order = await rig.exit()
    await rig.lanes.wait_for(PaymentFallback)  # not a sign-free member, no ETC: the driver pays by scanner
    rig.settlement.on_effects("out1", [fx.ChargeByCode(order.record_id, "134567890123456789")])
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert (paid.record_id, paid.provider, paid.amount_fen) == ("out1_1", "bolink", 700)
    [charge] = [u for u in rig.platform.uploads if u.path == bl.PATHS["exit"]]
    assert (charge.data["pay_type"], charge.data["auth_code"]) == ("sweepcode", "134567890123456789")
    await rig.platform.idle()
    await asyncio.sleep(0.3)
    assert len(rig.lanes.of(PaymentConfirmed)) == 1


async def test_a_refused_payment_code_tells_the_lane(rig):
    rig.platform.scripts[PLATE] = emu.fail()
    await rig.enter()
    order = await rig.exit()
    await rig.lanes.wait_for(PaymentFallback)
    rig.settlement.on_effects("out1", [fx.ChargeByCode(order.record_id, "134567890123456789")])
    fallbacks = await rig.lanes.wait_for(PaymentFallback, n=2)
    assert "scanned code refused" in fallbacks[-1].reason and not rig.lanes.of(PaymentConfirmed)


def _links(image):
    return f"https://lot.example.com/images/{image.rsplit('/', 2)[-2]}/{image.rsplit('/', 1)[-1]}?t=x" if image else None


async def test_pictures_ride_as_links_on_the_entry_upload_the_wallet_exit_and_the_cash_exit(rig):
    rig.provider.links = rig.publisher.links = _links
    await signed_in(rig, emu.pay_now())  # an entry without a picture
    payload = {"record_id": "in1_5", "lane_id": "in1", "kind": "entry", "plate": "粤B55555", "color": "blue",
               "at": CLOCK.now().isoformat(), "status": "inside", "payments": [],
               "image": "/var/lib/lanectl/images/in1/20261206-080000-000001_1.jpg"}
    await rig.publisher.publish(OutboxItem(2, "bolink", "entry", "entry:in1_5", payload, 0, CLOCK.now()))
    entries = [u.data for u in rig.platform.uploads if u.path == bl.PATHS["entry"]]
    assert "inpark_img" not in entries[0], "no picture, no field"
    assert entries[1]["inpark_img"] == "https://lot.example.com/images/in1/20261206-080000-000001_1.jpg?t=x"

    await rig.exit(image="/var/lib/lanectl/images/out1/20261206-110000-000001_3.jpg")
    await rig.lanes.wait_for(PaymentConfirmed)
    [wallet] = [u.data for u in rig.platform.uploads if u.path == bl.PATHS["exit"]]
    assert (wallet["pay_type"], wallet["outpark_img"]) == (
        "wallet", "https://lot.example.com/images/out1/20261206-110000-000001_3.jpg?t=x")
    cash = {"record_id": "out1_9", "lane_id": "out1", "kind": "exit", "plate": "粤B55555", "color": "blue",
            "at": CLOCK.now().isoformat(), "entry_record_id": "in1_5", "status": "released", "payments": [],
            "image": "/var/lib/lanectl/images/out1/20261206-110000-000001_4.jpg"}
    await rig.publisher.publish(OutboxItem(3, "bolink", "exit", "exit:out1_9", cash, 0, CLOCK.now()))
    last = [u.data for u in rig.platform.uploads if u.path == bl.PATHS["exit"]][-1]
    assert (last["pay_type"], last["outpark_img"]) == (
        "cash", "https://lot.example.com/images/out1/20261206-110000-000001_4.jpg?t=x")


async def test_etc_my_sends_both_pictures_and_skips_a_car_missing_one(rig):
    rig.provider.links = _links
    rig.provider.client.cfg = rig.cfg.model_copy(update={"etc_pay_type": "my"})
    rig.platform.etc_plates = {PLATE, "粤B22222"}
    await rig.enter()
    await rig.enter("粤B22222", "in1_2")
    order = await rig.exit(plate="粤B22222", entry_id="in1_2", record_id="out1_2",
                           image="/x/images/out1/b.jpg")  # the entry camera missed this car
    [fallback] = await rig.lanes.wait_for(PaymentFallback)
    assert fallback.record_id == order.record_id and "no entry picture" in fallback.reason
    assert not [u for u in rig.platform.uploads if u.path == bl.PATHS["etc"]], "never sent without both"
    await rig.exit(image="/x/images/out1/a.jpg", entry_image="/x/images/in1/a.jpg")
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert (paid.record_id, paid.provider, paid.amount_fen) == ("out1_1", "bolink_etc", 700)
    [etc] = [u.data for u in rig.platform.uploads if u.path == bl.PATHS["etc"]]
    assert (etc["pay_type"], etc["inpark_img"], etc["outpark_img"]) == (
        "my", "https://lot.example.com/images/in1/a.jpg?t=x", "https://lot.example.com/images/out1/a.jpg?t=x")
