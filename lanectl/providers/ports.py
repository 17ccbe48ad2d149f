"""What a provider's callback handlers need from the rest of the daemon — declared once for every provider.

Adapters (the SQLite store) and services (settlement) implement them; tests use the fakes in tests/fakes.py.
The app hooks are how a platform asks the app for something only a lane may decide (a price, an opening).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, Mapping, Optional, Protocol

from lanectl.core.rules import CardRenewal
from lanectl.core.settlement import ChargeAnswer


class InboundStore(Protocol):
    """The inbox: a callback is stored under a unique (provider, key) before it is answered."""

    async def inbox_put(self, provider: str, key: str, payload: str, now: datetime) -> bool:
        """True when stored now, False when that key was stored before (a repeat)."""


class Results(Protocol):
    """Where payment results go (service/settlement.py); it confirms a payment to a lane at most once."""

    async def on_result(self, provider: str, order_ref: str, answer: ChargeAnswer, *,
                        lane_id: Optional[str] = None) -> str: ...


@dataclass(frozen=True)
class PriceQuote:
    """What a car owes now, for a platform's price query."""

    order_id: str
    due_fen: int
    total_fen: int
    entered_at: Optional[datetime]
    duration_min: int


# (plate, order id / record no, exit channel id) -> the quote, or None when the car is not known
QuoteFn = Callable[[str, str, str], Awaitable[Optional[PriceQuote]]]
# (renewal, trade_no, amount_fen) -> keeps and applies it; RenewalError when it cannot apply
RenewFn = Callable[[CardRenewal, str, int], Awaitable[None]]
# (channel id, platform car id) -> (opened, why not): admits a plate-less car at that entry lane
AdmitFn = Callable[[str, str], Awaitable[tuple[bool, str]]]
# (lane id, operator, reason) -> {"opened": bool, "message": str}; enqueues an audited operator release
ReleaseFn = Callable[[str, str, str], Awaitable[Mapping[str, Any]]]


class AppHooks(Protocol):
    """What the platforms' callbacks may ask of the app (they never touch a lane themselves)."""

    quote: QuoteFn
    renew_card: RenewFn
    release: ReleaseFn  # (lane id, operator, reason): an audited operator release asked for by a platform
    admit_plateless: AdmitFn  # (channel id, platform car id): a plate-less car scanned an entry QR
