"""Restarts in the middle of a cycle, the blocked phase and its exits, and the command audit (confirmed /
unconfirmed). The lane is driven event by event with explicit times."""

from __future__ import annotations

from datetime import timedelta

from lanectl.core import effects as fx
from lanectl.core.events import DeviceFault, DeviceRecovered, IoSnapshot, OperatorOpen, PaymentConfirmed, PlateRead, Tick
from lanectl.core.lane import InsideCar, LaneState, Phase, restored
from tests.unit.test_lane import (ARMING, DOWN, T0, UP_ARMING, UP_CLEAR, UP_SAFETY, Lane, drive_through)

UP_ARMING_SAFETY = IoSnapshot(arming=True, safety=True, up_limit=True, down_limit=False)
MID_CLEAR = IoSnapshot(arming=False, safety=False, up_limit=False, down_limit=False)


def restart(lane: Lane, after: float = 2.0) -> None:
    """The daemon is killed and started again: the state comes back from its JSON."""
    lane.now += timedelta(seconds=after)
    lane.state = restored(LaneState.from_dict(lane.state.to_dict()))


def test_restart_with_the_arm_up_and_no_car_lowers_it():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    lane.ack()
    lane.feed(UP_ARMING, 1.0)
    restart(lane, 30)  # meanwhile the car backed away
    assert lane.state.resuming and lane.state.deadlines == ()
    out = lane.feed(UP_CLEAR)
    close = lane.of(fx.CloseBarrier, out)
    assert [c.reason for c in close] == ["restart_no_car"] and lane.state.phase == Phase.CLOSING
    assert not lane.of(fx.OpenBarrier, out)


def test_restart_with_a_car_on_a_loop_lets_it_pass_then_closes():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    lane.ack()
    restart(lane)
    out = lane.feed(UP_ARMING_SAFETY)
    assert not lane.of(fx.CloseBarrier, out) and not lane.of(fx.OpenBarrier, out)
    assert lane.state.phase == Phase.OPEN and lane.state.visit.passage == "on_safety"
    out = lane.feed(UP_CLEAR, 1.0)
    assert [c.reason for c in lane.of(fx.CloseBarrier, out)] == ["car_passed"]


def test_restart_after_an_open_that_never_moved_the_arm_blocks_without_repeating_it():
    lane = Lane()
    rec = lane.of(fx.NewRecord, lane.feed(PlateRead("粤B12345")))[0]  # killed before the OPEN reached the wire
    restart(lane)
    out = lane.feed(ARMING)
    assert not lane.of(fx.OpenBarrier, out) and lane.state.phase == Phase.BLOCKED
    assert "OPEN interrupted by a restart" in lane.state.barrier_fault
    assert [d.key for d in lane.of(fx.Display, out)] == ["fault"]
    assert lane.of(fx.AuditAction, out) == [fx.AuditAction(lane.of(fx.OpenBarrier)[0].action_id, "unconfirmed",
                                                             "arm still down after a restart")]
    # the same car, read again at the closed arm: its own decision is re-issued for its own record
    out = lane.feed(PlateRead("粤B12345"), 3.0)
    again = lane.of(fx.OpenBarrier, out)
    assert len(again) == 1 and (again[0].record_id, again[0].authority) == (rec.record_id, "rules")
    assert not lane.of(fx.NewRecord, out) and lane.state.phase == Phase.OPENING
    lane.feed(UP_ARMING, 1.0)
    assert lane.state.barrier_fault == "" and lane.state.phase == Phase.OPEN


def test_a_blocked_car_is_not_reopened_unless_it_stands_at_the_closed_arm():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    restart(lane)
    lane.feed(DOWN)  # blocked, but nobody on the arming loop
    assert lane.state.phase == Phase.BLOCKED
    assert not lane.of(fx.OpenBarrier, lane.feed(PlateRead("粤B12345"), 3.0))


def test_a_paid_exit_blocked_by_a_restart_reopens_on_its_payment_not_a_new_charge():
    inside = {"粤B12345": InsideCar("e_1", T0 - timedelta(hours=3))}
    lane = Lane("exit", inside=inside, settle=True)
    exit_rec = lane.of(fx.NewRecord, lane.feed(PlateRead("粤B12345")))[0]
    lane.feed(ARMING)
    lane.feed(PaymentConfirmed(exit_rec.record_id, "bolink", 500, "T1"), 5.0)
    restart(lane)
    lane.feed(ARMING)
    out = lane.feed(PlateRead("粤B12345"), 5.0)
    (again,) = lane.of(fx.OpenBarrier, out)
    assert (again.record_id, again.authority, again.trade_no) == (exit_rec.record_id, "payment", "T1")
    assert not lane.of(fx.RecordPayment, out) and not lane.of(fx.StartSettlement, out)


def test_another_car_at_a_blocked_lane_is_handled_as_at_an_idle_lane():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    lane.ack(False, "BarrierError: no answer")
    assert lane.state.phase == Phase.BLOCKED
    out = lane.feed(PlateRead("粤B22222"), 20.0)
    rec = lane.of(fx.NewRecord, out)[0]
    assert rec.plate == "粤B22222" and lane.of(fx.OpenBarrier, out)[0].record_id == rec.record_id


def test_a_stale_plate_held_before_the_restart_is_not_acted_upon():
    lane = Lane(stale_plate_s=30)
    lane.feed(PlateRead("粤B12345"))
    lane.ack()
    lane.feed(UP_ARMING, 1.0)
    lane.feed(PlateRead("粤B22222"), 0.5)  # held behind the first car
    restart(lane, 120)
    out = lane.feed(DOWN)  # the arm came down while we were away; the held car is long gone
    assert lane.state.phase == Phase.IDLE and not lane.of(fx.NewRecord, out)
    assert any(e.message.startswith("plate read before the restart is stale") for e in lane.of(fx.Log, out))


def test_a_plate_read_while_resuming_waits_for_the_inputs_then_is_handled():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    lane.ack()
    lane.feed(UP_ARMING, 1.0)
    lane.feed(UP_SAFETY, 1.0)
    lane.feed(UP_CLEAR, 1.0)  # CLOSE decided; killed before the down limit
    restart(lane, 5)
    assert not lane.of(fx.NewRecord, lane.feed(PlateRead("粤B22222")))  # no decision before the inputs
    out = lane.feed(IoSnapshot(arming=True, safety=False, up_limit=False, down_limit=True), 0.5)
    rec = lane.of(fx.NewRecord, out)[0]
    assert rec.plate == "粤B22222" and lane.of(fx.OpenBarrier, out)


def test_a_failed_operator_open_leaves_the_lane_able_to_take_the_next_open_also_after_recovery():
    lane = Lane()
    lane.feed(DeviceFault("barrier", "port gone"))
    lane.feed(OperatorOpen("王", "fault"))
    lane.ack(False, "BarrierError: port gone")
    assert lane.state.phase == Phase.BLOCKED
    lane.feed(DeviceRecovered("barrier"), 5.0)  # the fault clears; the lane must not be stuck "opening"
    out = lane.feed(OperatorOpen("王", "fault"), 1.0)
    assert len(lane.of(fx.OpenBarrier, out)) == 1
    restart(lane)  # and after a restart too
    lane.feed(DOWN)
    assert lane.state.phase == Phase.BLOCKED
    assert len(lane.of(fx.OpenBarrier, lane.feed(OperatorOpen("王", "fault"), 1.0))) == 1


def test_the_audit_confirms_commands_by_their_limit_inputs():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    open_id = lane.state.command
    drive_through(lane)
    close_id = lane.state.command
    lane.ack()
    lane.feed(DOWN, 2.0)
    assert lane.of(fx.AuditAction) == [fx.AuditAction(open_id, "confirmed"), fx.AuditAction(close_id, "confirmed")]


def test_an_open_acknowledged_but_never_confirmed_is_a_fault_and_unconfirmed():
    lane = Lane(open_confirm_s=6)
    lane.feed(PlateRead("粤B12345"))
    open_id = lane.state.command
    lane.ack()
    out = lane.feed(Tick(), 7.0)
    assert lane.state.phase == Phase.BLOCKED and "OPEN not confirmed" in lane.state.barrier_fault
    (audit,) = lane.of(fx.AuditAction, out)
    assert (audit.action_id, audit.status) == (open_id, "unconfirmed")
    # the arm gets there late after all: confirmed, and the car goes through
    out = lane.feed(UP_ARMING, 3.0)
    assert lane.of(fx.AuditAction, out) == [fx.AuditAction(open_id, "confirmed")]
    assert lane.state.phase == Phase.OPEN and lane.state.barrier_fault == ""


def test_restart_while_closing_with_the_arm_down_ends_the_cycle():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    drive_through(lane)
    restart(lane)
    lane.feed(DOWN)
    assert lane.state.phase == Phase.IDLE and lane.state.visit is None


def test_restart_while_closing_with_the_arm_still_up_and_no_car_closes_again():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    drive_through(lane)
    first = lane.of(fx.CloseBarrier)[0]
    restart(lane)
    out = lane.feed(MID_CLEAR)
    (again,) = lane.of(fx.CloseBarrier, out)
    assert again.action_id != first.action_id and lane.state.phase == Phase.CLOSING
