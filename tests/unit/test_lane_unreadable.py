"""A reading that is no plate (core.plates.classify_plate says "unreadable", e.g. 竑B55502: a Big5 camera line
read as GBK) goes to the booth: the rules never see it, the barrier never opens for it by itself, an operator may
still release the car. Driven through the pure lane machine with explicit times."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Optional

import pytest

from lanectl.core import effects as fx
from lanectl.core.events import CodeScanned, OperatorOpen, PlateRead
from lanectl.core.lane import UNREADABLE, InsideCar, Phase
from lanectl.core.policy import EntryDecision, ExitQuote, Present
from tests.policies import FlatPolicy
from tests.unit.test_lane import ARMING, T0, Lane, drive_through

GARBLED = "竑B55502"  # 粵B55502 sent in Big5, decoded as GBK


@dataclass
class SpyPolicy:
    """FlatPolicy that remembers every plate the rules were asked about."""

    inner: FlatPolicy = field(default_factory=FlatPolicy)
    asked: list[str] = field(default_factory=list)

    def entry(self, plate: str, color: str, at: datetime, present: Present) -> EntryDecision:
        self.asked.append(plate)
        return self.inner.entry(plate, color, at, present)

    def exit(self, plate: str, color: str, entered_at: Optional[datetime], at: datetime, present: Present,
             paid_fen: int = 0, paid_at: Optional[datetime] = None, entry_reason: str = "") -> ExitQuote:
        self.asked.append(plate)
        return self.inner.exit(plate, color, entered_at, at, present, paid_fen, paid_at, entry_reason)


def spied(direction: str, **kw) -> tuple[Lane, SpyPolicy]:
    lane = Lane(direction, **kw)
    spy = SpyPolicy()
    lane.ctx = replace(lane.ctx, policy=spy)
    return lane, spy


def booth_shown(lane: Lane, out: list) -> bool:
    return [d.key for d in lane.of(fx.Display, out)] == ["booth"]


@pytest.mark.parametrize("direction", ["entry", "exit"])
@pytest.mark.parametrize("plate", [GARBLED, "袋B12345", "AB12345", "粤12345X", "粤B123456", "粤B1234无"])
def test_an_unreadable_plate_never_opens_and_goes_to_the_booth(direction, plate):
    lane, spy = spied(direction, settle=True)
    out = lane.feed(PlateRead(plate, "blue", 96, source="in1-camera"))
    assert not lane.of(fx.OpenBarrier, out)
    assert booth_shown(lane, out)
    assert spy.asked == []  # never to the rules as a real plate
    assert not lane.of(fx.StartSettlement, out)  # nor to a payment platform
    rec = lane.of(fx.NewRecord, out)[0]
    assert (rec.kind, rec.plate, rec.reason) == (direction, plate, UNREADABLE)  # the record keeps it as read
    assert rec.status == ("refused" if direction == "entry" else "awaiting_payment")
    log = lane.of(fx.Log, out)[0]
    assert log.level == "warning"
    assert dict(log.fields).items() >= {"lane": "east1", "plate": plate, "source": "in1-camera"}.items()


def test_an_unreadable_read_at_an_entry_leaves_the_lane_idle_and_the_operator_may_release():
    lane, _ = spied("entry")
    lane.feed(PlateRead(GARBLED))
    assert lane.state.phase == Phase.IDLE and lane.state.visit is None
    out = lane.feed(OperatorOpen("王", "plate unreadable"), 5.0)
    opens = lane.of(fx.OpenBarrier, out)
    assert opens and opens[0].authority == "operator" and opens[0].operator == "王"


def test_an_unreadable_car_at_an_exit_waits_for_the_operator():
    lane, spy = spied("exit", settle=True)
    rec = lane.of(fx.NewRecord, lane.feed(PlateRead(GARBLED)))[0]
    assert lane.state.phase == Phase.AWAITING_PAYMENT and lane.state.visit.record_id == rec.record_id
    assert not lane.of(fx.ChargeByCode, lane.feed(CodeScanned("134567890123456789"), 1.0))  # no fee to charge
    assert not lane.of(fx.OpenBarrier, lane.feed(PlateRead(GARBLED), 20.0))  # read again: still the booth
    out = lane.feed(OperatorOpen("王", "cash", 700), 5.0)
    opens = lane.of(fx.OpenBarrier, out)
    assert opens and opens[0].authority == "operator" and opens[0].record_id == rec.record_id
    assert dict(lane.of(fx.PatchRecord, out)[0].changes)["status"] == "released"
    assert spy.asked == []


def test_the_same_car_read_properly_afterwards_is_handled_by_the_rules():
    inside = {"粤B55502": InsideCar("e_1", T0 - timedelta(minutes=5))}
    lane, spy = spied("exit", inside=inside)
    first = lane.of(fx.NewRecord, lane.feed(PlateRead(GARBLED)))[0]
    out = lane.feed(PlateRead("粤B55502"), 2.0)
    assert spy.asked == ["粤B55502"]
    assert lane.of(fx.OpenBarrier, out)  # within the free minutes
    assert (first.record_id, (("status", "abandoned"),)) in [(p.record_id, p.changes)
                                                             for p in lane.of(fx.PatchRecord, out)]


def test_a_garbled_read_does_not_replace_a_car_waiting_to_pay():
    inside = {"粤B12345": InsideCar("e_1", T0 - timedelta(hours=3))}
    lane, _ = spied("exit", inside=inside)
    waiting = lane.of(fx.NewRecord, lane.feed(PlateRead("粤B12345")))[0]
    out = lane.feed(PlateRead(GARBLED), 1.0)
    assert not lane.of(fx.NewRecord, out) and not lane.of(fx.PatchRecord, out)
    assert lane.state.visit.record_id == waiting.record_id
    assert len(lane.of(fx.Log, out)) == 1
    assert not lane.of(fx.Log, lane.feed(PlateRead(GARBLED), 1.0))  # a camera repeating itself is logged once


def test_a_garbled_read_does_not_end_a_blocked_car():
    lane, _ = spied("entry")
    lane.feed(PlateRead("粤B12345"))
    lane.ack(ok=False, error="BarrierError: no answer")
    assert lane.state.phase == Phase.BLOCKED
    out = lane.feed(PlateRead(GARBLED), 1.0)
    assert not lane.of(fx.OpenBarrier, out) and not lane.of(fx.NewRecord, out)
    assert lane.state.phase == Phase.BLOCKED and lane.state.visit.plate == "粤B12345"


def test_an_unreadable_read_held_during_a_cycle_goes_to_the_booth_when_it_ends():
    lane, spy = spied("entry")
    lane.feed(PlateRead("粤B12345"))
    lane.ack()
    lane.feed(PlateRead(GARBLED), 0.5)
    assert lane.state.held is not None
    drive_through(lane)
    lane.ack()
    out = lane.feed(ARMING, 2.0)
    assert not lane.of(fx.OpenBarrier, out) and booth_shown(lane, out)
    assert spy.asked == ["粤B12345"]


@pytest.mark.parametrize("plate", ["使014578", "WJ粤12345", "WJ01警12345", "粤B1234学", "粤BD12345", "粤B12345F"])
def test_special_and_new_energy_plates_go_to_the_rules(plate):
    lane, spy = spied("entry")
    out = lane.feed(PlateRead(plate))
    assert spy.asked == [plate] and lane.of(fx.OpenBarrier, out)


def test_the_site_names_its_own_special_prefixes():
    lane, spy = spied("entry")
    assert not lane.of(fx.OpenBarrier, lane.feed(PlateRead("VA12345")))  # military: unknown here by default
    lane, spy = spied("entry", special_prefixes=("WJ", "使", "VA"))
    assert lane.of(fx.OpenBarrier, lane.feed(PlateRead("VA12345"))) and spy.asked == ["VA12345"]


def test_a_plateless_car_still_goes_to_the_rules_as_before():
    lane, spy = spied("entry")
    out = lane.feed(PlateRead(""))
    assert spy.asked == [""] and lane.of(fx.OpenBarrier, out)
    assert lane.of(fx.NewRecord, out)[0].reason != UNREADABLE
