"""Barrier audit: every command is written ahead (`requested`), then marked with what the module and the limit
inputs said. While storage is down the rows and marks are kept in memory (bounded) and written first when it is
back — the unit of work's backlog."""

from __future__ import annotations

import collections
import logging
import threading
from datetime import datetime
from typing import Any, Optional

from lanectl.adapters.store.unit_of_work import UnitOfWork
from lanectl.core import effects as fx
from lanectl.service.ports import StorageUnavailable

log = logging.getLogger("lanectl.store")

# A command's outcome (sent / failed) on its audit row: only while it is still `requested` (the limit input may
# already have confirmed it, or a restart marked it interrupted).
_MARK_SQL = "UPDATE barrier_actions SET status=?, done_at=?, error=? WHERE action_id=? AND status='requested'"


class BarrierAudit:
    def __init__(self, uow: UnitOfWork, *, limit: int = 1000) -> None:
        self.uow = uow
        self.limit = limit
        # Audit written later: rows of commands sent while storage was down, and status updates of commands whose
        # row could not be updated. Guarded by _lock (the loop adds, the writer drains).
        self._lock = threading.Lock()
        self._rows: collections.deque[dict[str, Any]] = collections.deque()
        self._marks: collections.deque[tuple[str, tuple]] = collections.deque()  # (sql, params) updates
        self._deferred_ids: set[str] = set()
        uow.backlog = self

    # --- in the caller's transaction (writer thread) ------------------------------------------------------------
    def interrupt_sync(self) -> None:
        """At start: commands written ahead but never confirmed sent belong to a process that died; never resend
        them. (On a full disk the rows stay 'requested' until a start that can write: nothing resends them.)"""
        n = self.uow.conn.execute("UPDATE barrier_actions SET status='interrupted', error='daemon stopped before "
                                  "the command was confirmed sent' WHERE status='requested'").rowcount
        if n:
            log.warning("store: %d barrier command(s) interrupted by the last stop; not repeated", n)

    def command_sync(self, lane_id: str, e: fx.OpenBarrier | fx.CloseBarrier, stamp: str) -> None:
        row = action_row(lane_id, e, stamp)
        self.uow.conn.execute(f"INSERT INTO barrier_actions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                              tuple(row.values()))

    def confirm_sync(self, e: fx.AuditAction) -> None:
        self.uow.conn.execute(*audit_update(e))

    # --- outcomes ------------------------------------------------------------------------------------------------
    async def mark_action(self, action_id: str, ok: bool, error: str, now: datetime) -> None:
        """A command's outcome on its audit row. Never raises StorageUnavailable: while storage is down (or the
        row itself still waits in memory) the update is kept and written with the kept rows."""
        mark = (_MARK_SQL, ("sent" if ok else "failed", now.isoformat(), error, action_id))
        with self._lock:
            waiting = action_id in self._deferred_ids
        if waiting:
            self._keep(mark=mark)
            return
        try:
            # only a row still `requested`: the limit input may already have confirmed it
            await self.uow.write(lambda: self.uow.conn.execute(*mark))
        except StorageUnavailable:
            self._keep(mark=mark)

    def defer_action(self, lane_id: str, effect: fx.OpenBarrier | fx.CloseBarrier | fx.AuditAction,
                     now: datetime) -> bool:
        """A command sent while its audit row could not be written (or a limit input's word on an earlier one):
        keep it to write when storage is back. False if the memory for them is full (counted, logged once)."""
        if isinstance(effect, fx.AuditAction):
            return self._keep(mark=audit_update(effect))
        return self._keep(row=action_row(lane_id, effect, now.isoformat()))

    async def barrier_actions(self, lane: Optional[str] = None, limit: int = 100) -> list[dict[str, Any]]:
        def _query() -> list[dict[str, Any]]:
            sql = "SELECT * FROM barrier_actions" + (" WHERE lane_id=?" if lane else "") + \
                  " ORDER BY rowid DESC LIMIT ?"
            return [dict(r) for r in self.uow.conn.execute(sql, ((lane,) if lane else ()) + (limit,))]
        return await self.uow.run(_query)

    # --- the backlog ---------------------------------------------------------------------------------------------
    def _keep(self, *, row: Optional[dict[str, Any]] = None, mark: Optional[tuple[str, tuple]] = None) -> bool:
        health = self.uow.health
        with self._lock:
            if len(self._rows) + len(self._marks) >= self.limit:
                health.dropped += 1
                first = health.dropped == 1
                kept = False
            else:
                if row is not None:
                    self._rows.append(row)
                    self._deferred_ids.add(row["action_id"])
                if mark is not None:
                    self._marks.append(mark)
                health.queued = len(self._rows) + len(self._marks)
                kept = True
        if not kept and first:
            log.error("store: %d barrier audit rows kept in memory during the outage: no room for more; further "
                      "ones are dropped and counted (lanectl status)", self.limit)
        return kept

    def waiting(self) -> bool:
        return bool(self._rows or self._marks)

    def flush_sync(self) -> None:
        with self._lock:
            rows, marks = list(self._rows), list(self._marks)
        with self.uow.transaction() as conn:
            for row in rows:
                conn.execute(f"INSERT INTO barrier_actions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))}) "
                             "ON CONFLICT (action_id) DO NOTHING", tuple(row.values()))
            for sql, params in marks:
                conn.execute(sql, params)
        with self._lock:
            for _ in rows:
                self._deferred_ids.discard(self._rows.popleft()["action_id"])
            for _ in marks:
                self._marks.popleft()
            self.uow.health.queued = len(self._rows) + len(self._marks)
        log.info("store: wrote %d barrier audit row(s) and %d status update(s) kept during the outage",
                 len(rows), len(marks))


def audit_update(e: fx.AuditAction) -> tuple[str, tuple]:
    """The limit input's word on a command. confirmed: whatever the row said before (the limit is the stronger
    word, even for a command cut by a restart); unconfirmed: only a command the module acknowledged."""
    allowed = ("requested", "sent", "interrupted", "unconfirmed") if e.status == "confirmed" else ("sent",)
    return (f"UPDATE barrier_actions SET status=?, error=CASE WHEN ?='' THEN error ELSE ? END "
            f"WHERE action_id=? AND status IN ({','.join('?' * len(allowed))})",
            (e.status, e.note, e.note, e.action_id, *allowed))


def action_row(lane_id: str, e: fx.OpenBarrier | fx.CloseBarrier, stamp: str) -> dict[str, Any]:
    """The barrier_actions row written ahead of a command (status 'requested')."""
    return {"action_id": e.action_id, "lane_id": lane_id, "record_id": e.record_id,
            "command": "open" if isinstance(e, fx.OpenBarrier) else "close",
            "authority": getattr(e, "authority", ""), "reason": e.reason,
            "operator": getattr(e, "operator", ""), "trade_no": getattr(e, "trade_no", ""),
            "operator_uid": getattr(e, "operator_uid", None),
            "status": "requested", "requested_at": stamp}
