"""The lane state machine, driven event by event with explicit times (no clock, no sleeping)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lanectl.adapters.board_wording import board_fields, lane_wording
from lanectl.core import effects as fx
from lanectl.core.events import (CodeScanned, CommandDone, DeviceFault, DeviceRecovered, IdentifyCar, IoSnapshot,
                                 OperatorOpen,
                                 PaymentConfirmed,
                                 PaymentFallback, PlateRead, PlatformEntry, Tick)
from lanectl.core.lane import InsideCar, LaneContext, LaneRules, LaneState, Phase, handle, make_id, restored
from tests.policies import FlatPolicy

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=TZ)
POLICY = FlatPolicy(flat_fen=500, free_minutes=15, whitelist=frozenset({"粤B00001"}),
                    blacklist=frozenset({"粤B66666"}), stored_value=frozenset({"粤B77777"}))

DOWN = IoSnapshot(arming=False, safety=False, up_limit=False, down_limit=True)
ARMING = IoSnapshot(arming=True, safety=False, up_limit=False, down_limit=True)
UP_ARMING = IoSnapshot(arming=True, safety=False, up_limit=True, down_limit=False)
UP_SAFETY = IoSnapshot(arming=False, safety=True, up_limit=True, down_limit=False)
UP_CLEAR = IoSnapshot(arming=False, safety=False, up_limit=True, down_limit=False)
MID_SAFETY = IoSnapshot(arming=False, safety=True, up_limit=False, down_limit=False)


class Lane:
    """A lane under test: feeds events at chosen times and keeps every effect."""

    def __init__(self, direction: str = "entry", inside: dict | None = None, balances: dict | None = None,
                 settle: bool = False, **rules) -> None:
        self.ctx = LaneContext("east1", direction, POLICY, LaneRules(**rules), inside or {},  # type: ignore[arg-type]
                               balances or {}, settle)
        self.state = LaneState()
        self.now = T0
        self.effects: list[fx.Effect] = []
        self.feed(DOWN)

    def feed(self, event, after: float = 0.0) -> list[fx.Effect]:
        self.now += timedelta(seconds=after)
        self.state, out = handle(self.state, event, self.now, self.ctx)
        self.effects += out
        return out

    def of(self, kind, out=None):
        return [e for e in (self.effects if out is None else out) if isinstance(e, kind)]

    def ack(self, ok: bool = True, error: str = "") -> list[fx.Effect]:
        return self.feed(CommandDone(self.state.pending_action, ok, error))


def said(message: fx.Display) -> str:
    """What the board's lane wording says for a message (the display adapter words the lane's facts)."""
    return lane_wording(message)[0]


def drive_through(lane: Lane) -> None:
    """The barrier rises, the car crosses the safety loop and leaves."""
    lane.ack()
    lane.feed(UP_ARMING, 1.0)
    lane.feed(UP_SAFETY, 1.0)
    lane.feed(UP_CLEAR, 1.0)


def test_entry_allowed_records_then_opens_and_closes_after_the_car():
    lane = Lane()
    out = lane.feed(PlateRead("粤B12345", "blue", 96))
    rec = lane.of(fx.NewRecord, out)[0]
    opens = lane.of(fx.OpenBarrier, out)
    assert rec.status == "inside" and rec.kind == "entry" and rec.plate == "粤B12345"
    assert opens and opens[0].authority == "rules" and opens[0].record_id == rec.record_id
    # write ahead: the record comes before the command in the effect list
    assert out.index(rec) < out.index(opens[0])
    assert lane.of(fx.Publish, out) == [fx.Publish(rec.record_id, "entry")]
    assert lane.state.phase == Phase.OPENING
    drive_through(lane)
    closes = lane.of(fx.CloseBarrier)
    assert len(closes) == 1 and lane.state.phase == Phase.CLOSING
    lane.ack()
    lane.feed(DOWN, 2.0)
    assert lane.state.phase == Phase.IDLE and lane.state.visit is None


def test_blacklisted_car_is_refused_and_recorded():
    lane = Lane()
    out = lane.feed(PlateRead("粤B66666", "blue", 90))
    assert not lane.of(fx.OpenBarrier, out)
    assert lane.of(fx.NewRecord, out)[0].status == "refused"
    assert "黑名单" in said(lane.of(fx.Display, out)[0])
    assert lane.state.phase == Phase.IDLE


def test_duplicate_reads_are_suppressed_within_the_window_only():
    lane = Lane(duplicate_window_s=10)
    lane.feed(PlateRead("粤B66666"))
    assert not lane.of(fx.NewRecord, lane.feed(PlateRead("粤B66666"), 3.0))
    assert lane.of(fx.NewRecord, lane.feed(PlateRead("粤B66666"), 11.0))


def test_a_second_car_is_held_until_the_cycle_ends():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    lane.ack()
    lane.feed(UP_ARMING, 1)
    out = lane.feed(PlateRead("粤B22222"), 0.5)
    assert not lane.of(fx.OpenBarrier, out) and lane.state.held is not None
    lane.feed(UP_SAFETY, 1)
    lane.feed(UP_CLEAR, 1)
    lane.ack()
    out = lane.feed(ARMING, 2)  # down, and the second car waits at the arming loop
    held_open = lane.of(fx.OpenBarrier, out)
    assert held_open and lane.state.visit.plate == "粤B22222"


def test_a_held_car_no_longer_at_the_arm_when_the_cycle_ends_is_not_decided():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    lane.ack()
    lane.feed(UP_ARMING, 1)
    lane.feed(PlateRead("粤B22222"), 0.5)  # the next car, read while the first one is still before the arm
    lane.feed(UP_SAFETY, 1)
    lane.feed(UP_CLEAR, 1)  # it slipped through behind the first car (or backed away): the loops are clear
    lane.ack()
    out = lane.feed(DOWN, 2)
    assert not lane.of(fx.OpenBarrier, out) and not lane.of(fx.NewRecord, out) and lane.state.held is None
    assert any(e.message.startswith("held plate dropped") for e in lane.of(fx.Log, out))


def test_a_camera_relay_lane_without_loops_still_takes_its_held_car():
    lane = Lane(loops=False)
    lane.feed(PlateRead("粤B12345"))
    lane.ack()
    lane.feed(UP_CLEAR, 1)
    lane.feed(PlateRead("粤B22222"), 0.5)
    lane.feed(UP_SAFETY, 1)
    lane.feed(UP_CLEAR, 1)
    lane.ack()
    out = lane.feed(DOWN, 2)  # made-up inputs: the arming loop is never seen
    assert lane.of(fx.OpenBarrier, out) and lane.state.visit.plate == "粤B22222"


def test_close_is_never_sent_while_something_is_under_the_arm():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    lane.ack()
    lane.feed(UP_SAFETY, 1)
    # the car left the safety loop but the anti-smash radar still sees something
    out = lane.feed(IoSnapshot(False, False, True, False, anti_smash=True), 1)
    assert not lane.of(fx.CloseBarrier, out)
    out = lane.feed(UP_CLEAR, 1)
    assert lane.of(fx.CloseBarrier, out)


def test_obstacle_while_closing_goes_back_to_open_and_closes_again_when_clear():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    drive_through(lane)
    lane.ack()
    out = lane.feed(MID_SAFETY, 0.5)
    assert lane.state.phase == Phase.OPEN and not lane.of(fx.CloseBarrier, out)
    out = lane.feed(UP_CLEAR, 1)
    assert lane.of(fx.CloseBarrier, out)


def test_refused_close_is_retried_when_the_loops_are_clear():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    drive_through(lane)
    lane.ack(ok=False, error="BarrierUnsafe: safety loop occupied")
    assert lane.state.phase == Phase.OPEN
    out = lane.feed(Tick(), 2.5)
    assert lane.of(fx.CloseBarrier, out)


def test_open_not_confirmed_raises_a_fault_and_a_late_up_limit_clears_it():
    lane = Lane(open_confirm_s=6)
    lane.feed(PlateRead("粤B12345"))
    lane.ack()
    lane.feed(Tick(), 7)
    assert lane.state.barrier_fault.startswith("OPEN not confirmed")
    assert any("故障" in said(d) for d in lane.of(fx.Display))
    lane.feed(UP_ARMING, 1)
    assert lane.state.phase == Phase.OPEN and lane.state.barrier_fault == ""


def test_open_not_delivered_is_a_fault_and_the_operator_can_retry():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    lane.ack(ok=False, error="BarrierError: no answer")
    assert lane.state.barrier_fault
    out = lane.feed(OperatorOpen("王", "barrier retry"))
    assert lane.of(fx.OpenBarrier, out)[0].authority == "operator"


def test_exit_with_fee_waits_for_the_booth_and_operator_cash_opens():
    entered = T0 - timedelta(hours=3)
    lane = Lane("exit", inside={"粤B12345": InsideCar("east1_20261122050000_1", entered)})
    out = lane.feed(PlateRead("粤B12345"))
    rec = lane.of(fx.NewRecord, out)[0]
    assert rec.status == "awaiting_payment" and rec.due_fen == 500
    assert rec.entry_record_id == "east1_20261122050000_1"
    assert not lane.of(fx.OpenBarrier, out) and lane.state.phase == Phase.AWAITING_PAYMENT
    assert not lane.of(fx.OpenBarrier, lane.feed(OperatorOpen("", "cash", 500)))
    assert not lane.of(fx.OpenBarrier, lane.feed(OperatorOpen("王", " ", 500)))
    out = lane.feed(OperatorOpen("王", "cash", 500))
    opens = lane.of(fx.OpenBarrier, out)
    assert opens[0].authority == "operator" and opens[0].operator == "王"
    assert lane.of(fx.RecordPayment, out)[0].amount_fen == 500
    patches = {p.record_id: dict(p.changes) for p in lane.of(fx.PatchRecord, out)}
    assert patches[rec.record_id]["status"] == "released"
    assert patches["east1_20261122050000_1"]["status"] == "exited"


def test_exit_within_free_minutes_opens_and_closes_the_entry():
    entered = T0 - timedelta(minutes=10)
    lane = Lane("exit", inside={"粤B12345": InsideCar("e_1", entered)})
    out = lane.feed(PlateRead("粤B12345"))
    assert lane.of(fx.OpenBarrier, out)[0].authority == "rules"
    assert dict(lane.of(fx.PatchRecord, out)[0].changes)["status"] == "exited"


def test_exit_plate_matches_entry_with_a_misread_province():
    lane = Lane("exit", inside={"湘B12345": InsideCar("e_1", T0 - timedelta(hours=1))})
    rec = lane.of(fx.NewRecord, lane.feed(PlateRead("粤B12345")))[0]
    assert rec.entry_record_id == "e_1" and "match:province" in rec.detail


def test_ambiguous_fuzzy_match_goes_to_the_operator():
    inside = {"湘B12345": InsideCar("e_1", T0), "赣B12345": InsideCar("e_2", T0)}
    lane = Lane("exit", inside=inside)
    out = lane.feed(PlateRead("粤B12345"))
    assert not lane.of(fx.OpenBarrier, out)
    assert lane.of(fx.NewRecord, out)[0].reason == "ambiguous_entry"


def test_operator_release_with_no_car_creates_an_audited_release_record():
    lane = Lane()
    out = lane.feed(OperatorOpen("李", "ambulance"))
    rec = lane.of(fx.NewRecord, out)[0]
    assert rec.kind == "release" and rec.reason == "operator:ambulance"
    assert lane.of(fx.OpenBarrier, out)[0].record_id == rec.record_id


def test_device_fault_and_recovery_are_logged_once_each():
    lane = Lane()
    logs1 = lane.of(fx.Log, lane.feed(DeviceFault("barrier", "port gone")))
    logs2 = lane.of(fx.Log, lane.feed(DeviceFault("barrier", "port gone")))
    assert len(logs1) == 1 and not logs2 and lane.state.barrier_fault == "port gone"
    assert len(lane.of(fx.Log, lane.feed(DeviceRecovered("barrier")))) == 1
    assert lane.state.barrier_fault == ""


def test_state_survives_a_round_trip_and_restart_keeps_the_waiting_exit():
    lane = Lane("exit", inside={"粤B12345": InsideCar("e_1", T0 - timedelta(hours=2))})
    lane.feed(PlateRead("粤B12345"))
    saved = lane.state.to_dict()
    back = restored(LaneState.from_dict(saved))
    assert back.phase == Phase.AWAITING_PAYMENT and back.visit == lane.state.visit
    assert back.seq == lane.state.seq


def test_restart_mid_open_does_not_repeat_the_command():
    lane = Lane()
    lane.feed(PlateRead("粤B12345"))
    back = restored(LaneState.from_dict(lane.state.to_dict()))
    assert back.pending_action == ""
    lane.state = back
    out = lane.feed(UP_ARMING, 0.5)  # the first snapshot tells us the OPEN did reach the barrier
    assert not lane.of(fx.OpenBarrier, out) and lane.state.phase == Phase.OPEN


def test_record_ids_are_site_unique_shape():
    rid = make_id("a-very-long-lane-name-with-dashes-and-more", T0, 123456)
    assert len(rid) <= 48 and re.fullmatch(r"[0-9A-Za-z_]+", rid)
    assert rid.endswith("_20261122080000_123456")


@pytest.mark.parametrize("confidence,handled", [(50, False), (80, True)])
def test_low_confidence_reads_are_ignored(confidence, handled):
    lane = Lane(min_confidence=70)
    out = lane.feed(PlateRead("粤B12345", "blue", confidence))
    assert bool(lane.of(fx.NewRecord, out)) is handled


def test_car_that_never_passes_gets_the_arm_lowered_after_the_timeout():
    lane = Lane(pass_timeout_s=30)
    lane.feed(PlateRead("粤B12345"))
    lane.ack()
    lane.feed(UP_ARMING, 1)
    lane.feed(UP_CLEAR, 5)  # the car backed away
    out = lane.feed(Tick(), 31)
    assert lane.of(fx.CloseBarrier, out)


def test_exit_honours_the_entry_lanes_decision_for_a_shared_space_card():
    seen = {}

    class Recording(type(POLICY)):
        def exit(self, *args, **kwargs):
            seen.update(kwargs)
            return super().exit(*args, **kwargs)

    lane = Lane("exit", inside={"粤B20003": InsideCar("e_9", T0 - timedelta(hours=3), "in1", "monthly_spaces_full")})
    lane.ctx = LaneContext("east1", "exit", Recording(), LaneRules(), lane.ctx.inside)
    lane.feed(PlateRead("粤B20003"))
    assert seen["entry_reason"] == "monthly_spaces_full"


def test_stored_value_car_with_enough_balance_is_debited_and_let_out():
    lane = Lane("exit", inside={"粤B77777": InsideCar("e_7", T0 - timedelta(hours=3))}, balances={"粤B77777": 1200})
    out = lane.feed(PlateRead("粤B77777"))
    rec = lane.of(fx.NewRecord, out)[0]
    assert (rec.status, rec.reason, rec.due_fen, rec.paid_fen, rec.total_fen) == ("leaving", "stored_value", 0, 500, 500)
    assert lane.of(fx.DebitBalance, out) == [fx.DebitBalance("粤B77777", 500, rec.record_id, T0.isoformat())]
    pay = lane.of(fx.RecordPayment, out)[0]
    assert (pay.amount_fen, pay.method, pay.record_id) == (500, "stored_value", rec.record_id)
    opened = lane.of(fx.OpenBarrier, out)[0]
    assert (opened.authority, opened.reason) == ("payment", "stored_value")
    # the debit is written before the OPEN (one transaction, write ahead)
    assert out.index(lane.of(fx.DebitBalance, out)[0]) < out.index(opened)
    assert dict(lane.of(fx.PatchRecord, out)[0].changes)["status"] == "exited"
    assert "余额7元" in said(lane.of(fx.Display, out)[0])


@pytest.mark.parametrize("balances", [{"粤B77777": 499}, {}], ids=["short", "no-ledger-row"])
def test_stored_value_car_short_of_balance_waits_and_nothing_is_debited(balances):
    lane = Lane("exit", inside={"粤B77777": InsideCar("e_7", T0 - timedelta(hours=3))}, balances=balances)
    out = lane.feed(PlateRead("粤B77777"))
    rec = lane.of(fx.NewRecord, out)[0]
    assert (rec.status, rec.due_fen, rec.paid_fen) == ("awaiting_payment", 500, 0)
    assert not lane.of(fx.DebitBalance, out) and not lane.of(fx.OpenBarrier, out)
    assert lane.state.phase == Phase.AWAITING_PAYMENT
    if balances:
        assert "余额不足" in said(lane.of(fx.Display, out)[0])


def test_stored_value_entry_shows_the_ledger_balance():
    lane = Lane("entry", balances={"粤B77777": 1250})
    out = lane.feed(PlateRead("粤B77777"))
    assert said(lane.of(fx.Display, out)[0]) == "储值车 余额12元50分 粤B77777"


def test_only_stored_value_cars_touch_a_balance():
    lane = Lane("exit", inside={"粤B12345": InsideCar("e_1", T0 - timedelta(hours=3))}, balances={"粤B12345": 9999})
    out = lane.feed(PlateRead("粤B12345"))
    assert not lane.of(fx.DebitBalance, out) and lane.state.phase == Phase.AWAITING_PAYMENT


# --- payments through providers --------------------------------------------------------------------------------
def waiting_exit(**kw) -> tuple[Lane, fx.NewRecord]:
    lane = Lane("exit", inside={"粤B12345": InsideCar("e_1", T0 - timedelta(hours=3))}, settle=True, **kw)
    out = lane.feed(PlateRead("粤B12345"))
    return lane, lane.of(fx.NewRecord, out)[0]


def test_a_car_that_owes_starts_a_settlement_written_with_its_record():
    lane, rec = waiting_exit()
    [start] = lane.of(fx.StartSettlement)
    assert (start.record_id, start.due_fen, start.plate, start.entry_record_id) == (rec.record_id, 500, "粤B12345",
                                                                                     "e_1")
    assert not lane.of(fx.OpenBarrier) and lane.state.phase == Phase.AWAITING_PAYMENT


def test_the_settlement_carries_the_exit_and_entry_pictures_for_platforms_that_take_them():
    lane = Lane("exit", inside={"粤B12345": InsideCar("e_1", T0 - timedelta(hours=3), image="/i/in1/a.jpg"),
                                "粤B22222": InsideCar("e_2", T0 - timedelta(hours=3))}, settle=True)
    lane.feed(PlateRead("粤B12345", image="/i/out1/b.jpg"))
    [start] = lane.of(fx.StartSettlement)
    assert (start.image, start.entry_image) == ("/i/out1/b.jpg", "/i/in1/a.jpg")


def test_without_providers_no_settlement_is_asked_for():
    lane = Lane("exit", inside={"粤B12345": InsideCar("e_1", T0 - timedelta(hours=3))})
    lane.feed(PlateRead("粤B12345"))
    assert not lane.of(fx.StartSettlement)


def test_confirmed_payment_for_the_waiting_record_opens_and_stops_the_settlement():
    lane, rec = waiting_exit()
    out = lane.feed(PaymentConfirmed(rec.record_id, "bolink", 500, "T1", "wallet"), 3)
    opened = lane.of(fx.OpenBarrier, out)[0]
    assert (opened.authority, opened.reason, opened.trade_no) == ("payment", "bolink", "T1")
    pay = lane.of(fx.RecordPayment, out)[0]
    assert (pay.amount_fen, pay.method, pay.reference, pay.flag) == (500, "bolink:wallet", "T1", "")
    patches = {p.record_id: dict(p.changes) for p in lane.of(fx.PatchRecord, out)}
    assert patches[rec.record_id] == {"status": "paid", "paid_fen": 500, "due_fen": 0}
    assert patches["e_1"] == {"status": "exited"}
    assert lane.of(fx.StopSettlement, out) == [fx.StopSettlement(rec.record_id, "paid")]
    assert out.index(pay) < out.index(opened)


@pytest.mark.parametrize("event", [
    PaymentConfirmed("east1_20261122080000_999", "bolink", 500, "T9"),  # another record
    PaymentConfirmed("", "xft", 500, "T9"),
], ids=["other-record", "no-record"])
def test_a_payment_for_another_record_never_opens_and_is_flagged(event):
    lane, rec = waiting_exit()
    out = lane.feed(event)
    assert not lane.of(fx.OpenBarrier, out) and lane.state.phase == Phase.AWAITING_PAYMENT
    assert lane.of(fx.RecordPayment, out)[0].flag == "late"


def test_a_short_payment_is_kept_but_the_barrier_stays_down():
    lane, rec = waiting_exit()
    out = lane.feed(PaymentConfirmed(rec.record_id, "xft", 499, "T1"))
    assert not lane.of(fx.OpenBarrier, out) and lane.of(fx.RecordPayment, out)[0].flag == "short"
    assert lane.state.phase == Phase.AWAITING_PAYMENT


def test_a_payment_after_the_operator_released_the_car_is_late_and_opens_nothing():
    lane, rec = waiting_exit()
    out = lane.feed(OperatorOpen("王", "cash", 500))
    assert lane.of(fx.StopSettlement, out) == [fx.StopSettlement(rec.record_id, "released")]
    drive_through(lane)
    lane.feed(IoSnapshot(arming=False, safety=False, up_limit=False, down_limit=True), 2)
    opens = len(lane.of(fx.OpenBarrier))
    out = lane.feed(PaymentConfirmed(rec.record_id, "bolink", 500, "T1", "wallet"))
    assert len(lane.of(fx.OpenBarrier)) == opens
    assert lane.of(fx.RecordPayment, out)[0].flag == "late"


def test_a_car_backing_away_stops_its_settlement():
    lane, rec = waiting_exit()
    out = lane.feed(PlateRead("粤B22222"), 1)
    assert fx.StopSettlement(rec.record_id, "abandoned") in out


def test_fallback_tells_the_driver_to_pay_another_way_and_keeps_the_barrier_down():
    lane, rec = waiting_exit()
    out = lane.feed(PaymentFallback(rec.record_id, "window ended"), 120)
    assert not lane.of(fx.OpenBarrier, out) and "请扫码或到岗亭缴费5元" in said(lane.of(fx.Display, out)[0])
    assert lane.feed(PaymentFallback("other", "x")) == []
    # a payment settling after the fallback still lets the waiting car out
    out = lane.feed(PaymentConfirmed(rec.record_id, "bolink", 500, "T1"), 30)
    assert lane.of(fx.OpenBarrier, out)[0].authority == "payment"


def test_an_auto_closing_barrier_that_lowers_itself_ends_the_cycle():
    lane = Lane("entry", auto_close=True)
    lane.feed(PlateRead("粤B12345"))
    lane.ack()
    lane.feed(UP_ARMING, 1)
    out = lane.feed(DOWN, 3)  # no safety loop wired: the barrier's own loop saw the car and lowered the arm
    assert lane.state.phase == Phase.IDLE and not lane.of(fx.CloseBarrier, out)
    assert lane.of(fx.OpenBarrier, lane.feed(PlateRead("粤B22222"), 1)), "the next car is served at once"


def test_display_messages_carry_a_template_key_and_fields():
    lane = Lane("exit", inside={"粤B12345": InsideCar("e_1", T0 - timedelta(hours=3, minutes=5))})
    [shown] = lane.of(fx.Display, lane.feed(PlateRead("粤B12345")))
    assert (said(shown), shown.key) == ("粤B12345 停车3小时5分 请缴费5元", "pay")
    assert board_fields(shown) == {"plate": "粤B12345", "amount": "5元", "stay": "3小时5分"}


def test_a_deadline_expiring_with_new_inputs_decides_on_the_new_inputs():
    """Found by the property test: the pass timeout fired with the inputs of two minutes ago while the event
    that woke the lane reported the anti-smash sensor tripped — CLOSE must not be sent onto it."""
    lane = Lane("entry")
    lane.feed(PlateRead("粤B12345"))
    lane.ack()
    lane.feed(UP_CLEAR, 1)
    out = lane.feed(IoSnapshot(arming=False, safety=False, up_limit=False, down_limit=False, anti_smash=True), 121)
    assert not lane.of(fx.CloseBarrier, out)


def test_a_plate_less_car_admitted_by_a_platform_enters_under_the_platform_id():
    lane = Lane("entry")
    out = lane.feed(PlatformEntry("wx_9f3a_car", "bolink", "r1"))
    rec = lane.of(fx.NewRecord, out)[0]
    assert (rec.plate, rec.status, rec.reason) == ("wx_9f3a_car", "inside", "bolink_plateless")
    assert lane.of(fx.OpenBarrier, out)[0].authority == "rules" and fx.Publish(rec.record_id, "entry") in out
    # busy with that car: a second scan opens nothing
    assert not lane.of(fx.OpenBarrier, lane.feed(PlatformEntry("wx_other", "bolink", "r2")))


def test_a_platform_entry_at_an_exit_lane_opens_nothing():
    lane = Lane("exit")
    assert not lane.of(fx.OpenBarrier, lane.feed(PlatformEntry("wx_1", "bolink")))


def test_a_plate_less_car_named_by_a_platform_is_repriced_against_its_stay():
    inside = {"wx_8c1f02": InsideCar("in1_7", T0 - timedelta(hours=2), "in1", "bolink_plateless")}
    lane = Lane("exit", inside=inside, settle=True)
    rec = lane.of(fx.NewRecord, lane.feed(PlateRead("")))[0]
    assert rec.reason == "no_entry_record" and rec.entry_record_id == ""
    out = lane.feed(IdentifyCar(rec.record_id, "wx_8c1f02", "bolink"), 5)
    patch = dict(lane.of(fx.PatchRecord, out)[0].changes)
    assert (patch["entry_record_id"], patch["due_fen"], patch["reason"]) == ("in1_7", 500, "fee")
    assert lane.of(fx.StopSettlement, out)[0].outcome == "reidentified"
    [start] = lane.of(fx.StartSettlement, out)
    assert (start.record_id, start.entry_record_id, start.due_fen) == (rec.record_id, "in1_7", 500)
    assert not lane.of(fx.OpenBarrier, out)
    # paid for that stay: the car leaves and its entry is closed
    out = lane.feed(PaymentConfirmed(rec.record_id, "bolink", 500, "T1", "scancode"), 5)
    assert lane.of(fx.OpenBarrier, out) and ("status", "exited") in lane.of(fx.PatchRecord, out)[1].changes


@pytest.mark.parametrize("car_id", ["wx_unknown", ""])
def test_identifying_an_unknown_car_changes_nothing(car_id):
    lane = Lane("exit", inside={"wx_1": InsideCar("in1_7", T0 - timedelta(hours=2))}, settle=True)
    rec = lane.of(fx.NewRecord, lane.feed(PlateRead("")))[0]
    out = lane.feed(IdentifyCar(rec.record_id, car_id, "bolink"))
    assert [type(e) for e in out] == [fx.Log]


def test_a_scanned_payment_code_charges_the_waiting_car_and_opens_nothing_by_itself():
    lane, rec = waiting_exit()
    out = lane.feed(CodeScanned("134567890123456789"), 2)
    assert lane.of(fx.ChargeByCode, out) == [fx.ChargeByCode(rec.record_id, "134567890123456789")]
    assert not lane.of(fx.OpenBarrier, out) and not any(fx.is_persistent(e) for e in out), "a code is never stored"
    assert lane.of(fx.Display, out)[0].key == "paying"


def test_a_scan_with_no_car_waiting_is_ignored():
    lane = Lane("exit", settle=True)
    assert not lane.of(fx.ChargeByCode, lane.feed(CodeScanned("134567890123456789")))
