"""XFT end to end against the platform emulator: sign-free exits through the settlement service (sync answer,
notify, query/charge/v2 polling, reconciliation), the notify endpoint, entry uploads through the publisher,
and every fault the emulator can script. A payment reaches the lane once, only for its own record, and only
when paid by a verified answer."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime, timedelta
from typing import Any, Callable, Optional
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from hil.emulators import xft as emu
from hil.emulators.xft import XftPlatform
from lanectl.adapters.clock import SystemClock
from lanectl.adapters.store import SqliteStore
from lanectl.providers.xft.client import XftClient, XftProvider, XftPublisher
from lanectl.config.base import SecretRef
from lanectl.providers.xft.config import XftConfig
from lanectl.core import effects as fx
from lanectl.core.events import PaymentConfirmed, PaymentFallback
from lanectl.providers.xft import codec as xft
from lanectl.service.outbox import OutboxItem, PublishResult
from lanectl.service.settlement import (Attempt, ChargeAnswer, ProviderUnavailable, SettlementService,
                                        SettlementTiming)
from lanectl.providers.xft.inbound import XftInbound
from tests.fakes import LaneEvents as Lanes

TZ = ZoneInfo("Asia/Shanghai")
CLOCK = SystemClock(TZ)
KEY = "xft-merchant-key-for-tests"
PLATE = "粤B12345"
STORE = "S01"
FAST = SettlementTiming(charge_timeout_s=0.3, poll_interval_s=0.05, window_s=1.0, reconcile_interval_s=0.05,
                        reconcile_for_s=5.0)
SLOW_POLL = SettlementTiming(charge_timeout_s=0.3, poll_interval_s=2.0, window_s=2.5, reconcile_interval_s=1.0,
                             reconcile_for_s=5.0)




class Booth:
    """A second provider after XFT (another platform, or the booth's scan-to-pay) that always takes the money."""

    name = "booth"

    def __init__(self) -> None:
        self.calls = 0

    def order_ref(self, order: fx.StartSettlement) -> str:
        return f"booth-{order.record_id}"

    async def charge(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        self.calls += 1
        return ChargeAnswer("paid", "B1", attempt.amount_fen, "qr")

    async def query(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        return ChargeAnswer("pending")


def dead_url(path: str = "/xft/notify") -> str:
    """A URL nobody listens on: connections are refused (a notify that never arrives)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def config(base_url: str, notify_url: str, **over: Any) -> XftConfig:
    return XftConfig(**{"base_url": base_url, "app_id": "wx8888", "merchant_code": "M100", "store_code": STORE,
                        "key": SecretRef(env="UNUSED"), "notify_url": notify_url, "timeout_s": 1.0,
                        "rate_per_s": 100.0, **over})


class Rig:
    """Platform emulator + the lane side: store, notify listener, client, provider, publisher, settlement."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.lanes = Lanes()
        self.notify_answers: list[bytes] = []

    async def start(self, *, timing: SettlementTiming = FAST, notify_lost: bool = False,
                    require_signature: bool = True, booth: bool = False, channels: Optional[dict[str, str]] = None,
                    **cfg: Any) -> "Rig":
        self.store = SqliteStore(self.tmp_path / "lanectl.db", destinations=["xft"])
        await self.store.open()
        self.platform = XftPlatform(key=KEY, notify_interval_s=0.05, notify_attempts=3, notify_timeout_s=1.0)
        await self.platform.start()
        app = web.Application()
        app.router.add_post("/xft/notify", self._notify)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.notify_url = dead_url() if notify_lost else f"http://127.0.0.1:{port}/xft/notify"
        self.cfg = config(self.platform.url, self.notify_url, **cfg)
        self.session = aiohttp.ClientSession()
        self.client = XftClient(self.cfg, KEY, self.session)
        self.provider = XftProvider(self.client, channels or {}, TZ)
        self.publisher = XftPublisher(self.client, {}, TZ)
        self.booth = Booth()
        providers: dict[str, Any] = {"xft": self.provider, "booth": self.booth}
        order = ["xft", "booth"] if booth else ["xft"]
        self.settlement = SettlementService(self.store, providers, {"out1": order}, self.lanes.emit, CLOCK, timing)
        self.inbound = XftInbound(KEY, self.store, self.settlement, CLOCK, require_signature=require_signature,
                                  store_code=STORE)
        return self

    async def stop(self) -> None:
        await self.settlement.stop()
        await self.platform.stop()
        await self.runner.cleanup()
        await self.session.close()
        await self.store.close()

    async def _notify(self, request: web.Request) -> web.Response:
        body, ctype = await self.inbound.handle_body(await request.read(), request.content_type)
        self.notify_answers.append(body)
        return web.Response(body=body, content_type=ctype)

    async def exit(self, plate: str = PLATE, record_id: str = "out1_1", due: int = 700) -> fx.StartSettlement:
        now = CLOCK.now()
        order = fx.StartSettlement(record_id, "out1", plate, "blue", due, due, now.isoformat(),
                                   (now - timedelta(hours=3)).isoformat(), "in1_1", "temporary")
        await self.store.commit_lane("out1", {"phase": "awaiting_payment", "seq": 1}, [
            fx.NewRecord(record_id, "out1", "exit", plate, "blue", now.isoformat(), "awaiting_payment",
                         due_fen=due, total_fen=due), order], now)
        self.settlement.on_effects("out1", [order])
        return order

    async def attempt(self, record_id: str = "out1_1", provider: str = "xft") -> Attempt:
        return (await self.store.attempts(record_id=record_id, provider=provider))[-1]

    async def inbox(self) -> list[str]:
        return await self.store._run(lambda: [r["trade_no"] for r in self.store.conn.execute(
            "SELECT trade_no FROM inbox WHERE provider='xft' ORDER BY id")])

    async def post_notify(self, fields: dict[str, str]) -> str:
        async with self.session.post(self.notify_url, data=xft.compact_json(fields).encode(),
                                     headers={"Content-Type": "application/json"}) as r:
            assert r.status == 200
            return await r.text()


@pytest.fixture
async def rig(tmp_path):
    r = await Rig(tmp_path).start()
    yield r
    await r.stop()


@pytest.fixture
async def make_rig(tmp_path):
    rigs: list[Rig] = []

    async def make(**kw: Any) -> Rig:
        r = await Rig(tmp_path).start(**kw)
        rigs.append(r)
        return r
    yield make
    for r in rigs:
        await r.stop()


def signed(rig: Rig, script: emu.ExitScript, plate: str = PLATE) -> None:
    rig.platform.sign_plate(plate)
    rig.platform.script(plate, script)


async def until(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


async def settle_down(rig: Rig, seconds: float = 0.2) -> None:
    await until(lambda: bool(rig.platform.orders))  # the exit call went out (its notifies are under way)
    await rig.platform.idle()
    await asyncio.sleep(seconds)


# ------------------------------------------------------------------------------------------ sync answers

@pytest.mark.parametrize("style", ["flat", "wrapped", "wrapped_text"])
async def test_a_signed_plate_paid_at_once_is_confirmed_once(rig, style):
    rig.platform.answer_style = style
    signed(rig, emu.success())
    await rig.exit()
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert paid == PaymentConfirmed("out1_1", "xft", 700, "out1_1", "signfree")  # WeChat: no third_trade_no yet
    order = rig.platform.orders["out1_1"]
    assert (order.amount_fen, order.plate, order.notify_url, order.store_code) == (700, PLATE, rig.notify_url, STORE)
    await settle_down(rig)
    assert len(rig.lanes.of(PaymentConfirmed)) == 1, "the sync SUCCESS and the notify confirm one payment"
    assert rig.platform.acked_notifies("out1_1") and rig.inbound.counts["accepted"] == 1
    assert (await rig.attempt()).status == "paid"
    assert dict(rig.platform.calls) == {"signed_relation": 1, "exit": 1}


async def test_fail_hands_over_to_the_next_provider(make_rig):
    rig = await make_rig(booth=True)
    signed(rig, emu.fail())
    await rig.exit()
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert paid.provider == "booth" and rig.booth.calls == 1
    assert [a.status for a in await rig.store.attempts(record_id="out1_1")] == ["failed", "paid"]
    assert "PAY_FAIL" in (await rig.attempt()).detail


async def test_fail_alone_falls_back_with_nothing_confirmed(rig):
    signed(rig, emu.fail())
    await rig.exit()
    [fallback] = await rig.lanes.wait_for(PaymentFallback)
    assert "xft failed" in fallback.reason and not rig.lanes.of(PaymentConfirmed)


async def test_an_unsigned_plate_is_skipped_without_an_exit_call_and_the_relation_is_cached(rig):
    await rig.exit()
    [fallback] = await rig.lanes.wait_for(PaymentFallback)
    assert "no XFT sign-free contract" in fallback.reason and not rig.lanes.of(PaymentConfirmed)
    assert (await rig.attempt()).status == "skipped"
    await rig.exit(record_id="out1_2")
    await rig.lanes.wait_for(PaymentFallback, 2)
    assert rig.platform.calls["exit"] == 0 and not rig.platform.orders
    assert rig.platform.calls["signed_relation"] == 1, "the second exit used the cached relation"


# ------------------------------------------------------------------------------------------ INIT: notify / poll

@pytest.mark.parametrize("fmt", ["json", "form"])
async def test_init_then_paid_settles_by_the_notify_before_any_poll(make_rig, fmt):
    rig = await make_rig(timing=SLOW_POLL)
    rig.platform.notify_format = fmt
    signed(rig, emu.init_then("00", 0.2))
    await rig.exit()
    await asyncio.sleep(0.1)
    assert not rig.lanes.of(PaymentConfirmed), "INIT never confirms"
    [paid] = await rig.lanes.wait_for(PaymentConfirmed, timeout=1.5)
    assert rig.platform.calls["charge_query"] == 0, "the notify settled it, not a poll"
    assert (paid.record_id, paid.amount_fen, paid.trade_no) == ("out1_1", 700, "out1_1")
    third = rig.platform.orders["out1_1"].third_trade_no
    assert third in (await rig.attempt()).detail, "the WeChat trade number is kept with the attempt"
    assert await rig.inbox() == [f"out1_1:{third}:00"]
    await settle_down(rig)
    assert len(rig.lanes.of(PaymentConfirmed)) == 1 and not rig.lanes.of(PaymentFallback)


@pytest.mark.parametrize("script", [emu.init_then("00", 0.2), emu.duplicate_notify(3, "00", 0.1),
                                    emu.out_of_order_notify("00")], ids=["race", "duplicate", "notify-first"])
async def test_poll_and_repeated_or_early_notifies_confirm_once(rig, script):
    signed(rig, script)
    await rig.exit()
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert (paid.record_id, paid.amount_fen) == ("out1_1", 700)
    await settle_down(rig, 0.3)
    assert len(rig.lanes.of(PaymentConfirmed)) == 1 and not rig.lanes.of(PaymentFallback)
    copies = rig.platform.orders["out1_1"].script.notify_copies
    assert len(rig.platform.acked_notifies("out1_1")) == copies, "every copy is acknowledged"
    assert rig.inbound.counts["accepted"] == 1 and rig.inbound.counts["duplicate"] == copies - 1
    assert len(await rig.inbox()) == 1


async def test_init_then_paid_by_polling_when_the_notify_is_lost(make_rig):
    rig = await make_rig(notify_lost=True)
    signed(rig, emu.init_then("00", 0.2))
    await rig.exit()
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    order = rig.platform.orders["out1_1"]
    assert (paid.amount_fen, paid.trade_no) == (700, order.third_trade_no)  # from query/charge/v2
    assert rig.platform.calls["charge_query"] >= 1 and rig.inbound.counts["accepted"] == 0
    await settle_down(rig)
    assert not rig.platform.acked_notifies() and len(rig.lanes.of(PaymentConfirmed)) == 1


async def test_init_then_failed_falls_back_and_confirms_nothing(rig):
    signed(rig, emu.init_then("01", 0.2))
    await rig.exit()
    [fallback] = await rig.lanes.wait_for(PaymentFallback)
    assert fallback.reason.startswith("xft failed") and not rig.lanes.of(PaymentConfirmed)
    assert (await rig.attempt()).status == "failed"
    await settle_down(rig)
    assert not rig.lanes.of(PaymentConfirmed)


async def test_init_forever_falls_back_after_the_window_and_a_late_success_is_reconciled(rig):
    signed(rig, emu.init_forever())
    await rig.exit()
    started = asyncio.get_running_loop().time()
    [fallback] = await rig.lanes.wait_for(PaymentFallback)
    assert asyncio.get_running_loop().time() - started >= FAST.window_s - 0.1
    assert "did not settle" in fallback.reason and not rig.lanes.of(PaymentConfirmed)
    assert (await rig.attempt()).status == "fallback"
    rig.platform.orders["out1_1"].state = "00"  # the driver paid late, after the lane fell back
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert (paid.record_id, paid.amount_fen, paid.trade_no) == ("out1_1", 700,
                                                                rig.platform.orders["out1_1"].third_trade_no)
    assert (await rig.attempt()).status == "paid"


# ------------------------------------------------------------------------------------------ no usable answer

async def test_http_500_without_an_order_is_never_paid(rig):
    signed(rig, emu.http_500(order_created=False))
    await rig.exit()
    await rig.lanes.wait_for(PaymentFallback)
    assert not rig.lanes.of(PaymentConfirmed) and rig.platform.http_errors == 1


async def test_http_500_with_the_order_behind_it_is_settled_by_verified_results_only(rig):
    signed(rig, emu.http_500(order_created=True, state="00"))
    await rig.exit()
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)  # the notify or query/charge/v2, not the 500
    assert paid.amount_fen == 700
    await settle_down(rig)
    assert len(rig.lanes.of(PaymentConfirmed)) == 1


async def test_an_answer_slower_than_the_charge_timeout_is_never_paid(rig):
    signed(rig, emu.slow(2.0, emu.init_forever()))
    await rig.exit()
    await asyncio.sleep(FAST.charge_timeout_s + 0.1)
    attempt = await rig.attempt()
    assert attempt.status == "charging", "no answer in time: the charge may have reached XFT, never paid"
    assert "no answer within" in attempt.detail
    await rig.lanes.wait_for(PaymentFallback)
    assert not rig.lanes.of(PaymentConfirmed)
    assert (await rig.attempt()).status == "fallback"


async def test_badly_signed_answers_are_never_paid(make_rig):
    rig = await make_rig(notify_lost=True)  # only the answers can settle it here
    signed(rig, emu.success())
    await rig.exit()  # warms the relation cache with a good answer
    await rig.lanes.wait_for(PaymentConfirmed)
    rig.platform.answer_signature = "bad"
    await rig.exit(record_id="out1_2")
    [fallback] = await rig.lanes.wait_for(PaymentFallback)
    assert fallback.record_id == "out1_2" and rig.platform.orders["out1_2"].state == "00"
    assert [e.record_id for e in rig.lanes.of(PaymentConfirmed)] == ["out1_1"], "SUCCESS, but forged"
    rig.platform.answer_signature = "good"  # the same state, signed right: reconciliation confirms it
    confirmed = await rig.lanes.wait_for(PaymentConfirmed, 2)
    assert confirmed[-1].record_id == "out1_2"


# ------------------------------------------------------------------------------------------ the notify endpoint

async def test_a_notify_with_a_bad_signature_is_answered_fail_and_applies_nothing(rig):
    signed(rig, emu.bad_signature_notify("00"))
    await rig.exit()
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)  # the order is paid: query/charge/v2 says so
    await settle_down(rig)
    attempts = [n for n in rig.platform.notifies if n.out_trade_no == "out1_1"]
    assert attempts and all(n.answer == "FAIL" and not n.acked for n in attempts)
    assert rig.inbound.counts["bad_signature"] == len(attempts) and rig.inbound.counts["accepted"] == 0
    assert await rig.inbox() == []
    assert paid.trade_no == rig.platform.orders["out1_1"].third_trade_no, "confirmed by the signed query"
    assert len(rig.lanes.of(PaymentConfirmed)) == 1


async def test_forged_or_unsigned_notifies_for_a_waiting_car_confirm_nothing(rig):
    signed(rig, emu.init_forever())
    await rig.exit()
    await asyncio.sleep(0.1)
    fields = xft.notify_fields(out_trade_no="out1_1", state="00", amount_fen=700, third_trade_no="4200FORGED",
                               store_code=STORE)
    assert await rig.post_notify(xft.signed_fields(fields, "not-the-key")) == "FAIL"
    assert await rig.post_notify(fields) == "FAIL", "unsigned is refused while signatures are required"
    no_order = xft.signed_fields({"state": "00", "amount": "700", "store_code": STORE}, KEY)
    assert await rig.post_notify(no_order) == "FAIL", "signed, but names no order"
    other_store = xft.signed_fields({**fields, "store_code": "S99"}, KEY)
    assert await rig.post_notify(other_store) == "FAIL"
    await rig.lanes.wait_for(PaymentFallback)
    assert not rig.lanes.of(PaymentConfirmed) and await rig.inbox() == []
    assert rig.inbound.counts == {"accepted": 0, "duplicate": 0, "bad_signature": 2, "malformed": 1,
                                  "refused": 1, "unsigned": 0, "error": 0}


async def test_a_notify_for_another_order_confirms_nothing_for_ours(rig):
    signed(rig, emu.notify_other_order())
    await rig.exit()
    await until(lambda: bool(rig.platform.acked_notifies()))
    [n] = rig.platform.acked_notifies()
    assert n.out_trade_no == "out1_1_OTHER", "recorded and acknowledged, so XFT stops repeating it"
    await rig.lanes.wait_for(PaymentFallback)
    assert not rig.lanes.of(PaymentConfirmed)
    assert await rig.inbox() == [f"out1_1_OTHER:{rig.platform.orders['out1_1'].third_trade_no}:00"]


async def test_an_unsigned_notify_is_only_a_hint_when_signatures_are_not_required(make_rig):
    rig = await make_rig(require_signature=False)
    signed(rig, emu.init_forever())
    await rig.exit()
    await asyncio.sleep(0.1)
    third = rig.platform.orders["out1_1"].third_trade_no
    fields = xft.notify_fields(out_trade_no="out1_1", state="00", amount_fen=700, third_trade_no=third,
                               store_code=STORE)
    assert await rig.post_notify(fields) == "SUCCESS"
    assert await rig.post_notify(fields) == "SUCCESS"  # a repeat: answered again
    await asyncio.sleep(0.3)
    assert not rig.lanes.of(PaymentConfirmed), "an unsigned 00 never opens: the platform still says 09"
    assert rig.inbound.counts["unsigned"] == 1 and rig.inbound.counts["duplicate"] == 1
    assert await rig.post_notify(xft.signed_fields(fields, "wrong")) == "FAIL", "a wrong sign is always refused"
    rig.platform.orders["out1_1"].state = "00"  # now it is paid: the settlement's own poll confirms it
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert paid.trade_no == third
    # the real, signed notify is not shadowed by the unsigned one that came first
    assert await rig.post_notify(xft.signed_fields(fields, KEY)) == "SUCCESS"
    assert rig.inbound.counts["accepted"] == 1
    assert await rig.inbox() == [f"out1_1:{third}:00:unsigned", f"out1_1:{third}:00"]
    await asyncio.sleep(0.1)
    assert len(rig.lanes.of(PaymentConfirmed)) == 1


# ------------------------------------------------------------------------------------------ provider edge cases

class StubPlatform:
    """Answers every call with bytes set by the test (what the emulator will not send)."""

    def __init__(self) -> None:
        self.answers: dict[str, bytes] = {}
        self.status = 200

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.Response:
        return web.Response(status=self.status, body=self.answers.get(request.match_info["path"], b"{}"),
                            content_type="application/json")


def signed_answer(**fields: str) -> bytes:
    return xft.encode_request(fields, KEY)


async def test_answers_naming_another_order_or_unreadable_are_no_answer(tmp_path):
    stub = StubPlatform()
    await stub.start()
    session = aiohttp.ClientSession()
    try:
        provider = XftProvider(XftClient(config(stub.url, "http://127.0.0.1:1/xft/notify"), KEY, session),
                               {"out1": "ALIPAY"}, TZ)
        now = CLOCK.now()
        order = fx.StartSettlement("out1_1", "out1", PLATE, "blue", 700, 700, now.isoformat(),
                                   (now - timedelta(hours=1)).isoformat())
        attempt = Attempt(1, "out1_1", "out1", "xft", "out1_1", 700, "charging", now.timestamp())
        relation, exit_path, query_path = (xft.PATHS[n] for n in ("signed_relation", "exit", "charge_query"))
        stub.answers[relation] = signed_answer(sign_flag="1", channel="ALIPAY", plate_number=PLATE)
        stub.answers[exit_path] = signed_answer(out_trade_no="out1_2", is_allow="SUCCESS", third_trade_no="T9")
        stub.answers[query_path] = signed_answer(out_trade_no="out1_2", state="00", amount="700")
        with pytest.raises(ProviderUnavailable, match="expected 'out1_1'"):
            await provider.charge(order, attempt)
        with pytest.raises(ProviderUnavailable, match="expected 'out1_1'"):
            await provider.query(order, attempt)
        stub.answers[query_path] = b'{"out_trade_no":"out1_1","state":"00","amount":"700"}'  # unsigned
        with pytest.raises(ProviderUnavailable, match="not signed"):
            await provider.query(order, attempt)
        stub.answers[query_path] = signed_answer(out_trade_no="out1_1", state="00", amount="690", third_trade_no="T1")
        assert await provider.query(order, attempt) == ChargeAnswer("paid", "T1", 690, "signfree",
                                                                    "query/charge/v2 00")
        for state, status in (("01", "failed"), ("06", "failed"), ("98", "failed"), ("99", "failed"),
                              ("09", "pending"), ("04", "pending")):
            stub.answers[query_path] = signed_answer(out_trade_no="out1_1", state=state)
            assert (await provider.query(order, attempt)).status == status, state
        stub.answers[exit_path] = signed_answer(out_trade_no="out1_1", is_allow="MAYBE")
        assert (await provider.charge(order, attempt)).status == "pending", "anything but SUCCESS/FAIL is INIT"
        stub.answers[exit_path] = b'{"code":"4000","message":"bad request","data":null}'
        with pytest.raises(ProviderUnavailable):
            await provider.charge(order, attempt)
        stub.status = 502
        with pytest.raises(ProviderUnavailable, match="HTTP 502"):
            await provider.query(order, attempt)
        # a relation that cannot be read charges nothing: the precheck skips, entrance/v2 is never asked
        provider._relations.clear()
        skipped = await provider.precheck(order, attempt)
        assert skipped is not None and skipped.status == "skip" and "HTTP 502" in skipped.detail
        plate_less = fx.StartSettlement("out1_3", "out1", "", "", 700, 700, now.isoformat())
        assert (await provider.precheck(plate_less, attempt)).status == "skip"
        assert (await provider.charge(plate_less, attempt)).status == "skip"
        stub.status = 200  # signed up, but on another payment method than the lane charges with
        stub.answers[relation] = signed_answer(sign_flag="1", channel="WECHAT", plate_number=PLATE)
        other = await provider.precheck(order, attempt)
        assert other is not None and "signed up on WECHAT, this lane charges ALIPAY" in other.detail
        stub.answers[relation] = signed_answer(sign_flag="1", channel="ALIPAY", plate_number=PLATE)
        provider._relations.clear()
        assert await provider.precheck(order, attempt) is None, "signed up on the lane's channel: charge it"
        stub.answers[query_path] = signed_answer(failure_code="ORDER_NOT_EXIST", failure_msg="订单不存在")
        assert (await provider.query(order, attempt)).status == "absent"
    finally:
        await session.close()
        await stub.runner.cleanup()


# ------------------------------------------------------------------------------------------ entries

def entry_item(record_id: str = "in1_1", n: int = 1, **changes: Any) -> OutboxItem:
    at = datetime(2024, 3, 1, 8, 0, 0, tzinfo=TZ)
    payload = {"record_id": record_id, "lane_id": "in1", "kind": "entry", "plate": PLATE, "color": "blue",
               "at": at.isoformat(), "status": "inside", "vehicle_class": "temporary", "payments": [], **changes}
    return OutboxItem(n, "xft", "entry", f"entry:{record_id}", payload, 0, CLOCK.now())


async def test_entries_are_sent_once_per_record_and_repeats_count_as_done(rig):
    for n in (1, 2):
        outcome = await rig.publisher.publish(entry_item(n=n))
        assert outcome.result == PublishResult.DONE, outcome.error
    assert list(rig.platform.entries) == ["in1_1"] and rig.platform.entry_repeats == 1
    entry = rig.platform.entries["in1_1"]
    assert (entry.plate, entry.start_time, entry.store_code) == (PLATE, "20240301080000", STORE)
    for item in (entry_item("in1_2", status="refused"), entry_item("in1_3", plate=""),
                 OutboxItem(9, "xft", "exit", "exit:out1_1", {"record_id": "out1_1"}, 0, CLOCK.now())):
        assert (await rig.publisher.publish(item)).result == PublishResult.DONE
    assert rig.platform.calls["entry"] == 2, "refused, plate-less and exit records are not sent"


async def test_an_entry_upload_retries_while_the_platform_is_unreachable_or_refuses_our_signature(rig):
    offline = XftPublisher(XftClient(config(dead_url(""), rig.notify_url), KEY, rig.session), {}, TZ)
    outcome = await offline.publish(entry_item())
    assert outcome.result == PublishResult.RETRY and "ClientConnectorError" in outcome.error
    wrong_key = XftPublisher(XftClient(rig.cfg, "not-the-key", rig.session), {}, TZ)
    outcome = await wrong_key.publish(entry_item())
    assert outcome.result == PublishResult.RETRY  # our key is wrong: keep the item until it is fixed
    bad = await rig.publisher.publish(entry_item(at="not a time"))
    assert bad.result == PublishResult.REJECT
    assert not rig.platform.entries


# ------------------------------------------------------------------------------------------ issue 13: timing and meaning

# production timings for the charge; a short window's worth of polls; the absent rule scaled down
REAL = SettlementTiming(charge_timeout_s=5.0, poll_interval_s=2.0, window_s=20.0, reconcile_interval_s=1.0,
                        reconcile_for_s=30.0)
ABSENT = SettlementTiming(charge_timeout_s=0.3, poll_interval_s=0.05, window_s=5.0, reconcile_interval_s=0.05,
                          reconcile_for_s=10.0, absent_checks=3, absent_span_s=0.6, absent_late_check_s=0.5)


async def test_a_relation_answered_after_6_s_still_leads_to_the_charge(make_rig):
    rig = await make_rig(timing=REAL)  # relation_timeout_s: the default (8 s); charge timeout 5 s
    assert rig.cfg.relation_timeout_s == 8.0
    signed(rig, emu.success())
    rig.platform.relation_delay_s = 6.0
    started = asyncio.get_running_loop().time()
    await rig.exit()
    [paid] = await rig.lanes.wait_for(PaymentConfirmed, timeout=10.0)
    took = asyncio.get_running_loop().time() - started
    assert 6.0 <= took < 7.0 and paid.amount_fen == 700
    assert rig.platform.calls["exit"] == 1 and rig.platform.calls["charge_query"] == 0, \
        "the slow relation was never taken for a charge in doubt"
    assert (await rig.attempt()).status == "paid"


async def test_with_the_relation_check_off_the_charge_goes_out_without_a_relation_query(make_rig):
    rig = await make_rig(relation_check=False)
    signed(rig, emu.success())
    await rig.exit()
    [paid] = await rig.lanes.wait_for(PaymentConfirmed, timeout=3.0)
    assert paid.amount_fen == 700 and rig.platform.calls["exit"] == 1
    assert rig.platform.calls["signed_relation"] == 0 and not rig.platform.relation_requests


async def test_a_relation_slower_than_its_timeout_sends_the_car_to_the_booth_without_a_charge(make_rig):
    rig = await make_rig(timing=REAL, relation_timeout_s=3.0)
    signed(rig, emu.success())
    rig.platform.relation_delay_s = 6.0
    started = asyncio.get_running_loop().time()
    await rig.exit()
    [fallback] = await rig.lanes.wait_for(PaymentFallback, timeout=6.0)
    took = asyncio.get_running_loop().time() - started
    assert 3.0 <= took < 3.5 and "signed relation unknown" in fallback.reason
    assert "no answer within 3 s" in fallback.reason
    assert rig.platform.calls["exit"] == 0 and rig.platform.calls["charge_query"] == 0 and not rig.platform.orders
    assert (await rig.attempt()).status == "skipped" and not rig.lanes.of(PaymentConfirmed)


async def test_a_relation_timeout_hands_the_car_to_the_next_provider(make_rig):
    rig = await make_rig(booth=True, relation_timeout_s=0.3)
    signed(rig, emu.success())
    rig.platform.relation_delay_s = 2.0
    await rig.exit()
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert paid.provider == "booth" and rig.platform.calls["exit"] == 0
    assert [a.status for a in await rig.store.attempts(record_id="out1_1")] == ["skipped", "paid"]


async def test_the_relation_query_names_no_channel_for_wechat_and_the_plate_alone(make_rig):
    rig = await make_rig()
    signed(rig, emu.success())
    await rig.exit()
    await rig.lanes.wait_for(PaymentConfirmed)
    [asked] = rig.platform.relation_requests
    assert "channel" not in asked, "WECHAT needs sub_openid (seed 000), which the lane never knows"
    assert asked["extra"] == {"trade_scene": "PARKING", "plate_number": PLATE}
    assert rig.platform.orders["out1_1"].channel == "WECHAT", "the charge itself still names the lane's channel"


async def test_other_channels_are_named_in_the_relation_query_and_must_match_the_contract(make_rig):
    rig = await make_rig(channels={"out1": "ALIPAY"})
    rig.platform.sign_plate(PLATE, channel="ALIPAY")
    await rig.exit()
    await rig.lanes.wait_for(PaymentConfirmed)
    assert rig.platform.relation_requests[0]["channel"] == "ALIPAY"
    rig.platform.sign_plate("粤B99999", channel="WECHAT")  # signed up, but not for what this lane charges
    await rig.exit(plate="粤B99999", record_id="out1_2")
    [fallback] = await rig.lanes.wait_for(PaymentFallback)
    assert "no XFT sign-free contract on ALIPAY" in fallback.reason and "out1_2" not in rig.platform.orders


@pytest.mark.parametrize("script", [emu.http_500(order_created=False),
                                    emu.slow(1.5, emu.http_500(order_created=False))], ids=["5xx", "timeout"])
async def test_an_order_never_created_is_queried_a_few_times_then_not_charged(make_rig, script):
    rig = await make_rig(timing=ABSENT, booth=True)
    signed(rig, script)
    await rig.exit()
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert paid.provider == "booth", "not charged by XFT: the next provider takes the car"
    assert rig.platform.calls["charge_query"] == ABSENT.absent_checks and not rig.platform.orders
    xft_attempt = await rig.attempt()
    assert xft_attempt.status == "failed" and "ORDER_NOT_EXIST" in xft_attempt.detail
    # the one last query, then silence: no hour of polling for an order that does not exist
    await until(lambda: rig.platform.calls["charge_query"] == ABSENT.absent_checks + 1, timeout=2.0)
    # the platform counts the query before the lane has read its answer: wait for the check to end, then no more
    await until(lambda: not rig.settlement.status()["reconciling"] and not rig.settlement.status()["late_checks"], timeout=2.0)
    assert rig.platform.calls["charge_query"] == ABSENT.absent_checks + 1
    assert rig.platform.calls["exit"] == 1, "never charged twice"


async def test_an_order_never_created_alone_ends_in_the_booth_prompt_before_the_window(make_rig):
    rig = await make_rig(timing=ABSENT)
    signed(rig, emu.http_500(order_created=False))
    started = asyncio.get_running_loop().time()
    await rig.exit()
    [fallback] = await rig.lanes.wait_for(PaymentFallback)
    assert asyncio.get_running_loop().time() - started < 1.5 < ABSENT.window_s
    assert fallback.reason.startswith("xft failed: not charged") and not rig.lanes.of(PaymentConfirmed)


async def test_an_order_a_slow_platform_creates_after_our_timeout_is_still_paid_through_xft(make_rig):
    rig = await make_rig(timing=ABSENT, booth=True)
    signed(rig, emu.slow(0.5, emu.init_then("00", 0.2)))  # created 0.5 s in; our charge timeout is 0.3 s
    await rig.exit()
    [paid] = await rig.lanes.wait_for(PaymentConfirmed)
    assert paid.provider == "xft" and rig.booth.calls == 0
    await settle_down(rig)
    assert len(rig.lanes.of(PaymentConfirmed)) == 1


async def test_an_order_created_after_it_was_booked_as_not_charged_is_recorded_when_paid(make_rig):
    rig = await make_rig(timing=ABSENT, booth=True)
    signed(rig, emu.slow(1.5, emu.init_then("00", 0.1)))  # later than the absent rule's 0.6 s span
    await rig.exit()
    [booth] = await rig.lanes.wait_for(PaymentConfirmed)
    assert booth.provider == "booth" and (await rig.attempt()).status == "failed"
    # the platform created the order after all and charged the wallet: the notify is recorded, passed on for
    # the books (the lane records a second payment for a car that has paid: flagged for refund)
    [_, late] = await rig.lanes.wait_for(PaymentConfirmed, 2, timeout=4.0)
    assert (late.record_id, late.provider, late.amount_fen) == ("out1_1", "xft", 700)
    assert (await rig.attempt()).status == "paid" and rig.inbound.counts["accepted"] == 1
