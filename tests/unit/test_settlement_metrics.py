"""What the settlement driver records for /metrics: each attempt's statuses by provider, and a payment confirmed
after the car stopped waiting (reconciliation) counted as late — one paid while the car waits is not."""

from __future__ import annotations

from lanectl.core.events import PaymentConfirmed, PaymentFallback
from lanectl.service.ports import NoMetrics
from lanectl.service.settlement import ChargeAnswer
from tests.fakes import FakeClock
from tests.unit.test_settlement_driver import PENDING, Bench, ScriptedProvider


class RecordedMetrics(NoMetrics):
    def __init__(self) -> None:
        self.attempts: list[tuple[str, str]] = []
        self.late: list[str] = []

    def settlement_attempt(self, provider: str, status: str) -> None:
        self.attempts.append((provider, status))

    def late_payment(self, provider: str) -> None:
        self.late.append(provider)


async def test_a_payment_while_the_car_waits_counts_its_attempt_and_is_not_late():
    clock = FakeClock()
    xft = ScriptedProvider("xft", clock, [PENDING], [PENDING, ChargeAnswer("paid", "X9", 700)])
    bench = Bench(xft, clock=clock)
    bench.svc.metrics = metrics = RecordedMetrics()
    try:
        bench.svc.on_effects("out1", [bench.order()])
        await bench.until(lambda: bool(bench.events(PaymentConfirmed)))
        assert metrics.attempts[0] == ("xft", "charging") and metrics.attempts[-1] == ("xft", "paid")
        assert ("xft", "pending") in metrics.attempts and metrics.late == []
    finally:
        await bench.svc.stop()


async def test_a_payment_found_by_reconciliation_after_the_fallback_is_late():
    clock = FakeClock()
    late = {"paid": False}
    bolink = ScriptedProvider("bolink", clock, [PENDING],
                              [lambda: ChargeAnswer("paid", "L1", 700) if late["paid"] else PENDING])
    bench = Bench(bolink, clock=clock)
    bench.svc.metrics = metrics = RecordedMetrics()
    try:
        bench.svc.on_effects("out1", [bench.order()])
        await bench.until(lambda: bool(bench.events(PaymentFallback)))
        assert ("bolink", "fallback") in metrics.attempts and metrics.late == []
        late["paid"] = True
        await bench.until(lambda: bool(bench.events(PaymentConfirmed)))
        assert metrics.attempts[-1] == ("bolink", "paid") and metrics.late == ["bolink"]
    finally:
        await bench.svc.stop()


async def test_a_provider_that_does_not_charge_the_car_counts_its_attempt_as_skipped():
    # found on a fresh Debian (python -m hil.fresh_debian): Bolink skipped two cars that were no wallet members
    # and /metrics showed only their "charging"; the skip ends the attempt's track before the mark is counted
    clock = FakeClock()
    bolink = ScriptedProvider("bolink", clock, [ChargeAnswer("skip", detail="not a Bolink sign-free member")])
    bench = Bench(bolink, clock=clock)
    bench.svc.metrics = metrics = RecordedMetrics()
    try:
        bench.svc.on_effects("out1", [bench.order()])
        await bench.until(lambda: bool(bench.events(PaymentFallback)))
        assert metrics.attempts == [("bolink", "charging"), ("bolink", "skipped")]
    finally:
        await bench.svc.stop()
