"""Issue 12, the one rule for a lane step whose commit failed (service/storage.act_without_storage), on real
steps of the lane machine; and StorageHealth's once-on-failure, once-on-recovery logging."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from lanectl.core import effects as fx
from lanectl.core.events import CommandDone, IoSnapshot, PaymentConfirmed, PaymentFallback, PlateRead, Tick
from lanectl.core.lane import LaneContext, LaneRules, LaneState, Phase, handle
from lanectl.service.storage import FAULT_DISPLAY, StorageHealth, act_without_storage
from tests.policies import FlatPolicy

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=TZ)
DOWN = IoSnapshot(arming=False, safety=False, up_limit=False, down_limit=True)
UP_SAFETY = IoSnapshot(arming=False, safety=True, up_limit=True, down_limit=False)
UP_CLEAR = IoSnapshot(arming=False, safety=False, up_limit=True, down_limit=False)
ENTRY = LaneContext("in1", "entry", FlatPolicy(), LaneRules(pass_timeout_s=30))


def step(state: LaneState, event, at: float = 0.0, ctx: LaneContext = ENTRY):
    return handle(state, event, T0 + timedelta(seconds=at), ctx)


def lane_open_with_car(passage_event=UP_SAFETY) -> LaneState:
    """Entry lane: a car was let in, the arm is up, the car stands on the safety loop."""
    s, _ = step(LaneState(), DOWN)
    s, _ = step(s, PlateRead("粤B12345", "blue", 90))
    s, _ = step(s, CommandDone(s.pending_action, True))
    s, _ = step(s, IoSnapshot(arming=True, safety=False, up_limit=True, down_limit=False), 1)
    s, _ = step(s, passage_event, 2)
    return s


def test_a_plate_that_would_open_is_refused_and_the_lane_stays_as_it_was():
    before, _ = step(LaneState(), DOWN)
    after, effects = step(before, PlateRead("粤B12345", "blue", 90))
    assert any(isinstance(e, fx.OpenBarrier) for e in effects)  # what the lane wanted to do
    plan = act_without_storage(before, after, effects, PlateRead("粤B12345", "blue", 90), lane_id="in1",
                               announce=True)
    assert plan.refused and plan.state == before and not plan.unwritten and not plan.retry
    assert not any(fx.is_persistent(e) for e in plan.act)
    assert FAULT_DISPLAY in plan.act
    [line] = [e for e in plan.act if isinstance(e, fx.Log)]
    assert ("plate", "粤B12345") in line.fields and ("reason", "storage unavailable") in line.fields


def test_the_fault_is_announced_on_the_board_once_per_outage():
    before, _ = step(LaneState(), DOWN)
    after, effects = step(before, PlateRead("粤B12345", "blue", 90))
    plan = act_without_storage(before, after, effects, PlateRead("粤B12345"), lane_id="in1", announce=False)
    assert plan.refused and FAULT_DISPLAY not in plan.act


def test_the_car_passed_close_is_still_sent_and_its_row_kept_for_later():
    before = lane_open_with_car()
    assert before.phase == Phase.OPEN and before.visit.passage == "on_safety"
    after, effects = step(before, UP_CLEAR, 3)
    [close] = [e for e in effects if isinstance(e, fx.CloseBarrier)]
    plan = act_without_storage(before, after, effects, UP_CLEAR, lane_id="in1", announce=True)
    assert not plan.refused and plan.state == after and after.phase == Phase.CLOSING
    assert plan.unwritten == (close,) and close in plan.act and close.reason == "car_passed"
    assert FAULT_DISPLAY not in plan.act


def test_a_pass_timeout_over_clear_loops_still_lowers_the_arm():
    s, _ = step(LaneState(), DOWN)
    s, _ = step(s, PlateRead("粤B12345", "blue", 90))
    s, _ = step(s, CommandDone(s.pending_action, True))
    before, _ = step(s, UP_CLEAR, 1)  # up, nobody came
    after, effects = step(before, Tick(), 40)
    plan = act_without_storage(before, after, effects, Tick(), lane_id="in1", announce=True)
    [close] = plan.unwritten
    assert close.reason == "not_passed" and plan.state.phase == Phase.CLOSING and close in plan.act


def test_a_step_that_only_changes_the_lane_state_is_taken():
    before = lane_open_with_car(IoSnapshot(arming=True, safety=False, up_limit=True, down_limit=False))
    after, effects = step(before, UP_SAFETY, 3)
    assert after != before and not any(fx.is_persistent(e) for e in effects)
    plan = act_without_storage(before, after, effects, UP_SAFETY, lane_id="in1", announce=True)
    assert not plan.refused and plan.state == after and plan.state.visit.passage == "on_safety"


def test_the_arm_reaching_its_limit_is_followed_and_its_confirmation_kept_for_later():
    # without this the lane would stay "opening" through an outage and never lower the arm after the car
    s, _ = step(LaneState(), DOWN)
    before, _ = step(s, PlateRead("粤B12345", "blue", 90))
    up = IoSnapshot(arming=True, safety=False, up_limit=True, down_limit=False)
    after, effects = step(before, up, 1)
    [audit] = [e for e in effects if isinstance(e, fx.AuditAction)]
    plan = act_without_storage(before, after, effects, up, lane_id="in1", announce=True)
    assert not plan.refused and plan.state.phase == Phase.OPEN and plan.unwritten == (audit,)
    assert audit.status == "confirmed" and audit.action_id == before.command


def test_a_close_that_comes_with_other_writes_is_not_taken_alone():
    before = lane_open_with_car()
    after, effects = step(before, UP_CLEAR, 3)
    mixed = list(effects) + [fx.NewRecord("in1_9", "in1", "entry", "粤B2", "", T0.isoformat(), "inside"),
                             fx.OpenBarrier("in1_10", "in1_9", "rules", "temporary")]
    plan = act_without_storage(before, after, mixed, UP_CLEAR, lane_id="in1", announce=True)
    assert plan.refused and plan.state == before
    assert not any(isinstance(e, (fx.OpenBarrier, fx.CloseBarrier)) for e in plan.act)


def test_payment_results_are_kept_for_later_and_logged_once():
    exit_ctx = LaneContext("out1", "exit", FlatPolicy(), LaneRules())
    before = LaneState(phase=Phase.AWAITING_PAYMENT)
    paid = PaymentConfirmed("out1_1", "bolink", 500, "T1")
    after, effects = handle(before, paid, T0, exit_ctx)
    plan = act_without_storage(before, after, effects, paid, lane_id="out1", announce=False)
    assert plan.refused and plan.retry and any(isinstance(e, fx.Log) for e in plan.act)
    again = act_without_storage(before, after, [fx.RecordPayment("out1_1", "out1", 500, "bolink", "T1",
                                                                 T0.isoformat())], paid, lane_id="out1",
                                announce=False, repeat=True)
    assert again.refused and again.retry and again.act == ()
    fallback = act_without_storage(before, before, [fx.PatchRecord("out1_1", (("status", "x"),))],
                                   PaymentFallback("out1_1", "window"), lane_id="out1", announce=False)
    assert fallback.retry


def test_timers_and_device_inputs_refused_are_not_logged():
    before, _ = step(LaneState(), DOWN)
    write = [fx.NewRecord("in1_1", "in1", "entry", "粤B2", "", T0.isoformat(), "inside")]
    for event in (Tick(), DOWN):
        plan = act_without_storage(before, before, write, event, lane_id="in1", announce=False)
        assert plan.refused and plan.act == ()


def test_storage_health_logs_once_when_failing_and_once_when_recovered(caplog):
    caplog.set_level(logging.INFO, logger="lanectl.store")
    clock = [T0]
    health = StorageHealth("/var/lib/lanectl/lanectl.db", now=lambda: clock[0])
    changes: list[bool] = []
    health.listeners.append(lambda h: changes.append(h.ok))
    health.succeeded()
    for _ in range(5):
        health.failed("disk full (SQLITE_FULL: database or disk is full)")
    health.failed("disk I/O error")  # a second cause within one outage: still the same outage
    assert not health.ok and health.fault.refused == 6 and health.reason.startswith("disk full")
    assert health.as_dict()["since"] == T0.isoformat()
    assert "STORAGE FAULT" in health.summary() and "disk full" in health.summary()
    clock[0] = T0 + timedelta(seconds=42)
    health.succeeded()
    health.succeeded()
    assert health.ok and health.summary() == "storage ok"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("storage failing") and "/var/lib/lanectl/lanectl.db" in lines[0] \
        and "SQLITE_FULL" in lines[0]
    assert lines[1].startswith("storage recovered") and "42 s" in lines[1] and "6 write(s) refused" in lines[1]
    assert changes == [False, True]
