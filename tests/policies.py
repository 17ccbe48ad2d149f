"""A small Policy for lane tests: lists and one flat fee per visit after a free period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from lanectl.core.policy import EntryDecision, ExitQuote, Present


@dataclass(frozen=True)
class FlatPolicy:
    """Whitelist / blacklist and one flat fee per visit after a free period."""

    flat_fen: int = 500
    free_minutes: int = 15
    whitelist: frozenset[str] = frozenset()
    blacklist: frozenset[str] = frozenset()
    allow_temporary: bool = True
    no_entry_fen: int = 500
    stored_value: frozenset[str] = frozenset()  # priced like temporary cars, class "stored_value"

    def entry(self, plate: str, color: str, at: datetime, present: Present) -> EntryDecision:
        if plate in self.blacklist:
            return EntryDecision(False, "blacklist", "blacklist", "黑名单车辆 禁止通行")
        if plate in self.whitelist:
            return EntryDecision(True, "free", "whitelist", "欢迎光临")
        if plate in self.stored_value:
            return EntryDecision(True, "stored_value", "stored_value", "储值车")
        if not self.allow_temporary:
            return EntryDecision(False, "temporary", "temporary_not_allowed", "临时车 禁止通行")
        return EntryDecision(True, "temporary", "temporary", "欢迎光临")

    def exit(self, plate: str, color: str, entered_at: Optional[datetime], at: datetime, present: Present,
             paid_fen: int = 0, paid_at: Optional[datetime] = None, entry_reason: str = "") -> ExitQuote:
        flags = ("blacklist",) if plate in self.blacklist else ()
        if plate in self.whitelist:
            return ExitQuote(0, 0, paid_fen, "free", "whitelist", ("whitelist",), flags=flags)
        if entered_at is None:
            due = max(0, self.no_entry_fen - paid_fen)
            return ExitQuote(due, self.no_entry_fen, paid_fen, "temporary", "no_entry_record",
                             (f"no entry record: {self.no_entry_fen} fen",), flags=flags)
        minutes = (at - entered_at).total_seconds() / 60
        if minutes <= self.free_minutes:
            return ExitQuote(0, 0, paid_fen, "temporary", "zero_fee", (f"free {self.free_minutes} min",),
                             flags=flags)
        due = max(0, self.flat_fen - paid_fen)
        klass = "stored_value" if plate in self.stored_value else "temporary"
        return ExitQuote(due, self.flat_fen, paid_fen, klass, "paid_ahead" if due == 0 else "fee",
                         (f"flat {self.flat_fen} fen per visit",), flags=flags)
