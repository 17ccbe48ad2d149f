"""Each provider's payment state on the lane card: read from the payment_attempts rows (never from a running
settlement), refreshed when the settlement driver says an attempt of the exit changed, with the platform's
reason for a refusal, a skip or a missing answer."""

from __future__ import annotations

from lanectl.adapters.console.payments import PaymentStates, provider_states
from lanectl.core.settlement import UNANSWERED, Attempt
from lanectl.service.settlement import ChargeAnswer
from tests.fakes import FakeClock
from tests.unit.test_settlement_driver import PENDING, Bench, ScriptedProvider


def attempt(n: int, provider: str, status: str, detail: str = "", **kw) -> Attempt:
    return Attempt(n, "out1_1", "out1", provider, f"{provider}-out1_1", 700, status, 0.0, detail=detail, **kw)


def test_each_stored_status_reads_as_the_booth_says_it():
    rows = [attempt(1, "xft", "failed", "FAIL PAY_FAIL 余额不足"), attempt(2, "bolink", "pending", "INIT"),
            attempt(3, "tdzn", "skipped", "not signed")]
    states = provider_states(["xft", "bolink", "tdzn", "booth"], rows)
    assert [(s["provider"], s["state"], s["reason"]) for s in states] == [
        ("xft", "refused", "FAIL PAY_FAIL 余额不足"), ("bolink", "pending", "INIT"), ("tdzn", "skipped", "not signed"),
        ("booth", "not_asked", "")]
    assert provider_states(["xft"], [attempt(1, "xft", "charging")])[0]["state"] == "charging"
    assert provider_states(["xft"], [attempt(1, "xft", "charging", "no answer within 5 s")])[0]["state"] == "no_answer"
    assert provider_states(["xft"], [attempt(1, "xft", "fallback", f"window ended; {UNANSWERED}")])[0]["state"] == \
        "no_answer"
    assert provider_states(["xft"], [attempt(1, "xft", "fallback", "settlement window ended")])[0]["state"] == \
        "fallback"
    paid = provider_states(["xft"], [attempt(1, "xft", "failed", "x"),
                                     attempt(4, "xft", "paid", paid_fen=650, method="xft:signfree")])[0]
    assert (paid["state"], paid["amount_fen"], paid["method"]) == ("paid", 650, "xft:signfree")  # the latest wins
    # an attempt by a provider the lane no longer lists is still shown
    assert [s["provider"] for s in provider_states([], rows[:1])] == ["xft"]


async def test_the_card_follows_the_driver_a_refusal_with_its_reason_then_the_next_provider_pending():
    clock = FakeClock()
    xft = ScriptedProvider("xft", clock, [ChargeAnswer("failed", detail="FAIL PAY_FAIL 余额不足")])
    bolink = ScriptedProvider("bolink", clock, [PENDING])
    bench = Bench(xft, bolink, clock=clock)
    told: list[str] = []
    board = PaymentStates(lambda rid: bench.store.attempts(record_id=rid), told.append)
    bench.svc.on_attempt = board.attempt_changed
    try:
        assert [s["state"] for s in board.states("out1", "out1_1", ["xft", "bolink"])] == ["not_asked"] * 2
        bench.svc.on_effects("out1", [bench.order()])

        def shown() -> list[tuple[str, str]]:
            return [(s["state"], s["reason"]) for s in board.states("out1", "out1_1", ["xft", "bolink"])]
        await bench.until(lambda: shown() == [("refused", "FAIL PAY_FAIL 余额不足"), ("pending", "INIT")], 10)
        assert told and set(told) == {"out1"}  # the lane's view was told to refresh
        # another car at the lane: its own (none yet), never the last one's
        assert [s["state"] for s in board.states("out1", "out1_2", ["xft", "bolink"])] == ["not_asked"] * 2
    finally:
        board.close()
        await bench.svc.stop()


async def test_a_store_that_cannot_be_read_leaves_the_card_as_it_was():
    clock = FakeClock()
    told: list[str] = []

    async def broken(record_id: str) -> list[Attempt]:
        raise OSError("disk gone")
    board = PaymentStates(broken, told.append)
    assert board.states("out1", "out1_1", ["xft"])[0]["state"] == "not_asked"
    await clock.run_until(lambda: not board._tasks, limit_s=1)
    assert told == []  # nothing new to show: no refresh
