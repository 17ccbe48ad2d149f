"""The settlement driver on fakes: an in-memory store, scripted providers and the fake clock. Every timer
(call timeouts, polls, the window, reconciliation, the late check, storage retries) runs on fake time."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, Callable, Optional, Union

import pytest

from lanectl.core import effects as fx
from lanectl.core.events import PaymentConfirmed, PaymentFallback
from lanectl.service.settlement import (Attempt, ChargeAnswer, ProviderUnavailable,
                                        SettlementService, SettlementTiming)
from tests.fakes import FakeClock, LaneEvents, MemorySettlementStore

TIMING = SettlementTiming(charge_timeout_s=5, poll_interval_s=2, window_s=20, reconcile_interval_s=30,
                          reconcile_for_s=600, storage_retry_s=2, absent_checks=3, absent_span_s=10,
                          absent_late_check_s=60)
PENDING = ChargeAnswer("pending", detail="INIT")
ABSENT = ChargeAnswer("absent", detail="ORDER_NOT_EXIST")
HANG = "hang"  # a call that never answers
Step = Union[ChargeAnswer, Exception, str, Callable[[], ChargeAnswer]]


class ScriptedProvider:
    """Answers from a script (the last step repeats); records (call, fake seconds) of every call."""

    def __init__(self, name: str, clock: FakeClock, charge: list[Step], query: Optional[list[Step]] = None, *,
                 precheck: Optional[list[Step]] = None) -> None:
        self.name, self.clock = name, clock
        self.scripts = {"charge": list(charge), "query": list(query or [PENDING]), "precheck": list(precheck or [])}
        self.calls: list[tuple[str, float]] = []
        self.cancelled: list[str] = []
        if precheck is not None:
            self.precheck = self._precheck

    def order_ref(self, order: fx.StartSettlement) -> str:
        return f"{self.name}-{order.record_id}"

    async def charge(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        return await self._next("charge")

    async def query(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        return await self._next("query")

    async def _precheck(self, order: fx.StartSettlement, attempt: Attempt) -> Optional[ChargeAnswer]:
        return await self._next("precheck")

    def times(self, kind: str) -> list[float]:
        return [t for k, t in self.calls if k == kind]

    async def _next(self, kind: str) -> Any:
        self.calls.append((kind, self.clock.elapsed))
        script = self.scripts[kind]
        step = script.pop(0) if len(script) > 1 else script[0]
        if step == HANG:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(kind)
                raise
        if isinstance(step, Exception):
            raise step
        return step() if callable(step) else step


class Bench:
    def __init__(self, *providers: ScriptedProvider, clock: FakeClock, timing: SettlementTiming = TIMING) -> None:
        self.clock = clock
        self.store = MemorySettlementStore(clock)
        self.lanes = LaneEvents()
        self.svc = SettlementService(self.store, {p.name: p for p in providers}, {"out1": [p.name for p in providers]},
                                     self.lanes.emit, clock, timing)

    def order(self, record_id: str = "out1_1") -> fx.StartSettlement:
        return self.store.add_order(fx.StartSettlement(record_id, "out1", "粤B12345", "blue", 700, 700,
                                                       self.clock.now().isoformat()))

    def events(self, kind: type) -> list[Any]:
        return [e for _, e in self.lanes.events if isinstance(e, kind)]

    async def until(self, predicate: Callable[[], bool], limit_s: float = 3600) -> float:
        return await self.clock.run_until(predicate, limit_s=limit_s)

    def status(self, provider: str) -> str:
        return [a for a in self.store.rows.values() if a.provider == provider][-1].status


@pytest.fixture
async def clock():
    return FakeClock()


@pytest.fixture
async def stop_all():
    benches: list[Bench] = []
    yield benches.append
    for b in benches:
        await b.svc.stop()


async def test_a_pending_charge_is_polled_every_interval_until_it_settles(clock, stop_all):
    xft = ScriptedProvider("xft", clock, [PENDING], [PENDING, PENDING, ChargeAnswer("paid", "X9", 700)])
    bench = Bench(xft, clock=clock)
    stop_all(bench)
    bench.svc.on_effects("out1", [bench.order()])
    took = await bench.until(lambda: bool(bench.events(PaymentConfirmed)))
    assert took == 6 and xft.times("query") == [2, 4, 6]
    assert bench.events(PaymentConfirmed) == [PaymentConfirmed("out1_1", "xft", 700, "X9", "")]
    await clock.advance(60)
    assert len(bench.lanes.events) == 1 and len(xft.calls) == 4, "settled: no more queries"
    assert bench.svc.status() == {"settling": [], "reconciling": 0, "late_checks": 0}


async def test_the_window_falls_back_on_time_and_reconciliation_confirms_a_late_success(clock, stop_all):
    late = {"paid": False}
    bolink = ScriptedProvider("bolink", clock, [PENDING],
                              [lambda: ChargeAnswer("paid", "L1", 700) if late["paid"] else PENDING])
    booth = ScriptedProvider("booth", clock, [ChargeAnswer("paid", "NEVER")])
    bench = Bench(bolink, booth, clock=clock)
    stop_all(bench)
    bench.svc.on_effects("out1", [bench.order()])
    assert await bench.until(lambda: bool(bench.events(PaymentFallback))) == 20
    assert bench.events(PaymentFallback)[0].reason == "bolink did not settle within 20 s"
    assert booth.calls == [] and bench.status("bolink") == "fallback"
    assert bench.svc.status()["reconciling"] == 1
    await clock.advance(35)
    assert bolink.times("query")[-3:] == [20, 20, 50], "the window's last poll, the reconciler at once, then 30 s on"
    late["paid"] = True
    assert await bench.until(lambda: bool(bench.events(PaymentConfirmed))) == 25
    assert bench.events(PaymentConfirmed)[0].trade_no == "L1"


async def test_a_charge_without_an_answer_is_given_up_after_the_timeout_and_never_paid(clock, stop_all):
    bolink = ScriptedProvider("bolink", clock, [HANG], [PENDING])
    xft = ScriptedProvider("xft", clock, [ChargeAnswer("paid", "X1", 700)])
    bench = Bench(bolink, xft, clock=clock)
    stop_all(bench)
    bench.svc.on_effects("out1", [bench.order()])
    await clock.advance(4.9)
    assert bench.status("bolink") == "charging" and bolink.cancelled == []
    await clock.advance(0.1)
    assert bolink.cancelled == ["charge"] and bench.store.rows[1].detail == "no answer within 5 s"
    await bench.until(lambda: bool(bench.events(PaymentFallback)))
    assert clock.elapsed == 20 and xft.calls == [], "a charge that may have reached bolink is never sent elsewhere"
    assert "charge never answered" in bench.store.rows[1].detail


async def test_the_reconciler_gives_up_at_its_horizon(clock, stop_all):
    bench = Bench(ScriptedProvider("bolink", clock, [PENDING]), clock=clock,
                  timing=replace(TIMING, reconcile_for_s=100))
    stop_all(bench)
    bench.svc.on_effects("out1", [bench.order()])
    took = await bench.until(lambda: bench.status("bolink") == "failed")
    assert took == 110 and bench.store.rows[1].detail == "not settled: reconciliation gave up"
    assert not bench.events(PaymentConfirmed) and bench.svc.status()["reconciling"] == 0


async def test_an_absent_order_is_asked_three_times_over_the_span_then_not_charged_and_checked_once_more(
        clock, stop_all):
    xft = ScriptedProvider("xft", clock, [ProviderUnavailable("HTTP 502")], [ABSENT])
    booth = ScriptedProvider("booth", clock, [ChargeAnswer("paid", "B1", 700)])
    bench = Bench(xft, booth, clock=clock)
    stop_all(bench)
    bench.svc.on_effects("out1", [bench.order()])
    assert await bench.until(lambda: bool(bench.events(PaymentConfirmed))) == 12
    assert xft.times("query") == [2, 7, 12] and bench.events(PaymentConfirmed)[0].provider == "booth"
    assert bench.status("xft") == "failed" and bench.svc.status()["late_checks"] == 1
    await bench.until(lambda: not bench.svc.status()["late_checks"])
    assert xft.times("query") == [2, 7, 12, 72], "one last query absent_late_check_s later, then silence"
    await clock.advance(3600)
    assert len(xft.times("query")) == 4


async def test_a_callback_while_polling_confirms_once_and_ends_the_polls(clock, stop_all):
    bolink = ScriptedProvider("bolink", clock, [PENDING], [PENDING])
    bench = Bench(bolink, clock=clock)
    stop_all(bench)
    order = bench.order()
    bench.svc.on_effects("out1", [order])
    await clock.advance(3)
    paid = ChargeAnswer("paid", "T1", 700, "wallet")
    outcomes = await asyncio.gather(*(bench.svc.on_result("bolink", "bolink-out1_1", paid) for _ in range(3)))
    assert sorted(outcomes) == ["accepted", "duplicate", "duplicate"]
    await clock.advance(60)
    assert bench.events(PaymentConfirmed) == [PaymentConfirmed("out1_1", "bolink", 700, "T1", "wallet")]
    assert bolink.times("query") == [2] and bench.svc.status()["settling"] == []


async def test_a_paid_answer_hints_the_lane_before_its_payment_is_confirmed_and_a_pending_one_does_not(clock,
                                                                                                      stop_all):
    """The hint lets the lane's barrier keep its polls off the bus for the OPEN that follows (issue 20)."""
    bolink = ScriptedProvider("bolink", clock, [PENDING], [PENDING, ChargeAnswer("paid", "T1", 700)])
    bench = Bench(bolink, clock=clock)
    stop_all(bench)
    hints: list[tuple[str, int]] = []
    bench.svc.expect_open = lambda lane_id: hints.append((lane_id, len(bench.events(PaymentConfirmed))))
    bench.svc.on_effects("out1", [bench.order()])
    await clock.advance(3)
    assert bolink.times("charge") == [0] and bolink.times("query") == [2] and hints == [], "pending: no hint"
    await bench.until(lambda: bool(bench.events(PaymentConfirmed)))
    assert hints == [("out1", 0)], "hinted once, before the lane was told"


async def test_a_paid_callback_hints_the_lane_of_its_attempt(clock, stop_all):
    bolink = ScriptedProvider("bolink", clock, [PENDING], [PENDING])
    bench = Bench(bolink, clock=clock)
    stop_all(bench)
    hints: list[str] = []
    bench.svc.expect_open = hints.append
    bench.svc.on_effects("out1", [bench.order()])
    await clock.advance(1)
    await bench.svc.on_result("bolink", "bolink-out1_1", PENDING)
    assert hints == [], "not paid: no hint"
    assert await bench.svc.on_result("bolink", "bolink-out1_1", ChargeAnswer("paid", "T1", 700)) == "accepted"
    assert hints == ["out1"] and len(bench.events(PaymentConfirmed)) == 1


async def test_a_stop_ends_the_flow_and_leaves_the_charge_to_the_reconciler(clock, stop_all):
    later = {"paid": False}
    bolink = ScriptedProvider("bolink", clock, [PENDING],
                              [lambda: ChargeAnswer("paid", "T1", 700) if later["paid"] else PENDING])
    bench = Bench(bolink, clock=clock)
    stop_all(bench)
    order = bench.order()
    bench.svc.on_effects("out1", [order])
    await clock.advance(3)
    bench.svc.on_effects("out1", [fx.StopSettlement(order.record_id, "released")])
    await clock.settle()
    assert bench.svc.status() == {"settling": [], "reconciling": 1, "late_checks": 0}
    later["paid"] = True
    assert await bench.until(lambda: bool(bench.events(PaymentConfirmed))) == 30
    assert not bench.events(PaymentFallback)


async def test_no_charge_is_made_before_its_attempt_is_written_and_the_write_is_retried_on_the_clock(
        clock, stop_all):
    bolink = ScriptedProvider("bolink", clock, [ChargeAnswer("paid", "T1", 700)])
    bench = Bench(bolink, clock=clock)
    stop_all(bench)
    bench.store.down = True
    bench.svc.on_effects("out1", [bench.order()])
    await clock.advance(7)
    assert bolink.calls == [] and bench.svc.status()["settling"] == ["out1_1"]
    bench.store.down = False
    assert await bench.until(lambda: bool(bench.events(PaymentConfirmed))) == 1, "the next retry, 2 s after the last"


async def test_a_restart_resumes_by_polling_and_redelivers_an_uncommitted_payment(clock, stop_all):
    bolink = ScriptedProvider("bolink", clock, [ChargeAnswer("paid", "NEVER")], [ChargeAnswer("paid", "T7", 700)])
    bench = Bench(bolink, clock=clock)
    stop_all(bench)
    waiting, paid_before = bench.order("out1_1"), bench.order("out1_2")
    await bench.store.new_attempt("out1_1", "out1", "bolink", "bolink-out1_1", 700, clock.now())
    await bench.store.mark_attempt(1, "pending", "INIT", clock.now())
    await bench.store.new_attempt("out1_2", "out1", "bolink", "bolink-out1_2", 700, clock.now())
    await bench.store.settle_attempt(2, True, "T2", 700, "wallet", "", clock.now())
    await bench.svc.start()
    await bench.until(lambda: len(bench.events(PaymentConfirmed)) == 2)
    assert sorted(e.trade_no for e in bench.events(PaymentConfirmed)) == ["T2", "T7"]
    assert bolink.times("charge") == [] and bolink.times("query") == [2]


async def test_stop_cancels_calls_and_timers(clock):
    bolink = ScriptedProvider("bolink", clock, [HANG])
    bench = Bench(bolink, clock=clock)
    for i in range(3):
        bench.svc.on_effects("out1", [bench.order(f"out1_{i}")])
    await clock.settle()
    await asyncio.wait_for(bench.svc.stop(), 1.0)
    assert bolink.cancelled == ["charge"] * 3 and clock.sleeping == 0
