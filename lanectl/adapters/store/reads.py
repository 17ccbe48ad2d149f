"""Reads for the booth console (records search, the shift, open settlements, money for refund, the outbox) on a
connection and a thread of their own: in WAL mode a reader never blocks the writer, so an operator's search over
months of records never holds up a lane's commit. The connection is query-only; it opens on first use (after the
store has migrated the file) and closes with the store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from lanectl.adapters.housekeeping.shift_report import shift_figures
from lanectl.adapters.store.faults import storage_fault
from lanectl.service.ports import StorageUnavailable

T = TypeVar("T")
OPEN_ATTEMPTS = ("charging", "pending", "fallback")  # may still turn into money (core/settlement.py OPEN)


@dataclass(frozen=True)
class RecordQuery:
    """A records search. `plate` is normalized already; `partial`: the plate contains it. `after`: the keyset
    cursor (ts, rowid) of the last row of the previous page, newest first."""

    plate: Optional[str] = None
    partial: bool = False
    lane: Optional[str] = None
    since: Optional[datetime] = None
    until: Optional[datetime] = None
    kind: Optional[str] = None
    status: Optional[str] = None
    limit: int = 100
    after: Optional[tuple[float, int]] = None


class StoreReads:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lanectl-reads")
        self._conn: Optional[sqlite3.Connection] = None
        self._closed = False
        self._used = False  # a thread starts with the first read

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._used = True
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._reading, fn)

    def _reading(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            if self._conn is None:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA query_only=ON")
                conn.execute("PRAGMA busy_timeout=5000")
                self._conn = conn
            return fn(self._conn)
        except (sqlite3.Error, OSError) as exc:
            reason = storage_fault(exc)
            if reason is None:
                raise
            raise StorageUnavailable(reason) from exc

    async def close(self) -> None:
        """The connection closes on the thread that used it; a reader never used has no thread to stop."""
        if self._closed:
            return
        self._closed = True

        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        if self._used:
            await asyncio.get_running_loop().run_in_executor(self._pool, _close)
        self._pool.shutdown(wait=True)

    # --- records --------------------------------------------------------------------------------------------------
    async def search_records(self, q: RecordQuery) -> list[dict[str, Any]]:
        """Newest first, at most q.limit rows, each with its `cursor` (ts, rowid) for the next page."""
        where, params = [], []  # type: list[str], list[Any]
        if q.plate and q.partial:
            escaped = q.plate.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("plate LIKE ? ESCAPE '\\'")
            params.append(f"%{escaped}%")
        elif q.plate is not None:
            where.append("plate = ?")
            params.append(q.plate)
        for column, value in (("lane_id", q.lane), ("kind", q.kind), ("status", q.status)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if q.since is not None:
            where.append("ts >= ?")
            params.append(q.since.timestamp())
        if q.until is not None:
            where.append("ts < ?")
            params.append(q.until.timestamp())
        if q.after is not None:
            where.append("(ts < ? OR (ts = ? AND rowid < ?))")
            params += [q.after[0], q.after[0], q.after[1]]
        sql = ("SELECT rowid AS row_no, * FROM records" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY ts DESC, rowid DESC LIMIT ?")

        def _query(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = []
            for r in conn.execute(sql, (*params, q.limit)):
                row = dict(r)
                row["cursor"] = (row.pop("ts"), row.pop("row_no"))
                rows.append(row)
            return rows
        return await self._run(_query)

    async def record_image(self, record_id: str) -> Optional[str]:
        """Where the record's picture was saved ("" when it has none), None for no such record."""
        def _query(conn: sqlite3.Connection) -> Optional[str]:
            row = conn.execute("SELECT image FROM records WHERE record_id = ?", (record_id,)).fetchone()
            return row["image"] if row is not None else None
        return await self._run(_query)

    # --- the shift ------------------------------------------------------------------------------------------------
    async def shift(self, start: datetime, end: datetime) -> dict[str, Any]:
        return await self._run(lambda conn: shift_figures(conn, start, end))

    # --- money still moving, and money to give back ---------------------------------------------------------------
    async def open_settlements(self, limit: int = 200) -> list[dict[str, Any]]:
        """One row per provider attempt still running: for an exit whose settlement is open (the car waits), or
        reconciled after the car left (`car_waiting` false): lane, plate, provider, status, since."""
        marks = ",".join("?" * len(OPEN_ATTEMPTS))
        sql = ("SELECT a.record_id, a.lane_id, r.plate, a.provider, a.status, a.amount_fen, a.detail, "
               "a.created_at AS since, a.updated_at, COALESCE(s.status = 'open', 0) AS car_waiting "
               "FROM payment_attempts a LEFT JOIN records r ON r.record_id = a.record_id "
               "LEFT JOIN settlements s ON s.record_id = a.record_id "
               f"WHERE a.status IN ({marks}) OR s.status = 'open' ORDER BY a.created_ts, a.id LIMIT ?")

        def _query(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = [dict(r) for r in conn.execute(sql, (*OPEN_ATTEMPTS, limit))]
            for r in rows:
                r["car_waiting"] = bool(r["car_waiting"])
                r["plate"] = r["plate"] or ""
            return rows
        return await self._run(_query)

    async def for_refund(self, since: Optional[datetime] = None, limit: int = 200) -> list[dict[str, Any]]:
        """Payments the lane kept but did not let a car out for (flag `late`), newest first: `why` is
        `second_payment` when the record was paid through the same provider before, else `after_exit` (the car
        had left another way, or was no longer waiting)."""
        since_ts = since.timestamp() if since is not None else None
        sql = ("SELECT p.id, p.record_id, p.lane_id, r.plate, p.method, p.reference AS trade_no, p.amount_fen, "
               "p.at, EXISTS (SELECT 1 FROM payments q WHERE q.record_id = p.record_id AND q.id < p.id AND "
               "q.flag != 'late' AND (q.method = p.method OR q.method LIKE "
               "(substr(p.method, 1, instr(p.method || ':', ':') - 1) || ':%'))) AS second "
               "FROM payments p LEFT JOIN records r ON r.record_id = p.record_id WHERE p.flag = 'late' "
               + ("AND ((julianday(p.at) - 2440587.5) * 86400.0) >= ? " if since_ts is not None else "")
               + "ORDER BY p.id DESC LIMIT ?")

        def _query(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            args = (since_ts, limit) if since_ts is not None else (limit,)
            out = []
            for r in conn.execute(sql, args):
                row = dict(r)
                row["provider"] = row["method"].split(":", 1)[0]
                row["why"] = "second_payment" if row.pop("second") else "after_exit"
                row["plate"] = row["plate"] or ""
                out.append(row)
            return out
        return await self._run(_query)

    # --- the outbox -----------------------------------------------------------------------------------------------
    async def outbox_depths(self) -> dict[str, dict[str, Any]]:
        """Per destination: pending and dead counts, when the oldest pending item was queued, and the last error
        an item still pending met (the head item's, which holds the others back)."""
        def _query(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            for dest, status, n in conn.execute(
                    "SELECT destination, status, count(*) FROM outbox WHERE status IN ('pending', 'dead') "
                    "GROUP BY destination, status"):
                out.setdefault(dest, {"pending": 0, "dead": 0, "oldest_at": None, "last_error": ""})[status] = n
            for dest, st in out.items():
                head = conn.execute("SELECT created_at, last_error, attempts FROM outbox WHERE destination = ? "
                                    "AND status = 'pending' ORDER BY id LIMIT 1", (dest,)).fetchone()
                if head is not None:
                    st.update(oldest_at=head["created_at"], last_error=head["last_error"],
                              attempts=head["attempts"])
            return out
        return await self._run(_query)
