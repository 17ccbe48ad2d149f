"""The seam between the lane state machine and the lot's rules: who may enter, what a leaving car owes.

core/lane.py only talks to a Policy; core/rules.py's RulesPolicy (tariffs, monthly cards, lists) is the one
the daemon uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Mapping, Optional, Protocol

# plates currently inside the lot (open entry records) -> their entry time; lets shared-space monthly cards
# and "already inside" checks be decided without the policy doing I/O.
Present = Mapping[str, datetime]


@dataclass(frozen=True, slots=True)
class EntryDecision:
    allow: bool
    vehicle_class: str  # temporary | monthly | free | blacklist | ...
    reason: str  # short machine word: temporary, monthly, whitelist, blacklist, temporary_not_allowed ...
    message: str = ""  # for the display, e.g. "月租车 剩余12天"


@dataclass(frozen=True, slots=True)
class ExitQuote:
    due_fen: int  # what the car still owes now
    total_fen: int  # the whole fee for the stay
    paid_fen: int  # already paid ahead
    vehicle_class: str
    reason: str  # free, monthly, whitelist, zero_fee, paid_ahead, fee, no_entry_record ...
    breakdown: tuple[str, ...] = ()
    needs_operator: bool = False  # the rules hand this car to the booth (e.g. no entry record policy)
    flags: tuple[str, ...] = ()  # e.g. ("blacklist",) — shown and logged, not a reason to trap the car

    @property
    def free(self) -> bool:
        return self.due_fen == 0 and not self.needs_operator


class Policy(Protocol):
    def entry(self, plate: str, color: str, at: datetime, present: Present) -> EntryDecision: ...

    def exit(self, plate: str, color: str, entered_at: Optional[datetime], at: datetime, present: Present,
             paid_fen: int = 0, paid_at: Optional[datetime] = None, entry_reason: str = "") -> ExitQuote:
        """entry_reason: what the entry lane decided for this stay (e.g. "monthly_spaces_full": a shared-space
        card's car that came in while the card's spaces were taken pays as temporary for this stay)."""
