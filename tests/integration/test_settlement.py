"""The settlement flow on a real SQLite store with scripted providers: sync answers, polls, callbacks racing
them, timeouts, fallbacks, late successes and restarts. A payment is confirmed to the lane once, or never."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Callable, Optional, Union
from zoneinfo import ZoneInfo

import pytest

from lanectl.adapters.clock import SystemClock
from lanectl.adapters.sqlite_store import SqliteStore
from lanectl.core import effects as fx
from lanectl.core.events import PaymentConfirmed, PaymentFallback
from lanectl.service.settlement import (Attempt, ChargeAnswer, ProviderUnavailable, SettlementService,
                                        SettlementTiming)
from tests.fakes import LaneEvents as Lanes

TZ = ZoneInfo("Asia/Shanghai")
CLOCK = SystemClock(TZ)
FAST = SettlementTiming(charge_timeout_s=0.2, poll_interval_s=0.05, window_s=0.6, reconcile_interval_s=0.05,
                        reconcile_for_s=3.0)
PENDING = ChargeAnswer("pending", detail="paying")
Script = Union[ChargeAnswer, Exception, float, Callable[[], ChargeAnswer]]


class FakeProvider:
    """Answers from a script, one entry per call (the last repeats). A float means: take that long."""

    def __init__(self, name: str, charge: list[Script], query: Optional[list[Script]] = None) -> None:
        self.name = name
        self.charges: list[Script] = list(charge)
        self.queries: list[Script] = list(query or [PENDING])
        self.calls: list[str] = []

    def order_ref(self, order: fx.StartSettlement) -> str:
        return f"{self.name}-{order.record_id}"

    async def charge(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        self.calls.append("charge")
        return await self._next(self.charges)

    async def query(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        self.calls.append("query")
        return await self._next(self.queries)

    @staticmethod
    async def _next(script: list[Script]) -> ChargeAnswer:
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, float):
            await asyncio.sleep(step)
            return ChargeAnswer("paid", "LATE")
        if isinstance(step, Exception):
            raise step
        return step() if callable(step) else step



    def of(self, kind: type) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, kind)]


@pytest.fixture
async def store(tmp_path):
    s = SqliteStore(tmp_path / "lanectl.db")
    await s.open()
    yield s
    await s.close()


async def exit_waiting(store: SqliteStore, record_id: str = "out1_1", due: int = 700) -> fx.StartSettlement:
    now = CLOCK.now()
    order = fx.StartSettlement(record_id, "out1", "粤B12345", "blue", due, due, now.isoformat(),
                               (now - timedelta(hours=3)).isoformat(), "in1_1", "temporary")
    await store.commit_lane("out1", {"phase": "awaiting_payment", "seq": 1}, [
        fx.NewRecord(record_id, "out1", "exit", "粤B12345", "blue", now.isoformat(), "awaiting_payment",
                     due_fen=due, total_fen=due), order], now)
    return order


def service(store, lanes: Lanes, *providers: FakeProvider, timing: SettlementTiming = FAST) -> SettlementService:
    return SettlementService(store, {p.name: p for p in providers}, {"out1": [p.name for p in providers]},
                             lanes.emit, CLOCK, timing)


async def attempt_of(store, provider: str) -> Attempt:
    return (await store.attempts(provider=provider))[-1]


async def test_paid_on_the_sync_answer_is_confirmed_once(store):
    lanes, bolink = Lanes(), FakeProvider("bolink", [ChargeAnswer("paid", "T1", 700, "wallet")])
    svc = service(store, lanes, bolink)
    svc.on_effects("out1", [await exit_waiting(store)])
    [paid] = await lanes.wait_for(PaymentConfirmed)
    assert paid == PaymentConfirmed("out1_1", "bolink", 700, "T1", "wallet")
    assert (await attempt_of(store, "bolink")).status == "paid"
    await asyncio.sleep(0.2)
    assert len(lanes.events) == 1 and bolink.calls == ["charge"]
    await svc.stop()


async def test_pending_then_paid_by_polling(store):
    lanes = Lanes()
    xft = FakeProvider("xft", [PENDING], [PENDING, PENDING, ChargeAnswer("paid", "X9", 700)])
    svc = service(store, lanes, xft)
    svc.on_effects("out1", [await exit_waiting(store)])
    [paid] = await lanes.wait_for(PaymentConfirmed)
    assert (paid.trade_no, paid.amount_fen) == ("X9", 700)
    assert xft.calls == ["charge", "query", "query", "query"]
    await svc.stop()


async def test_a_callback_settles_first_and_duplicates_change_nothing(store):
    lanes = Lanes()
    bolink = FakeProvider("bolink", [PENDING], [PENDING])
    svc = service(store, lanes, bolink)
    order = await exit_waiting(store)
    svc.on_effects("out1", [order])
    await asyncio.sleep(0.1)
    ref = bolink.order_ref(order)
    assert await svc.on_result("bolink", ref, ChargeAnswer("pending")) == "accepted"
    assert await svc.on_result("bolink", ref, ChargeAnswer("paid", "T1", 700, "wallet")) == "accepted"
    assert await svc.on_result("bolink", ref, ChargeAnswer("paid", "T1", 700, "wallet")) == "duplicate"
    assert await svc.on_result("bolink", ref, ChargeAnswer("failed", "T1")) == "duplicate"  # out of order
    await asyncio.sleep(0.2)
    assert len(lanes.of(PaymentConfirmed)) == 1 and not lanes.of(PaymentFallback)
    assert (await attempt_of(store, "bolink")).status == "paid"
    assert svc.status()["settling"] == []  # the poll loop noticed and ended
    await svc.stop()


async def test_a_second_different_payment_for_one_charge_is_passed_on_for_the_books(store):
    lanes = Lanes()
    bolink = FakeProvider("bolink", [ChargeAnswer("paid", "T1", 700)])
    svc = service(store, lanes, bolink)
    order = await exit_waiting(store)
    svc.on_effects("out1", [order])
    await lanes.wait_for(PaymentConfirmed)
    assert await svc.on_result("bolink", bolink.order_ref(order), ChargeAnswer("paid", "T2", 700)) == "accepted"
    assert [e.trade_no for e in lanes.of(PaymentConfirmed)] == ["T1", "T2"]  # the lane flags T2 as late
    await svc.stop()


async def test_failed_and_skipping_providers_hand_over_to_the_next(store):
    lanes = Lanes()
    tdzn = FakeProvider("tdzn", [ChargeAnswer("skip", detail="not a member")])
    xft = FakeProvider("xft", [ChargeAnswer("failed", detail="FAIL")])
    bolink = FakeProvider("bolink", [ChargeAnswer("paid", "B1", 700)])
    svc = service(store, lanes, tdzn, xft, bolink)
    svc.on_effects("out1", [await exit_waiting(store)])
    [paid] = await lanes.wait_for(PaymentConfirmed)
    assert paid.provider == "bolink"
    assert [a.status for a in await store.attempts(record_id="out1_1")] == ["skipped", "failed", "paid"]
    await svc.stop()


async def test_nobody_can_charge_falls_back(store):
    lanes = Lanes()
    svc = service(store, lanes, FakeProvider("xft", [ChargeAnswer("failed", detail="FAIL")]))
    svc.on_effects("out1", [await exit_waiting(store)])
    [fallback] = await lanes.wait_for(PaymentFallback)
    assert fallback.reason == "xft failed: FAIL" and not lanes.of(PaymentConfirmed)
    await svc.stop()


async def test_a_refusal_learnt_by_polling_falls_back_with_its_reason(store):
    lanes = Lanes()
    xft = FakeProvider("xft", [PENDING], [PENDING, ChargeAnswer("failed", detail="01 余额不足")])
    svc = service(store, lanes, xft)
    svc.on_effects("out1", [await exit_waiting(store)])
    [fallback] = await lanes.wait_for(PaymentFallback)
    assert fallback.reason == "xft failed: 01 余额不足" and not lanes.of(PaymentConfirmed)
    await svc.stop()


@pytest.mark.parametrize("charge", [0.5, ProviderUnavailable("HTTP 502")], ids=["timeout", "5xx"])
async def test_no_answer_is_pending_never_paid_and_the_window_falls_back_then_a_late_success_counts(store, charge):
    lanes = Lanes()
    late = {"paid": False}
    bolink = FakeProvider("bolink", [charge],
                          [lambda: ChargeAnswer("paid", "L1", 700) if late["paid"] else PENDING])
    xft = FakeProvider("xft", [ChargeAnswer("paid", "X1", 700)])
    svc = service(store, lanes, bolink, xft)
    svc.on_effects("out1", [await exit_waiting(store)])
    [fallback] = await lanes.wait_for(PaymentFallback)
    assert "did not settle" in fallback.reason and not lanes.of(PaymentConfirmed)
    assert xft.calls == [], "a charge that may have reached bolink is never sent to another provider"
    assert (await attempt_of(store, "bolink")).status == "fallback"
    late["paid"] = True  # the platform settles after the window: reconciliation still confirms it
    [paid] = await lanes.wait_for(PaymentConfirmed)
    assert paid.trade_no == "L1"
    await svc.stop()


async def test_an_attempt_that_never_settles_is_given_up_after_the_reconcile_horizon(store):
    lanes = Lanes()
    timing = SettlementTiming(charge_timeout_s=0.2, poll_interval_s=0.05, window_s=0.2, reconcile_interval_s=0.05,
                              reconcile_for_s=0.5)
    svc = service(store, lanes, FakeProvider("bolink", [PENDING]), timing=timing)
    svc.on_effects("out1", [await exit_waiting(store)])
    await lanes.wait_for(PaymentFallback)
    for _ in range(40):
        if (await attempt_of(store, "bolink")).status == "failed":
            break
        await asyncio.sleep(0.05)
    assert (await attempt_of(store, "bolink")).status == "failed" and not lanes.of(PaymentConfirmed)
    await svc.stop()


async def test_results_for_unknown_orders_or_another_lane_are_refused(store):
    lanes = Lanes()
    bolink = FakeProvider("bolink", [PENDING])
    svc = service(store, lanes, bolink)
    order = await exit_waiting(store)
    svc.on_effects("out1", [order])
    await asyncio.sleep(0.1)
    assert await svc.on_result("bolink", "nope", ChargeAnswer("paid", "T1", 700)) == "unknown_order"
    assert await svc.on_result("xft", bolink.order_ref(order), ChargeAnswer("paid", "T1")) == "unknown_order"
    assert await svc.on_result("bolink", bolink.order_ref(order), ChargeAnswer("paid", "T1"),
                               lane_id="out2") == "mismatch"
    await asyncio.sleep(0.1)
    assert not lanes.of(PaymentConfirmed)
    await svc.stop()


async def test_the_car_leaving_another_way_stops_the_flow_but_reconciliation_goes_on(store):
    lanes = Lanes()
    later = {"paid": False}
    bolink = FakeProvider("bolink", [PENDING], [lambda: ChargeAnswer("paid", "T1", 700) if later["paid"] else PENDING])
    svc = service(store, lanes, bolink)
    order = await exit_waiting(store)
    svc.on_effects("out1", [order])
    await asyncio.sleep(0.15)
    svc.on_effects("out1", [fx.StopSettlement(order.record_id, "released")])
    await asyncio.sleep(0.05)
    assert svc.status()["settling"] == [] and svc.status()["reconciling"] == 1
    later["paid"] = True
    [paid] = await lanes.wait_for(PaymentConfirmed)  # the lane records it as late, for a refund
    assert paid.trade_no == "T1" and not lanes.of(PaymentFallback)
    await svc.stop()


async def test_a_restart_resumes_a_pending_charge_by_polling_never_charging_again(tmp_path):
    path = tmp_path / "lanectl.db"
    s1 = SqliteStore(path)
    await s1.open()
    lanes = Lanes()
    first = FakeProvider("bolink", [PENDING])
    svc = service(s1, lanes, first, timing=SettlementTiming(poll_interval_s=0.05, window_s=30))
    svc.on_effects("out1", [await exit_waiting(s1)])
    await asyncio.sleep(0.15)
    await svc.stop()  # the daemon dies with the charge pending at the platform
    await s1.close()

    s2 = SqliteStore(path)
    await s2.open()
    second = FakeProvider("bolink", [ChargeAnswer("paid", "NEVER")], [PENDING, ChargeAnswer("paid", "T7", 700)])
    svc2 = service(s2, lanes, second, timing=SettlementTiming(poll_interval_s=0.05, window_s=30))
    await svc2.start()
    [paid] = await lanes.wait_for(PaymentConfirmed)
    assert paid.trade_no == "T7" and "charge" not in second.calls
    await svc2.stop()
    await s2.close()


async def test_a_restart_redelivers_a_confirmed_payment_the_lane_never_committed(store):
    lanes = Lanes()
    svc = service(store, lanes, FakeProvider("bolink", [ChargeAnswer("paid", "T1", 700)]))
    order = await exit_waiting(store)
    svc.on_effects("out1", [order])
    await lanes.wait_for(PaymentConfirmed)
    await svc.stop()  # ... and the lane died before committing it

    again = Lanes()
    svc2 = service(store, again, FakeProvider("bolink", [ChargeAnswer("paid", "NEVER")]))
    await svc2.start()
    [paid] = await again.wait_for(PaymentConfirmed)
    assert paid.trade_no == "T1"
    await svc2.stop()

    # once the lane commits the payment (and closes the settlement), a restart delivers nothing
    now = CLOCK.now()
    await store.commit_lane("out1", {"phase": "opening", "seq": 2}, [
        fx.RecordPayment(order.record_id, "out1", 700, "bolink:wallet", "T1", now.isoformat()),
        fx.StopSettlement(order.record_id, "paid")], now)
    quiet = Lanes()
    svc3 = service(store, quiet, FakeProvider("bolink", [ChargeAnswer("paid", "NEVER")]))
    await svc3.start()
    await asyncio.sleep(0.2)
    assert quiet.events == []
    await svc3.stop()


async def test_a_callback_and_a_poll_racing_confirm_the_payment_once(store):
    lanes = Lanes()
    bolink = FakeProvider("bolink", [PENDING], [PENDING])
    svc = service(store, lanes, bolink)
    order = await exit_waiting(store)
    svc.on_effects("out1", [order])
    await asyncio.sleep(0.1)
    paid = ChargeAnswer("paid", "T1", 700, "wallet")
    outcomes = await asyncio.gather(*(svc.on_result("bolink", bolink.order_ref(order), paid) for _ in range(3)))
    assert sorted(outcomes) == ["accepted", "duplicate", "duplicate"]
    await asyncio.sleep(0.2)
    assert len(lanes.of(PaymentConfirmed)) == 1
    await svc.stop()


async def test_stop_ends_busy_reconcilers_at_once(store):
    """A cancel landing while a provider call completes must not be lost (it was, with wait_for on 3.11)."""
    lanes = Lanes()
    timing = SettlementTiming(charge_timeout_s=1.0, poll_interval_s=0.01, window_s=0.05, reconcile_interval_s=0.0,
                              reconcile_for_s=3600.0)
    svc = service(store, lanes, FakeProvider("bolink", [PENDING], [PENDING]), timing=timing)
    for i in range(8):  # several reconcilers, each calling the provider in a tight loop
        svc.on_effects("out1", [await exit_waiting(store, f"out1_{i}")])
    await lanes.wait_for(PaymentFallback, n=8)
    await asyncio.sleep(0.1)
    assert svc.status()["reconciling"] == 8
    await asyncio.wait_for(svc.stop(), 2.0)


class CallbackWhileCalling(FakeProvider):
    """The platform's callback (paid) arrives while the charge call is still out; then the call answers with
    its own word — here a refusal that is stale by the time it lands."""

    svc: Optional[SettlementService] = None

    async def charge(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        self.calls.append("charge")
        assert self.svc is not None
        assert await self.svc.on_result(self.name, attempt.order_ref, ChargeAnswer("paid", "CB1", 700)) == "accepted"
        return ChargeAnswer("failed", detail="stale refusal")


async def test_a_callback_that_settles_while_the_charge_is_out_is_the_outcome(store):
    lanes = Lanes()
    bolink = CallbackWhileCalling("bolink", [PENDING])
    xft = FakeProvider("xft", [ChargeAnswer("paid", "X1", 700)])  # would charge the car a second time
    svc = bolink.svc = service(store, lanes, bolink, xft)
    svc.on_effects("out1", [await exit_waiting(store)])
    [paid] = await lanes.wait_for(PaymentConfirmed)
    assert (paid.provider, paid.trade_no) == ("bolink", "CB1")
    await asyncio.sleep(0.3)
    assert not lanes.of(PaymentFallback) and len(lanes.of(PaymentConfirmed)) == 1
    assert xft.calls == [], "the paid car is never handed to the next provider"
    assert (await attempt_of(store, "bolink")).status == "paid"
    await svc.stop()
