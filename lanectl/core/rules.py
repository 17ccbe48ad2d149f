"""Vehicle classes of a lot (site YAML `vehicles:`) and RulesPolicy, the Policy the lane uses with a tariff.

Precedence for a plate: blacklist (refused at entry; at exit flagged and charged as its other class), then
whitelist (free), monthly card, stored value, temporary. A plate may be in only one of whitelist / monthly /
stored_value, and on one card. Pure: times come in as arguments; card dates are read in `tz` (default: the
timezone of the datetimes passed in).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from .plates import (DEFAULT_SPECIAL_PREFIXES, classify_plate, is_valid_plate, normalize_color, normalize_plate,
                     normalize_special_prefix)
from .policy import EntryDecision, ExitQuote, Present
from .tariff import (TARIFF_CLASSES, BreakdownItem, Color, Fee, Fen, Subtype, TariffError, Tariffs, compute_fee,
                     compute_no_entry_fee, left_within_grace, make_fee)


# A listed plate of a prefix the site names (military VA12345) passes this shape check; whether it is a plate
# at this site is checked against `special_prefixes` once the section is read (_listed_plates_are_plates_here).
_SPECIAL_SHAPE = re.compile(r"^[A-Z\u4e00-\u9fff]{1,3}[0-9A-Z\u4e00-\u9fff]{4,8}$")


def _plate(v: Any) -> str:
    p = normalize_plate(v) if isinstance(v, str) else None
    if not p or not (is_valid_plate(p) or _SPECIAL_SHAPE.match(p)):
        raise ValueError(f"not a plate (a plate-less car cannot be listed): {v!r}")
    return p


def _days(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"days must be a whole number >= 0, got {v!r}")
    return v


Plate = Annotated[str, BeforeValidator(_plate)]
SpecialPrefix = Annotated[str, BeforeValidator(lambda v: normalize_special_prefix(v) if isinstance(v, str) else v)]


def _unique_plate_keys(v: Any) -> Any:
    """Normalize plate keys before pydantic does, so two spellings of one plate are an error, not a merge."""
    if not isinstance(v, dict):
        return v
    seen: dict[str, Any] = {}
    for key in v:
        p = _plate(key)
        if p in seen:
            raise ValueError(f"plate {p} is listed twice ({seen[p]!r} and {key!r})")
        seen[p] = key
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MonthlyCard(_Strict):
    """A monthly card, valid from `start` 00:00 to the end of `end` plus `grace_days` whole days.

    `spaces` (多位多车): how many of the card's cars may park as monthly at once; a car arriving while
    `spaces` of its card's cars are inside pays as temporary. None: every plate has its own space."""

    card_id: str = Field(min_length=1)
    plates: tuple[Plate, ...] = Field(min_length=1)
    start: date
    end: date
    grace_days: Annotated[int, BeforeValidator(_days)] = 0
    spaces: Optional[int] = Field(None, ge=1)

    @field_validator("plates")
    @classmethod
    def _distinct(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"a plate is listed twice on the card: {list(v)}")
        return v

    @field_validator("end")
    @classmethod
    def _after_start(cls, v: date, info: Any) -> date:
        start = info.data.get("start")
        if start is not None and v < start:
            raise ValueError(f"end {v} is before start {start}")
        return v

    @field_validator("spaces")
    @classmethod
    def _not_more_than_plates(cls, v: Optional[int], info: Any) -> Optional[int]:
        plates = info.data.get("plates", ())
        if v is not None and plates and v > len(plates):
            raise ValueError(f"spaces {v} is more than the card's {len(plates)} plate(s)")
        return v

    def coverage(self, tz: tzinfo) -> tuple[datetime, datetime]:
        """[from, until) during which the card's cars park free (grace days included)."""
        return (datetime.combine(self.start, time(0), tzinfo=tz),
                datetime.combine(self.end + timedelta(days=1 + self.grace_days), time(0), tzinfo=tz))


class WhitelistEntry(_Strict):
    kind: Literal["free", "vip", "police", "special"] = "free"  # 免费车 贵宾车 军警车 特种车
    label: str = ""  # shown at the lane instead of the default greeting


class VehicleRules(_Strict):
    """The site YAML `vehicles:` section. Plates are normalized on load; amounts are whole fen."""

    allow_temporary: bool = True
    monthly: tuple[MonthlyCard, ...] = ()
    whitelist: dict[Plate, WhitelistEntry] = {}
    blacklist: dict[Plate, Annotated[str, Field(min_length=1)]] = {}  # plate -> reason (for the operator)
    # plate -> opening balance: seeds the store's balance ledger once per plate; afterwards the ledger (debits at
    # the exit lane, `lanectl topup`) is the truth, so a restart never resets a balance
    stored_value: dict[Plate, Fen] = {}
    plate_subtypes: dict[Plate, Subtype] = {}  # tariff subtype A-E by plate ...
    color_subtypes: dict[Color, Subtype] = {}  # ... else by plate colour
    # Plates that start with no province but are real here (armed police WJ, embassy 使, military "VA" ...): a
    # reading with any other first character is unreadable and goes to the booth (core.plates.classify_plate).
    special_prefixes: tuple[SpecialPrefix, ...] = DEFAULT_SPECIAL_PREFIXES

    @field_validator("whitelist", mode="before")
    @classmethod
    def _whitelist_shorthand(cls, v: Any) -> Any:
        v = _unique_plate_keys(v)
        return {k: ({} if e is None else e) for k, e in v.items()} if isinstance(v, dict) else v

    @field_validator("blacklist", "stored_value", "plate_subtypes", mode="before")
    @classmethod
    def _plate_keys(cls, v: Any) -> Any:
        return _unique_plate_keys(v)

    @model_validator(mode="after")
    def _one_class_per_plate(self) -> "VehicleRules":
        owner: dict[str, str] = {}
        for card in self.monthly:
            for p in card.plates:
                if p in owner:
                    raise ValueError(f"plate {p} is on cards {owner[p]!r} and {card.card_id!r}; "
                                     "renew a card by changing its end date")
                owner[p] = card.card_id
        ids = [c.card_id for c in self.monthly]
        if len(set(ids)) != len(ids):
            raise ValueError(f"monthly card ids must be unique: {ids}")
        for section in ("whitelist", "stored_value"):
            for p in getattr(self, section):
                if p in owner:
                    raise ValueError(f"plate {p} is in {section} and in {owner[p]!r}; give each plate one class")
                owner[p] = section
        return self

    @model_validator(mode="after")
    def _listed_plates_are_plates_here(self) -> "VehicleRules":
        """A listed plate the lane would find unreadable (no province, no special prefix of this site) would
        never reach these rules: a mistake in the list, said now rather than at the barrier."""
        listed = [("monthly", p) for card in self.monthly for p in card.plates]
        listed += [(section, p) for section in ("whitelist", "blacklist", "stored_value", "plate_subtypes")
                   for p in getattr(self, section)]
        for section, p in listed:
            if classify_plate(p, self.special_prefixes) == "unreadable":
                raise ValueError(f"{section}: {p} is no plate at this lot (a province first, or one of "
                                 f"special_prefixes {list(self.special_prefixes)}); the lane would send that "
                                 "reading to the booth, never to these rules")
        return self


@dataclass(frozen=True, slots=True)
class CardRenewal:
    """A monthly card paid for on a platform (Bolink 5.8 monthcard_pay): which card, and the period bought."""

    card_id: str
    plate: str
    start: Optional[date]
    end: date


class RenewalError(ValueError):
    """A renewal that cannot be applied to the lot's vehicle rules (kept on the books, applied by hand)."""


def renew_card(vehicles: VehicleRules, renewal: CardRenewal) -> tuple[VehicleRules, MonthlyCard]:
    """The vehicle rules with the renewal applied, and the card as it is now.

    The card is found by its id, else by the plate. Its period grows to cover the one bought (start moves
    earlier, end later, never the other way: a late or repeated renewal cannot shorten a card). A renewal for
    no known card creates one for the plate. Renewals are normally back to back; a gap between the old end
    and the new start counts as covered (documented in docs/tariffs.md)."""
    plate = normalize_plate(renewal.plate)
    cards = list(vehicles.monthly)
    index = next((i for i, c in enumerate(cards) if renewal.card_id and c.card_id == renewal.card_id), None)
    if index is None and plate:
        index = next((i for i, c in enumerate(cards) if plate in c.plates), None)
    if index is None:
        if not plate:
            raise RenewalError(f"renewal of unknown card {renewal.card_id!r} names no plate")
        card = MonthlyCard(card_id=renewal.card_id or f"platform_{plate}", plates=(plate,),
                           start=renewal.start or renewal.end, end=renewal.end)
        cards.append(card)
    else:
        old = cards[index]
        start = min(old.start, renewal.start) if renewal.start else old.start
        card = old.model_copy(update={"start": start, "end": max(old.end, renewal.end)})
        cards[index] = card
    try:
        return VehicleRules.model_validate({**vehicles.model_dump(), "monthly": [c.model_dump() for c in cards]}), card
    except ValueError as exc:
        raise RenewalError(f"renewal of card {card.card_id} for {plate or '?'} conflicts with the vehicle "
                           f"rules: {exc}") from None


@dataclass(frozen=True, slots=True)
class ExitAssessment:
    """What RulesPolicy decided for a leaving car, with the full Fee (ExitQuote keeps text lines)."""

    vehicle_class: str
    reason: str
    fee: Fee
    flags: tuple[str, ...] = ()
    needs_operator: bool = False

    def quote(self) -> ExitQuote:
        return ExitQuote(self.fee.due_fen, self.fee.total_fen, self.fee.paid_fen, self.vehicle_class,
                         self.reason, tuple(i.line() for i in self.fee.breakdown), self.needs_operator,
                         self.flags)


_GREETING = {"free": "免费车 欢迎光临", "vip": "贵宾车 欢迎光临", "police": "军警车 欢迎光临",
             "special": "特种车 欢迎光临"}


def _reason(fee: Fee) -> str:
    return "zero_fee" if fee.total_fen == 0 else "paid_ahead" if fee.due_fen == 0 else "fee"


@dataclass(frozen=True)
class RulesPolicy:
    """Policy (core/policy.py) from a lot's Tariffs and VehicleRules."""

    tariffs: Tariffs
    vehicles: VehicleRules
    tz: Optional[tzinfo] = None  # site timezone for card dates and day segments; None: the datetimes' own
    _cards: dict[str, MonthlyCard] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cards", {p: c for c in self.vehicles.monthly for p in c.plates})

    def _site_tz(self, at: datetime) -> tzinfo:
        if at.tzinfo is None or at.utcoffset() is None:
            raise TariffError(f"times must be timezone-aware, got {at!r}")
        return self.tz or at.tzinfo

    def card_of(self, plate: str) -> Optional[MonthlyCard]:
        return self._cards.get(normalize_plate(plate))

    def subtype_of(self, plate: str, color: str) -> Optional[str]:
        v = self.vehicles
        return v.plate_subtypes.get(normalize_plate(plate)) or v.color_subtypes.get(normalize_color(color) or "")

    # ------------------------------------------------------------ entry

    def entry(self, plate: str, color: str, at: datetime, present: Present) -> EntryDecision:
        self._site_tz(at)
        plate, v = normalize_plate(plate), self.vehicles
        if plate in v.blacklist:
            return EntryDecision(False, "blacklist", "blacklist", "黑名单车辆 禁止通行")
        if plate in v.whitelist:
            w = v.whitelist[plate]
            return EntryDecision(True, w.kind, "whitelist", w.label or _GREETING[w.kind])
        card = self._cards.get(plate)
        if card is not None:
            return self._card_entry(card, plate, at, present)
        if plate in v.stored_value:
            return EntryDecision(True, "stored_value", "stored_value", "储值车")  # the lane adds the balance
        return self._as_temporary("temporary", "欢迎光临", "临时车 禁止通行")

    def _as_temporary(self, reason: str, welcome: str, refusal: str) -> EntryDecision:
        if self.vehicles.allow_temporary:
            return EntryDecision(True, "temporary", reason, welcome)
        return EntryDecision(False, "temporary", "temporary_not_allowed" if reason == "temporary" else reason,
                             refusal)

    def _card_entry(self, card: MonthlyCard, plate: str, at: datetime, present: Present) -> EntryDecision:
        tz = self._site_tz(at)
        valid_from, valid_until = card.coverage(tz)
        if at < valid_from:
            return self._as_temporary("monthly_not_started", "月租未生效 按临时车收费",
                                      "月租未生效 禁止通行")
        if at >= valid_until:
            return self._as_temporary("monthly_expired", "月租已过期 按临时车收费",
                                      "月租已过期 禁止通行")
        inside = sum(1 for p in card.plates if p != plate and p in present)
        if card.spaces is not None and inside >= card.spaces:
            return self._as_temporary("monthly_spaces_full", "月租车位已满 按临时车收费",
                                      "月租车位已满 禁止通行")
        today = at.astimezone(tz).date()
        days_left = (card.end - today).days
        if days_left > 0:
            return EntryDecision(True, "monthly", "monthly", f"月租车 剩余{days_left}天")
        if days_left == 0:
            return EntryDecision(True, "monthly", "monthly", "月租车 今日到期")
        grace_left = days_left + card.grace_days
        return EntryDecision(True, "monthly", "monthly_grace", f"月租车 已过期 宽限剩余{grace_left}天")

    # ------------------------------------------------------------ exit

    def exit(self, plate: str, color: str, entered_at: Optional[datetime], at: datetime, present: Present,
             paid_fen: int = 0, paid_at: Optional[datetime] = None, entry_reason: str = "") -> ExitQuote:
        return self.assess_exit(plate, color, entered_at, at, present, paid_fen, paid_at, entry_reason).quote()

    def assess_exit(self, plate: str, color: str, entered_at: Optional[datetime], at: datetime,
                    present: Present, paid_fen: int = 0, paid_at: Optional[datetime] = None,
                    entry_reason: str = "") -> ExitAssessment:
        for moment in (at, entered_at, paid_at):
            if moment is not None:
                self._site_tz(moment)  # refuse naive times before comparing them
        plate, v = normalize_plate(plate), self.vehicles
        flags = ("blacklist",) if plate in v.blacklist else ()
        if entered_at is not None and entered_at > at:  # clocks of two booth PCs disagree: a person decides
            fee = make_fee([BreakdownItem("operator", at, entered_at, 0, "entry time is after the exit time")],
                           paid_fen)
            return ExitAssessment("temporary", "entry_after_exit", fee, flags, needs_operator=True)
        if paid_at is not None:  # a payment recorded by another PC may sit a little outside the stay
            paid_at = min(max(paid_at, entered_at or paid_at), at)
        result = self._classify_exit(plate, color, entered_at, at, present, paid_fen, paid_at, entry_reason)
        if flags:
            note = f"blacklisted: {v.blacklist[plate]}"
            extra = BreakdownItem("blacklist", entered_at or at, at, 0, note)
            fee = result.fee
            result = ExitAssessment(result.vehicle_class, result.reason,
                                    Fee(fee.total_fen, fee.paid_fen, fee.due_fen, (extra,) + fee.breakdown),
                                    flags, result.needs_operator)
        return result

    def _classify_exit(self, plate: str, color: str, entered_at: Optional[datetime], at: datetime,
                       present: Present, paid_fen: int, paid_at: Optional[datetime],
                       entry_reason: str = "") -> ExitAssessment:
        v = self.vehicles
        if plate in v.whitelist:
            w = v.whitelist[plate]
            item = BreakdownItem("whitelist", entered_at or at, at, 0, f"{w.kind} {w.label}".strip())
            return ExitAssessment(w.kind, "whitelist", make_fee([item], paid_fen))
        card = self._cards.get(plate)
        if card is not None:
            return self._card_exit(card, plate, color, entered_at, at, present, paid_fen, paid_at, entry_reason)
        if plate in v.stored_value:
            return self._stored_value_exit(plate, color, entered_at, at, paid_fen, paid_at)
        return self.charge("temporary", plate, color, entered_at, at, paid_fen, paid_at)

    def charge(self, vehicle_class: str, plate: str, color: str, entered_at: Optional[datetime], at: datetime,
               paid_fen: int = 0, paid_at: Optional[datetime] = None) -> ExitAssessment:
        """The class's tariff over the whole stay (or its no-entry-record policy when entered_at is None)."""
        if vehicle_class not in TARIFF_CLASSES:
            raise TariffError(f"no tariff for class {vehicle_class!r}: a tariff prices {' or '.join(TARIFF_CLASSES)} "
                              "(a card's uncovered time and a shared-space overflow are temporary)")
        name, rule = self.tariffs.select(vehicle_class, color, self.subtype_of(plate, color))
        head = BreakdownItem("rule", entered_at or at, at, 0, f"tariff rule {name} ({vehicle_class})")
        if entered_at is None:
            fee = compute_no_entry_fee(rule, at, paid_fen=paid_fen, tz=self.tz)
            if fee is None:
                item = BreakdownItem("operator", at, at, 0, "no entry record: the booth operator decides")
                return ExitAssessment(vehicle_class, "no_entry_record", make_fee([head, item], paid_fen),
                                      needs_operator=True)
            return ExitAssessment(vehicle_class, "no_entry_record", make_fee((head,) + fee.breakdown, paid_fen))
        fee = compute_fee(rule, entered_at, at, paid_fen=paid_fen, paid_at=paid_at, tz=self.tz)
        fee = make_fee((head,) + fee.breakdown, paid_fen)
        return ExitAssessment(vehicle_class, _reason(fee), fee)

    def _stored_value_exit(self, plate: str, color: str, entered_at: Optional[datetime], at: datetime,
                           paid_fen: int, paid_at: Optional[datetime]) -> ExitAssessment:
        """Stored value: the class's tariff. Whether the balance covers it is the lane's question (the live
        balance is in the store's ledger, not in the rules)."""
        return self.charge("stored_value", plate, color, entered_at, at, paid_fen, paid_at)

    def _card_exit(self, card: MonthlyCard, plate: str, color: str, entered_at: Optional[datetime],
                   at: datetime, present: Present, paid_fen: int, paid_at: Optional[datetime],
                   entry_reason: str = "") -> ExitAssessment:
        tz = self._site_tz(at)
        valid_from, valid_until = card.coverage(tz)
        valid = f"card {card.card_id} valid {valid_from:%Y-%m-%d %H:%M} - {valid_until:%Y-%m-%d %H:%M}"
        if entered_at is None:
            if valid_from <= at < valid_until:
                item = BreakdownItem("monthly", at, at, 0, f"no entry record; {valid}")
                return ExitAssessment("monthly", "monthly", make_fee([item], paid_fen))
            return self.charge("temporary", plate, color, None, at, paid_fen, paid_at)
        if at <= valid_from or entered_at >= valid_until:
            why = f"{valid}: not during this stay, charged as temporary"
        elif entry_reason == "monthly_spaces_full" or self._overflow(card, plate, entered_at, present):
            # The entry lane's word wins: it saw the spaces taken, even if that car has left since.
            why = f"card {card.card_id}: its {card.spaces} space(s) were taken, charged as temporary"
        else:
            return self._uncovered_fee(card, plate, color, entered_at, at, paid_fen, paid_at, valid)
        result = self.charge("temporary", plate, color, entered_at, at, paid_fen, paid_at)
        item = BreakdownItem("monthly", entered_at, at, 0, why)
        return ExitAssessment("temporary", result.reason, make_fee((item,) + result.fee.breakdown, paid_fen))

    def _overflow(self, card: MonthlyCard, plate: str, entered_at: datetime, present: Present) -> bool:
        """Whether this car is beyond the card's spaces: the cars of the card still inside that entered before
        it hold the spaces (ties broken by plate). Decided from `present` at exit; a space freed by a car that
        already left counts as free for the whole stay (the policy keeps no history)."""
        if card.spaces is None:
            return False
        me = (entered_at, plate)
        earlier = sum(1 for p in card.plates if p != plate and p in present and (present[p], p) < me)
        return earlier >= card.spaces

    def _uncovered_fee(self, card: MonthlyCard, plate: str, color: str, entered_at: datetime, at: datetime,
                       paid_fen: int, paid_at: Optional[datetime], valid: str) -> ExitAssessment:
        """Charge only the parts of the stay outside the card's validity, each through the engine as a stay of
        its own (so each gets the free minutes and a first segment)."""
        tz = self._site_tz(at)
        valid_from, valid_until = card.coverage(tz)
        name, rule = self.tariffs.select("temporary", color, self.subtype_of(plate, color))
        items = [BreakdownItem("rule", entered_at, at, 0, f"tariff rule {name} (temporary) for the time "
                                                         "the card does not cover")]
        parts = [(max(entered_at, valid_from), min(at, valid_until), True)]  # the stay overlaps the card
        if entered_at < valid_from:
            parts.insert(0, (entered_at, valid_from, False))
        if at > valid_until:
            parts.append((valid_until, at, False))
        in_grace = paid_at is not None and left_within_grace(rule, paid_at, at)
        for a, b, covered in parts:
            if covered:
                items.append(BreakdownItem("monthly", a, b, 0, f"{valid}: not charged"))
            elif in_grace and paid_at is not None and a > paid_at:
                items.append(BreakdownItem("grace", a, b, 0, "after the payment, within the grace: not charged"))
            else:
                pay = paid_at if paid_at is not None and a <= paid_at <= b else None
                items += compute_fee(rule, a, b, paid_at=pay, tz=self.tz).breakdown
        fee = make_fee(items, paid_fen)
        return ExitAssessment("monthly", "monthly" if fee.total_fen == 0 else _reason(fee), fee)

