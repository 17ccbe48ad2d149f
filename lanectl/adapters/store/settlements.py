"""Settlement repository: an exit's settlement (open until paid, released or abandoned) and its payment attempts,
each written ahead of the provider call; "paid" is a compare-and-set, so a payment is confirmed once."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Callable, Optional, Sequence

from lanectl.adapters.store.unit_of_work import UnitOfWork
from lanectl.core import effects as fx
from lanectl.service.claims import PaymentClaim
from lanectl.service.settlement import ATTEMPT_OPEN, ATTEMPT_PAYABLE, Attempt


# (provider, order_ref) of the first attempt of a fresh exit's settlement, or None (the settlement driver's)
FirstAttempt = Callable[[fx.StartSettlement], Optional[tuple[str, str]]]


class SettlementRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        # Given (by the daemon): a fresh exit's first attempt is written ahead in the lane's own step, with the
        # exit record and its settlement — one synced commit less before the charge goes out. The driver takes
        # it (take_ahead) instead of writing its own.
        self.first_attempt: Optional[FirstAttempt] = None
        self._ahead: dict[str, Attempt] = {}  # record id -> its attempt written with the step, not yet taken

    # --- in a lane step's transaction (writer thread) ----------------------------------------------------------
    def start_sync(self, e: fx.StartSettlement, stamp: str, now: datetime, fresh: bool = False) -> Optional[Attempt]:
        """`fresh`: the exit record is new in this step; its first attempt is written too (returned) when the
        daemon said which it is."""
        # a car identified later (plate-less, by a platform) re-opens its settlement with the stay
        self.uow.conn.execute(
            "INSERT INTO settlements (record_id, lane_id, exit_order, status, created_at) "
            "VALUES (?,?,?,?,?) ON CONFLICT (record_id) DO UPDATE SET "
            "exit_order=excluded.exit_order, status='open', outcome='', closed_at=''",
            (e.record_id, e.lane_id, json.dumps(asdict(e), ensure_ascii=False), "open", stamp))
        first = self.first_attempt(e) if fresh and self.first_attempt is not None else None
        if first is None:
            return None
        return self._insert_sync(e.record_id, e.lane_id, first[0], first[1], e.due_fen, now)

    def keep_ahead(self, attempts: Sequence[Attempt]) -> None:
        """After the step's commit (writer thread, before its caller goes on): the driver may take them now."""
        for a in attempts:
            self._ahead[a.record_id] = a

    def take_ahead(self, record_id: str, provider: str, order_ref: str) -> Optional[Attempt]:
        """The attempt written ahead with this exit's step for this charge, once (None: write one)."""
        a = self._ahead.pop(record_id, None)
        return a if a is not None and (a.provider, a.order_ref) == (provider, order_ref) else None

    def stop_sync(self, e: fx.StopSettlement, stamp: str) -> None:
        self.uow.conn.execute("UPDATE settlements SET status='closed', outcome=?, closed_at=? WHERE record_id=?",
                              (e.outcome, stamp, e.record_id))

    def delivered_sync(self, e: fx.RecordPayment) -> None:
        """The lane committed the payment an attempt confirmed (by its trade_no, else by its order reference)."""
        if e.reference:
            self.uow.conn.execute("UPDATE payment_attempts SET delivered=1 WHERE record_id=? AND "
                                  "(trade_no=? OR (trade_no='' AND order_ref=?))",
                                  (e.record_id, e.reference, e.reference))

    # --- settlements -------------------------------------------------------------------------------------------------
    async def open_settlements(self) -> list[fx.StartSettlement]:
        def _query() -> list[fx.StartSettlement]:
            return [fx.StartSettlement(**json.loads(r["exit_order"])) for r in self.uow.conn.execute(
                "SELECT exit_order FROM settlements WHERE status='open' ORDER BY created_at")]
        return await self.uow.run(_query)

    async def settlement_order(self, record_id: str) -> Optional[fx.StartSettlement]:
        def _query() -> Optional[fx.StartSettlement]:
            row = self.uow.conn.execute("SELECT exit_order FROM settlements WHERE record_id=?",
                                        (record_id,)).fetchone()
            return fx.StartSettlement(**json.loads(row["exit_order"])) if row else None
        return await self.uow.run(_query)

    async def settlement_open(self, record_id: str) -> bool:
        def _query() -> bool:
            row = self.uow.conn.execute("SELECT status FROM settlements WHERE record_id=?", (record_id,)).fetchone()
            return row is not None and row["status"] == "open"
        return await self.uow.run(_query)

    # --- attempts ----------------------------------------------------------------------------------------------------
    async def new_attempt(self, record_id: str, lane_id: str, provider: str, order_ref: str, amount_fen: int,
                          now: datetime) -> Attempt:
        """Written ahead of the provider call: a charge that might have reached the platform is never forgotten."""
        def _insert() -> Attempt:
            return self._insert_sync(record_id, lane_id, provider, order_ref, amount_fen, now)
        return await self.uow.write(_insert)

    def _insert_sync(self, record_id: str, lane_id: str, provider: str, order_ref: str, amount_fen: int,
                     now: datetime) -> Attempt:
        cur = self.uow.conn.execute(
            "INSERT INTO payment_attempts (record_id, lane_id, provider, order_ref, amount_fen, status, "
            "created_at, created_ts, updated_at) VALUES (?,?,?,?,?,'charging',?,?,?)",
            (record_id, lane_id, provider, order_ref, amount_fen, now.isoformat(), now.timestamp(), now.isoformat()))
        return self._attempt_sync(cur.lastrowid)

    def _attempt_sync(self, attempt_id: Optional[int]) -> Attempt:
        row = self.uow.conn.execute("SELECT * FROM payment_attempts WHERE id=?", (attempt_id,)).fetchone()
        return Attempt.from_row(dict(row))

    async def attempts(self, *, record_id: Optional[str] = None, provider: Optional[str] = None,
                       order_ref: Optional[str] = None, statuses: Sequence[str] = ()) -> list[Attempt]:
        where, params = [], []
        for column, value in (("record_id", record_id), ("provider", provider), ("order_ref", order_ref)):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params.extend(statuses)

        def _query() -> list[Attempt]:
            sql = "SELECT * FROM payment_attempts" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
            return [Attempt.from_row(dict(r)) for r in self.uow.conn.execute(sql, params)]
        return await self.uow.run(_query)

    async def mark_attempt(self, attempt_id: int, status: str, detail: str, now: datetime,
                           *, only_from: Sequence[str] = ATTEMPT_OPEN) -> bool:
        """Move an attempt that is still open (or in `only_from`) to `status`; False if it had settled."""
        def _mark() -> bool:
            cur = self.uow.conn.execute(
                f"UPDATE payment_attempts SET status=?, detail=?, updated_at=? WHERE id=? "
                f"AND status IN ({','.join('?' * len(only_from))})",
                (status, detail[:500], now.isoformat(), attempt_id, *only_from))
            return cur.rowcount == 1
        return await self.uow.write(_mark)

    async def settle_attempt(self, attempt_id: int, paid: bool, trade_no: str, paid_fen: int, method: str,
                             detail: str, now: datetime) -> bool:
        """Paid or failed, once: True only for the call that moved the attempt (a callback and a poll racing
        each other confirm a payment once). Paid may follow a skip or a failure (the driver paid by scanning)."""
        allowed = ATTEMPT_PAYABLE if paid else ATTEMPT_OPEN

        def _settle() -> bool:
            return self._settle_sync(attempt_id, "paid" if paid else "failed", trade_no, paid_fen, method, detail,
                                     now, allowed)
        return await self.uow.write(_settle)

    def claim_sync(self, claim: PaymentClaim) -> bool:
        """In a lane step's transaction: the payment a lane's step confirms, paid once (see service/claims.py)."""
        return self._settle_sync(claim.attempt_id, "paid", claim.trade_no, claim.paid_fen, claim.method, claim.detail,
                                 claim.now, claim.allowed)

    def _settle_sync(self, attempt_id: int, status: str, trade_no: str, paid_fen: int, method: str, detail: str,
                     now: datetime, allowed: Sequence[str]) -> bool:
        cur = self.uow.conn.execute(
            f"UPDATE payment_attempts SET status=?, trade_no=?, paid_fen=?, method=?, detail=?, updated_at=? "
            f"WHERE id=? AND status IN ({','.join('?' * len(allowed))})",
            (status, trade_no, paid_fen, method, detail[:500], now.isoformat(), attempt_id, *allowed))
        return cur.rowcount == 1
