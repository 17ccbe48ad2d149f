"""A provider's "paid" handed to the lane together with its compare-and-set, so that the payment's confirmation
and the lane's step it causes (the payment recorded, the OPEN written ahead) are ONE synced transaction instead
of two in series.

The settlement driver wraps the lane's PaymentConfirmed in a ClaimedPayment. The lane runner handles the event as
any other, and its store commits the step only if the claim's compare-and-set moves the attempt to paid in the
same transaction (lanectl/adapters/store/sqlite_store.py `commit_lane`). When it moves nothing, a callback or a
poll confirmed the payment first (and handed the lane its own confirmation): the whole step is rolled back, the
lane stays as it was, and the driver is told "lost" — so a payment is confirmed, and opens the barrier, once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from lanectl.core.events import PaymentConfirmed


class ClaimLost(Exception):
    """The claim's compare-and-set moved nothing: the payment was confirmed before; the step was rolled back."""


@dataclass(frozen=True)
class PaymentClaim:
    """payment_attempts row `attempt_id` to paid, only from one of `allowed` (its statuses that may still pay)."""

    attempt_id: int
    trade_no: str
    paid_fen: int
    method: str
    detail: str
    allowed: tuple[str, ...]
    now: datetime


@dataclass(frozen=True)
class ClaimedPayment:
    """Put on the lane's queue instead of the bare event; `outcome` gets True (won: committed with the lane's
    step), False (lost) or the StorageUnavailable that refused the step (the driver tries again)."""

    event: PaymentConfirmed
    claim: PaymentClaim
    outcome: "asyncio.Future[bool]"
