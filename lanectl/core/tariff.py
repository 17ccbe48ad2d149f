"""The fee engine: a lot's tariffs as validated config, and compute_fee() with a breakdown.

Pure: no clock reads, no I/O. Money is integer fen; config amounts are whole fen in keys ending `_fen`.

Semantics (operator's version with YAML examples in docs/tariffs.md):

* Whole minutes. Entry, exit and payment times are cut to the minute (seconds dropped), as the booth shows
  them (`rounding: minute`). With `rounding: second` the stay is counted from the seconds and a started minute
  counts: the exit (and payment) is put at the entry's minute plus the started minutes since the entry, and
  the grace after paying is compared in seconds. All durations below are in those whole minutes.
* Free minutes. A stay of at most `free_minutes` is free. A longer stay is charged from the entry
  (`deduct_free_minutes: false`, the common setting) or from entry + free minutes (`true`). Free minutes are
  given once per visit, at its start.
* Time tariff. From the charge start: a first segment (`first_minutes` for `first_fen`), then increments
  (`increment_minutes` for `increment_fen`); a started unit is charged whole (rounded up). The tariff runs on
  continuously: after 24 h it does not start again with a first segment.
* Day segments. With `segments`, each segment occurrence (e.g. today's 08:00-20:00) is priced on its own:
  its first segment from when the car's time in it starts, then its increments, capped by its own `cap_fen`.
* Flat fee. `flat_fen` is charged once per visit longer than the free minutes, whatever its length.
* Caps. Each unit is a charge at the minute it starts. The fee is the most that respects every cap at once:
  the charges in time order, each charged as far as the caps still allow - its segment occurrence's cap_fen,
  and `cap_fen` in any 24 h (`entry_24h`; so in each 24 h from the entry too) or per calendar day
  (`calendar_day`, local midnight to midnight; a run's increments restart at midnight, and it still costs at
  most its continuous tariff). A cap only ever lowers a fee; a long stay pays at most one cap per started
  period; a longer stay (later exit or earlier entry) never costs less. Why and how: above _fixed_day_caps.
* Entry cycles (`cap_period: entry_cycle`). Each 24 h from the entry is priced as a stay of its own with the
  whole rule (first segment, segment occurrences cut at the period bound, a flat fee again; free minutes only
  once, at the entry) and capped by `cap_fen`. A later exit never costs less; with day segments an earlier
  entry can (the bounds follow the entry, the segments the clock).
* Paid ahead. With a payment at `paid_at`, leaving within `free_out_minutes` (inclusive) charges nothing after
  the payment. Leaving later (`after_grace`): `difference` charges the whole stay as if there had been no
  payment, so what is due is fee(entry -> exit) - paid; `restart` charges the time from the payment moment
  again as a fresh run of the tariff (a new first segment, no free minutes), within the same caps. A payment
  made while the stay was still inside its free minutes changes nothing: leaving after the grace is charged
  as if there had been no payment.
  `due_fen = max(0, total_fen - paid_fen)`; an overpayment is not refunded here.
* Wall clock. Day segments and calendar days are read in `tz` (default: the timezone of `entered_at`); pass
  site-local aware datetimes.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Annotated, Any, Callable, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .plates import COLORS, normalize_color

DAY_MINUTES = 24 * 60
TARIFF_CLASSES = ("temporary", "stored_value")  # classes priced by a tariff (a card's uncovered time: temporary)


class TariffError(ValueError):
    """A stay the engine cannot price as given: naive or out-of-order times, a bad paid amount, an unknown
    class. Config errors are pydantic ValidationErrors instead (they name the key)."""


# ---------------------------------------------------------------- config value types

def _whole_fen(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"amounts are whole fen (5 元 is 500), got {v!r}")
    if v < 0:
        raise ValueError(f"an amount cannot be negative, got {v}")
    return v


def _whole_minutes(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"minutes must be a whole number >= 0, got {v!r}")
    return v


def _positive_minutes(v: Any) -> int:
    if _whole_minutes(v) == 0:
        raise ValueError("an increment must be at least 1 minute long")
    return v


_CLOCK_RE = re.compile(r"^([0-9]{1,2}):([0-5][0-9])$")


def _clock(v: Any) -> time:
    if isinstance(v, time):
        if v.second or v.microsecond or v.tzinfo:
            raise ValueError(f"a time of day is whole minutes without timezone, got {v!r}")
        return v
    # YAML 1.1 reads an unquoted 20:00 as the base-60 int 1200, which is exactly minutes after midnight.
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= DAY_MINUTES:
        return time((v // 60) % 24, v % 60)
    if isinstance(v, str):
        m = _CLOCK_RE.match(v.strip())
        if m and (int(m[1]) < 24 or v.strip() == "24:00"):
            return time(int(m[1]) % 24, int(m[2]))
    raise ValueError(f'a time of day like "08:00" (quote it in YAML), got {v!r}')


def _color(v: Any) -> Any:
    c = normalize_color(v) if isinstance(v, str) else None
    if c is None:
        raise ValueError(f"unknown plate colour {v!r}; one of {', '.join(COLORS)}")
    return c


Fen = Annotated[int, BeforeValidator(_whole_fen)]
Minutes = Annotated[int, BeforeValidator(_whole_minutes)]
PositiveMinutes = Annotated[int, BeforeValidator(_positive_minutes)]
ClockTime = Annotated[time, BeforeValidator(_clock)]
Color = Annotated[str, BeforeValidator(_color)]
Subtype = Literal["A", "B", "C", "D", "E"]


def _minute_of_day(t: time) -> int:
    return t.hour * 60 + t.minute


def _hhmm(minute_of_day: int) -> str:
    return f"{minute_of_day // 60:02d}:{minute_of_day % 60:02d}"


def _first_charge(first_minutes: int, first_fen: int, increment_fen: int) -> int:
    """What the first unit of a run costs: the first segment, or an increment when there is none."""
    return first_fen if first_minutes > 0 else increment_fen


def _first_needs_length(cls: type, v: int, info: ValidationInfo) -> int:
    """Shared by rules and day segments: a first-segment price needs a first-segment length."""
    if v > 0 and info.data.get("first_minutes") == 0:
        raise ValueError("first_fen needs first_minutes > 0")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- config models

class DaySegment(_Strict):
    """A part of the day with its own prices, e.g. day 08:00-20:00; `end` before `start` wraps past midnight."""

    name: str = Field(min_length=1)
    start: ClockTime
    end: ClockTime
    first_minutes: Minutes = 0
    first_fen: Fen = 0
    increment_minutes: PositiveMinutes = 60
    increment_fen: Fen = 0
    cap_fen: Optional[Fen] = None  # per occurrence of this segment

    @field_validator("end")
    @classmethod
    def _not_empty(cls, v: time, info: ValidationInfo) -> time:
        if info.data.get("start") == v:
            raise ValueError("a segment cannot start and end at the same time; for one all-day price use the "
                             "rule's own first_/increment_ keys instead of segments")
        return v

    _first_needs_length = field_validator("first_fen")(_first_needs_length)

    @field_validator("cap_fen")
    @classmethod
    def _cap_covers_first(cls, v: Optional[int], info: ValidationInfo) -> Optional[int]:
        d = info.data
        if v is not None and {"first_minutes", "first_fen", "increment_fen"} <= d.keys():
            first = _first_charge(d["first_minutes"], d["first_fen"], d["increment_fen"])
            if v < first:
                raise ValueError(f"cap_fen {v} is below the first charge of the segment ({first} fen)")
        return v

    @property
    def start_minute(self) -> int:
        return _minute_of_day(self.start)

    @property
    def length(self) -> int:
        return (_minute_of_day(self.end) - self.start_minute) % DAY_MINUTES

    @property
    def label(self) -> str:
        return f"{self.name} {_hhmm(self.start_minute)}-{_hhmm(_minute_of_day(self.end))}"

    @property
    def first_charge_fen(self) -> int:
        return _first_charge(self.first_minutes, self.first_fen, self.increment_fen)


_TIME_TARIFF_KEYS = ("first_minutes", "first_fen", "increment_minutes", "increment_fen")


class TariffRule(_Strict):
    """One tariff: free minutes, then a time tariff (plain, or day segments) or a flat fee, capped."""

    free_minutes: Minutes = 0
    deduct_free_minutes: bool = False
    first_minutes: Minutes = 0
    first_fen: Fen = 0
    increment_minutes: PositiveMinutes = 60
    increment_fen: Fen = 0
    flat_fen: Optional[Fen] = None
    segments: tuple[DaySegment, ...] = ()
    cap_fen: Optional[Fen] = None
    cap_period: Literal["entry_24h", "calendar_day", "entry_cycle"] = "entry_24h"
    rounding: Literal["minute", "second"] = "minute"  # how a stay becomes minutes (see module doc)
    free_out_minutes: Minutes = 10
    after_grace: Literal["difference", "restart"] = "difference"  # leaving after the grace, having paid ahead
    no_entry: Literal["fixed", "first_segment", "operator"] = "operator"
    no_entry_fen: Optional[Fen] = Field(None, validate_default=True)  # checked even when left out

    _first_needs_length = field_validator("first_fen")(_first_needs_length)

    @field_validator("segments")
    @classmethod
    def _tile_the_day(cls, segs: tuple[DaySegment, ...]) -> tuple[DaySegment, ...]:
        if not segs:
            return segs
        names = [s.name for s in segs]
        if len(set(names)) != len(names):
            raise ValueError(f"segment names must be unique: {names}")
        ordered = sorted(segs, key=lambda s: s.start_minute)
        for i, seg in enumerate(ordered):
            nxt = ordered[(i + 1) % len(ordered)]
            to_next = (nxt.start_minute - seg.start_minute) % DAY_MINUTES or DAY_MINUTES
            if len(ordered) > 1 and nxt.start_minute == seg.start_minute:
                to_next = 0
            if seg.length > to_next:
                raise ValueError(f"segments overlap: {seg.label} and {nxt.label}")
            if seg.length < to_next:
                gap_from = (seg.start_minute + seg.length) % DAY_MINUTES
                raise ValueError(f"segments leave {_hhmm(gap_from)}-{_hhmm(nxt.start_minute)} uncovered; "
                                 "they must tile the 24 h day without gaps or overlaps")
        return segs

    @field_validator("cap_fen")
    @classmethod
    def _cap_covers_first(cls, v: Optional[int], info: ValidationInfo) -> Optional[int]:
        if v is None:
            return v
        d = info.data
        firsts = [s.first_charge_fen for s in d.get("segments", ())]
        if d.get("flat_fen") is not None:
            firsts.append(d["flat_fen"])
        elif not d.get("segments") and {"first_minutes", "first_fen", "increment_fen"} <= d.keys():
            firsts.append(_first_charge(d["first_minutes"], d["first_fen"], d["increment_fen"]))
        if firsts and v < max(firsts):
            raise ValueError(f"cap_fen {v} is below the first charge of this tariff ({max(firsts)} fen)")
        return v

    @field_validator("no_entry_fen")
    @classmethod
    def _fixed_needs_amount(cls, v: Optional[int], info: ValidationInfo) -> Optional[int]:
        policy = info.data.get("no_entry")
        if policy == "fixed" and v is None:
            raise ValueError("no_entry: fixed needs no_entry_fen")
        if policy not in (None, "fixed") and v is not None:
            raise ValueError(f"no_entry_fen is only used with no_entry: fixed (this rule has {policy})")
        return v

    @model_validator(mode="after")
    def _one_kind_of_price(self) -> "TariffRule":
        given = [k for k in _TIME_TARIFF_KEYS if k in self.model_fields_set]
        if self.segments and (given or self.flat_fen is not None):
            extra = given + (["flat_fen"] if self.flat_fen is not None else [])
            raise ValueError(f"a rule with segments takes its prices from the segments; remove {', '.join(extra)}")
        if self.flat_fen is not None and given:
            raise ValueError(f"flat_fen is a price per visit; remove {', '.join(given)}")
        return self

    def first_charge_at(self, minute_of_day: int) -> int:
        """The first charge of a run starting at this local minute of the day (no-entry `first_segment`)."""
        if self.flat_fen is not None:
            return self.flat_fen
        for seg in self.segments:
            if (minute_of_day - seg.start_minute) % DAY_MINUTES < seg.length:
                return seg.first_charge_fen
        return _first_charge(self.first_minutes, self.first_fen, self.increment_fen)


class RuleMatch(_Strict):
    """When an override applies: every key given must match; keys left out match anything."""

    vehicle_class: Optional[Literal["temporary", "stored_value"]] = None
    color: Optional[Color] = None
    subtype: Optional[Subtype] = None

    @model_validator(mode="after")
    def _not_empty(self) -> "RuleMatch":
        if not self.model_fields_set:
            raise ValueError("when needs at least one of vehicle_class, color, subtype")
        return self

    def keys(self) -> dict[str, str]:
        return {k: v for k, v in (("vehicle_class", self.vehicle_class), ("color", self.color),
                                  ("subtype", self.subtype)) if v is not None}


class TariffOverride(_Strict):
    name: str = Field(min_length=1)
    when: RuleMatch
    rule: TariffRule


class Tariffs(_Strict):
    """The site YAML `tariffs:` section: a default rule and overrides; the first matching override wins."""

    default: TariffRule
    overrides: tuple[TariffOverride, ...] = ()

    @field_validator("overrides")
    @classmethod
    def _reachable(cls, ovs: tuple[TariffOverride, ...]) -> tuple[TariffOverride, ...]:
        for i, later in enumerate(ovs):
            for earlier in ovs[:i]:
                if later.name == earlier.name:
                    raise ValueError(f"override name {later.name!r} is used twice")
                if earlier.when.keys().items() <= later.when.keys().items():
                    raise ValueError(f"override {later.name!r} can never apply: {earlier.name!r} above it "
                                     "matches every car it would match (put the more specific one first)")
        return ovs

    def select(self, vehicle_class: str = "temporary", color: Optional[str] = None,
               subtype: Optional[str] = None) -> tuple[str, TariffRule]:
        """(name, rule) for a car: the first override whose `when` matches, else ("default", default)."""
        car = {"vehicle_class": vehicle_class, "color": normalize_color(color or ""), "subtype": subtype}
        for ov in self.overrides:
            if all(car[k] == v for k, v in ov.when.keys().items()):
                return ov.name, ov.rule
        return "default", self.default

    def rule_for(self, vehicle_class: str = "temporary", color: Optional[str] = None,
                 subtype: Optional[str] = None) -> TariffRule:
        return self.select(vehicle_class, color, subtype)[1]


# ---------------------------------------------------------------- results

@dataclass(frozen=True, slots=True)
class BreakdownItem:
    """One line of why a fee is what it is. The `fen` of all items of a Fee add up to its total_fen.

    kind: free | grace | rounding | tariff | segment | flat | segment_cap | cap | no_entry (engine), plus rule |
    monthly | whitelist | stored_value | operator | blacklist added by the rules; notes are human text."""

    kind: str
    start: datetime
    end: datetime
    fen: int
    note: str

    def line(self) -> str:
        span = f"{self.start:%Y-%m-%d %H:%M} - {self.end:%Y-%m-%d %H:%M}"
        return f"{span}  {self.kind:<12} {self.fen:>7} fen  {self.note}"


@dataclass(frozen=True, slots=True)
class Fee:
    total_fen: int  # the fee for the stay
    paid_fen: int  # paid ahead
    due_fen: int  # what is still owed: max(0, total - paid)
    breakdown: tuple[BreakdownItem, ...] = ()


def make_fee(items: list[BreakdownItem] | tuple[BreakdownItem, ...], paid_fen: int) -> Fee:
    total = sum(i.fen for i in items)
    return Fee(total, paid_fen, max(0, total - paid_fen), tuple(items))


# ---------------------------------------------------------------- time in whole minutes

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MINUTE = timedelta(minutes=1)


def _require_aware(name: str, dt: datetime) -> None:
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise TariffError(f"{name} must be a timezone-aware datetime, got {dt!r}")


def _to_minute(dt: datetime) -> int:
    """Absolute whole minutes since the epoch (seconds cut). Subtracting in UTC avoids wall-clock arithmetic."""
    return (dt - _EPOCH) // _MINUTE


def _from_minute(m: int, tz: tzinfo) -> datetime:
    return (_EPOCH + m * _MINUTE).astimezone(tz)


def _local_minute(d: date, minute_of_day: int, tz: tzinfo) -> int:
    return _to_minute(datetime.combine(d, time(minute_of_day // 60, minute_of_day % 60), tzinfo=tz))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------- runs: continuous stretches of one price schedule

@dataclass(frozen=True, slots=True)
class _Run:
    start: int
    end: int
    first_minutes: Optional[int]  # None: flat, one charge for the whole run
    first_fen: int
    increment_minutes: int
    increment_fen: int
    cap_fen: Optional[int]  # segment cap, shared by runs of the same group
    group: int
    kind: str
    label: str

    def charges_before(self, t: int) -> int:
        """Raw fen of the units of this run that start before minute t (a started unit is charged whole)."""
        if t <= self.start or self.end <= self.start:
            return 0
        if self.first_minutes is None:
            return self.first_fen
        first, f = self.first_minutes, self.first_fen if self.first_minutes > 0 else 0
        units = min(_ceil_div(max(0, self.end - self.start - first), self.increment_minutes),
                    _ceil_div(max(0, t - self.start - first), self.increment_minutes))
        return f + units * self.increment_fen

    def piece_charges(self, t0: int, t1: int) -> int:
        """Raw fen of the part [t0, t1) of this run that lies in one calendar day, metered from where the part
        starts: the part holding the run's start is the run itself (first segment, its grid); a later part starts
        at a midnight t0 and restarts the increments there (or where the first segment ends, if later)."""
        t1 = min(t1, self.end)
        if t0 <= self.start:
            return self.charges_before(t1)
        if self.first_minutes is None:
            return 0
        anchor = max(t0, self.start + self.first_minutes)
        return _ceil_div(max(0, t1 - anchor), self.increment_minutes) * self.increment_fen

    def next_charge(self, t: int) -> Optional[tuple[int, int]]:
        """(minute, fen) of the first unit of this run starting at or after minute t, or None."""
        if t <= self.start:
            if self.first_minutes is None or self.first_minutes > 0:
                return self.start, self.first_fen
            return self.start, self.increment_fen
        if self.first_minutes is None or not self.increment_fen:
            return None  # a flat run has one charge; free increments need no walking
        first_inc = self.start + (self.first_minutes or self.increment_minutes)
        m = first_inc if t <= first_inc else first_inc + _ceil_div(t - first_inc, self.increment_minutes) * \
            self.increment_minutes
        return (m, self.increment_fen) if m < self.end else None

    def describe(self) -> str:
        if self.first_minutes is None:
            return f"{self.label}: flat {self.first_fen} fen per visit"
        parts = [f"first {self.first_minutes} min {self.first_fen} fen"] if self.first_minutes > 0 else []
        n = _ceil_div(max(0, self.end - self.start - self.first_minutes), self.increment_minutes)
        if n:
            parts.append(f"{n} x {self.increment_minutes} min x {self.increment_fen} fen")
        return f"{self.label}: {' + '.join(parts) or 'nothing'}"


def _runs(rule: TariffRule, a: int, b: int, restart: Optional[int], tz: tzinfo) -> list[_Run]:
    """The runs that price [a, b); a run is cut at `restart` (the payment) and starts afresh there."""
    after = " (after payment)"
    if not rule.segments:
        kind = "flat" if rule.flat_fen is not None else "tariff"
        first = None if rule.flat_fen is not None else rule.first_minutes
        first_fen = rule.flat_fen if rule.flat_fen is not None else rule.first_fen
        cuts = [(a, restart, ""), (restart, b, after)] if restart is not None else [(a, b, "")]
        return [_Run(s, e, first, first_fen, rule.increment_minutes, rule.increment_fen, None, i, kind, kind + note)
                for i, (s, e, note) in enumerate(cuts)]
    runs: list[_Run] = []
    segs = [(seg, seg.start_minute, seg.length, seg.label) for seg in sorted(rule.segments,
                                                                             key=lambda s: s.start_minute)]
    day = _from_minute(a, tz).date() - timedelta(days=1)  # yesterday's wrapping segment may still run
    last_day = _from_minute(b, tz).date()
    group = 0
    while day <= last_day:
        for seg, start_minute, length, label in segs:
            end_day = day + timedelta(days=1) if start_minute + length >= DAY_MINUTES else day
            s = max(a, _local_minute(day, start_minute, tz))
            e = min(b, _local_minute(end_day, (start_minute + length) % DAY_MINUTES, tz))
            if s >= e:
                continue
            group += 1
            if restart is not None and s < restart < e:
                pieces = [(s, restart, ""), (restart, e, after)]
            else:
                pieces = [(s, e, after if restart is not None and s >= restart else "")]
            for ps, pe, note in pieces:
                runs.append(_Run(ps, pe, seg.first_minutes, seg.first_fen, seg.increment_minutes,
                                 seg.increment_fen, seg.cap_fen, group, "segment", label + note))
        day += timedelta(days=1)
    return runs


def _day_bounds(entry: int, b: int, tz: tzinfo) -> list[int]:
    """Local midnights from the one starting the entry's day to the first at or after b."""
    day = _from_minute(entry, tz).date()
    bounds = [_local_minute(day, 0, tz)]
    while bounds[-1] < b:
        day += timedelta(days=1)
        bounds.append(_local_minute(day, 0, tz))
    return bounds


# Period caps. Each unit of the tariff is a charge at the minute it starts. The fee is the LARGEST amount that
# respects every cap at once, found greedily: the charges in time order, each charged as far as all caps still
# allow (its segment occurrence's cap_fen; cap_fen per calendar day, or in any 24 h; for calendar days also the
# run's continuous tariff). Each limit holds a stretch of consecutive charges, so charging the earliest charge
# as much as possible is never worse: every full limit holding it also holds the next charge after it that is
# charged at all, which can give way. So the greedy reaches the maximum; the tests check it against the
# cheapest cover, the same fee read as "each charge is paid unless a cap is paid for a stretch holding it".
#   Why a longer stay never costs less: its charges are the shorter stay's plus some, under the same or looser
# limits, so what the shorter stay was charged is still allowed and the maximum can only grow. Only the charges
# of the run holding the entry move (earlier, with it): per calendar day they stay in their day (a first charge
# moving back over midnight lands in a day holding nothing else, and no cap is below a first charge), and in
# any 24 h they only move away from the later ones, so no 24 h holds more of them than before. That is what
# decides both kinds of period:
# * calendar_day: a run is metered per day. At midnight the increments restart (the unit running at midnight
#   is charged in the day it started, a new one starts at 00:00, the first segment is not charged again), so a
#   day's charges do not depend on when the car came. On the continuous grid, entering a minute earlier moves
#   every unit a minute earlier; a unit starting at 00:00 - maybe the only charge of the last day - then starts
#   at 23:59 on a day already at its cap, and the fee drops. Metering per day can round up one unit more per
#   midnight, so the run's continuous tariff stays a limit: the cap never raises a fee.
# * entry_24h: at most cap_fen in ANY 24 h. Periods counted from the entry move with it while day segments
#   stay on the wall clock: entering a minute earlier can put two charges that were in two periods into one
#   period at its cap, and no rule capping each period from the entry avoids that. Those periods are among the
#   24 h limited here, so this never charges more than they did.

def _fixed_day_caps(cap: int, runs: list[_Run], bounds: list[int], run_left: list[int],
                    group_left: dict[int, Optional[int]]) -> list[tuple[int, int, int, int]]:
    """(run, day, raw, charged) for each part of a run in one calendar day, charged greedily in time order."""
    day_left = [cap] * (len(bounds) - 1)
    blocks = []
    for i, run in enumerate(runs):
        j = bisect_right(bounds, run.start) - 1
        while j < len(day_left) and bounds[j] < run.end:
            raw = run.piece_charges(max(run.start, bounds[j]), bounds[j + 1])
            left = group_left[run.group]
            x = min(raw, run_left[i], day_left[j], raw if left is None else left)
            run_left[i] -= x
            day_left[j] -= x
            if left is not None:
                group_left[run.group] = left - x
            blocks.append((i, j, raw, x))
            j += 1
    return blocks


def _any_24h_plain(cap: int, run: _Run) -> int:
    """The most one plain or flat run may charge with at most `cap` in any 24 h, in closed form (its cheapest
    cover: each unit paid, or any 24 h replaced by the cap; see _any_24h)."""
    if run.first_minutes is None:
        return min(cap, run.first_fen)
    d, c = run.increment_minutes, run.increment_fen
    head_fen, grid_from = (run.first_fen, run.first_minutes) if run.first_minutes > 0 else (c, d)
    n = _ceil_div(max(0, run.end - run.start - grid_from), d)  # units after the first one, every d minutes
    per_window = _ceil_div(DAY_MINUTES, d)  # the most of them 24 h can hold

    def grid(r: int) -> int:  # r of those units: k whole 24 h at the cap, the rest paid or capped too
        return min(k * cap + c * max(0, r - k * per_window) for k in {0, r // per_window, _ceil_div(r, per_window)})

    with_head = 0 if grid_from >= DAY_MINUTES else min(n, _ceil_div(DAY_MINUTES - grid_from, d))
    return min(head_fen + grid(n), cap + grid(n - with_head))


def _any_24h(cap: int, runs: list[_Run], group_left: dict[int, Optional[int]]) -> int:
    """The fee with at most `cap` in any 24 h: the units in time order, each charged as far as that and its
    segment occurrence's cap still allow. Units charged in a row are kept as one block (first minute, step,
    count, fen each) so a long stay costs about one step per block, not one per unit."""
    if len(runs) == 1 and runs[0].cap_fen is None:
        return _any_24h_plain(cap, runs[0])
    window: deque[list[int]] = deque()  # blocks charged in the last 24 h: [first minute, step, count, fen]
    in_window = total = 0
    for run in runs:
        t = run.start
        while cap > 0:
            nxt = run.next_charge(t)
            left = group_left[run.group]
            if nxt is None or left == 0:
                break
            m, fen = nxt
            while window and window[0][0] <= m - DAY_MINUTES:  # charges 24 h old leave the window
                first, step, count, each = window[0]
                gone = min(count, (m - DAY_MINUTES - first) // step + 1)
                in_window -= gone * each
                if gone == count:
                    window.popleft()
                else:
                    window[0][0], window[0][2] = first + gone * step, count - gone
            room = cap - in_window if left is None else min(cap - in_window, left)
            if in_window >= cap:  # nothing more until the oldest charge in the window is 24 h old
                t = window[0][0] + DAY_MINUTES
                continue
            if fen == 0:
                t = m + 1
                continue
            if m == run.start or fen > room:  # the run's first unit, or one charged in part
                count, step, each = 1, 1, min(fen, room)
            else:  # units that fit whole: `fit` of them on the room there is (the window only loses charges)
                step, each, fit = run.increment_minutes, fen, room // fen
                if window and window[0][1] == step and window[0][3] == fen:
                    # ... and when the oldest block in the window is units like these (same step and fen), each
                    # of its units leaving makes room for one more of ours; `late` of ours come before its first
                    # one leaves, so the room must carry those
                    late = -((m - DAY_MINUTES - window[0][0]) // step) - 1
                    if fit > late:
                        fit += window[0][2]
                count = min(fit, _ceil_div(run.end - m, step), fit if left is None else left // fen)
            window.append([m, step, count, each])
            in_window += count * each
            total += count * each
            if left is not None:
                group_left[run.group] = left - count * each
            t = m + (count - 1) * step + 1
    return total


def _run_lines(runs: list[_Run], at: Callable[[int], datetime]) -> list[BreakdownItem]:
    """Each run's line, and a line where its segment occurrence's cap takes some off."""
    items: list[BreakdownItem] = []
    cap_left: dict[int, Optional[int]] = {}
    for run in runs:
        raw = run.charges_before(run.end)
        left = cap_left.get(run.group, run.cap_fen)
        charged = raw if left is None else min(left, raw)
        items.append(BreakdownItem(run.kind, at(run.start), at(run.end), raw, run.describe()))
        if charged < raw:
            items.append(BreakdownItem("segment_cap", at(run.start), at(run.end), charged - raw,
                                       f"{run.label}: cap {run.cap_fen} fen per occurrence (charged {raw})"))
        if left is not None:
            cap_left[run.group] = left - charged
    return items


def _price_cycles(rule: TariffRule, entry: int, a: int, b: int, restart: Optional[int],
                  tz: tzinfo) -> list[BreakdownItem]:
    """entry_cycle: each 24 h from the entry is priced as a stay of its own with the whole rule (first segment,
    segment occurrences, a flat fee again; the free minutes only once, at the entry), capped by cap_fen."""
    at = lambda m: _from_minute(m, tz)  # noqa: E731
    items: list[BreakdownItem] = []
    periods = _ceil_div(b - entry, DAY_MINUTES)
    for k in range(periods):
        ps, pe = max(a, entry + k * DAY_MINUTES), min(b, entry + (k + 1) * DAY_MINUTES)
        if ps >= pe:
            continue
        cut = restart if restart is not None and ps < restart < pe else None
        runs = _runs(rule, ps, pe, cut, tz)
        if periods > 1:
            runs = [replace(run, label=f"{run.label}, 24 h period {k + 1}") for run in runs]
        lines = _run_lines(runs, at)
        asked = sum(i.fen for i in lines)
        items += lines
        if rule.cap_fen is not None and asked > rule.cap_fen:
            items.append(BreakdownItem("cap", at(ps), at(pe), rule.cap_fen - asked,
                                       f"cap {rule.cap_fen} fen per 24 h from the entry, period {k + 1} "
                                       f"(asked {asked}, charged {rule.cap_fen})"))
    return items


def _price_runs(rule: TariffRule, runs: list[_Run], entry: int, b: int, tz: tzinfo) -> list[BreakdownItem]:
    local: dict[int, datetime] = {}  # item bounds repeat (run end = next run start): convert each once

    def at(m: int) -> datetime:
        if m not in local:
            local[m] = _from_minute(m, tz)
        return local[m]

    items = _run_lines(runs, at)
    raws = [run.charges_before(run.end) for run in runs]
    cap = rule.cap_fen
    if cap is None:
        return items

    group_left = {run.group: run.cap_fen for run in runs}
    if rule.cap_period == "entry_24h":  # one line: the cap has no periods of its own
        asked = sum(i.fen for i in items)
        charged = _any_24h(cap, runs, group_left)
        if charged < asked:
            items.append(BreakdownItem("cap", at(runs[0].start), at(b), charged - asked,
                                       f"cap {cap} fen in any 24 h (asked {asked}, charged {charged})"))
        return items
    bounds = _day_bounds(entry, b, tz)
    blocks = _fixed_day_caps(cap, runs, bounds, list(raws), dict(group_left))
    # The lines above add up to what the segment caps leave. Say per day what its cap took off: fill the
    # charges up again as far as the run and segment limits allow (any such filling adds up to the same total);
    # the days that were cut are the ones where the cap applied.
    run_slack = list(raws)
    for i, _, _, x in blocks:
        run_slack[i] -= x
        if group_left[runs[i].group] is not None:
            group_left[runs[i].group] -= x  # type: ignore[operator]
    asked: dict[int, int] = {}
    charged_in: dict[int, int] = {}
    for i, p, raw, x in blocks:
        g = runs[i].group
        extra = min(raw - x, run_slack[i])
        if group_left[g] is not None:
            extra = min(extra, group_left[g])  # type: ignore[type-var]
            group_left[g] -= extra  # type: ignore[operator]
        run_slack[i] -= extra
        asked[p] = asked.get(p, 0) + x + extra
        charged_in[p] = charged_in.get(p, 0) + x
    for p in sorted(asked):
        if charged_in[p] < asked[p]:
            items.append(BreakdownItem("cap", at(max(bounds[p], entry)), at(min(bounds[p + 1], b)),
                                       charged_in[p] - asked[p],
                                       f"cap {cap} fen per calendar day (asked {asked[p]}, charged {charged_in[p]})"))
    return items


# ---------------------------------------------------------------- the engine

def left_within_grace(rule: TariffRule, paid_at: datetime, left_at: datetime) -> bool:
    """Whether a car that paid at paid_at and leaves at left_at is within the rule's `free_out_minutes`, counted
    as the rule counts time (whole minutes of the clock, or from the seconds with `rounding: second`)."""
    if rule.rounding == "second":
        return left_at - paid_at <= timedelta(minutes=rule.free_out_minutes)
    return _to_minute(left_at) <= _to_minute(paid_at) + rule.free_out_minutes


def _started_minutes(span: timedelta) -> int:
    return -(-span // _MINUTE)


def compute_fee(rule: TariffRule, entered_at: datetime, left_at: datetime, *, paid_fen: int = 0,
                paid_at: Optional[datetime] = None, tz: Optional[tzinfo] = None) -> Fee:
    """The fee for a stay from entered_at to left_at under `rule`, with its breakdown (see module doc)."""
    _require_aware("entered_at", entered_at)
    _require_aware("left_at", left_at)
    if paid_at is not None:
        _require_aware("paid_at", paid_at)
    if isinstance(paid_fen, bool) or not isinstance(paid_fen, int) or paid_fen < 0:
        raise TariffError(f"paid_fen must be a whole number of fen >= 0, got {paid_fen!r}")
    tz = tz or entered_at.tzinfo
    assert tz is not None
    if left_at < entered_at:
        raise TariffError(f"left_at {left_at.isoformat()} is before entered_at {entered_at.isoformat()}")
    if rule.rounding == "second":  # started minutes of the stay, on the minute grid of the entry
        entry = _to_minute(entered_at)
        end = entry + _started_minutes(left_at - entered_at)
        outside = paid_at is not None and not entered_at <= paid_at <= left_at
        pay = None if paid_at is None or outside else entry + _started_minutes(paid_at - entered_at)
    else:
        entry, end = _to_minute(entered_at), _to_minute(left_at)
        pay = None if paid_at is None else _to_minute(paid_at)
        outside = pay is not None and not entry <= pay <= end
    if outside:
        raise TariffError(f"paid_at {paid_at.isoformat()} is outside the stay")  # type: ignore[union-attr]
    at = lambda m: _from_minute(m, tz)  # noqa: E731
    free = rule.free_minutes
    items: list[BreakdownItem] = []
    if rule.rounding == "second":
        items.append(BreakdownItem("rounding", at(entry), at(end), 0,
                                   f"stay of {end - entry} started min, counted from the seconds"))

    restart = None
    if pay is not None:
        assert paid_at is not None
        grace = rule.free_out_minutes
        if left_within_grace(rule, paid_at, left_at):
            items.append(BreakdownItem("grace", at(pay), at(end), 0,
                                       f"left {end - pay} min after paying, within the {grace} min grace: "
                                       "time after the payment is not charged"))
            end = pay
        elif pay - entry > free and rule.after_grace == "restart":
            restart = pay
            items.append(BreakdownItem("grace", at(pay), at(end), 0,
                                       f"left {end - pay} min after paying, beyond the {grace} min grace: "
                                       "charged again from the payment (after_grace: restart)"))
        elif pay - entry > free:
            items.append(BreakdownItem("grace", at(pay), at(end), 0,
                                       f"left {end - pay} min after paying, beyond the {grace} min grace: the whole "
                                       "stay is charged, less what was paid (after_grace: difference)"))
        else:
            items.append(BreakdownItem("grace", at(pay), at(end), 0,
                                       f"paid within the free minutes and left {end - pay} min later, beyond the "
                                       f"{grace} min grace: charged as if there had been no payment"))

    if end - entry <= free:
        items.append(BreakdownItem("free", at(entry), at(end), 0,
                                   f"stay of {end - entry} min within {free} free minutes"))
        return make_fee(items, paid_fen)
    charge_from = entry + free if rule.deduct_free_minutes else entry
    if free:
        how = "deducted" if rule.deduct_free_minutes else "not deducted: the stay is longer"
        items.append(BreakdownItem("free", at(entry), at(entry + free), 0, f"{free} free minutes {how}"))
    if rule.cap_period == "entry_cycle":
        items += _price_cycles(rule, entry, charge_from, end, restart, tz)
    else:
        runs = _runs(rule, charge_from, end, restart, tz)
        items += _price_runs(rule, runs, entry, end, tz)
    return make_fee(items, paid_fen)


def compute_no_entry_fee(rule: TariffRule, left_at: datetime, *, paid_fen: int = 0,
                         tz: Optional[tzinfo] = None) -> Optional[Fee]:
    """The fee for a car leaving without an entry record, or None when the rule hands it to the operator."""
    _require_aware("left_at", left_at)
    if rule.no_entry == "operator":
        return None
    local = left_at.astimezone(tz or left_at.tzinfo)
    if rule.no_entry == "fixed":
        fen, note = rule.no_entry_fen or 0, "no entry record: fixed amount"
    else:
        fen, note = rule.first_charge_at(local.hour * 60 + local.minute), "no entry record: first segment price"
    return make_fee([BreakdownItem("no_entry", local, local, fen, note)], paid_fen)
