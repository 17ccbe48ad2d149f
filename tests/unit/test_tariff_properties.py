"""Properties of the fee engine over random tariffs and stays, and a minute-by-minute reference model.

The reference walks the stay one minute at a time (slow, obviously right); the engine uses closed forms per
run and period. They must agree on every stay hypothesis finds.
"""

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from lanectl.core.tariff import DAY_MINUTES, TariffRule, compute_fee

SH = ZoneInfo("Asia/Shanghai")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)


# ---------------------------------------------------------------- strategies

@st.composite
def prices(draw):
    first_minutes = draw(st.sampled_from([0, 15, 30, 60, 120]))
    return {
        "first_minutes": first_minutes,
        "first_fen": 0 if first_minutes == 0 else draw(st.integers(0, 1000)),
        "increment_minutes": draw(st.sampled_from([1, 7, 15, 30, 60, 120, 1440])),
        "increment_fen": draw(st.integers(0, 500)),
    }


def first_charge(p: dict) -> int:
    return p["first_fen"] if p["first_minutes"] else p["increment_fen"]


@st.composite
def segment_list(draw):
    cuts = sorted(draw(st.sets(st.integers(0, DAY_MINUTES - 1), min_size=2, max_size=3)))
    segs = []
    for i, start in enumerate(cuts):
        end = cuts[(i + 1) % len(cuts)]
        p = draw(prices())
        cap = draw(st.none() | st.integers(first_charge(p), first_charge(p) + 3000))
        segs.append({"name": f"s{i}", "start": f"{start // 60:02d}:{start % 60:02d}",
                     "end": f"{end // 60:02d}:{end % 60:02d}", "cap_fen": cap, **p})
    return segs


@st.composite
def rules(draw, cap=st.booleans(), kinds=("plain", "flat", "segments"), cap_periods=("entry_24h", "calendar_day")):
    kind = draw(st.sampled_from(kinds))
    rule: dict = {
        "free_minutes": draw(st.sampled_from([0, 5, 15, 30, 120])),
        "deduct_free_minutes": draw(st.booleans()),
        "free_out_minutes": draw(st.sampled_from([0, 10, 30])),
        "cap_period": draw(st.sampled_from(cap_periods)),
    }
    if kind == "plain":
        rule.update(draw(prices()))
        lowest_cap = first_charge(rule)
    elif kind == "flat":
        rule["flat_fen"] = lowest_cap = draw(st.integers(0, 2000))
    else:
        rule["segments"] = draw(segment_list())
        lowest_cap = max(first_charge(s) for s in rule["segments"])
    if draw(cap):
        rule["cap_fen"] = draw(st.integers(lowest_cap, lowest_cap + 5000))
    return TariffRule.model_validate(rule)


entries = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                       timezones=st.just(SH))


# ---------------------------------------------------------------- reference model, one minute at a time

def minute_of(dt: datetime) -> int:
    return (dt - EPOCH) // MINUTE


def local(m: int) -> datetime:
    return (EPOCH + m * MINUTE).astimezone(SH)


def segment_at(rule: TariffRule, m: int):
    """(segment, identity of its occurrence) for minute m."""
    lt = local(m)
    tod = lt.hour * 60 + lt.minute
    for seg in rule.segments:
        if (tod - seg.start_minute) % DAY_MINUTES < seg.length:
            started = lt.date() if tod >= seg.start_minute else lt.date() - timedelta(days=1)
            return seg, (seg.name, started)
    raise AssertionError("segments do not tile the day")


def reference_total(rule: TariffRule, entered: datetime, left: datetime, paid_at=None) -> int:
    entry, end = minute_of(entered), minute_of(left)
    restart = None
    if paid_at is not None:
        pay = minute_of(paid_at)
        if end <= pay + rule.free_out_minutes:
            end = pay
        elif pay - entry > rule.free_minutes:
            restart = pay
    if end - entry <= rule.free_minutes:
        return 0
    charges = []  # (minute, fen, occurrence, occurrence cap)
    run, run_start = None, None
    for m in range(entry + rule.free_minutes if rule.deduct_free_minutes else entry, end):
        after = restart is not None and m >= restart
        seg, occurrence = segment_at(rule, m) if rule.segments else (rule, "whole stay")
        if (occurrence, after) != run:
            run, run_start = (occurrence, after), m
        offset = m - run_start
        if rule.flat_fen is not None:
            fen = rule.flat_fen if offset == 0 else 0
        elif seg.first_minutes and offset == 0:
            fen = seg.first_fen
        elif offset >= seg.first_minutes and (offset - seg.first_minutes) % seg.increment_minutes == 0:
            fen = seg.increment_fen
        else:
            fen = 0
        charges.append((m, fen, occurrence, seg.cap_fen if rule.segments else None))
    used: dict = defaultdict(int)
    per_period: dict = defaultdict(int)
    for m, fen, occurrence, cap in charges:
        if cap is not None:
            fen = min(fen, cap - used[occurrence])
            used[occurrence] += fen
        period = (m - entry) // DAY_MINUTES if rule.cap_period == "entry_24h" else local(m).date()
        per_period[period] += fen
    cap = rule.cap_fen
    return sum(fen if cap is None else min(cap, fen) for fen in per_period.values())


def started_periods(rule: TariffRule, entered: datetime, left: datetime) -> int:
    minutes = minute_of(left) - minute_of(entered)
    if rule.cap_period == "entry_24h":
        return max(1, -(-minutes // DAY_MINUTES))
    return (left.astimezone(SH).date() - entered.astimezone(SH).date()).days + 1


# ---------------------------------------------------------------- properties

@settings(max_examples=250, deadline=None)
@given(rule=rules(), entered=entries, minutes=st.integers(0, 2 * DAY_MINUTES + 90), seconds=st.integers(0, 59))
def test_engine_matches_the_minute_by_minute_reference(rule, entered, minutes, seconds):
    left = entered + timedelta(minutes=minutes, seconds=seconds)
    assert compute_fee(rule, entered, left).total_fen == reference_total(rule, entered, left)


@settings(max_examples=200, deadline=None)
@given(rule=rules(), entered=entries, minutes=st.integers(1, 2 * DAY_MINUTES), data=st.data())
def test_engine_matches_the_reference_with_a_payment(rule, entered, minutes, data):
    left = entered + timedelta(minutes=minutes)
    paid_at = entered + timedelta(minutes=data.draw(st.integers(0, minutes)))
    engine = compute_fee(rule, entered, left, paid_at=paid_at).total_fen
    assert engine == reference_total(rule, entered, left, paid_at)


@settings(max_examples=200, deadline=None)
@given(rule=rules(), entered=entries, minutes=st.integers(0, 40 * DAY_MINUTES), more=st.integers(0, 3 * DAY_MINUTES))
def test_fee_never_decreases_when_the_stay_grows(rule, entered, minutes, more):
    left = entered + timedelta(minutes=minutes)
    shorter = compute_fee(rule, entered, left).total_fen
    longer = compute_fee(rule, entered, left + timedelta(minutes=more)).total_fen
    earlier_entry = compute_fee(rule, entered - timedelta(minutes=more), left).total_fen
    assert shorter <= longer
    assert shorter <= earlier_entry


@settings(max_examples=200, deadline=None)
@given(rule=rules(cap=st.just(True)), entered=entries, minutes=st.integers(0, 40 * DAY_MINUTES))
def test_fee_never_exceeds_one_cap_per_started_period(rule, entered, minutes):
    left = entered + timedelta(minutes=minutes)
    f = compute_fee(rule, entered, left)
    assert f.total_fen <= rule.cap_fen * started_periods(rule, entered, left)


@settings(max_examples=200, deadline=None)
@given(rule=rules(cap=st.just(True)), entered=entries, minutes=st.integers(0, 10 * DAY_MINUTES))
def test_a_cap_only_ever_lowers_the_fee(rule, entered, minutes):
    left = entered + timedelta(minutes=minutes)
    uncapped = TariffRule.model_validate({**rule.model_dump(exclude_unset=True), "cap_fen": None})
    assert compute_fee(rule, entered, left).total_fen <= compute_fee(uncapped, entered, left).total_fen


@settings(max_examples=200, deadline=None)
@given(rule=rules(), entered=entries, data=st.data())
def test_a_stay_within_the_free_minutes_is_free(rule, entered, data):
    left = entered + timedelta(minutes=data.draw(st.integers(0, rule.free_minutes)))
    left = left.replace(second=entered.second)  # seconds are cut from both ends: keep the whole-minute length
    f = compute_fee(rule, entered, left)
    assert (f.total_fen, f.due_fen) == (0, 0)


@settings(max_examples=200, deadline=None)
@given(rule=rules(), entered=entries, minutes=st.integers(0, 5 * DAY_MINUTES), data=st.data())
def test_paying_the_due_amount_then_leaving_within_the_grace_is_free(rule, entered, minutes, data):
    paid_at = entered + timedelta(minutes=minutes)
    owed = compute_fee(rule, entered, paid_at).total_fen
    left = paid_at + timedelta(minutes=data.draw(st.integers(0, rule.free_out_minutes)))
    f = compute_fee(rule, entered, left, paid_fen=owed, paid_at=paid_at)
    assert f.due_fen == 0
    assert f.total_fen == owed


@settings(max_examples=200, deadline=None)
@given(rule=rules(), entered=entries, minutes=st.integers(0, 40 * DAY_MINUTES), paid=st.integers(0, 10_000))
def test_breakdown_adds_up_and_due_is_total_minus_paid(rule, entered, minutes, paid):
    f = compute_fee(rule, entered, entered + timedelta(minutes=minutes), paid_fen=paid)
    assert sum(i.fen for i in f.breakdown) == f.total_fen
    assert f.due_fen == max(0, f.total_fen - paid)
    assert all(i.start <= i.end for i in f.breakdown)


@settings(max_examples=100, deadline=None)
@given(rule=rules(kinds=("plain", "flat"), cap_periods=("entry_24h",)), entered=entries,
       minutes=st.integers(0, 10 * DAY_MINUTES), shift=st.integers(1, 10_000))
def test_plain_tariffs_counted_from_entry_depend_only_on_the_length(rule, entered, minutes, shift):
    later = entered + timedelta(minutes=shift)
    assert (compute_fee(rule, entered, entered + timedelta(minutes=minutes)).total_fen
            == compute_fee(rule, later, later + timedelta(minutes=minutes)).total_fen)
