"""Inbox repository: what the payment platforms told us, stored before it is acknowledged so a repeat changes
nothing — callbacks (keyed by provider and trade), marks on plates, card renewals, money paid ahead."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Any, Callable, Optional, TypeVar

from lanectl.adapters.store.ledger import LedgerRepository
from lanectl.adapters.store.unit_of_work import UnitOfWork
from lanectl.core.lane import InsideCar

T = TypeVar("T")
# Marks written or read lately, kept in memory (a sign-free exit asks for its plate's mark right before its charge:
# a read on the writer thread there is a hop on the paid path). Bounded: a miss is read from the table.
MARKS_KEPT = 1024


class InboxRepository:
    def __init__(self, uow: UnitOfWork, ledger: LedgerRepository) -> None:
        self.uow = uow
        self.ledger = ledger
        self._marks: OrderedDict[tuple[str, str, str], Optional[str]] = OrderedDict()

    def _keep_mark(self, key: tuple[str, str, str], value: Optional[str]) -> None:
        self._marks[key] = value
        self._marks.move_to_end(key)
        while len(self._marks) > MARKS_KEPT:
            self._marks.popitem(last=False)

    def forget_marks(self, plate: str) -> None:
        """A plate's marks were written behind this repository's back (another booth's, site replication)."""
        for key in [k for k in self._marks if k[1] == plate]:
            del self._marks[key]

    async def inbox_put(self, provider: str, key: str, payload: str, now: datetime) -> bool:
        """Store a callback before it is acknowledged; False if (provider, key) was already stored (a repeat)."""
        def _put() -> bool:
            cur = self.uow.conn.execute(
                "INSERT INTO inbox (provider, trade_no, received_at, payload) VALUES (?,?,?,?) "
                "ON CONFLICT (provider, trade_no) DO NOTHING", (provider, key, now.isoformat(), payload))
            return cur.rowcount == 1
        return await self.uow.write(_put)

    async def set_mark(self, provider: str, plate: str, name: str, value: str, now: datetime) -> None:
        key = (provider, plate, name)
        self._marks.pop(key, None)  # while the write is out, a read goes to the table (behind it)
        await self.uow.write(lambda: self.uow.conn.execute(
            "INSERT INTO provider_marks (provider, plate, name, value, updated_at) VALUES (?,?,?,?,?) "
            "ON CONFLICT (provider, plate, name) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
            (provider, plate, name, value, now.isoformat())))
        self._keep_mark(key, value)

    async def mark(self, provider: str, plate: str, name: str) -> Optional[str]:
        key = (provider, plate, name)
        if key in self._marks:
            self._marks.move_to_end(key)
            return self._marks[key]

        def _get() -> Optional[str]:
            row = self.uow.conn.execute("SELECT value FROM provider_marks WHERE provider=? AND plate=? AND name=?",
                                        (provider, plate, name)).fetchone()
            return row["value"] if row else None
        value = await self.uow.run(_get)
        self._keep_mark(key, value)
        return value

    async def prepay(self, provider: str, trade_no: str, car: InsideCar, amount_fen: int, paid_at: datetime,
                     now: datetime, then: Optional[Callable[[], None]] = None) -> bool:
        """Money paid ahead for a car inside, against its entry record, with its payment row, in one transaction
        (with `then`, e.g. the record's new snapshot queued for the site bus). False if this trade was kept before."""
        def _add() -> bool:
            with self.uow.transaction() as conn:
                cur = conn.execute(
                    "INSERT INTO prepayments (provider, trade_no, entry_record_id, amount_fen, paid_at, received_at) "
                    "VALUES (?,?,?,?,?,?) ON CONFLICT (provider, trade_no) DO NOTHING",
                    (provider, trade_no, car.record_id, amount_fen, paid_at.isoformat(), now.isoformat()))
                if cur.rowcount == 1:
                    self.ledger.prepay_sync(car.record_id, car.lane_id, amount_fen, f"{provider}:prepay", trade_no,
                                            paid_at.isoformat())
                    if then is not None:
                        then()
            return cur.rowcount == 1
        return await self.uow.write(_add)

    async def prepay_elsewhere(self, provider: str, trade_no: str, payload: str, now: datetime,
                               then: Callable[[], T]) -> Optional[T]:
        """Money paid ahead for a car another booth recorded (its entry is not in our records table): kept in the
        inbox once per trade, and `then` (the notice to its owner) in the same transaction. None if kept before."""
        def _add() -> Optional[T]:
            with self.uow.transaction() as conn:
                cur = conn.execute(
                    "INSERT INTO inbox (provider, trade_no, received_at, payload) VALUES (?,?,?,?) "
                    "ON CONFLICT (provider, trade_no) DO NOTHING",
                    (provider, f"site-prepay:{trade_no}", now.isoformat(), payload))
                return then() if cur.rowcount == 1 else None
        return await self.uow.write(_add)

    async def add_renewal(self, provider: str, trade_no: str, card_id: str, plate: str, start: str, end: str,
                          amount_fen: int, now: datetime) -> bool:
        """Keep a platform card renewal (False if this trade was kept before)."""
        def _add() -> bool:
            cur = self.uow.conn.execute(
                "INSERT INTO card_renewals (provider, trade_no, card_id, plate, start, end, amount_fen, received_at) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (provider, trade_no) DO NOTHING",
                (provider, trade_no, card_id, plate, start, end, amount_fen, now.isoformat()))
            return cur.rowcount == 1
        return await self.uow.write(_add)

    async def renewals(self) -> list[dict[str, Any]]:
        return await self.uow.run(lambda: [dict(r) for r in self.uow.conn.execute(
            "SELECT * FROM card_renewals ORDER BY id")])
