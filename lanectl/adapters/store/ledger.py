"""Ledger repository: payments against records, and stored-value balances as moves (`balance_moves`) with
their running sum per plate (`balances`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from lanectl.adapters.store.rows import insert_row, row_of
from lanectl.adapters.store.unit_of_work import UnitOfWork
from lanectl.core import effects as fx


class LedgerRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    # --- in the caller's transaction (writer thread) -------------------------------------------------------------
    def pay_sync(self, e: fx.RecordPayment) -> None:
        insert_row(self.uow.conn, "payments", row_of(e))

    def prepay_sync(self, record_id: str, lane_id: str, amount_fen: int, method: str, reference: str,
                    at: str) -> None:
        self.uow.conn.execute("INSERT INTO payments (record_id, lane_id, amount_fen, method, reference, at) "
                              "VALUES (?,?,?,?,?,?)", (record_id, lane_id, amount_fen, method, reference, at))

    def move_sync(self, plate: str, delta_fen: int, kind: str, record_id: str, reference: str, at: str,
                  operator_uid: Optional[int] = None) -> int:
        """One ledger move and the plate's new balance."""
        conn = self.uow.conn
        conn.execute("INSERT INTO balance_moves (plate, delta_fen, kind, record_id, reference, at, operator_uid) "
                     "VALUES (?,?,?,?,?,?,?)", (plate, delta_fen, kind, record_id, reference, at, operator_uid))
        conn.execute("INSERT INTO balances (plate, balance_fen, updated_at) VALUES (?,?,?) ON CONFLICT (plate) "
                     "DO UPDATE SET balance_fen=balance_fen+excluded.balance_fen, updated_at=excluded.updated_at",
                     (plate, delta_fen, at))
        return conn.execute("SELECT balance_fen FROM balances WHERE plate=?", (plate,)).fetchone()[0]

    def debit_sync(self, e: fx.DebitBalance) -> None:
        self.move_sync(e.plate, -e.amount_fen, "debit", e.record_id, "", e.at)

    def payments_sync(self, record_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.uow.conn.execute("SELECT * FROM payments WHERE record_id=? ORDER BY id",
                                                       (record_id,))]

    def balances_sync(self) -> dict[str, int]:
        return {r["plate"]: r["balance_fen"] for r in self.uow.conn.execute("SELECT * FROM balances")}

    # --- writes of their own ----------------------------------------------------------------------------------------
    async def seed(self, opening: dict[str, int], known: set[str] | frozenset[str], now: datetime) -> dict[str, int]:
        """Opening balances for plates not in `known` (the ledger never saw them): their new balances."""
        def _seed() -> dict[str, int]:
            seeded: dict[str, int] = {}
            with self.uow.transaction():
                for plate, fen in opening.items():
                    if plate not in known:
                        seeded[plate] = self.move_sync(plate, fen, "opening", "", "configuration", now.isoformat())
            return seeded
        return await self.uow.write(_seed)

    async def topup(self, plate: str, amount_fen: int, reference: str, now: datetime,
                    operator_uid: Optional[int] = None) -> int:
        def _topup() -> int:
            with self.uow.transaction():
                return self.move_sync(plate, amount_fen, "topup", "", reference, now.isoformat(), operator_uid)
        return await self.uow.write(_topup)

    # --- queries -----------------------------------------------------------------------------------------------------
    async def payments(self, record_id: str) -> list[dict[str, Any]]:
        return await self.uow.run(self.payments_sync, record_id)

    async def balance_moves(self, plate: Optional[str] = None, limit: int = 50) -> list[dict[str, Any]]:
        def _query() -> list[dict[str, Any]]:
            sql = "SELECT * FROM balance_moves" + (" WHERE plate=?" if plate else "") + " ORDER BY id DESC LIMIT ?"
            return [dict(r) for r in self.uow.conn.execute(sql, ((plate,) if plate else ()) + (limit,))]
        return await self.uow.run(_query)
