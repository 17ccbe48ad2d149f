"""An operator's release in the lane machine: who is recorded (name and the kernel's uid, never an empty name)
and what a cash release took against what the car owed (short / over)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lanectl.core import effects as fx
from lanectl.core.events import CommandDone, OperatorOpen, PlateRead
from lanectl.core.lane import InsideCar, LaneState, Phase, cash_difference
from tests.unit.test_lane import ARMING, T0, Lane, waiting_exit


def _patch(lane: Lane, out: list, record_id: str) -> dict:
    return {k: v for p in lane.of(fx.PatchRecord, out) if p.record_id == record_id for k, v in p.changes}


@pytest.mark.parametrize(("taken", "paid", "short", "over"), [
    (100, 100, 400, 0),   # `--amount 100` against 500 due: released, 1.00 paid, 4.00 short
    (500, 500, 0, 0),
    (700, 700, 0, 200),   # the driver left the change: over
    (0, None, 500, 0),    # released for nothing: all of it short, no payment row
    (None, None, 500, 0),  # no amount given: took nothing
])
def test_a_cash_release_records_what_it_took_against_what_was_due(taken, paid, short, over):
    lane, rec = waiting_exit()
    assert rec.due_fen == 500
    out = lane.feed(OperatorOpen("王", "cash", taken, operator_uid=1001))
    [opened] = lane.of(fx.OpenBarrier, out)
    assert (opened.authority, opened.operator, opened.operator_uid) == ("operator", "王", 1001)
    changes = _patch(lane, out, rec.record_id)
    assert changes["status"] == "released"
    assert (changes["operator"], changes["operator_uid"]) == ("王", 1001)
    assert (changes["short_fen"], changes["over_fen"]) == (short, over)
    assert changes.get("paid_fen") == paid
    payments = lane.of(fx.RecordPayment, out)
    assert [(p.amount_fen, p.method, p.reference, p.flag) for p in payments] == \
        ([(taken, "cash", "王", "")] if taken else [])
    # the record and its figures are written before the OPEN goes out
    assert out.index(lane.of(fx.PatchRecord, out)[0]) < out.index(opened)


def test_a_short_release_is_logged_as_a_warning_with_its_figures():
    lane, rec = waiting_exit()
    out = lane.feed(OperatorOpen("王", "cash", 1, operator_uid=1001))
    [line] = [e for e in lane.of(fx.Log, out) if "operator release" in e.message]
    fields = dict(line.fields)
    assert line.level == "warning" and "short" in line.message
    assert (fields["due_fen"], fields["short_fen"], fields["operator"], fields["operator_uid"]) == (500, 499, "王", 1001)


def test_an_exact_release_logs_info():
    lane, _ = waiting_exit()
    out = lane.feed(OperatorOpen("王", "cash", 500, operator_uid=1001))
    [line] = [e for e in lane.of(fx.Log, out) if "operator release" in e.message]
    assert line.level == "info" and dict(line.fields)["short_fen"] == 0


def test_money_paid_ahead_inside_the_lot_stays_on_the_record():
    entered = T0 - timedelta(hours=3)
    lane = Lane("exit", inside={"粤B12345": InsideCar("e_1", entered, paid_fen=200, paid_at=T0 - timedelta(hours=1))})
    rec = lane.of(fx.NewRecord, lane.feed(PlateRead("粤B12345")))[0]
    assert (rec.paid_fen, rec.due_fen) == (200, 300)
    out = lane.feed(OperatorOpen("王", "cash", 250, operator_uid=7))
    changes = _patch(lane, out, rec.record_id)
    assert (changes["paid_fen"], changes["short_fen"], changes["over_fen"]) == (450, 50, 0)


def test_a_release_with_no_car_records_who_released_it():
    lane = Lane()
    out = lane.feed(OperatorOpen("李", "ambulance", operator_uid=1002))
    [rec] = lane.of(fx.NewRecord, out)
    assert (rec.kind, rec.operator, rec.operator_uid) == ("release", "李", 1002)
    assert lane.of(fx.OpenBarrier, out)[0].operator_uid == 1002


def test_a_release_without_a_name_is_recorded_under_the_uid_never_empty():
    lane = Lane()
    out = lane.feed(OperatorOpen("  ", "ambulance", operator_uid=1002))
    [rec] = lane.of(fx.NewRecord, out)
    [opened] = lane.of(fx.OpenBarrier, out)
    assert rec.operator == opened.operator == "uid:1002"


def test_a_release_with_neither_name_nor_uid_is_refused():
    lane = Lane()
    out = lane.feed(OperatorOpen("", "ambulance"))
    assert not lane.of(fx.OpenBarrier, out) and not lane.of(fx.NewRecord, out)
    assert lane.state.phase == Phase.IDLE


def test_a_platforms_release_has_no_uid():
    lane, rec = waiting_exit()
    out = lane.feed(OperatorOpen("张三", "remote"))
    assert _patch(lane, out, rec.record_id)["operator_uid"] is None
    assert lane.of(fx.OpenBarrier, out)[0].operator_uid is None


def test_a_blocked_release_re_issued_keeps_the_operators_uid_across_a_restart():
    lane, rec = waiting_exit()
    lane.feed(OperatorOpen("王", "cash", 500, operator_uid=1001))
    lane.feed(CommandDone(lane.state.pending_action, False, "BarrierError: no answer"))
    assert lane.state.phase == Phase.BLOCKED
    lane.state = LaneState.from_dict(lane.state.to_dict())  # written and read back as a restart does
    lane.feed(ARMING, 1.0)
    out = lane.feed(PlateRead("粤B12345"), 20.0)
    [again] = lane.of(fx.OpenBarrier, out)
    assert (again.record_id, again.operator, again.operator_uid) == (rec.record_id, "王", 1001)


@pytest.mark.parametrize(("due", "taken", "expected"), [
    (500, None, (500, 0)), (500, 0, (500, 0)), (500, 499, (1, 0)), (500, 500, (0, 0)), (500, 501, (0, 1)),
    (0, 300, (0, 300)), (0, None, (0, 0)),
])
def test_cash_difference(due, taken, expected):
    assert cash_difference(due, taken) == expected
