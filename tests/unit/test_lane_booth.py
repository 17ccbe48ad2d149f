"""The booth's other actions through the lane's dispatch table: refuse a car, correct a misread plate (re-matched
against the cars inside, fuzzy candidates answered), admit a car held at an entry; two operators on one car."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from lanectl.core import effects as fx
from lanectl.core.events import (OperatorAdmit, OperatorCorrect, OperatorOpen, OperatorRefuse, PaymentConfirmed,
                                 PlateRead)
from lanectl.core.lane import InsideCar, LaneState, Phase, Visit, handle
from lanectl.core.plates import near_plates
from tests.unit.test_lane import ARMING, DOWN, T0, Lane, drive_through, said

GARBLED = "竑B55502"  # a Big5 line read as GBK: no plate
INSIDE = {
    "粤B82345": InsideCar("e_1", T0 - timedelta(hours=2), "in1"),
    "粤B82346": InsideCar("e_2", T0 - timedelta(hours=3), "in2"),
    "粤B12345": InsideCar("e_3", T0 - timedelta(minutes=5), "in1"),  # within the free period at T0
}


def answer(lane: Lane, out: list) -> fx.BoothResult:
    (result,) = lane.of(fx.BoothResult, out)
    return result


def patch(out: list, record_id: str) -> dict:
    return {k: v for p in out if isinstance(p, fx.PatchRecord) and p.record_id == record_id for k, v in p.changes}


def waiting_exit(read: str = "粤B8234S", settle: bool = True) -> Lane:
    lane = Lane("exit", inside=dict(INSIDE), settle=settle)
    lane.feed(ARMING)
    lane.feed(PlateRead(read, "blue", 90, image="exit.jpg"))
    assert lane.state.phase == Phase.AWAITING_PAYMENT
    return lane


def held_entry(read: str = GARBLED) -> Lane:
    lane = Lane("entry", inside=dict(INSIDE))
    lane.feed(ARMING)
    lane.feed(PlateRead(read, "blue", 90, image="entry.jpg"))
    assert lane.state.phase == Phase.IDLE and lane.state.booth is not None
    return lane


# --- refuse ----------------------------------------------------------------------------------------------------
def test_refusing_the_exit_car_ends_its_visit_keeps_the_arm_down_and_stops_its_settlement():
    lane = waiting_exit()
    record_id = lane.state.visit.record_id
    out = lane.feed(OperatorRefuse("alice", "no money", "r1", operator_uid=1000), 5)
    result = answer(lane, out)
    assert result.outcome == "refused" and result.record_id == record_id and result.operator == "alice"
    assert patch(out, record_id) == {"status": "refused", "operator": "alice", "operator_uid": 1000,
                                     "reason": "operator_refused:no money"}
    assert lane.of(fx.StopSettlement, out) == [fx.StopSettlement(record_id, fx.StopReason.REFUSED)]
    assert not lane.of(fx.OpenBarrier, out)
    assert "禁止通行" in said(lane.of(fx.Display, out)[0])
    assert lane.state.phase == Phase.IDLE and lane.state.visit is None


def test_a_payment_arriving_after_a_refusal_is_kept_and_flagged_late():
    lane = waiting_exit()
    record_id = lane.state.visit.record_id
    lane.feed(OperatorRefuse("alice", "no money"))
    out = lane.feed(PaymentConfirmed(record_id, "bolink", 500, "T9"), 3)
    (paid,) = lane.of(fx.RecordPayment, out)
    assert paid.flag == "late" and paid.amount_fen == 500 and not lane.of(fx.OpenBarrier, out)


def test_refusing_when_no_car_waits_says_so():
    lane = Lane("exit")
    result = answer(lane, lane.feed(OperatorRefuse("alice", "why")))
    assert result.outcome == "nothing_waiting" and "no car waiting" in result.message


def test_refusing_the_entry_car_held_for_the_booth_names_the_operator_on_its_refused_record():
    lane = held_entry()
    record_id = lane.state.booth.record_id
    out = lane.feed(OperatorRefuse("bob", "no plate, no entry"))
    assert answer(lane, out).outcome == "refused"
    assert patch(out, record_id) == {"operator": "bob", "operator_uid": None,
                                     "reason": "operator_refused:no plate, no entry"}
    assert lane.state.booth is None and not lane.of(fx.OpenBarrier, out)


# --- correct ---------------------------------------------------------------------------------------------------
def test_near_plates_lists_the_cars_a_misread_may_be():
    assert near_plates("粤B8234S", INSIDE) == ("粤B82345", "粤B82346", "粤B12345")  # one character off, then two
    assert near_plates("粤B82345", INSIDE) == ("粤B82346", "粤B12345")  # never the reading itself
    assert near_plates("", INSIDE) == ()


def test_a_corrected_exit_plate_is_priced_against_its_stay_and_settled_again_under_it():
    lane = waiting_exit()
    visit = lane.state.visit
    out = lane.feed(OperatorCorrect("carol", "粤b82346", "r2"), 5)
    result = answer(lane, out)
    assert (result.outcome, result.plate, result.due_fen) == ("corrected", "粤B82346", 500)
    changes = patch(out, visit.record_id)
    assert changes["plate"] == "粤B82346" and changes["read_plate"] == "粤B8234S"
    assert changes["corrected_by"] == "carol" and changes["entry_record_id"] == "e_2"
    assert changes["due_fen"] == 500 and changes["status"] == "awaiting_payment"
    assert "match:corrected" in changes["detail"]
    assert lane.of(fx.StopSettlement, out) == [fx.StopSettlement(visit.record_id, fx.StopReason.REIDENTIFIED)]
    (start,) = lane.of(fx.StartSettlement, out)
    assert start.plate == "粤B82346" and start.entry_record_id == "e_2" and start.due_fen == 500
    assert not lane.of(fx.OpenBarrier, out)
    assert lane.state.visit.plate == "粤B82346" and lane.state.visit.read_plate == "粤B8234S"
    # the camera reading the car again as it first did is the same car, not another one
    out = lane.feed(PlateRead("粤B8234S", "blue", 90), 30)
    assert not lane.of(fx.NewRecord, out) and lane.state.visit.record_id == visit.record_id
    # the corrected car pays: the barrier opens for the payment
    out = lane.feed(PaymentConfirmed(visit.record_id, "bolink", 500, "T1"))
    assert lane.of(fx.OpenBarrier, out)[0].authority == "payment"


def test_a_corrected_plate_whose_stay_is_free_opens_by_the_rules():
    lane = waiting_exit("粤B1234S")
    out = lane.feed(OperatorCorrect("carol", "粤B12345"))
    result = answer(lane, out)
    (opened,) = lane.of(fx.OpenBarrier, out)
    assert result.outcome == "corrected" and result.due_fen == 0 and result.action_id == opened.action_id
    assert opened.authority == "rules" and lane.state.phase == Phase.OPENING
    assert lane.of(fx.StopSettlement, out)[0].outcome == fx.StopReason.PAID


@pytest.mark.parametrize("typed, outcome, plates", [
    ("粤BB2345", "candidates", ["粤B82345"]),  # one confusable letter: asked, not assumed
    ("津B82345", "candidates", ["粤B82345"]),  # another province
    ("粤B99999", "no_match", []),
])
def test_a_correction_that_matches_no_stay_exactly_changes_nothing(typed, outcome, plates):
    lane = waiting_exit()
    before = lane.state
    out = lane.feed(OperatorCorrect("carol", typed))
    result = answer(lane, out)
    assert result.outcome == outcome and [c.plate for c in result.candidates] == plates
    assert lane.state == before and not lane.of(fx.PatchRecord, out) and not lane.of(fx.OpenBarrier, out)


def test_ambiguous_candidates_come_with_their_entry_time_and_lane():
    inside = {"粤B82345": INSIDE["粤B82345"], "京B82345": InsideCar("e_9", T0 - timedelta(hours=1), "in2")}
    lane = Lane("exit", inside=inside)
    lane.feed(PlateRead("粤B8234S", "blue", 90))
    result = answer(lane, lane.feed(OperatorCorrect("carol", "津B82345")))
    assert result.outcome == "candidates"
    assert {(c.plate, c.lane_id) for c in result.candidates} == {("粤B82345", "in1"), ("京B82345", "in2")}
    assert all(c.entered_at.startswith("2026-11-22T") for c in result.candidates)


def test_an_unreadable_exit_corrected_can_pay_by_code_afterwards():
    lane = waiting_exit(GARBLED)
    lane.feed(OperatorCorrect("carol", "粤B82345"))
    assert lane.state.visit.reason == "fee"  # no longer the unreadable reading that payments ignore


def test_a_correction_at_an_entry_lets_the_rules_decide_under_the_corrected_plate():
    lane = held_entry("粤B66666")  # blacklisted: refused by the rules, held for the booth
    turned_away = lane.state.booth.record_id
    out = lane.feed(OperatorCorrect("dave", "粤B66668"))
    (rec,) = lane.of(fx.NewRecord, out)
    assert rec.plate == "粤B66668" and rec.read_plate == "粤B66666" and rec.corrected_by == "dave"
    assert rec.status == "inside" and rec.image == "entry.jpg"
    assert lane.of(fx.OpenBarrier, out)[0].authority == "rules"
    result = answer(lane, out)
    assert result.outcome == "corrected" and result.record_id == rec.record_id != turned_away


def test_a_correction_the_rules_still_refuse_holds_the_car_for_the_booth_again():
    lane = held_entry(GARBLED)
    out = lane.feed(OperatorCorrect("dave", "粤B66666"))
    assert not lane.of(fx.OpenBarrier, out) and answer(lane, out).outcome == "corrected"
    assert lane.state.booth.plate == "粤B66666" and lane.state.booth.read_plate == GARBLED


# --- admit -----------------------------------------------------------------------------------------------------
def test_admitting_an_unreadable_car_records_a_plateless_entry_and_opens_as_an_operator_release():
    lane = held_entry()
    out = lane.feed(OperatorAdmit("erin", "visitor for room 301", operator_uid=1001))
    (rec,) = lane.of(fx.NewRecord, out)
    (opened,) = lane.of(fx.OpenBarrier, out)
    assert (rec.kind, rec.status, rec.plate, rec.reason) == ("entry", "inside", "", "operator:visitor for room 301")
    assert rec.operator == "erin" and rec.operator_uid == 1001 and rec.image == "entry.jpg"
    assert rec.read_plate == "" and out.index(rec) < out.index(opened)
    assert (opened.authority, opened.operator, opened.reason) == ("operator", "erin", "visitor for room 301")
    result = answer(lane, out)
    assert result.outcome == "admitted" and result.action_id == opened.action_id
    assert lane.state.booth is None and lane.state.phase == Phase.OPENING


def test_admitting_with_a_typed_plate_records_it_as_a_correction():
    lane = held_entry()
    out = lane.feed(OperatorAdmit("erin", "resident", plate="粤B55502"))
    (rec,) = lane.of(fx.NewRecord, out)
    assert rec.plate == "粤B55502" and rec.read_plate == GARBLED and rec.corrected_by == "erin"


def test_a_car_the_rules_refused_admitted_keeps_its_plate():
    lane = held_entry("粤B66666")
    (rec,) = lane.of(fx.NewRecord, lane.feed(OperatorAdmit("erin", "police escort")))
    assert rec.plate == "粤B66666" and rec.read_plate == "" and rec.status == "inside"


def test_the_next_car_at_the_entry_replaces_the_one_held_for_the_booth():
    lane = held_entry()
    lane.feed(PlateRead("粤B22222", "blue", 90), 5)
    lane.feed(ARMING, 1)  # (the arm's cycle is not the point: the held car is gone)
    assert lane.state.booth is None
    assert answer(lane, lane.feed(OperatorAdmit("erin", "late"))).outcome in ("already_opening", "nothing_waiting")


@pytest.mark.parametrize("event, why", [
    (OperatorAdmit("", "x"), "name"),
    (OperatorAdmit("erin", "  "), "reason"),
    (OperatorRefuse("erin", ""), "reason"),
    (OperatorCorrect("erin", ""), "plate"),
    (OperatorCorrect("erin", "hello"), "not a plate"),
    (OperatorAdmit("erin", "ok", plate="???"), "not a plate"),
])
def test_bad_input_is_refused_before_anything_happens(event, why):
    lane = held_entry()
    before = lane.state
    result = answer(lane, lane.feed(event))
    assert result.outcome == "invalid" and why in result.message and lane.state == before


def test_admit_is_for_entry_lanes():
    lane = waiting_exit()
    result = answer(lane, lane.feed(OperatorAdmit("erin", "x")))
    assert result.outcome == "invalid" and "entry lane" in result.message


# --- two operators on one car ----------------------------------------------------------------------------------
def test_the_second_operator_on_a_refused_car_is_told_it_was_refused_and_by_whom():
    lane = waiting_exit()
    record_id = lane.state.visit.record_id
    lane.feed(OperatorRefuse("alice", "no money", record_id=record_id))
    release = lane.feed(OperatorOpen("bob", "cash", 500, "r9", record_id=record_id))
    (result,) = lane.of(fx.OperatorResult, release)
    assert result.outcome == "car_gone" and result.message == "that car was already refused by alice"
    assert not lane.of(fx.OpenBarrier, release) and not lane.of(fx.NewRecord, release)


def test_the_second_admit_of_one_car_is_told_it_was_admitted():
    lane = held_entry()
    record_id = lane.state.booth.record_id
    lane.feed(OperatorAdmit("alice", "visitor", record_id=record_id))
    out = lane.feed(OperatorAdmit("bob", "visitor", record_id=record_id))
    result = answer(lane, out)
    assert result.outcome == "car_gone" and "admitted by alice" in result.message
    assert len(lane.of(fx.OpenBarrier)) == 1


def test_a_refusal_after_a_release_is_told_the_barrier_is_opening_then_that_the_car_was_released():
    lane = waiting_exit()
    record_id = lane.state.visit.record_id
    lane.feed(OperatorOpen("alice", "cash", 500, record_id=record_id))
    assert answer(lane, lane.feed(OperatorRefuse("bob", "no", record_id=record_id))).outcome == "already_opening"
    drive_through(lane)
    lane.ack()
    lane.feed(DOWN, 2)
    result = answer(lane, lane.feed(OperatorRefuse("bob", "no", record_id=record_id)))
    assert result.outcome == "car_gone" and result.message == "that car was already released by alice"


def test_a_release_without_a_record_id_acts_as_before():
    lane = waiting_exit()
    (result,) = lane.of(fx.OperatorResult, lane.feed(OperatorOpen("alice", "cash", 500)))
    assert result.outcome == "released"


# --- each phase x each booth action, through the table ----------------------------------------------------------
VISIT = Visit("粤B82345", "blue", "x_1", due_fen=500)
EXPECTED = {
    Phase.OPENING: "already_opening", Phase.OPEN: "already_opening", Phase.BLOCKED: "already_opening",
    Phase.CLOSING: "nothing_waiting",
}


@pytest.mark.parametrize("phase", list(EXPECTED), ids=lambda p: p.value)
@pytest.mark.parametrize("event", [OperatorRefuse("a", "r"), OperatorCorrect("a", "粤B82346"),
                                   OperatorAdmit("a", "r")], ids=lambda e: type(e).__name__)
def test_a_car_past_the_booth_is_not_acted_upon(phase, event):
    lane = Lane("entry", inside=dict(INSIDE))
    state = replace(lane.state, phase=phase, visit=VISIT)
    after, out = handle(state, event, lane.now, lane.ctx)
    assert after == state and [type(e) for e in out] == [fx.BoothResult] and out[0].outcome == EXPECTED[phase]


@pytest.mark.parametrize("event", [OperatorRefuse("a", "r"), OperatorCorrect("a", "粤B82346"),
                                   OperatorAdmit("a", "r")], ids=lambda e: type(e).__name__)
def test_an_idle_lane_with_no_car_held_has_nothing_to_act_on(event):
    lane = Lane("entry")
    after, out = handle(lane.state, event, lane.now, lane.ctx)
    assert after == lane.state and out[0].outcome == "nothing_waiting"


def test_the_held_car_and_the_last_ended_one_survive_a_restart():
    lane = held_entry()
    lane.feed(OperatorRefuse("bob", "no"))
    lane.feed(PlateRead(GARBLED, "", 80), 20)
    saved = lane.state.to_dict()
    assert LaneState.from_dict(saved) == lane.state
    assert lane.state.booth is not None and lane.state.ended[1:] == ("refused", "bob")


@pytest.mark.parametrize("event", [OperatorAdmit("erin", "visitor"), OperatorCorrect("erin", "粤B55502")],
                         ids=lambda e: type(e).__name__)
def test_a_held_car_that_left_the_arm_is_not_admitted(event):
    lane = held_entry()
    lane.feed(DOWN, 10)  # the arming loop clear: the car backed away
    out = lane.feed(event)
    result = answer(lane, out)
    assert result.outcome == "car_gone" and "arming loop" in result.message
    assert not lane.of(fx.OpenBarrier, out) and not lane.of(fx.NewRecord, out) and lane.state.booth is None


def test_without_real_loops_the_held_car_is_taken_to_be_there():
    lane = Lane("entry", loops=False)
    lane.feed(PlateRead(GARBLED, "blue", 90))
    lane.feed(DOWN, 10)
    assert answer(lane, lane.feed(OperatorAdmit("erin", "visitor"))).outcome == "admitted"


def test_a_corrected_stored_value_car_pays_from_its_balance():
    inside = {"粤B77777": InsideCar("e_7", T0 - timedelta(hours=2), "in1")}
    lane = Lane("exit", inside=inside, balances={"粤B77777": 1200}, settle=True)
    lane.feed(PlateRead("粤B7777Z", "blue", 90))
    record_id = lane.state.visit.record_id
    out = lane.feed(OperatorCorrect("carol", "粤B77777"))
    assert lane.of(fx.DebitBalance, out) == [fx.DebitBalance("粤B77777", 500, record_id, lane.now.isoformat())]
    (opened,) = lane.of(fx.OpenBarrier, out)
    assert (opened.authority, opened.reason) == ("payment", "stored_value")
    changes = patch(out, record_id)
    assert (changes["status"], changes["due_fen"], changes["paid_fen"]) == ("leaving", 0, 500)
    assert answer(lane, out).due_fen == 0 and not lane.of(fx.StartSettlement, out)


def test_correcting_a_car_to_the_plate_it_is_matched_under_changes_nothing():
    lane = waiting_exit()
    lane.feed(OperatorCorrect("carol", "粤B82346"))
    before = lane.state
    out = lane.feed(OperatorCorrect("dave", "粤B82346"))
    assert answer(lane, out).outcome == "corrected" and "already" in answer(lane, out).message
    assert lane.state == before and not lane.of(fx.PatchRecord, out) and not lane.of(fx.StartSettlement, out)
