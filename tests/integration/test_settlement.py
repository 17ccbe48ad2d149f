"""The settlement flow on a real SQLite store with scripted providers: sync answers, polls, callbacks racing
them, timeouts, fallbacks, late successes and restarts. A payment is confirmed to the lane once, or never."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor, Future
from datetime import timedelta
from typing import Any, Callable, Optional, Union
from zoneinfo import ZoneInfo

import pytest

from lanectl.adapters.clock import SystemClock
from lanectl.adapters.store import SqliteStore
from lanectl.core import effects as fx
from lanectl.core.events import PaymentConfirmed, PaymentFallback
from lanectl.service.settlement import (Attempt, ChargeAnswer, ProviderUnavailable, SettlementService,
                                        SettlementTiming)
from tests.fakes import FakeClock, LaneEvents

TZ = ZoneInfo("Asia/Shanghai")
# Time is fake: every test gets a new FakeClock (see `fake_time`); waiting for an event moves it from one
# deadline to the next, so no test sleeps for real (but the one about a busy loop, on the wall clock).
CLOCK = FakeClock()
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
            await CLOCK.sleep(step)
            return ChargeAnswer("paid", "LATE")
        if isinstance(step, Exception):
            raise step
        return step() if callable(step) else step



    def of(self, kind: type) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, kind)]


class InlineExecutor(Executor):
    """Runs the store's work at once on the loop's thread, so the fake clock sees the loop go quiet only
    when nothing is left to do (with the writer thread it could not tell a busy thread from an idle one)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        done: Future = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting coroutine, as the thread pool does
            done.set_exception(exc)
        return done


def sqlite_store(path) -> SqliteStore:
    s = SqliteStore(path)
    s._pool = InlineExecutor()
    return s


class Lanes(LaneEvents):
    async def wait_for(self, kind: type, n: int = 1, timeout: float = 4.0) -> list[Any]:
        """Move fake time until `n` events of `kind` have arrived (at most `timeout` fake seconds)."""
        await CLOCK.run_until(lambda: len(self.of(kind)) >= n, limit_s=timeout)
        return self.of(kind)


@pytest.fixture(autouse=True)
def fake_time():
    global CLOCK
    CLOCK = FakeClock()


@pytest.fixture
async def store(tmp_path):
    s = sqlite_store(tmp_path / "lanectl.db")
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


def service(store, lanes: LaneEvents, *providers: FakeProvider, timing: SettlementTiming = FAST,
            clock: Any = None) -> SettlementService:
    return SettlementService(store, {p.name: p for p in providers}, {"out1": [p.name for p in providers]},
                             lanes.emit, clock or CLOCK, timing)


async def attempt_of(store, provider: str) -> Attempt:
    return (await store.attempts(provider=provider))[-1]


async def test_paid_on_the_sync_answer_is_confirmed_once(store):
    lanes, bolink = Lanes(), FakeProvider("bolink", [ChargeAnswer("paid", "T1", 700, "wallet")])
    svc = service(store, lanes, bolink)
    svc.on_effects("out1", [await exit_waiting(store)])
    [paid] = await lanes.wait_for(PaymentConfirmed)
    assert paid == PaymentConfirmed("out1_1", "bolink", 700, "T1", "wallet")
    assert (await attempt_of(store, "bolink")).status == "paid"
    await CLOCK.advance(0.2)
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
    await CLOCK.advance(0.1)
    ref = bolink.order_ref(order)
    assert await svc.on_result("bolink", ref, ChargeAnswer("pending")) == "accepted"
    assert await svc.on_result("bolink", ref, ChargeAnswer("paid", "T1", 700, "wallet")) == "accepted"
    assert await svc.on_result("bolink", ref, ChargeAnswer("paid", "T1", 700, "wallet")) == "duplicate"
    assert await svc.on_result("bolink", ref, ChargeAnswer("failed", "T1")) == "duplicate"  # out of order
    await CLOCK.advance(0.2)
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
        await CLOCK.advance(0.05)
    assert (await attempt_of(store, "bolink")).status == "failed" and not lanes.of(PaymentConfirmed)
    await svc.stop()


async def test_results_for_unknown_orders_or_another_lane_are_refused(store):
    lanes = Lanes()
    bolink = FakeProvider("bolink", [PENDING])
    svc = service(store, lanes, bolink)
    order = await exit_waiting(store)
    svc.on_effects("out1", [order])
    await CLOCK.advance(0.1)
    assert await svc.on_result("bolink", "nope", ChargeAnswer("paid", "T1", 700)) == "unknown_order"
    assert await svc.on_result("xft", bolink.order_ref(order), ChargeAnswer("paid", "T1")) == "unknown_order"
    assert await svc.on_result("bolink", bolink.order_ref(order), ChargeAnswer("paid", "T1"),
                               lane_id="out2") == "mismatch"
    await CLOCK.advance(0.1)
    assert not lanes.of(PaymentConfirmed)
    await svc.stop()


async def test_the_car_leaving_another_way_stops_the_flow_but_reconciliation_goes_on(store):
    lanes = Lanes()
    later = {"paid": False}
    bolink = FakeProvider("bolink", [PENDING], [lambda: ChargeAnswer("paid", "T1", 700) if later["paid"] else PENDING])
    svc = service(store, lanes, bolink)
    order = await exit_waiting(store)
    svc.on_effects("out1", [order])
    await CLOCK.advance(0.15)
    svc.on_effects("out1", [fx.StopSettlement(order.record_id, "released")])
    await CLOCK.advance(0.05)
    assert svc.status()["settling"] == [] and svc.status()["reconciling"] == 1
    later["paid"] = True
    [paid] = await lanes.wait_for(PaymentConfirmed)  # the lane records it as late, for a refund
    assert paid.trade_no == "T1" and not lanes.of(PaymentFallback)
    await svc.stop()


async def test_a_restart_resumes_a_pending_charge_by_polling_never_charging_again(tmp_path):
    path = tmp_path / "lanectl.db"
    s1 = sqlite_store(path)
    await s1.open()
    lanes = Lanes()
    first = FakeProvider("bolink", [PENDING])
    svc = service(s1, lanes, first, timing=SettlementTiming(poll_interval_s=0.05, window_s=30))
    svc.on_effects("out1", [await exit_waiting(s1)])
    await CLOCK.advance(0.15)
    await svc.stop()  # the daemon dies with the charge pending at the platform
    await s1.close()

    s2 = sqlite_store(path)
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
    await CLOCK.advance(0.2)
    assert quiet.events == []
    await svc3.stop()


async def test_a_callback_and_a_poll_racing_confirm_the_payment_once(store):
    lanes = Lanes()
    bolink = FakeProvider("bolink", [PENDING], [PENDING])
    svc = service(store, lanes, bolink)
    order = await exit_waiting(store)
    svc.on_effects("out1", [order])
    await CLOCK.advance(0.1)
    paid = ChargeAnswer("paid", "T1", 700, "wallet")
    outcomes = await asyncio.gather(*(svc.on_result("bolink", bolink.order_ref(order), paid) for _ in range(3)))
    assert sorted(outcomes) == ["accepted", "duplicate", "duplicate"]
    await CLOCK.advance(0.2)
    assert len(lanes.of(PaymentConfirmed)) == 1
    await svc.stop()


async def test_stop_ends_busy_reconcilers_at_once(store):
    """A cancel landing while a provider call completes must not be lost (it was, with wait_for on 3.11)."""
    lanes = LaneEvents()  # on the wall clock: reconcilers that never wait would never let fake time move
    timing = SettlementTiming(charge_timeout_s=1.0, poll_interval_s=0.01, window_s=0.05, reconcile_interval_s=0.0,
                              reconcile_for_s=3600.0)
    svc = service(store, lanes, FakeProvider("bolink", [PENDING], [PENDING]), timing=timing, clock=SystemClock(TZ))
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
    await CLOCK.advance(0.3)
    assert not lanes.of(PaymentFallback) and len(lanes.of(PaymentConfirmed)) == 1
    assert xft.calls == [], "the paid car is never handed to the next provider"
    assert (await attempt_of(store, "bolink")).status == "paid"
    await svc.stop()


# ------------------------------------------------------------------------------------------ precheck, absent orders

ABSENT = ChargeAnswer("absent", detail="query ORDER_NOT_EXIST")
# absent: 3 answers over >= 0.3 s (polls spread 0.15 s apart); a late check 0.3 s after the decision
ABSENT_FAST = SettlementTiming(charge_timeout_s=0.2, poll_interval_s=0.05, window_s=3.0, reconcile_interval_s=0.05,
                               reconcile_for_s=5.0, absent_checks=3, absent_span_s=0.3, absent_late_check_s=0.3)


class PrecheckedProvider(FakeProvider):
    """A FakeProvider with a precheck (XFT's signed relation) that takes `precheck_s`, then answers `verdict`."""

    def __init__(self, name: str, charge: list[Script], query: Optional[list[Script]] = None, *,
                 precheck_s: float = 0.0, verdict: Union[None, ChargeAnswer, Exception] = None) -> None:
        super().__init__(name, charge, query)
        self.precheck_s, self.verdict = precheck_s, verdict

    async def precheck(self, order: fx.StartSettlement, attempt: Attempt) -> Optional[ChargeAnswer]:
        self.calls.append("precheck")
        await CLOCK.sleep(self.precheck_s)
        if isinstance(self.verdict, Exception):
            raise self.verdict
        return self.verdict


async def test_a_precheck_slower_than_the_charge_timeout_still_leads_to_the_charge(store):
    lanes = Lanes()
    xft = PrecheckedProvider("xft", [ChargeAnswer("paid", "X1", 700)], precheck_s=0.5)  # charge timeout 0.2 s
    svc = service(store, lanes, xft, timing=ABSENT_FAST)
    svc.on_effects("out1", [await exit_waiting(store)])
    [paid] = await lanes.wait_for(PaymentConfirmed)
    assert paid.trade_no == "X1" and xft.calls == ["precheck", "charge"], "never booked as a charge in doubt"
    await svc.stop()


@pytest.mark.parametrize("verdict", [ChargeAnswer("skip", detail="not signed up"), ProviderUnavailable("HTTP 502"),
                                     "window"], ids=["skip", "unknown", "past-the-window"])
async def test_a_precheck_that_says_no_or_nothing_hands_over_to_the_next_provider_at_once(store, verdict):
    lanes = Lanes()
    slow = verdict == "window"
    xft = PrecheckedProvider("xft", [ChargeAnswer("paid", "NEVER")], precheck_s=10.0 if slow else 0.0,
                             verdict=None if slow else verdict)
    booth = FakeProvider("booth", [ChargeAnswer("paid", "B1", 700)])
    timing = SettlementTiming(charge_timeout_s=0.2, poll_interval_s=0.05, window_s=0.5)
    svc = service(store, lanes, xft, booth, timing=timing)
    started = CLOCK.elapsed
    svc.on_effects("out1", [await exit_waiting(store)])
    [paid] = await lanes.wait_for(PaymentConfirmed)
    took = CLOCK.elapsed - started
    assert paid.provider == "booth" and xft.calls == ["precheck"], "nothing was charged through xft"
    assert took < (timing.window_s + 0.3 if slow else 0.3)
    assert (await attempt_of(store, "xft")).status == "skipped"
    assert not xft.queries[1:] and "query" not in xft.calls, "a skipped precheck is never polled"
    await svc.stop()


@pytest.mark.parametrize("charge", [0.5, ProviderUnavailable("HTTP 502")], ids=["timeout", "5xx"])
async def test_an_unanswered_charge_whose_order_does_not_exist_is_not_charged_after_a_few_queries(store, charge):
    lanes = Lanes()
    xft = FakeProvider("xft", [charge], [ABSENT])
    booth = FakeProvider("booth", [ChargeAnswer("paid", "B1", 700)])
    svc = service(store, lanes, xft, booth, timing=ABSENT_FAST)
    svc.on_effects("out1", [await exit_waiting(store)])
    [paid] = await lanes.wait_for(PaymentConfirmed)
    assert paid.provider == "booth", "not charged by xft: the next provider takes the car within the window"
    assert xft.calls == ["charge", "query", "query", "query"]
    attempt = await attempt_of(store, "xft")
    assert attempt.status == "failed" and "has no order xft-out1_1" in attempt.detail
    # one last query after absent_late_check_s, then nothing: never polled for the reconcile horizon
    async with asyncio.timeout(ABSENT_FAST.absent_late_check_s + 2.0):
        while xft.calls.count("query") < 4 or svc.status()["late_checks"] or svc.status()["reconciling"]:
            await CLOCK.advance(0.01)
    assert xft.calls.count("query") == 4
    await svc.stop()


async def test_the_absent_rule_alone_falls_back_to_the_booth_prompt(store):
    lanes = Lanes()
    xft = FakeProvider("xft", [ProviderUnavailable("timeout")], [ABSENT])
    svc = service(store, lanes, xft, timing=ABSENT_FAST)
    started = CLOCK.elapsed
    svc.on_effects("out1", [await exit_waiting(store)])
    [fallback] = await lanes.wait_for(PaymentFallback)
    assert CLOCK.elapsed - started < ABSENT_FAST.window_s, "before the window ends"
    assert fallback.reason.startswith("xft failed: not charged") and not lanes.of(PaymentConfirmed)
    await svc.stop()


async def test_a_late_success_for_an_order_booked_as_not_charged_is_still_recorded(store):
    lanes = Lanes()
    xft = FakeProvider("xft", [ProviderUnavailable("timeout")], [ABSENT])
    booth = FakeProvider("booth", [ChargeAnswer("paid", "B1", 700)])
    svc = service(store, lanes, xft, booth, timing=ABSENT_FAST)
    svc.on_effects("out1", [await exit_waiting(store)])
    await lanes.wait_for(PaymentConfirmed)
    assert (await attempt_of(store, "xft")).status == "failed"
    # the platform created the order after all and the driver's wallet paid: its notify arrives late
    assert await svc.on_result("xft", "xft-out1_1", ChargeAnswer("paid", "", 700, "signfree")) == "accepted"
    late = (await lanes.wait_for(PaymentConfirmed, 2))[-1]
    assert (late.record_id, late.provider, late.amount_fen) == ("out1_1", "xft", 700), \
        "passed on for the books: the lane records it as a second (late) payment for refund"
    assert (await attempt_of(store, "xft")).status == "paid"
    await svc.stop()


async def test_the_last_query_finds_a_payment_made_after_the_order_was_booked_as_not_charged(store):
    lanes = Lanes()
    state = {"paid": False}
    xft = FakeProvider("xft", [ProviderUnavailable("timeout")],
                       [lambda: ChargeAnswer("paid", "T9", 700) if state["paid"] else ABSENT])
    svc = service(store, lanes, xft, timing=ABSENT_FAST)
    svc.on_effects("out1", [await exit_waiting(store)])
    await lanes.wait_for(PaymentFallback)
    state["paid"] = True  # the notify is lost: only the last query can tell
    [paid] = await lanes.wait_for(PaymentConfirmed)
    assert paid.trade_no == "T9" and xft.calls.count("query") == 4
    await svc.stop()


async def test_absent_for_a_charge_the_platform_answered_is_reconciled_as_before(store):
    lanes = Lanes()
    timing = SettlementTiming(charge_timeout_s=0.2, poll_interval_s=0.05, window_s=0.6, reconcile_interval_s=0.05,
                              reconcile_for_s=5.0, absent_checks=3, absent_span_s=0.1)
    state = {"paid": False}
    xft = FakeProvider("xft", [PENDING], [lambda: ChargeAnswer("paid", "L1", 700) if state["paid"] else ABSENT])
    booth = FakeProvider("booth", [ChargeAnswer("paid", "NEVER")])
    svc = service(store, lanes, xft, booth, timing=timing)
    svc.on_effects("out1", [await exit_waiting(store)])
    [fallback] = await lanes.wait_for(PaymentFallback)
    assert "did not settle" in fallback.reason and booth.calls == [], "INIT answered: never given to another"
    assert xft.calls.count("query") > timing.absent_checks and (await attempt_of(store, "xft")).status == "fallback"
    state["paid"] = True
    [paid] = await lanes.wait_for(PaymentConfirmed)
    assert paid.trade_no == "L1"
    await svc.stop()


async def test_an_order_that_shows_up_after_an_absent_answer_is_never_failed_for_one_later(store):
    lanes = Lanes()
    # the platform was slow: no order on the first query, then it has it (09), then it says "no order" again
    xft = FakeProvider("xft", [0.5], [ABSENT, PENDING, ABSENT, ABSENT, ABSENT, ABSENT])
    booth = FakeProvider("booth", [ChargeAnswer("paid", "NEVER")])
    timing = SettlementTiming(charge_timeout_s=0.2, poll_interval_s=0.05, window_s=1.0, reconcile_interval_s=0.05,
                              reconcile_for_s=1.5, absent_checks=3, absent_span_s=0.1)
    svc = service(store, lanes, xft, booth, timing=timing)
    svc.on_effects("out1", [await exit_waiting(store)])
    [fallback] = await lanes.wait_for(PaymentFallback)
    assert "did not settle" in fallback.reason and booth.calls == []
    assert (await attempt_of(store, "xft")).status == "fallback"
    await svc.stop()


async def test_an_unanswered_charge_past_the_window_is_resolved_by_the_reconciler_in_a_few_queries(store):
    lanes = Lanes()
    # the platform is down for the whole window, then says it has no such order
    down = {"on": True}
    xft = FakeProvider("xft", [ProviderUnavailable("HTTP 502")],
                       [lambda: PENDING if not down["on"] else _raise(ProviderUnavailable("HTTP 502"))])
    # reconciling every 0.02 s: the "no such order" queries are still spread over the span (3, not 20)
    timing = SettlementTiming(charge_timeout_s=0.2, poll_interval_s=0.05, window_s=0.3, reconcile_interval_s=0.02,
                              reconcile_for_s=30.0, absent_checks=3, absent_span_s=0.4, absent_late_check_s=0)
    svc = service(store, lanes, xft, timing=timing)
    svc.on_effects("out1", [await exit_waiting(store)])
    await lanes.wait_for(PaymentFallback)
    attempt = await attempt_of(store, "xft")
    assert attempt.status == "fallback" and "never answered" in attempt.detail
    before = xft.calls.count("query")
    xft.queries = [ABSENT]
    async with asyncio.timeout(3):
        while (await attempt_of(store, "xft")).status != "failed":
            await CLOCK.advance(0.05)
    assert xft.calls.count("query") - before == 3 and not lanes.of(PaymentConfirmed)
    await svc.stop()


async def test_a_restart_during_an_unanswered_charge_resolves_an_absent_order_in_a_few_queries(tmp_path):
    path = tmp_path / "lanectl.db"
    s1 = sqlite_store(path)
    await s1.open()
    lanes = Lanes()
    svc = service(s1, lanes, FakeProvider("xft", [5.0]), timing=ABSENT_FAST)
    svc.on_effects("out1", [await exit_waiting(s1)])
    await CLOCK.advance(0.1)
    assert (await attempt_of(s1, "xft")).status == "charging"
    await svc.stop()  # the daemon dies while entrance/v2 is out
    await s1.close()

    s2 = sqlite_store(path)
    await s2.open()
    xft = FakeProvider("xft", [ChargeAnswer("paid", "NEVER")], [ABSENT])
    svc2 = service(s2, lanes, xft, timing=ABSENT_FAST)
    await svc2.start()
    [fallback] = await lanes.wait_for(PaymentFallback)
    assert "not charged" in fallback.reason and xft.calls == ["query"] * 3, "polled, never charged twice"
    await svc2.stop()
    await s2.close()


async def test_the_windows_end_adds_no_query_for_an_absent_order(store):
    lanes = Lanes()
    xft = FakeProvider("xft", [ProviderUnavailable("HTTP 500")], [ABSENT])
    # absent queries due 0.3 s apart; the window ends between the 2nd and the 3rd; the reconciler polls fast
    timing = SettlementTiming(charge_timeout_s=0.2, poll_interval_s=0.05, window_s=0.5, reconcile_interval_s=0.02,
                              reconcile_for_s=30.0, absent_checks=3, absent_span_s=0.6, absent_late_check_s=0)
    svc = service(store, lanes, xft, timing=timing)
    svc.on_effects("out1", [await exit_waiting(store)])
    [fallback] = await lanes.wait_for(PaymentFallback)
    assert "did not settle" in fallback.reason
    async with asyncio.timeout(3):
        while (await attempt_of(store, "xft")).status != "failed":
            await CLOCK.advance(0.02)
    assert xft.calls == ["charge"] + ["query"] * 3, "no extra query at the window's edge or the reconciler's start"
    assert not lanes.of(PaymentConfirmed)
    await svc.stop()


def _raise(exc: Exception) -> ChargeAnswer:
    raise exc
