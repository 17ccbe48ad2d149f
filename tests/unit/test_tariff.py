"""The fee engine: table tests for every switch, and validation that names the key.

Expected amounts are worked out by hand in the comments next to them.
"""

import time as stopwatch
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from lanectl.core.tariff import TariffError, Tariffs, TariffRule, compute_fee, compute_no_entry_fee

SH = ZoneInfo("Asia/Shanghai")


def t(text: str, tz=SH) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M" if text.count(":") == 1 else "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=tz)


def fee(rule, enter, leave, **kw):
    return compute_fee(rule, t(enter), t(leave), **kw)


# free ≤30 min (not deducted when longer), 5 元 first hour, then 1 元 per hour rounded up
WORKED = TariffRule(free_minutes=30, first_minutes=60, first_fen=500, increment_minutes=60, increment_fen=100)
DEDUCTED = WORKED.model_copy(update={"deduct_free_minutes": True})
DAY_NIGHT = TariffRule(segments=[
    {"name": "day", "start": "08:00", "end": "20:00", "first_minutes": 60, "first_fen": 500,
     "increment_minutes": 60, "increment_fen": 100, "cap_fen": 1500},
    {"name": "night", "start": "20:00", "end": "08:00", "increment_minutes": 120, "increment_fen": 100,
     "cap_fen": 500},
])


def with_(rule: TariffRule, **changes) -> TariffRule:
    """A validated copy (model_copy skips validation)."""
    return TariffRule.model_validate({**rule.model_dump(exclude_unset=True), **changes})


def test_worked_example_from_a_public_lot():
    f = fee(WORKED, "2026-11-22 08:00", "2026-11-22 11:00")
    assert (f.total_fen, f.due_fen, f.paid_fen) == (700, 700, 0)
    assert sum(i.fen for i in f.breakdown) == 700
    assert [i.kind for i in f.breakdown] == ["free", "tariff"]


@pytest.mark.parametrize("rule, leave, total", [
    (WORKED, "2026-11-22 08:00", 0),  # zero-length stay
    (WORKED, "2026-11-22 08:30", 0),  # exactly the free minutes: free
    (WORKED, "2026-11-22 08:30:59", 0),  # seconds are cut: still 30 min
    (WORKED, "2026-11-22 08:31", 500),  # free minutes not deducted: the first hour is charged from 08:00
    (WORKED, "2026-11-22 09:00", 500),
    (WORKED, "2026-11-22 09:01", 600),  # a started hour is a whole hour
    (WORKED, "2026-11-22 10:15", 700),  # 135 min: 500 + ceil(75/60)=2 x 100
    (DEDUCTED, "2026-11-22 08:31", 500),  # charged from 08:30: 1 min -> first segment
    (DEDUCTED, "2026-11-22 09:30", 500),  # 08:30-09:30 is exactly the first hour
    (DEDUCTED, "2026-11-22 09:31", 600),
    (DEDUCTED, "2026-11-22 10:15", 600),  # 105 charged min: 500 + ceil(45/60)=1 x 100 (not deducted: 700)
    (TariffRule(increment_minutes=15, increment_fen=50), "2026-11-22 08:46", 200),  # ceil(46/15)=4 x 50
    (TariffRule(increment_minutes=15, increment_fen=50), "2026-11-22 08:45", 150),
])
def test_free_minutes_and_rounding(rule, leave, total):
    assert fee(rule, "2026-11-22 08:00", leave).total_fen == total


@pytest.mark.parametrize("leave, total", [
    ("2026-11-23 08:00", 2000),  # 500 + 23 x 100 = 2800 -> cap 2000
    ("2026-11-23 10:00", 2200),  # + units at 08:00 and 09:00 of the second period
    ("2026-11-25 08:00", 6000),  # three whole periods
    ("2026-11-25 09:00", 6100),
    ("2026-12-22 08:00", 60000),  # 30 whole periods: 30 full caps
    ("2026-12-22 10:00", 60200),  # 30 caps + remainder 2 x 100
    ("2026-12-23 07:59", 62000),  # remainder of 24 units 2300 is itself capped
])
def test_cap_per_24h_from_entry_long_stays(leave, total):
    rule = with_(WORKED, cap_fen=2000)
    f = fee(rule, "2026-11-22 08:00", leave)
    assert f.total_fen == total
    assert sum(i.fen for i in f.breakdown) == total


def test_cap_per_calendar_day_differs_from_24h_from_entry():
    # 20:00 -> 10:00: units 20..23 = 500 + 3 x 100 = 800 on day 1; units 00..09 = 10 x 100 = 1000 on day 2
    calendar = with_(WORKED, cap_fen=1000, cap_period="calendar_day")
    rolling = with_(WORKED, cap_fen=1000, cap_period="entry_24h")
    assert fee(calendar, "2026-11-22 20:00", "2026-11-23 10:00").total_fen == 1800
    assert fee(rolling, "2026-11-22 20:00", "2026-11-23 10:00").total_fen == 1000  # one period, 1800 capped
    smaller = with_(WORKED, cap_fen=500, cap_period="calendar_day")
    assert fee(smaller, "2026-11-22 20:00", "2026-11-23 10:00").total_fen == 1000  # 800 -> 500, 1000 -> 500
    caps = [i for i in fee(smaller, "2026-11-22 20:00", "2026-11-23 10:00").breakdown if i.kind == "cap"]
    assert [(c.start.hour, c.fen) for c in caps] == [(20, -300), (0, -500)]


def test_cap_never_raises_the_first_segment_again():
    # the tariff runs on continuously: the second 24 h starts with increments, not another first hour
    rule = with_(WORKED, cap_fen=5000)
    assert fee(rule, "2026-11-22 08:00", "2026-11-23 10:00").total_fen == 500 + 25 * 100


@pytest.mark.parametrize("leave, total", [
    ("2026-11-22 08:15", 0),
    ("2026-11-22 08:16", 1000),
    ("2026-11-25 20:00", 1000),  # per visit, however long
])
def test_flat_fee_per_visit(leave, total):
    rule = TariffRule(free_minutes=15, flat_fen=1000)
    assert fee(rule, "2026-11-22 08:00", leave).total_fen == total


def test_flat_fee_is_capped_per_period_with_payment_restart():
    rule = TariffRule(flat_fen=1000, cap_fen=1500, free_out_minutes=10, after_grace="restart")
    # paid 1000 at 09:00, left 10:00 (beyond the grace): a second flat fee in the same 24 h, capped at 1500
    f = fee(rule, "2026-11-22 08:00", "2026-11-22 10:00", paid_fen=1000, paid_at=t("2026-11-22 09:00"))
    assert (f.total_fen, f.due_fen) == (1500, 500)


def test_flat_fee_paid_ahead_is_the_whole_visit_with_difference():
    rule = TariffRule(flat_fen=1000, cap_fen=1500, free_out_minutes=10)  # after_grace: difference (default)
    f = fee(rule, "2026-11-22 08:00", "2026-11-22 10:00", paid_fen=1000, paid_at=t("2026-11-22 09:00"))
    assert (f.total_fen, f.due_fen) == (1000, 0)


@pytest.mark.parametrize("enter, leave, total", [
    ("2026-11-22 09:00", "2026-11-22 12:00", 700),  # day: 500 + 2 x 100
    ("2026-11-22 08:00", "2026-11-22 20:00", 1500),  # 500 + 11 x 100 = 1600 -> day cap 1500
    ("2026-11-22 21:00", "2026-11-22 23:00", 100),  # night: 1 x 2 h
    ("2026-11-22 21:00", "2026-11-22 23:01", 200),
    ("2026-11-22 19:30", "2026-11-22 20:30", 600),  # day 30 min -> 500; night 30 min -> 100
    ("2026-11-22 19:00", "2026-11-23 09:30", 1600),  # 500 + night 600 -> 500 + day again 500 + 100
    ("2026-11-22 08:00", "2026-11-24 08:00", 4000),  # 2 x (day cap 1500 + night cap 500)
    ("2026-11-22 07:00", "2026-11-22 09:00", 600),  # yesterday's night occurrence: 100; day from 08:00: 500
])
def test_day_night_segments(enter, leave, total):
    f = fee(DAY_NIGHT, enter, leave)
    assert f.total_fen == total
    assert sum(i.fen for i in f.breakdown) == total


def test_segment_caps_and_a_calendar_day_cap_together():
    # Every cap at once, charges in time order. 08:00 -> 20:00 next day, 1600 per calendar day:
    # day 1: day occurrence 1500 (its cap) + night 20:00 100 = 1600; night 22:00 is not charged (day cap)
    # day 2: night 00:00-06:00 4 x 100 = 400 (the night occurrence was charged only 100 of its 500 so far)
    #        + day occurrence 1500 = 1900 -> 1600
    no_cap = DAY_NIGHT
    assert fee(no_cap, "2026-11-22 08:00", "2026-11-23 08:00").total_fen == 2000
    capped = with_(DAY_NIGHT, cap_fen=1600, cap_period="calendar_day")
    assert fee(capped, "2026-11-22 08:00", "2026-11-23 08:00").total_fen == 1600 + 400  # day 2 is under the cap
    f = fee(capped, "2026-11-22 08:00", "2026-11-23 20:00")
    assert f.total_fen == 1600 + 1600
    assert [i.kind for i in f.breakdown].count("segment_cap") == 3  # day, night, day: 1600 -> 1500, 600 -> 500
    assert [(i.start.day, i.fen) for i in f.breakdown if i.kind == "cap"] == [(23, -300)]
    assert sum(i.fen for i in f.breakdown) == 3200


def test_calendar_days_restart_the_increments_at_midnight_but_never_cost_more():
    # each day is metered on its own: 22:30 -> 00:20 counts the unit from 23:30 on day 1 and one from 00:00 on
    # day 2, one more than the continuous tariff (500 + 1 x 100), which stays the limit
    rule = with_(WORKED, cap_fen=600, cap_period="calendar_day")
    assert fee(rule, "2026-11-22 22:30", "2026-11-23 00:20").total_fen == 600  # as without the cap
    f = fee(rule, "2026-11-22 20:00", "2026-11-23 02:30")  # day 1: 500 + 3 x 100 -> 600; day 2: 3 x 100
    assert f.total_fen == 900
    assert [(i.start.hour, i.fen) for i in f.breakdown if i.kind == "cap"] == [(20, -200)]


def test_cap_in_any_24_hours():
    # a free first hour, then 1 元 per hour, at most 10 元 in any 24 h: 09:00..18:00 fill the first 24 h; the
    # next charge allowed is at 09:00 the next day, when the 09:00 charge is 24 h old (24 h counted from the
    # entry would have let 08:00 in too)
    rule = TariffRule(first_minutes=60, first_fen=0, increment_minutes=60, increment_fen=100, cap_fen=1000)
    f = fee(rule, "2026-11-22 08:00", "2026-11-23 11:00")
    assert f.total_fen == 1000 + 200
    assert [(i.kind, i.fen) for i in f.breakdown] == [("tariff", 2600), ("cap", -1400)]  # one line, whole stay


# Regressions: a longer stay must never cost less. Each pair of rows enters one minute apart and leaves at the
# same time; "was" is what the row cost when each cap period took the units starting in it (the earlier entry
# cost less).
CALENDAR_15_MIN = TariffRule(increment_minutes=15, increment_fen=1, cap_fen=1, cap_period="calendar_day",
                             free_out_minutes=0)
NIGHT_CAP = TariffRule(cap_fen=500, cap_period="calendar_day", segments=[
    {"name": "day", "start": "08:00", "end": "20:00", "first_minutes": 60, "first_fen": 300,
     "increment_minutes": 60, "increment_fen": 100, "cap_fen": 1500},
    {"name": "night", "start": "20:00", "end": "08:00", "increment_minutes": 120, "increment_fen": 300,
     "cap_fen": 600},
])
FREE_FIRST_SEGMENT = TariffRule(cap_fen=1, cap_period="entry_24h", segments=[
    {"name": "s0", "start": "01:47", "end": "03:49", "first_minutes": 120, "increment_minutes": 1,
     "increment_fen": 1},
    {"name": "s1", "start": "03:49", "end": "01:47", "increment_minutes": 1},
])


@pytest.mark.parametrize("rule, enter, leave, total", [
    # the CI failure: 1 fen per 15 min, at most 1 fen per calendar day, 24 calendar days
    (CALENDAR_15_MIN, "2026-01-01 08:45", "2026-01-24 00:01", 24),
    (CALENDAR_15_MIN, "2026-01-01 08:44", "2026-01-24 00:01", 24),  # was 23: no unit started after midnight
    # the worked tariff, 6 元 per calendar day: day 1 is capped whenever the car came
    (with_(WORKED, cap_fen=600, cap_period="calendar_day"), "2026-11-22 22:00", "2026-11-23 01:30", 800),
    (with_(WORKED, cap_fen=600, cap_period="calendar_day"), "2026-11-22 21:59", "2026-11-23 01:30", 800),  # was 700
    # a night segment cap shared by two days: a second unit before midnight used it up
    (NIGHT_CAP, "2026-11-22 22:00", "2026-11-23 07:00", 600),
    (NIGHT_CAP, "2026-11-22 21:59", "2026-11-23 07:00", 600),  # was 500
    # 24 h from the entry with segments: the second period took both charges of 03:47 and 03:48
    (FREE_FIRST_SEGMENT, "2026-01-01 03:48", "2026-01-02 03:49", 1),  # was 2
    (FREE_FIRST_SEGMENT, "2026-01-01 03:47", "2026-01-02 03:49", 1),
])
def test_entering_earlier_never_costs_less(rule, enter, leave, total):
    f = fee(rule, enter, leave)
    assert f.total_fen == total
    assert sum(i.fen for i in f.breakdown) == total
    later = t(enter) + timedelta(minutes=1)
    assert compute_fee(rule, later, t(leave)).total_fen <= total


def test_day_segments_are_read_in_the_site_timezone():
    # 01:00-04:00 UTC is 09:00-12:00 in Shanghai: daytime there, night in UTC
    enter = datetime(2026, 11, 22, 1, 0, tzinfo=timezone.utc)
    leave = datetime(2026, 11, 22, 4, 0, tzinfo=timezone.utc)
    assert compute_fee(DAY_NIGHT, enter, leave, tz=SH).total_fen == 700
    assert compute_fee(DAY_NIGHT, enter, leave).total_fen == 200  # 2 night units of 2 h
    assert compute_fee(DAY_NIGHT, enter.astimezone(SH), leave.astimezone(SH)).total_fen == 700


def test_durations_are_real_time_across_a_dst_change():
    berlin = ZoneInfo("Europe/Berlin")  # 2026-03-29 02:00 -> 03:00: this night is one hour short
    f = compute_fee(WORKED, datetime(2026, 3, 29, 1, 0, tzinfo=berlin), datetime(2026, 3, 29, 4, 0, tzinfo=berlin))
    assert f.total_fen == 600  # 2 real hours, not 3 wall-clock ones


def test_mixed_offsets_for_one_instant_cost_the_same():
    enter = t("2026-11-22 08:00")
    leave = t("2026-11-22 11:00").astimezone(timezone.utc)
    assert compute_fee(WORKED, enter, leave).total_fen == 700


class TestPaidAhead:
    def test_leaving_within_the_grace_is_free(self):
        f = fee(WORKED, "2026-11-22 08:00", "2026-11-22 11:10", paid_fen=700, paid_at=t("2026-11-22 11:00"))
        assert (f.total_fen, f.due_fen) == (700, 0)
        assert any(i.kind == "grace" for i in f.breakdown)

    def test_leaving_later_charges_the_difference_by_default(self):
        paid = t("2026-11-22 11:00")
        # the example: 08:00 -> 11:15 is 500 + 3 x 100 = 800, less the 700 paid
        late = fee(WORKED, "2026-11-22 08:00", "2026-11-22 11:15", paid_fen=700, paid_at=paid)
        assert (late.total_fen, late.due_fen) == (800, 100)
        assert any(i.kind == "grace" and "after_grace: difference" in i.note for i in late.breakdown)
        later = fee(WORKED, "2026-11-22 08:00", "2026-11-22 13:30", paid_fen=700, paid_at=paid)
        assert (later.total_fen, later.due_fen) == (1000, 300)  # 500 + 5 x 100, less 700

    def test_the_difference_is_never_negative(self):
        # paid more than the whole stay costs (e.g. a pay station that rounded up): nothing due, nothing back
        f = fee(WORKED, "2026-11-22 08:00", "2026-11-22 11:15", paid_fen=1500, paid_at=t("2026-11-22 11:00"))
        assert (f.total_fen, f.due_fen) == (800, 0)

    def test_restart_charges_from_the_payment(self):
        rule = with_(WORKED, after_grace="restart")
        paid = t("2026-11-22 11:00")
        late = fee(rule, "2026-11-22 08:00", "2026-11-22 11:11", paid_fen=700, paid_at=paid)
        assert (late.total_fen, late.due_fen) == (1200, 500)  # a fresh first hour from 11:00
        assert any(i.kind == "grace" and "after_grace: restart" in i.note for i in late.breakdown)
        later = fee(rule, "2026-11-22 08:00", "2026-11-22 13:30", paid_fen=700, paid_at=paid)
        assert (later.total_fen, later.due_fen) == (1400, 700)  # 500 + ceil(90/60)=2 x 100

    def test_zero_grace(self):
        rule = with_(WORKED, free_out_minutes=0)
        paid = t("2026-11-22 11:00")
        assert fee(rule, "2026-11-22 08:00", "2026-11-22 11:00", paid_fen=700, paid_at=paid).due_fen == 0
        # one minute late: 08:00 -> 11:01 is 500 + 3 x 100 = 800, less 700 (difference); restart: a first hour
        assert fee(rule, "2026-11-22 08:00", "2026-11-22 11:01", paid_fen=700, paid_at=paid).due_fen == 100
        restart = with_(rule, after_grace="restart")
        assert fee(restart, "2026-11-22 08:00", "2026-11-22 11:01", paid_fen=700, paid_at=paid).due_fen == 500

    def test_underpayment_is_still_owed_within_the_grace(self):
        f = fee(WORKED, "2026-11-22 08:00", "2026-11-22 11:05", paid_fen=500, paid_at=t("2026-11-22 11:00"))
        assert (f.total_fen, f.due_fen) == (700, 200)

    def test_overpayment_owes_nothing_and_is_kept_as_paid(self):
        f = fee(WORKED, "2026-11-22 08:00", "2026-11-22 09:00", paid_fen=900)
        assert (f.total_fen, f.paid_fen, f.due_fen) == (500, 900, 0)

    def test_payment_inside_the_free_minutes_changes_nothing_after_the_grace(self):
        paid = t("2026-11-22 08:20")
        assert fee(WORKED, "2026-11-22 08:00", "2026-11-22 08:25", paid_at=paid).total_fen == 0
        assert fee(WORKED, "2026-11-22 08:00", "2026-11-22 08:35", paid_at=paid).total_fen == 500

    @pytest.mark.parametrize("after_grace", ["restart", "difference"])
    def test_restart_stays_inside_the_cap(self, after_grace):
        rule = with_(WORKED, cap_fen=2000, after_grace=after_grace)
        paid_at = t("2026-11-23 04:00")  # 20 h in: 2400 -> cap 2000
        assert fee(rule, "2026-11-22 08:00", "2026-11-23 04:00").total_fen == 2000
        f = fee(rule, "2026-11-22 08:00", "2026-11-23 06:00", paid_fen=2000, paid_at=paid_at)
        assert (f.total_fen, f.due_fen) == (2000, 0)

    def test_restart_splits_a_segment_but_keeps_its_cap(self):
        # night 20:00-08:00 cap 500: 20:00-02:00 = 3 units = 300 paid at 02:00; leaving 07:00 restarts
        # 02:00-07:00 = ceil(300/120) = 3 units = 300, but the occurrence may only reach 500 -> +200
        rule = with_(DAY_NIGHT, after_grace="restart")
        f = fee(rule, "2026-11-22 20:00", "2026-11-23 07:00", paid_fen=300, paid_at=t("2026-11-23 02:00"))
        assert (f.total_fen, f.due_fen) == (500, 200)


class TestNoEntryRecord:
    def test_fixed(self):
        rule = with_(WORKED, no_entry="fixed", no_entry_fen=1500)
        f = compute_no_entry_fee(rule, t("2026-11-22 11:00"), paid_fen=500)
        assert (f.total_fen, f.due_fen) == (1500, 1000)
        assert f.breakdown[0].kind == "no_entry"

    def test_first_segment_follows_the_day_segment(self):
        rule = with_(DAY_NIGHT, no_entry="first_segment")
        assert compute_no_entry_fee(rule, t("2026-11-22 10:00")).total_fen == 500
        assert compute_no_entry_fee(rule, t("2026-11-22 21:00")).total_fen == 100  # night has no first segment
        assert compute_no_entry_fee(with_(WORKED, no_entry="first_segment"), t("2026-11-22 03:00")).total_fen == 500

    def test_operator_is_the_default(self):
        assert compute_no_entry_fee(WORKED, t("2026-11-22 11:00")) is None


class TestEngineInputs:
    def test_naive_datetimes_are_refused(self):
        with pytest.raises(ValueError, match="timezone-aware"):
            compute_fee(WORKED, datetime(2026, 11, 22, 8), t("2026-11-22 09:00"))
        with pytest.raises(ValueError, match="paid_at"):
            compute_fee(WORKED, t("2026-11-22 08:00"), t("2026-11-22 09:00"), paid_at=datetime(2026, 11, 22, 8, 30))

    def test_input_errors_are_tariff_errors(self):
        with pytest.raises(TariffError):
            fee(WORKED, "2026-11-22 09:00", "2026-11-22 08:00")

    def test_exit_before_entry_is_refused(self):
        with pytest.raises(ValueError, match="before"):
            fee(WORKED, "2026-11-22 09:00", "2026-11-22 08:00")

    def test_payment_outside_the_stay_is_refused(self):
        with pytest.raises(ValueError, match="outside"):
            fee(WORKED, "2026-11-22 08:00", "2026-11-22 09:00", paid_at=t("2026-11-22 09:30"))

    @pytest.mark.parametrize("paid", [-1, 1.5, "100", True])
    def test_paid_must_be_whole_fen(self, paid):
        with pytest.raises(ValueError, match="paid_fen"):
            fee(WORKED, "2026-11-22 08:00", "2026-11-22 09:00", paid_fen=paid)

    def test_a_30_day_stay_costs_milliseconds(self):
        rule = with_(DAY_NIGHT, cap_fen=1800, cap_period="calendar_day")
        compute_fee(rule, t("2026-11-01 07:13"), t("2026-12-01 21:47"))  # warm up
        begin = stopwatch.perf_counter()
        for _ in range(20):
            compute_fee(rule, t("2026-11-01 07:13"), t("2026-12-01 21:47"))
        assert (stopwatch.perf_counter() - begin) / 20 < 0.05  # generous for slow CI; ~2 ms on a laptop


# ---------------------------------------------------------------- validation

def error_of(callable_, *args, **kwargs):
    with pytest.raises(ValidationError) as exc:
        callable_(*args, **kwargs)
    return exc.value.errors()


@pytest.mark.parametrize("changes, key, words", [
    ({"first_fen": -1}, "first_fen", "negative"),
    ({"increment_fen": 5.0}, "increment_fen", "whole fen"),
    ({"first_fen": "500"}, "first_fen", "whole fen"),
    ({"increment_minutes": 0}, "increment_minutes", "at least 1 minute"),
    ({"free_minutes": -5}, "free_minutes", "minutes"),
    ({"cap_fen": 300}, "cap_fen", "below the first charge"),
    ({"first_minutes": 0, "first_fen": 100}, "first_fen", "first_minutes"),
    ({"frist_fen": 500}, "frist_fen", "Extra inputs"),
    ({"cap_period": "weekly"}, "cap_period", "entry_24h"),
    ({"no_entry": "fixed"}, "no_entry_fen", "no_entry_fen"),
    ({"no_entry_fen": 500}, "no_entry_fen", "only used with no_entry: fixed"),
])
def test_validation_names_the_key(changes, key, words):
    errors = error_of(TariffRule.model_validate, {**WORKED.model_dump(exclude_unset=True), **changes})
    assert errors[0]["loc"][0] == key
    assert words in errors[0]["msg"]


def segment(name, start, end, **prices):
    return {"name": name, "start": start, "end": end, "increment_fen": 100, **prices}


@pytest.mark.parametrize("segments, words", [
    ([segment("day", "08:00", "20:00"), segment("night", "19:00", "08:00")], "overlap"),
    ([segment("day", "08:00", "20:00"), segment("night", "21:00", "08:00")], "20:00-21:00 uncovered"),
    ([segment("day", "08:00", "20:00")], "uncovered"),
    ([segment("a", "08:00", "20:00"), segment("a", "20:00", "08:00")], "unique"),
    ([segment("a", "08:00", "20:00"), segment("b", "08:00", "20:00"), segment("c", "20:00", "08:00")], "overlap"),
])
def test_segments_must_tile_the_day(segments, words):
    errors = error_of(TariffRule, segments=segments)
    assert errors[0]["loc"] == ("segments",)
    assert words in errors[0]["msg"]


@pytest.mark.parametrize("seg, key, words", [
    (segment("day", "08:00", "08:00"), "end", "same time"),
    (segment("day", "25:00", "08:00"), "start", "time of day"),
    (segment("day", "8am", "08:00"), "start", "time of day"),
    (segment("day", "08:00", "20:00", first_fen=-1, first_minutes=60), "first_fen", "negative"),
    (segment("day", "08:00", "20:00", cap_fen=50, first_minutes=60, first_fen=500), "cap_fen", "below"),
    (segment("day", "08:00", "20:00", increment_minutes=0), "increment_minutes", "at least 1"),
])
def test_segment_fields_are_checked(seg, key, words):
    errors = error_of(TariffRule, segments=[seg, segment("night", "20:00", "08:00")])
    assert errors[0]["loc"][:3] == ("segments", 0, key)
    assert words in errors[0]["msg"]


def test_three_segments_and_24_00_tile_the_day():
    rule = TariffRule(segments=[segment("morning", "00:00", "08:00"), segment("day", "08:00", "18:00"),
                                segment("evening", "18:00", "24:00")])
    assert sum(s.length for s in rule.segments) == 24 * 60


@pytest.mark.parametrize("rule, words", [
    ({"first_fen": 500, "first_minutes": 60, "segments": DAY_NIGHT.model_dump()["segments"]}, "segments"),
    ({"flat_fen": 500, "first_minutes": 60}, "flat_fen"),
    ({"flat_fen": 500, "cap_fen": 400}, "below"),
    ({"segments": DAY_NIGHT.model_dump()["segments"], "cap_fen": 400}, "below"),  # day's first 500
])
def test_conflicting_price_kinds(rule, words):
    errors = error_of(TariffRule.model_validate, rule)
    assert words in errors[0]["msg"]


TARIFFS_YAML = """
tariffs:
  default: &standard
    free_minutes: 30
    first_minutes: 60
    first_fen: 500
    increment_minutes: 60
    increment_fen: 100
    cap_fen: 2000
  overrides:
    - name: new_energy
      when: {color: green}
      rule:
        <<: *standard
        free_minutes: 120
    - name: truck
      when: {subtype: B}
      rule:
        <<: *standard
        first_fen: 1000
        cap_fen: 4000
    - name: night_lot
      when: {vehicle_class: stored_value}
      rule:
        segments:
          - {name: day, start: "08:00", end: 20:00, first_minutes: 60, first_fen: 500, increment_fen: 100}
          - {name: night, start: 20:00, end: "08:00", increment_minutes: 120, increment_fen: 100, cap_fen: 500}
"""


def test_tariffs_from_yaml_with_overrides():
    tariffs = Tariffs.model_validate(yaml.safe_load(TARIFFS_YAML)["tariffs"])
    assert tariffs.select("temporary", "blue")[0] == "default"
    assert tariffs.select("temporary", "绿")[0] == "new_energy"  # colour aliases are normalized
    assert tariffs.select("temporary", "yellow", "B")[0] == "truck"
    assert tariffs.select("stored_value", "blue")[0] == "night_lot"
    assert tariffs.rule_for("temporary", "green").free_minutes == 120
    assert tariffs.rule_for("temporary", "green").first_fen == 500  # the rest comes from the YAML anchor
    night = tariffs.rule_for("stored_value", "blue").segments[1]
    assert (night.start.hour, night.end.hour) == (20, 8)  # unquoted 20:00 (YAML base 60 = 1200) is read right
    green = compute_fee(tariffs.rule_for("temporary", "green"), t("2026-11-22 08:00"), t("2026-11-22 10:00"))
    assert green.total_fen == 0


@pytest.mark.parametrize("overrides, words", [
    ([{"name": "a", "when": {}, "rule": {}}], "at least one"),
    ([{"name": "a", "when": {"color": "purple"}, "rule": {}}], "colour"),
    ([{"name": "a", "when": {"vehicle_class": "free"}, "rule": {}}], "temporary"),
    ([{"name": "a", "when": {"subtype": "F"}, "rule": {}}], "'A'"),
    ([{"name": "a", "when": {"color": "green"}, "rule": {}},
      {"name": "b", "when": {"color": "green", "subtype": "A"}, "rule": {}}], "can never apply"),
    ([{"name": "a", "when": {"color": "green"}, "rule": {}},
      {"name": "a", "when": {"color": "blue"}, "rule": {}}], "twice"),
    ([{"name": "a", "when": {"color": "green"}, "rule": {"first_fen": -5, "first_minutes": 60}}], "negative"),
])
def test_override_errors(overrides, words):
    errors = error_of(Tariffs.model_validate, {"default": {}, "overrides": overrides})
    assert errors[0]["loc"][0] == "overrides"
    assert words in errors[0]["msg"]


def test_models_are_frozen():
    with pytest.raises(ValidationError):
        WORKED.first_fen = 1  # type: ignore[misc]


# ---------------------------------------------------------------- conventions: cycles, rounding, after the grace

CYCLE = TariffRule(first_minutes=60, first_fen=500, increment_minutes=60, increment_fen=100, cap_fen=2000,
                   cap_period="entry_cycle")  # 首小时5元，之后每小时1元，24小时封顶20元, afresh


class TestEntryCycle:
    def test_each_24h_from_the_entry_is_priced_afresh(self):
        # day 1: 500 + 23 x 100 = 2800 -> cap 2000; then 08:00 -> 09:30 afresh: 500 + 100
        f = fee(CYCLE, "2026-11-22 08:00", "2026-11-23 09:30")
        assert f.total_fen == 2600
        assert [i.fen for i in f.breakdown if i.kind == "cap"] == [-800]
        assert any("24 h period 2" in i.note for i in f.breakdown)
        # the same stay with the tariff running on, capped in any 24 h: 2000 + 2 x 100
        assert fee(with_(CYCLE, cap_period="entry_24h"), "2026-11-22 08:00", "2026-11-23 09:30").total_fen == 2200

    @pytest.mark.parametrize("leave, total", [
        ("2026-11-23 08:00", 2000),  # exactly one period
        ("2026-11-23 08:01", 2500),  # a minute into the second: its first hour
        ("2026-11-24 08:00", 4000),
    ])
    def test_period_bounds(self, leave, total):
        assert fee(CYCLE, "2026-11-22 08:00", leave).total_fen == total

    def test_free_minutes_once_at_the_entry(self):
        rule = with_(CYCLE, free_minutes=30, deduct_free_minutes=True)
        # day 1 charged from 08:30: 500 + 23 x 100 -> 2000; day 2 08:00 -> 08:20 afresh: 500
        assert fee(rule, "2026-11-22 08:00", "2026-11-23 08:20").total_fen == 2500

    def test_a_flat_fee_per_24h(self):
        rule = TariffRule(flat_fen=1000, cap_period="entry_cycle")
        assert fee(rule, "2026-11-22 08:00", "2026-11-22 23:00").total_fen == 1000
        assert fee(rule, "2026-11-22 08:00", "2026-11-23 08:01").total_fen == 2000

    def test_segments_start_again_at_a_period_bound(self):
        # day 08:00-20:00 first hour 500 then 100/h (cap 1500 per occurrence), night 100 per 2 h (cap 500)
        rule = with_(DAY_NIGHT, cap_period="entry_cycle")
        # period 1 12:00 -> 12:00: day 500 + 7 x 100 = 1200, night 500, day 08:00-12:00 500 + 3 x 100 = 800;
        # period 2 12:00 -> 13:00: the same day occurrence cut at the bound, its first hour again: 500
        assert fee(rule, "2026-11-22 12:00", "2026-11-23 13:00").total_fen == 1200 + 500 + 800 + 500

    def test_with_segments_an_earlier_entry_can_cost_less(self):
        """Known and documented: the periods follow the entry while segments follow the clock, so a bound
        inside a segment charges its first segment once more."""
        rule = with_(DAY_NIGHT, cap_period="entry_cycle")
        later = fee(rule, "2026-11-22 12:00", "2026-11-23 13:00").total_fen
        earlier = fee(rule, "2026-11-22 08:00", "2026-11-23 13:00").total_fen  # bound at 08:00: 1500+500+900
        assert earlier < later


class TestRounding:
    def test_minute_cuts_the_seconds_by_default(self):
        assert fee(WORKED, "2026-11-22 08:00:00", "2026-11-22 08:30:59").total_fen == 0

    def test_second_counts_a_started_minute(self):
        rule = with_(WORKED, rounding="second")
        assert fee(rule, "2026-11-22 08:00:00", "2026-11-22 08:30:00").total_fen == 0
        f = fee(rule, "2026-11-22 08:00:00", "2026-11-22 08:30:01")
        assert f.total_fen == 500  # past the 30 free minutes
        assert any(i.kind == "rounding" and "31 started min" in i.note for i in f.breakdown)
        # counted from the entry's seconds, not the clock's minutes
        assert fee(rule, "2026-11-22 08:00:59", "2026-11-22 08:30:59").total_fen == 0
        assert fee(rule, "2026-11-22 08:00:00", "2026-11-22 09:00:01").total_fen == 600

    def test_grace_counted_in_seconds(self):
        rule = with_(WORKED, rounding="second")
        paid = t("2026-11-22 11:00:30")
        assert fee(rule, "2026-11-22 08:00:00", "2026-11-22 11:10:30", paid_fen=800, paid_at=paid).due_fen == 0
        # 10 min 1 s after paying is beyond the grace: the whole stay 08:00 -> 11:10:31 is 800, paid 800
        late = fee(rule, "2026-11-22 08:00:00", "2026-11-22 11:10:31", paid_fen=800, paid_at=paid)
        assert (late.total_fen, late.due_fen) == (800, 0)
        assert any("beyond the 10 min grace" in i.note for i in late.breakdown)


class TestConventionsAreValidatedPerRuleAndOverride:
    def test_each_override_chooses_its_own(self):
        tariffs = Tariffs.model_validate(yaml.safe_load("""
default: {first_minutes: 60, first_fen: 500, increment_fen: 100, cap_fen: 2000}
overrides:
  - name: cycle
    when: {color: yellow}
    rule: {first_minutes: 60, first_fen: 500, increment_fen: 100, cap_fen: 2000, cap_period: entry_cycle,
           rounding: second, after_grace: restart}
"""))
        assert (tariffs.default.cap_period, tariffs.default.rounding, tariffs.default.after_grace) == \
            ("entry_24h", "minute", "difference")
        rule = tariffs.rule_for(color="yellow")
        assert (rule.cap_period, rule.rounding, rule.after_grace) == ("entry_cycle", "second", "restart")

    @pytest.mark.parametrize("key, value", [("cap_period", "entry_cycles"), ("rounding", "seconds"),
                                            ("rounding", 60), ("after_grace", "refund"), ("after_grace", None)])
    def test_unknown_values_name_the_key(self, key, value):
        with pytest.raises(ValidationError) as err:
            Tariffs.model_validate({"default": {"first_minutes": 60, "first_fen": 500},
                                    "overrides": [{"name": "x", "when": {"color": "green"},
                                                   "rule": {key: value}}]})
        [e] = err.value.errors()
        assert e["loc"] == ("overrides", 0, "rule", key)
