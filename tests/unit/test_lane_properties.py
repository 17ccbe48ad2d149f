"""Property tests: random event orders must never break the safety invariant.

OpenBarrier only for an allowed/free decision of the rules, a confirmed payment for the record the car waits on
that covers what it owes, or an operator release with name and reason;
CloseBarrier never while the last known safety loop or anti-smash input is active (or unknown).
Loops flicker, plates repeat, commands fail, the daemon restarts in between."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lanectl.core import effects as fx
from lanectl.core.events import (CommandDone, DeviceFault, DeviceRecovered, IoSnapshot, OperatorOpen, PaymentConfirmed,
                                 PaymentFallback, PlateRead, PlatformEntry, Tick)
from lanectl.core.lane import InsideCar, LaneContext, LaneRules, LaneState, handle, restored
from tests.policies import FlatPolicy

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=TZ)
BLACK = "粤B66666"
WHITE = "粤B00001"
GARBLED = "竑B55502"  # no plate (a Big5 line read as GBK): never opens by itself, never reaches the rules
PLATES = ["粤B12345", "粤B22222", BLACK, WHITE, "湘B12345", "", GARBLED]


class RulesNeverSeeGarbled(FlatPolicy):
    def entry(self, plate, *args, **kw):
        assert plate != GARBLED, "an unreadable plate reached the rules"
        return super().entry(plate, *args, **kw)

    def exit(self, plate, *args, **kw):
        assert plate != GARBLED, "an unreadable plate reached the rules"
        return super().exit(plate, *args, **kw)


POLICY = RulesNeverSeeGarbled(flat_fen=500, free_minutes=15, whitelist=frozenset({WHITE}),
                              blacklist=frozenset({BLACK}))

io_st = st.builds(IoSnapshot, st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans())
event_st = st.one_of(
    st.builds(PlateRead, st.sampled_from(PLATES), st.just("blue"), st.integers(0, 100)),
    io_st, io_st, io_st,
    st.builds(OperatorOpen, st.sampled_from(["", " ", "王"]), st.sampled_from(["", "cash", "fault"]),
              st.one_of(st.none(), st.integers(0, 2000))),
    st.builds(CommandDone, st.sampled_from(["pending", "bogus"]), st.booleans(),
              st.sampled_from(["", "BarrierError: timeout", "BarrierUnsafe: occupied"])),
    st.builds(DeviceFault, st.just("barrier"), st.just("port gone")),
    st.builds(DeviceRecovered, st.just("barrier")),
    # "waiting" is replaced by the record the lane waits on (if any): results for it, for another record,
    # short of the amount, and fallbacks, in any order and repeated
    st.builds(PaymentConfirmed, st.sampled_from(["waiting", "east1_20261122080000_1", "bogus"]),
              st.sampled_from(["bolink", "xft"]), st.sampled_from([0, 1, 499, 500, 2000]),
              st.sampled_from(["T1", "T2"])),
    st.builds(PaymentFallback, st.sampled_from(["waiting", "bogus"]), st.just("window ended")),
    st.builds(PlatformEntry, st.sampled_from(["wx_1", "", "wx_2"]), st.just("bolink")),
    st.just(Tick()),
    st.just("restart"),
)
step_st = st.tuples(event_st, st.floats(0, 200))


def _reissued(before: LaneState, event: object, e: fx.OpenBarrier, now: datetime, ctx: LaneContext) -> bool:
    if before.phase.value != "blocked":  # the OPEN may go unconfirmed on this very event (its deadline passed)
        before, _ = handle(before, Tick(), now, ctx)
    v = before.visit
    return (before.phase.value == "blocked" and not before.resuming and v is not None and isinstance(event, PlateRead)
            and bool(event.plate) and event.plate == v.plate and e.record_id == v.record_id)


def _inside(direction: str) -> dict[str, InsideCar]:
    if direction == "entry":
        return {}
    return {"粤B12345": InsideCar("e_1", T0 - timedelta(hours=3)), "粤B22222": InsideCar("e_2", T0)}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(direction=st.sampled_from(["entry", "exit"]), auto_close=st.booleans(), settle=st.booleans(),
       steps=st.lists(step_st, min_size=1, max_size=60))
def test_safety_invariant_holds_for_any_event_order(direction, auto_close, settle, steps):
    ctx = LaneContext("east1", direction, POLICY, LaneRules(auto_close=auto_close), _inside(direction),
                      settle=settle)
    state, now = LaneState(), T0
    seen_ids: set[str] = set()
    issued: set[str] = set()  # records an OPEN was issued for under a checked authority
    for event, dt in steps:
        now += timedelta(seconds=dt)
        if event == "restart":
            state = restored(LaneState.from_dict(state.to_dict()))
            continue
        if isinstance(event, CommandDone) and event.action_id == "pending":
            event = CommandDone(state.pending_action, event.ok, event.error)
        if isinstance(event, (PaymentConfirmed, PaymentFallback)) and event.record_id == "waiting":
            event = replace(event, record_id=state.visit.record_id if state.visit else "none")
        before = state
        state, effects = handle(state, event, now, ctx)
        records = {e.record_id: e for e in effects if isinstance(e, fx.NewRecord)}
        for e in effects:
            if isinstance(e, fx.OpenBarrier):
                assert e.action_id not in seen_ids
                seen_ids.add(e.action_id)
                if _reissued(before, event, e, now, ctx):
                    # a blocked car read again at the closed arm: its own decision, for its own record, again
                    v, io = before.visit, before.io
                    assert io is not None and io.down_limit and not io.up_limit and io.arming
                    assert (e.authority, e.reason, e.operator, e.trade_no) == (v.authority, v.open_reason, v.operator,
                                                                               v.trade_no)
                    assert e.authority in ("rules", "payment", "operator") and v.record_id in issued
                    continue
                if e.authority == "operator":
                    assert isinstance(event, OperatorOpen) and event.operator.strip() and event.reason.strip()
                    assert e.operator == event.operator.strip()
                elif e.authority == "payment":
                    assert isinstance(event, PaymentConfirmed), "only a confirmed payment opens on payment authority"
                    assert before.phase.value == "awaiting_payment" and before.visit is not None
                    assert before.visit.plate != GARBLED
                    assert event.record_id == before.visit.record_id == e.record_id
                    assert event.amount_fen >= before.visit.due_fen and e.trade_no == event.trade_no
                else:
                    assert e.authority == "rules"
                    rec = records.get(e.record_id)
                    assert rec is not None, "a rules decision opens only for the record it just made"
                    if rec.plate.startswith("wx_"):  # a platform's id: only its entry call admits that car, on an
                        # entry lane with no cycle running once its deadlines are settled (a cycle may end on a timeout)
                        settled, _ = handle(before, Tick(), now, ctx)
                        assert isinstance(event, PlatformEntry) and rec.plate == event.car_id
                        assert direction == "entry" and settled.phase.value == "idle"
                    assert rec.plate not in (BLACK, GARBLED)
                    assert rec.status in ("inside", "leaving") and rec.due_fen == 0
                issued.add(e.record_id)
            if isinstance(e, fx.CloseBarrier):
                io = state.io
                assert io is not None and not io.safety and not io.anti_smash
            if isinstance(e, fx.StartSettlement):
                assert settle and direction == "exit" and e.due_fen > 0
            if isinstance(e, fx.NewRecord):
                assert e.record_id not in seen_ids
                seen_ids.add(e.record_id)
        assert state.seq >= before.seq
