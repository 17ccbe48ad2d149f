"""Outbox repository: a record to upload is queued in the same transaction as the lane step that made it, one
row per destination; the relay (service/outbox.py) takes them FIFO per destination."""

from __future__ import annotations

import json
from datetime import datetime, timezone, tzinfo
from typing import Any, Optional, Sequence

from lanectl.adapters.store.faults import StoreError
from lanectl.adapters.store.lanes import LaneRepository
from lanectl.adapters.store.ledger import LedgerRepository
from lanectl.adapters.store.unit_of_work import UnitOfWork
from lanectl.core import effects as fx
from lanectl.service.outbox import OutboxItem


class OutboxRepository:
    def __init__(self, uow: UnitOfWork, lanes: LaneRepository, ledger: LedgerRepository,
                 destinations: Sequence[str] = ()) -> None:
        self.uow = uow
        self.lanes = lanes
        self.ledger = ledger
        self.destinations = tuple(destinations)  # where Publish effects fan out to

    def enqueue_sync(self, e: fx.Publish, stamp: str, now: datetime) -> None:
        """In the lane step's transaction: the record as it stands now, with its payments, for each destination.
        (Before the OPEN: a booth that uploads nowhere reads nothing, and the payload is serialized once.)"""
        if not self.destinations:
            return
        payload = self.lanes.record_sync(e.record_id)
        if payload is None:
            raise StoreError(f"publish of unknown record {e.record_id}")
        payload["payments"] = [{k: p[k] for k in ("amount_fen", "method", "reference", "at", "flag")}
                               for p in self.ledger.payments_sync(e.record_id)]
        body, key, next_at = json.dumps(payload, ensure_ascii=False), f"{e.kind}:{e.record_id}", now.timestamp()
        self.uow.conn.executemany(
            "INSERT INTO outbox (destination, kind, key, payload, created_at, next_at) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT (destination, key) DO NOTHING",
            [(dest, e.kind, key, body, stamp, next_at) for dest in self.destinations])

    # --- OutboxQueue port (for service/outbox.py) -----------------------------------------------------------------
    async def due(self, destination: str, now: datetime, limit: int) -> list[OutboxItem]:
        def _due() -> list[OutboxItem]:
            rows = self.uow.conn.execute(
                "SELECT * FROM outbox WHERE destination=? AND status='pending' ORDER BY id LIMIT ?",
                (destination, limit)).fetchall()
            items = []
            for r in rows:
                if r["next_at"] > now.timestamp():
                    break  # FIFO per destination: a retrying item holds back the ones behind it
                items.append(OutboxItem(r["id"], r["destination"], r["kind"], r["key"], json.loads(r["payload"]),
                                        r["attempts"], datetime.fromisoformat(r["created_at"])))
            return items
        return await self.uow.run(_due)

    async def next_due_at(self, destination: str) -> Optional[float]:
        def _next() -> Optional[float]:
            row = self.uow.conn.execute("SELECT next_at FROM outbox WHERE destination=? AND status='pending' "
                                        "ORDER BY id LIMIT 1", (destination,)).fetchone()
            return row["next_at"] if row else None
        return await self.uow.run(_next)

    async def mark_done(self, item_id: int, now: datetime) -> None:
        await self.uow.write(lambda: self.uow.conn.execute(
            "UPDATE outbox SET status='done', done_at=?, attempts=attempts+1 WHERE id=?",
            (now.isoformat(), item_id)))

    async def mark_retry(self, item_id: int, attempts: int, next_at: datetime, error: str) -> None:
        await self.uow.write(lambda: self.uow.conn.execute(
            "UPDATE outbox SET attempts=?, next_at=?, last_error=? WHERE id=?",
            (attempts, next_at.timestamp(), error[:500], item_id)))

    async def mark_dead(self, item_id: int, error: str, now: datetime) -> None:
        await self.uow.write(lambda: self.uow.conn.execute(
            "UPDATE outbox SET status='dead', last_error=?, done_at=?, attempts=attempts+1 WHERE id=?",
            (error[:500], now.isoformat(), item_id)))

    async def outbox_depths(self, destinations: Sequence[str]) -> dict[str, tuple[int, int, Optional[datetime]]]:
        """Per destination: (pending, dead, when the oldest pending item was queued or None), for /metrics.
        Index ranges per destination and status: the done rows of years are never scanned."""
        def _query() -> dict[str, tuple[int, int, Optional[datetime]]]:
            conn = self.uow.conn
            out: dict[str, tuple[int, int, Optional[datetime]]] = {}
            for d in destinations:
                pending, first = conn.execute("SELECT COUNT(*), MIN(id) FROM outbox WHERE destination=? AND "
                                              "status='pending'", (d,)).fetchone()
                dead = conn.execute("SELECT COUNT(*) FROM outbox WHERE destination=? AND status='dead'",
                                    (d,)).fetchone()[0]
                oldest = None
                if first is not None:
                    at = conn.execute("SELECT created_at FROM outbox WHERE id=?", (first,)).fetchone()[0]
                    oldest = datetime.fromisoformat(at)
                out[d] = (pending, dead, oldest)
            return out
        return await self.uow.run(_query)

    async def outbox_summary(self, limit: int = 50, tz: Optional[tzinfo] = None) -> dict[str, Any]:
        """Counts and pending items; next_at (stored as epoch seconds) in `tz`, the lot's zone, like created_at."""
        def _query() -> dict[str, Any]:
            conn = self.uow.conn
            counts = {f"{r['destination']}/{r['status']}": r["n"] for r in conn.execute(
                "SELECT destination, status, COUNT(*) AS n FROM outbox GROUP BY destination, status")}
            pending = [
                {"id": r["id"], "destination": r["destination"], "kind": r["kind"], "key": r["key"],
                 "attempts": r["attempts"], "created_at": r["created_at"], "last_error": r["last_error"],
                 "next_at": datetime.fromtimestamp(r["next_at"], tz or timezone.utc).isoformat()}
                for r in conn.execute("SELECT * FROM outbox WHERE status='pending' ORDER BY id LIMIT ?", (limit,))]
            return {"counts": counts, "pending": pending}
        return await self.uow.run(_query)
