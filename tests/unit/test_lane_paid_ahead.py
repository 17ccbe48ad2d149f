"""A car that paid ahead inside the lot, at the exit lane with the real fee engine: the lane asks the rules
for the fee (core/lane.py -> RulesPolicy -> compute_fee), so it charges what the board and `lanectl fee` say."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lanectl.core import effects as fx
from lanectl.core.events import IoSnapshot, PlateRead
from lanectl.core.lane import InsideCar, LaneContext, LaneRules, LaneState, handle
from lanectl.core.rules import RulesPolicy, VehicleRules
from lanectl.core.tariff import Tariffs

TZ = ZoneInfo("Asia/Shanghai")
ENTERED = datetime(2026, 11, 22, 8, 0, tzinfo=TZ)
PAID_AT = datetime(2026, 11, 22, 11, 0, tzinfo=TZ)
RULE = {"free_minutes": 30, "first_minutes": 60, "first_fen": 500, "increment_minutes": 60,
        "increment_fen": 100, "free_out_minutes": 10}
DOWN = IoSnapshot(arming=False, safety=False, up_limit=False, down_limit=True)


def exit_record(after_grace: str, leave: datetime) -> tuple[fx.NewRecord, list[fx.Effect]]:
    policy = RulesPolicy(Tariffs.model_validate({"default": {**RULE, "after_grace": after_grace}}), VehicleRules())
    car = InsideCar("in1_20261122080000_1", ENTERED, paid_fen=700, paid_at=PAID_AT)
    ctx = LaneContext("out1", "exit", policy, LaneRules(), {"粤B12345": car})
    state, _ = handle(LaneState(), DOWN, leave, ctx)
    _, out = handle(state, PlateRead("粤B12345"), leave, ctx)
    [record] = [e for e in out if isinstance(e, fx.NewRecord)]
    return record, out


@pytest.mark.parametrize("after_grace, due, total", [("difference", 100, 800), ("restart", 500, 1200)])
def test_leaving_after_the_grace_charges_the_rule_s_convention(after_grace, due, total):
    record, out = exit_record(after_grace, PAID_AT + timedelta(minutes=15))
    assert (record.status, record.due_fen, record.paid_fen, record.total_fen) == \
        ("awaiting_payment", due, 700, total)
    assert not [e for e in out if isinstance(e, fx.OpenBarrier)]


@pytest.mark.parametrize("after_grace", ["difference", "restart"])
def test_leaving_within_the_grace_opens_either_way(after_grace):
    record, out = exit_record(after_grace, PAID_AT + timedelta(minutes=10))
    assert (record.due_fen, record.total_fen) == (0, 700)
    assert [e.authority for e in out if isinstance(e, fx.OpenBarrier)] == ["rules"]
