"""What a car owes now, as a platform's price query is answered (Bolink query_price, tdzn queryParkFee).

A car waiting at an exit lane is priced by that lane, from its own state (core/lane.py, a QuoteRequest). A car
inside the lot that pays ahead is at no lane: it is priced here, by the policy over its stay as the store keeps
it (the cars inside), never from a lane's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Mapping, Optional

from lanectl.core.policy import Policy

if TYPE_CHECKING:
    from lanectl.core.lane import InsideCar


@dataclass(frozen=True, slots=True)
class StayPrice:
    """A stay's price now: the order it is paid under, what is still due and the stay's whole fee."""

    order_id: str
    due_fen: int
    total_fen: int
    entered_at: Optional[datetime]  # None: no entry known (a plate-less car waiting at the exit)
    minutes: int  # the stay so far, whole minutes


def stay_minutes(since: Optional[datetime], now: datetime) -> int:
    return max(0, int((now - since).total_seconds() // 60)) if since else 0


def price_inside(policy: Policy, inside: Mapping[str, "InsideCar"], plate: str, order_id: str,
                 now: datetime) -> Optional[StayPrice]:
    """A car inside the lot, found by its plate or else by its entry record (the platform's order id); None
    when no such car is inside."""
    car = inside.get(plate) if plate else None
    if car is None and order_id:
        plate, car = next(((p, c) for p, c in inside.items() if c.record_id == order_id), ("", None))
    if car is None:
        return None
    present = {p: c.entered_at for p, c in inside.items()}
    q = policy.exit(plate, car.color, car.entered_at, now, present, paid_fen=car.paid_fen, paid_at=car.paid_at,
                    entry_reason=car.reason)
    return StayPrice(car.record_id, q.due_fen, q.total_fen, car.entered_at, stay_minutes(car.entered_at, now))
