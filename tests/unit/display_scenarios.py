"""Every place the lane machine puts a message on the board, as a scenario: the events that lead there and the
Display messages it emits. tests/unit/test_display_wording.py renders each of them and checks the board's text
and voice against what the lane showed before the wording moved into the display adapter."""

from __future__ import annotations

from datetime import timedelta

from lanectl.core import effects as fx
from lanectl.core.events import (CodeScanned, IdentifyCar, OperatorOpen, PaymentConfirmed, PaymentFallback,
                                 PlateRead, PlatformEntry, Tick)
from lanectl.core.lane import InsideCar
from tests.policies import FlatPolicy
from tests.unit.test_lane import POLICY, T0, Lane


def _entered(minutes: int, record: str = "in1_1", **kw) -> InsideCar:
    return InsideCar(record, T0 - timedelta(minutes=minutes), **kw)


def _shown(lane: Lane) -> list[fx.Display]:
    return lane.of(fx.Display)


def entry_temporary():
    lane = Lane()
    lane.feed(PlateRead("粤B12345", "blue", 96))
    return _shown(lane)


def entry_stored_value_with_balance():
    lane = Lane(balances={"粤B77777": 1250})
    lane.feed(PlateRead("粤B77777", "blue", 96))
    return _shown(lane)


def entry_stored_value_without_balance():
    lane = Lane()
    lane.feed(PlateRead("粤B77777", "blue", 96))
    return _shown(lane)


def entry_refused():
    lane = Lane()
    lane.feed(PlateRead("粤B66666", "blue", 96))
    return _shown(lane)


def entry_plateless():
    lane = Lane()
    lane.feed(PlateRead("", "", 96))
    return _shown(lane)


def entry_plateless_refused():
    lane = Lane()
    lane.ctx = type(lane.ctx)(**{**lane.ctx.__dict__, "policy": FlatPolicy(allow_temporary=False)})
    lane.feed(PlateRead("", "", 96))
    return _shown(lane)


def platform_entry():
    lane = Lane()
    lane.feed(PlatformEntry("car-42", "bolink"))
    return _shown(lane)


def platform_entry_refused():
    lane = Lane()
    lane.ctx = type(lane.ctx)(**{**lane.ctx.__dict__, "policy": FlatPolicy(allow_temporary=False)})
    lane.feed(PlatformEntry("car-42", "bolink"))
    return _shown(lane)


def unreadable_at_entry():
    lane = Lane()
    lane.feed(PlateRead("竑B55502", "blue", 96))
    return _shown(lane)


def unreadable_at_exit():
    lane = Lane("exit")
    lane.feed(PlateRead("竑B55502", "blue", 96))
    return _shown(lane)


def exit_free():
    lane = Lane("exit", inside={"粤B12345": _entered(5)})
    lane.feed(PlateRead("粤B12345", "blue", 96))
    return _shown(lane)


def exit_pay_with_stay():
    lane = Lane("exit", inside={"粤B12345": _entered(185)})
    lane.feed(PlateRead("粤B12345", "blue", 96))
    return _shown(lane)


def exit_pay_hours_only():
    lane = Lane("exit", inside={"粤B12345": _entered(120)})
    lane.feed(PlateRead("粤B12345", "blue", 96))
    return _shown(lane)


def exit_pay_minutes_only():
    lane = Lane("exit", inside={"粤B12345": _entered(45)})
    lane.feed(PlateRead("粤B12345", "blue", 96))
    return _shown(lane)


def exit_pay_without_entry():
    lane = Lane("exit")
    lane.feed(PlateRead("粤B12345", "blue", 96))
    return _shown(lane)


def exit_plateless_pay():
    lane = Lane("exit")
    lane.feed(PlateRead("", "", 96))
    return _shown(lane)


def exit_ambiguous_to_booth():
    lane = Lane("exit", inside={"湘B12345": _entered(185, "in1_1"), "赣B12345": _entered(185, "in1_2")})
    lane.feed(PlateRead("粤B12345", "blue", 96))
    return _shown(lane)


def exit_stored_value_debit():
    lane = Lane("exit", inside={"粤B77777": _entered(185)}, balances={"粤B77777": 1250})
    lane.feed(PlateRead("粤B77777", "blue", 96))
    return _shown(lane)


def exit_stored_value_short():
    lane = Lane("exit", inside={"粤B77777": _entered(185)}, balances={"粤B77777": 305})
    lane.feed(PlateRead("粤B77777", "blue", 96))
    return _shown(lane)


def exit_paid_by_provider():
    lane = Lane("exit", inside={"粤B12345": _entered(185)}, settle=True)
    lane.feed(PlateRead("粤B12345", "blue", 96))
    lane.feed(PaymentConfirmed(lane.state.visit.record_id, "bolink", 750, "T1", "wallet"))
    return _shown(lane)


def exit_plateless_paid_by_provider():
    lane = Lane("exit", settle=True)
    lane.feed(PlateRead("", "", 96))
    lane.feed(PaymentConfirmed(lane.state.visit.record_id, "bolink", 505, "T1"))
    return _shown(lane)


def exit_payment_fallback():
    lane = Lane("exit", inside={"粤B12345": _entered(185)}, settle=True)
    lane.feed(PlateRead("粤B12345", "blue", 96))
    lane.feed(PaymentFallback(lane.state.visit.record_id, "timeout"))
    return _shown(lane)


def exit_plateless_payment_fallback():
    lane = Lane("exit", settle=True)
    lane.feed(PlateRead("", "", 96))
    lane.feed(PaymentFallback(lane.state.visit.record_id, "timeout"))
    return _shown(lane)


def exit_code_scanned():
    lane = Lane("exit", inside={"粤B12345": _entered(185)}, settle=True)
    lane.feed(PlateRead("粤B12345", "blue", 96))
    lane.feed(CodeScanned("134567890123456789"))
    return _shown(lane)


def exit_plateless_code_scanned():
    lane = Lane("exit", settle=True)
    lane.feed(PlateRead("", "", 96))
    lane.feed(CodeScanned("134567890123456789"))
    return _shown(lane)


def exit_identified_pays():
    lane = Lane("exit", inside={"car-42": _entered(185)}, settle=True)
    lane.feed(PlateRead("", "", 96))
    lane.feed(IdentifyCar(lane.state.visit.record_id, "car-42", "bolink"))
    return _shown(lane)


def exit_identified_free():
    lane = Lane("exit", inside={"car-42": _entered(5)}, settle=True)
    lane.feed(PlateRead("", "", 96))
    lane.feed(IdentifyCar(lane.state.visit.record_id, "car-42", "bolink"))
    return _shown(lane)


def operator_release_waiting_car():
    lane = Lane("exit", inside={"粤B12345": _entered(185)})
    lane.feed(PlateRead("粤B12345", "blue", 96))
    lane.feed(OperatorOpen("alice", "cash", 500))
    return _shown(lane)


def operator_release_no_car():
    lane = Lane()
    lane.feed(OperatorOpen("alice", "visitor"))
    return _shown(lane)


def barrier_fault():
    lane = Lane()
    lane.feed(PlateRead("粤B12345", "blue", 96))
    lane.ack()
    lane.feed(Tick(), 30.0)
    return _shown(lane)


SCENARIOS = {f.__name__: f for f in (
    entry_temporary, entry_stored_value_with_balance, entry_stored_value_without_balance, entry_refused,
    entry_plateless, entry_plateless_refused, platform_entry, platform_entry_refused, unreadable_at_entry,
    unreadable_at_exit, exit_free, exit_pay_with_stay, exit_pay_hours_only, exit_pay_minutes_only,
    exit_pay_without_entry, exit_plateless_pay, exit_ambiguous_to_booth, exit_stored_value_debit,
    exit_stored_value_short, exit_paid_by_provider, exit_plateless_paid_by_provider, exit_payment_fallback,
    exit_plateless_payment_fallback, exit_code_scanned, exit_plateless_code_scanned, exit_identified_pays,
    exit_identified_free, operator_release_waiting_car, operator_release_no_car, barrier_fault)}
