"""The lane machine's dispatch table: every (phase, event type) pair is either handled by the table or goes to
the one default, which changes nothing."""

from __future__ import annotations

import typing
from dataclasses import replace

import pytest

from lanectl.core import lane as core_lane
from lanectl.core.events import (CodeScanned, CommandDone, DeviceFault, DeviceRecovered, Event, IdentifyCar,
                                 IoSnapshot, OperatorAdmit, OperatorCorrect, OperatorOpen, OperatorRefuse,
                                 PaymentConfirmed, PaymentFallback, PlateRead, PlatformEntry, QuoteRequest, Tick)
from lanectl.core.lane import LaneState, Phase, Visit, handle, handler_for
from tests.unit.test_lane import ARMING, Lane

EVENT_TYPES = typing.get_args(Event)

# What each event type does in each phase where the table has no entry for it (today's behaviour: nothing).
DEFAULTED = {
    (Phase.IDLE, IoSnapshot), (Phase.AWAITING_PAYMENT, IoSnapshot),
    *((phase, PaymentFallback) for phase in Phase if phase != Phase.AWAITING_PAYMENT),
    *((phase, Tick) for phase in Phase),
}

SAMPLES = {
    PlateRead: PlateRead("粤B12345", "blue", 96), IoSnapshot: ARMING, CommandDone: CommandDone("a_1", False, "x"),
    OperatorOpen: OperatorOpen("alice", "visitor"), PaymentConfirmed: PaymentConfirmed("r_1", "bolink", 500, "T1"),
    PaymentFallback: PaymentFallback("r_1", "timeout"), PlatformEntry: PlatformEntry("car-42", "bolink"),
    IdentifyCar: IdentifyCar("r_1", "car-42", "bolink"), CodeScanned: CodeScanned("1345"),
    DeviceFault: DeviceFault("barrier", "x"), DeviceRecovered: DeviceRecovered("barrier"), Tick: Tick(),
    QuoteRequest: QuoteRequest("粤B12345", "", False, "bolink"),
    OperatorRefuse: OperatorRefuse("alice", "no ticket"), OperatorCorrect: OperatorCorrect("alice", "粤B12345"),
    OperatorAdmit: OperatorAdmit("alice", "visitor"),
}


def test_the_event_union_is_what_the_table_knows():
    assert set(EVENT_TYPES) == set(SAMPLES)
    assert {event for _, event in core_lane._TABLE} | {Tick, PaymentFallback} == set(EVENT_TYPES)


@pytest.mark.parametrize("phase", list(Phase), ids=lambda p: p.value)
@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_every_phase_and_event_is_handled_or_defaulted(phase: Phase, event_type: type):
    state = LaneState(phase=phase)
    handler = handler_for(state, SAMPLES[event_type])
    if (phase, event_type) in DEFAULTED:
        assert (phase, event_type) not in core_lane._TABLE and handler is core_lane._unchanged
    else:
        assert handler is core_lane._TABLE[(phase, event_type)]


@pytest.mark.parametrize("pair", sorted(DEFAULTED, key=lambda p: (p[0].value, p[1].__name__)),
                         ids=lambda p: f"{p[0].value}-{p[1].__name__}")
def test_the_default_changes_nothing(pair):
    phase, event_type = pair
    lane = Lane("exit", settle=True)
    state = replace(lane.state, phase=phase, visit=Visit("粤B12345", "blue", "r_1", due_fen=500))
    event = SAMPLES[event_type]
    after, out = handle(state, event, lane.now, lane.ctx)
    expected = replace(state, io=event) if isinstance(event, IoSnapshot) else state
    assert (after, out) == (expected, [])


def test_a_restored_lane_lets_its_first_inputs_decide_before_the_phase():
    state = replace(LaneState(phase=Phase.OPENING), resuming=True)
    assert handler_for(state, ARMING) is core_lane._resume
    assert handler_for(state, SAMPLES[PlateRead]) is core_lane._plate_while_resuming
    assert handler_for(state, SAMPLES[OperatorOpen]) is core_lane._TABLE[(Phase.OPENING, OperatorOpen)]


def test_timers_expire_into_their_phase_handler_only():
    assert set(core_lane._TIMERS) == {(Phase.OPENING, core_lane.Timer.OPEN_CONFIRM),
                                      (Phase.CLOSING, core_lane.Timer.CLOSE_CONFIRM),
                                      (Phase.OPEN, core_lane.Timer.CLOSE_RETRY),
                                      (Phase.OPEN, core_lane.Timer.PASS_TIMEOUT)}


def test_the_stored_words_stay_the_same():
    """Timers, statuses and reasons are enums in the code; the database, the saved lane state and the uploads
    keep the words they always had."""
    from lanectl.core.effects import Audit, RecordStatus, StopReason
    assert [s.value for s in RecordStatus] == ["inside", "refused", "exited", "superseded", "leaving",
                                               "awaiting_payment", "paid", "released", "abandoned"]
    assert [s.value for s in StopReason] == ["paid", "released", "abandoned", "reidentified", "refused"]
    assert [s.value for s in Audit] == ["confirmed", "unconfirmed"]
    assert [t.value for t in core_lane.Timer] == ["open_confirm", "close_confirm", "pass_timeout", "close_retry"]
    assert [r.value for r in core_lane.CloseReason] == ["car_passed", "retry", "not_passed", "restart_no_car"]
    assert core_lane.UNREADABLE == "unreadable_plate"
    lane = Lane()
    lane.feed(PlateRead("粤B12345", "blue", 96))
    drive = lane.ack()
    saved = lane.state.to_dict()
    assert drive == [] and saved["deadlines"][0][0] == "open_confirm" and type(saved["deadlines"][0][0]) is str
    assert LaneState.from_dict(saved) == lane.state
    lane.feed(core_lane.IoSnapshot(False, True, True, False), 1.0)
    saved = lane.state.to_dict()
    assert saved["visit"]["passage"] == "on_safety" and LaneState.from_dict(saved) == lane.state


def test_the_stored_state_is_what_asdict_gave_and_comes_back_whole():
    """to_dict skips dataclasses.asdict's deep copy (it runs before every OPEN): the stored JSON must not change,
    with every nested part of the state set."""
    import json
    from dataclasses import asdict
    from datetime import datetime, timezone

    at = datetime(2026, 12, 8, 8, 0, tzinfo=timezone.utc)
    visit = Visit("粤B12345", "blue", "in1_1", "vip", "whitelist", passage=core_lane.Passage.ON_SAFETY,
                  operator_uid=1000, authority="rules")
    state = LaneState(Phase.OPEN, 7, visit, IoSnapshot(True, False, True, False), "", "粤B12345", at,
                      PlateRead("粤B54321", "blue", 90, "cam", "/img/1.jpg"), at,
                      ((core_lane.Timer.PASS_TIMEOUT, at),), "in1_7", "in1_7", False,
                      replace(visit, record_id="in1_2"), ("in1_3", "released", "li"))
    old = asdict(state)
    old.update(phase="open", last_plate_at=at.isoformat(), held_at=at.isoformat(),
               deadlines=[["pass_timeout", at.isoformat()]])
    assert json.dumps(state.to_dict(), ensure_ascii=False) == json.dumps(old, ensure_ascii=False)
    assert LaneState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert LaneState.from_dict(LaneState().to_dict()) == LaneState()
