"""The settlement machine alone: each transition, and its deadlines moved by hand (time is an argument)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Optional
from zoneinfo import ZoneInfo

import pytest

from lanectl.core import effects as fx
from lanectl.core import settlement as sm
from lanectl.core.events import PaymentConfirmed, PaymentFallback
from lanectl.core.settlement import ChargeAnswer, Status

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
TIMING = sm.SettlementTiming(charge_timeout_s=5, poll_interval_s=2, window_s=20, reconcile_interval_s=30,
                             reconcile_for_s=600, absent_checks=3, absent_span_s=10, absent_late_check_s=60)
ORDER = fx.StartSettlement("out1_1", "out1", "粤B12345", "blue", 700, 700, T0.isoformat())
PENDING = ChargeAnswer("pending", detail="INIT")
ABSENT = ChargeAnswer("absent", detail="ORDER_NOT_EXIST")


def spec(name: str, **kw: Any) -> sm.ProviderSpec:
    return sm.ProviderSpec(name, f"{name}-out1_1", **kw)


class Machine:
    """Feeds one exit's machine and plays the store's part for attempt rows (ids, compare-and-set)."""

    def __init__(self, timing: sm.SettlementTiming = TIMING) -> None:
        self.state = sm.SettlementState("out1_1", "out1")
        self.timing = timing
        self.now = T0
        self.rows: dict[int, sm.Attempt] = {}
        self.effects: list[sm.Effect] = []

    def feed(self, event: sm.Input) -> list[sm.Effect]:
        self.state, out = sm.handle(self.state, event, self.now, self.timing)
        self.effects += out
        for e in out:  # the store's side of what the machine wrote
            if isinstance(e, sm.MarkAttempt) and self.rows[e.attempt_id].state in e.only_from:
                self.rows[e.attempt_id] = replace(self.rows[e.attempt_id], status=e.status.value, detail=e.detail)
        return out

    def begin(self, *providers: sm.ProviderSpec, previous: tuple[sm.Attempt, ...] = ()) -> list[sm.Effect]:
        return self.feed(sm.Begin(ORDER, providers, previous))

    def create(self, effect: sm.Effect) -> list[sm.Effect]:
        assert isinstance(effect, sm.NewAttempt)
        row = sm.Attempt(len(self.rows) + 1, effect.record_id, effect.lane_id, effect.provider, effect.order_ref,
                         effect.amount_fen, "charging", self.now.timestamp())
        self.rows[row.id] = row
        return self.feed(sm.AttemptCreated(row))

    def answer(self, call: sm.Effect, answer: Optional[ChargeAnswer] = None, *,
               unavailable: Optional[str] = None) -> list[sm.Effect]:
        assert isinstance(call, sm.CallProvider)
        return self.feed(sm.Answered(call.call, answer, unavailable))

    def settle(self, effect: sm.Effect, *, won: bool = True) -> list[sm.Effect]:
        assert isinstance(effect, sm.SettleAttempt)
        if won:
            self.rows[effect.attempt_id] = sm.settled_row(self.rows[effect.attempt_id], effect)
        return self.feed(sm.Settled(effect.attempt_id, won, self.rows[effect.attempt_id]))

    def at(self, seconds: float) -> list[sm.Effect]:
        """Move time to T0 + seconds and let every deadline due by then fire, in order."""
        out: list[sm.Effect] = []
        target = T0 + timedelta(seconds=seconds)
        while (due := self.state.next_deadline()) is not None and due <= target:
            self.now = max(self.now, due)
            out += self.feed(sm.Tick())
        self.now = target
        return out


def one(effects: list[sm.Effect], kind: type) -> Any:
    [found] = [e for e in effects if isinstance(e, kind)]
    return found


def lane_events(effects: list[sm.Effect]) -> list[Any]:
    return [e.event for e in effects if isinstance(e, sm.ToLane)]


# --- the vocabulary -------------------------------------------------------------------------------------------

def test_one_status_vocabulary_stored_as_the_strings_the_schema_holds():
    assert [s.value for s in Status] == ["charging", "pending", "fallback", "paid", "failed", "skipped"]
    assert sm.OPEN == (Status.CHARGING, Status.PENDING, Status.FALLBACK)
    assert set(sm.PAYABLE) == set(sm.OPEN) | {Status.SKIPPED, Status.FAILED}
    assert {k: v.value for k, v in sm.ANSWERS.items()} == {"paid": "paid", "failed": "failed", "pending": "pending",
                                                            "skip": "skipped"}
    with pytest.raises(ValueError):
        Status("skip")  # a provider's word is mapped, never stored as is


# --- charging -----------------------------------------------------------------------------------------------------

def test_paid_on_the_charge_is_written_then_confirmed_once():
    m = Machine()
    [new] = m.begin(spec("bolink"))
    assert new == sm.NewAttempt("out1_1", "out1", "bolink", "bolink-out1_1", 700)
    [call] = m.create(new)
    assert (call.kind, m.state.next_deadline()) == ("charge", T0 + timedelta(seconds=5))
    [settle] = m.answer(call, ChargeAnswer("paid", "T1", None, "wallet"))
    assert (settle.paid, settle.amount_fen) == (True, 700), "no amount said: what we asked for"
    out = m.settle(settle)
    assert lane_events(out) == [PaymentConfirmed("out1_1", "bolink", 700, "T1", "wallet")]
    assert m.state.idle


def test_a_payment_confirmed_in_the_lanes_own_step_is_not_sent_to_the_lane_again():
    m = Machine()
    [call] = m.create(*m.begin(spec("bolink")))
    [settle] = m.answer(call, ChargeAnswer("paid", "T1", 700, "wallet"))
    m.rows[1] = sm.settled_row(m.rows[1], settle)
    out = m.feed(sm.Settled(1, True, m.rows[1], confirmed=True))  # the lane committed it with its step
    assert lane_events(out) == [] and [e.level for e in out if isinstance(e, fx.Log)] == ["info"]
    assert m.state.idle


def test_a_lost_compare_and_set_confirms_nothing_and_its_winner_stands():
    m = Machine()
    [call] = m.create(*m.begin(spec("bolink"), spec("xft")))
    [settle] = m.answer(call, ChargeAnswer("failed", detail="stale refusal"))
    m.rows[1] = replace(m.rows[1], status="paid", trade_no="CB1")  # a callback won meanwhile
    out = m.settle(settle, won=False)
    assert out == [] and m.state.idle, "the paid car is never handed to the next provider"


def test_skip_and_failure_hand_over_to_the_next_provider_and_the_last_falls_back_with_every_reason():
    m = Machine()
    [call] = m.create(*m.begin(spec("tdzn"), spec("xft")))
    out = m.answer(call, ChargeAnswer("skip", detail="not a member"))
    assert one(out, sm.MarkAttempt) == sm.MarkAttempt(1, Status.SKIPPED, "not a member")
    [call] = m.create(one(out, sm.NewAttempt))
    [settle] = m.answer(call, ChargeAnswer("failed", detail="FAIL"))
    out = m.settle(settle)
    assert lane_events(out) == [PaymentFallback("out1_1", "tdzn: not a member; xft failed: FAIL")]
    assert m.state.idle


def test_a_lane_without_providers_settles_nothing_and_one_flow_runs_per_exit():
    m = Machine()
    assert m.begin() == [] and m.state.idle
    m.begin(spec("bolink"))
    assert m.begin(spec("bolink")) == [], "a second StartSettlement while the car waits is the same flow"


# --- pending: polled until it settles, or the window ends -----------------------------------------------------------

def test_a_pending_result_is_polled_every_interval_until_it_settles():
    m = Machine()
    [call] = m.create(*m.begin(spec("xft")))
    out = m.answer(call, PENDING)
    assert one(out, sm.MarkAttempt) == sm.MarkAttempt(1, Status.PENDING, "INIT", only_from=(Status.CHARGING,))
    assert m.state.next_deadline() == T0 + timedelta(seconds=2)
    [query] = m.at(2)
    assert query.kind == "query"
    m.answer(query, PENDING)
    [query] = m.at(4)
    [settle] = m.answer(query, ChargeAnswer("paid", "X9", 700))
    assert lane_events(m.settle(settle)) == [PaymentConfirmed("out1_1", "xft", 700, "X9", "")]
    assert m.state.idle


def test_the_window_ends_in_a_fallback_and_a_late_success_is_still_confirmed():
    m = Machine()
    [call] = m.create(*m.begin(spec("bolink"), spec("xft")))
    m.answer(call, PENDING)
    for t in range(2, 20, 2):
        [query] = m.at(t)
        m.answer(query, PENDING)
    [query] = m.at(20)  # one last query as the window ends ...
    out = m.answer(query, PENDING)
    assert lane_events(out) == [PaymentFallback("out1_1", "bolink did not settle within 20 s")]
    assert not any(isinstance(e, sm.NewAttempt) for e in out), "a charge in doubt is never sent to another provider"
    assert m.rows[1].status == "fallback" and m.rows[1].detail == "settlement window ended"
    assert not m.state.settling and m.state.count(sm.Mode.RECONCILING) == 1
    query = one(out, sm.CallProvider)  # the reconciler asks at once ...
    m.answer(query, PENDING)
    assert m.state.next_deadline() == T0 + timedelta(seconds=50)  # ... then every reconcile_interval_s
    [query] = m.at(50)
    [settle] = m.answer(query, ChargeAnswer("paid", "L1", 700))
    assert lane_events(m.settle(settle)) == [PaymentConfirmed("out1_1", "bolink", 700, "L1", "")]
    assert m.state.idle


def test_an_unanswered_charge_times_out_to_charging_and_its_stale_answer_changes_nothing():
    m = Machine()
    [call] = m.create(*m.begin(spec("bolink")))
    out = m.at(5)
    assert sm.CancelCall(call.call) in out
    assert one(out, sm.MarkAttempt) == sm.MarkAttempt(1, Status.CHARGING, "no answer within 5 s",
                                                      only_from=(Status.CHARGING,))
    assert m.answer(call, ChargeAnswer("paid", "LATE")) == [], "the call was given up: its answer is not read"
    for t in (7, 9, 11, 13, 15, 17, 19, 20):
        m.answer(one(m.at(t), sm.CallProvider), unavailable="HTTP 502")
    assert m.rows[1].detail == f"settlement window ended; {sm.UNANSWERED}" and sm.never_answered(m.rows[1])


def test_a_restart_resumes_an_open_charge_by_polling_never_charging_again():
    m = Machine()
    pending = sm.Attempt(7, "out1_1", "out1", "bolink", "bolink-out1_1", 700, "pending", T0.timestamp())
    skipped = replace(pending, id=6, provider="tdzn", order_ref="tdzn-out1_1", status="skipped", detail="no")
    m.rows[7] = pending
    assert m.begin(spec("tdzn"), spec("bolink"), previous=(skipped, pending)) == []
    [query] = m.at(2)
    assert query.kind == "query" and query.attempt.id == 7
    m.state = sm.SettlementState("out1_1", "out1")
    paid = replace(pending, status="paid", trade_no="T1")
    assert m.begin(spec("bolink"), previous=(paid,)) == [] and m.state.idle, "confirmed already"


# --- callbacks, stops ----------------------------------------------------------------------------------------------

def test_a_callback_that_settles_ends_the_wait_at_once_and_the_call_out_is_ignored():
    m = Machine()
    [call] = m.create(*m.begin(spec("bolink"), spec("xft")))
    m.answer(call, PENDING)
    [query] = m.at(2)
    paid = replace(m.rows[1], status="paid", trade_no="CB1")
    assert m.feed(sm.SettledElsewhere(paid)) == [] and m.state.idle
    assert m.answer(query, ChargeAnswer("failed")) == []


def test_a_refusal_by_callback_moves_on_with_its_reason():
    m = Machine()
    [call] = m.create(*m.begin(spec("xft")))
    m.answer(call, PENDING)
    out = m.feed(sm.SettledElsewhere(replace(m.rows[1], status="failed", detail="01 余额不足")))
    assert lane_events(out) == [PaymentFallback("out1_1", "xft failed: 01 余额不足")]


def test_stop_ends_the_flow_without_a_fallback_and_reconciles_what_is_open():
    m = Machine()
    [call] = m.create(*m.begin(spec("bolink")))
    out = m.feed(sm.Stop())
    assert sm.CancelCall(call.call) in out and one(out, sm.CallProvider).kind == "query"
    assert lane_events(out) == [] and not m.state.settling and m.state.count(sm.Mode.RECONCILING) == 1
    assert m.feed(sm.Stop()) == [], "a stop after the flow ended changes nothing"


def test_reconciliation_gives_up_at_its_horizon():
    m = Machine(replace(TIMING, reconcile_for_s=100))
    open_ = sm.Attempt(3, "out1_1", "out1", "bolink", "b", 700, "fallback", T0.timestamp())
    m.rows[3] = open_
    [query] = m.feed(sm.Reconcile(ORDER, (open_,), ("bolink",)))
    m.answer(query, PENDING)
    for t in (30, 60, 90):
        m.answer(one(m.at(t), sm.CallProvider), PENDING)
    out = m.at(120)
    assert one(out, sm.MarkAttempt) == sm.MarkAttempt(3, Status.FAILED, "not settled: reconciliation gave up")
    assert m.state.idle


def test_reconcile_skips_unknown_providers_and_exits_without_an_order():
    m = Machine()
    open_ = sm.Attempt(3, "out1_1", "out1", "gone", "b", 700, "pending", T0.timestamp())
    assert m.feed(sm.Reconcile(ORDER, (open_,), ("bolink",))) == [] and m.state.idle
    assert m.feed(sm.Reconcile(None, (replace(open_, provider="bolink"),), ("bolink",))) == [] and m.state.idle


# --- "no such order" ----------------------------------------------------------------------------------------------

def test_an_unanswered_charge_whose_order_is_absent_is_not_charged_after_three_answers_over_the_span():
    m = Machine(replace(TIMING, window_s=60))
    [call] = m.create(*m.begin(spec("xft"), spec("booth")))
    m.answer(call, unavailable="HTTP 502")
    queried, out = [], []
    for t in range(2, 30):
        if any(isinstance(e, sm.SettleAttempt) for e in out):
            break
        for e in m.at(t):
            if isinstance(e, sm.CallProvider) and e.kind == "query":
                queried.append(t)
                out = m.answer(e, ABSENT)
    assert queried == [2, 7, 12], "three answers, spread over absent_span_s"
    settle = one(out, sm.SettleAttempt)
    assert not settle.paid and settle.detail.startswith("not charged: xft has no order xft-out1_1 (3 answers over 10 s")
    out = m.settle(settle)
    assert one(out, sm.NewAttempt).provider == "booth", "the next provider takes the car within the window"
    assert m.state.count(sm.Mode.LATE_CHECK) == 1
    [late] = m.at(12 + 60)
    assert late.kind == "query" and late.attempt.provider == "xft"
    out = m.answer(late, ChargeAnswer("paid", "T9", 700))
    assert one(out, fx.Log).level == "error"
    out = m.settle(one(out, sm.SettleAttempt))
    assert lane_events(out) == [PaymentConfirmed("out1_1", "xft", 700, "T9", "")], "money after all: for the books"


def test_absent_for_a_charge_the_platform_answered_never_fails_it():
    m = Machine()
    [call] = m.create(*m.begin(spec("xft"), spec("booth")))
    m.answer(call, PENDING)
    for t in range(2, 20, 2):
        out = m.answer(one(m.at(t), sm.CallProvider), ABSENT)
        assert not any(isinstance(e, (sm.SettleAttempt, sm.NewAttempt)) for e in out)
    out = m.answer(one(m.at(20), sm.CallProvider), ABSENT)
    assert "did not settle" in lane_events(out)[0].reason and m.rows[1].status == "fallback"


def test_an_order_that_showed_up_is_never_failed_for_a_later_absent_answer():
    m = Machine()
    [call] = m.create(*m.begin(spec("xft")))
    m.answer(call, unavailable="timeout")
    m.answer(one(m.at(2), sm.CallProvider), ABSENT)
    m.answer(one(m.at(7), sm.CallProvider), PENDING)  # the platform has it after all
    for t in (9, 11, 13, 15):
        assert not any(isinstance(e, sm.SettleAttempt) for e in m.answer(one(m.at(t), sm.CallProvider), ABSENT))


# --- precheck and scanned codes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["skip", "unavailable", "window"])
def test_a_precheck_that_says_no_or_nothing_skips_the_provider(how):
    m = Machine()
    [call] = m.create(*m.begin(spec("xft", precheck=True), spec("booth")))
    assert call.kind == "precheck" and m.state.next_deadline() == T0 + timedelta(seconds=20), "bounded by the window"
    if how == "skip":
        out = m.answer(call, ChargeAnswer("skip", detail="not signed up"))
    elif how == "unavailable":
        out = m.answer(call, unavailable="HTTP 502")
    else:
        out = m.at(20)
    assert one(out, sm.MarkAttempt).status is Status.SKIPPED
    assert one(out, sm.NewAttempt).provider == "booth"


def test_a_precheck_with_nothing_to_say_leads_to_the_charge():
    m = Machine()
    [call] = m.create(*m.begin(spec("xft", precheck=True)))
    m.now = T0 + timedelta(seconds=12)  # slower than the charge timeout: still no charge in doubt
    [charge] = m.answer(call, None)
    assert charge.kind == "charge" and m.state.next_deadline() == T0 + timedelta(seconds=17)


def test_a_scanned_code_is_one_charge_and_a_refusal_falls_back_with_its_reason():
    m = Machine()
    out = m.feed(sm.BeginCode(ORDER, (spec("xft"), spec("bolink", takes_code=True)), "2890001"))
    [call] = m.create(one(out, sm.NewAttempt))
    assert (call.kind, call.code, call.attempt.provider) == ("code", "2890001", "bolink")
    [settle] = m.answer(call, ChargeAnswer("failed", detail="code expired"))
    assert lane_events(m.settle(settle)) == [PaymentFallback("out1_1", "bolink: scanned code refused: code expired")]
    m2 = Machine()
    assert lane_events(m2.feed(sm.BeginCode(ORDER, (spec("xft"),), "1"))) == [
        PaymentFallback("out1_1", "no provider here takes a scanned payment code")]


# --- callback results (judge_result) -----------------------------------------------------------------------------

ROW = sm.Attempt(1, "out1_1", "out1", "bolink", "ref", 700, "pending", T0.timestamp())


def test_a_paid_result_for_an_open_charge_is_settled_for_its_own_record_only():
    verdict = sm.judge_result("bolink", "ref", [ROW], ChargeAnswer("paid", "T1", 650, "wallet"), "out1")
    assert verdict.outcome is None and verdict.settle == sm.SettleAttempt(1, True, "T1", 650, "wallet", "")
    assert sm.on_won(ROW, verdict.settle)[-1] == sm.ToLane("out1", PaymentConfirmed("out1_1", "bolink", 650, "T1",
                                                                                     "wallet"))
    assert sm.judge_result("bolink", "ref", [ROW], ChargeAnswer("paid", "T1"), "out2").outcome == "mismatch"
    assert sm.judge_result("bolink", "nope", [], ChargeAnswer("paid", "T1"), None).outcome == "unknown_order"


def test_a_duplicate_or_a_late_failure_is_never_passed_on():
    paid = replace(ROW, status="paid", trade_no="T1")
    for answer in (ChargeAnswer("paid", "T1"), ChargeAnswer("paid", ""), ChargeAnswer("failed")):
        verdict = sm.judge_result("bolink", "ref", [paid], answer, None)
        assert verdict.outcome == "duplicate" and verdict.settle is None
        assert not any(isinstance(e, sm.ToLane) for e in verdict.effects)
    assert sm.judge_result("bolink", "ref", [ROW], ChargeAnswer("pending"), None).outcome == "accepted"


def test_a_second_different_payment_is_passed_on_for_the_books():
    paid = replace(ROW, status="paid", trade_no="T1")
    verdict = sm.judge_result("bolink", "ref", [paid], ChargeAnswer("paid", "T2", 700), None)
    assert verdict.outcome == "accepted"
    assert [e.event for e in verdict.effects if isinstance(e, sm.ToLane)] == [
        PaymentConfirmed("out1_1", "bolink", 700, "T2", "")]


def test_a_result_goes_to_the_open_attempt_else_the_last_payable_one():
    old = replace(ROW, id=1, status="paid", trade_no="T0")
    skipped = replace(ROW, id=2, status="skipped")
    verdict = sm.judge_result("bolink", "ref", [old, skipped], ChargeAnswer("paid", "T5", 700), None)
    assert verdict.attempt == skipped and verdict.settle is not None, "paid by scanning after a skip: money"


def test_a_scanned_code_replaces_the_running_flow_whose_charge_is_reconciled():
    m = Machine()
    [call] = m.create(*m.begin(spec("xft"), spec("bolink", takes_code=True)))
    out = m.feed(sm.BeginCode(ORDER, (spec("xft"), spec("bolink", takes_code=True)), "2890001"))
    assert sm.CancelCall(call.call) in out and lane_events(out) == []
    assert one(out, sm.CallProvider).kind == "query" and m.state.count(sm.Mode.RECONCILING) == 1
    assert one(out, sm.NewAttempt).provider == "bolink" and m.state.settling


def test_a_redelivery_is_only_for_a_payment_the_lane_never_committed():
    paid = replace(ROW, status="paid", trade_no="T1", paid_fen=700)
    assert lane_events(sm.redelivery(paid, True)) == [PaymentConfirmed("out1_1", "bolink", 700, "T1", "")]
    assert sm.redelivery(paid, False) == [] and sm.redelivery(replace(paid, delivered=True), True) == []
