"""Lane repository: each lane's saved state and the lane records (entries, exits, releases)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Optional

from lanectl.adapters.store.faults import StoreError
from lanectl.adapters.store.rows import insert_row, row_of, update_row
from lanectl.adapters.store.unit_of_work import UnitOfWork
from lanectl.core import effects as fx
from lanectl.core.lane import InsideCar

# The record columns a lane may change after the record was written (PatchRecord).
RECORD_COLUMNS = frozenset({"status", "reason", "paid_fen", "due_fen", "total_fen", "operator", "vehicle_class",
                            "entry_record_id", "entered_at", "detail", "operator_uid", "short_fen", "over_fen",
                            "plate", "read_plate", "corrected_by"})  # an operator's correction (OperatorCorrect)


class LaneRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    # --- lane state ----------------------------------------------------------------------------------------------
    async def load_lane_state(self, lane_id: str) -> Optional[dict[str, Any]]:
        def _load() -> Optional[dict[str, Any]]:
            row = self.uow.conn.execute("SELECT state FROM lane_state WHERE lane_id=?", (lane_id,)).fetchone()
            return json.loads(row["state"]) if row else None
        return await self.uow.run(_load)

    def save_state_sync(self, lane_id: str, state: dict[str, Any], stamp: str) -> None:
        self.uow.conn.execute(
            "INSERT INTO lane_state (lane_id, state, updated_at) VALUES (?, ?, ?) ON CONFLICT (lane_id) "
            "DO UPDATE SET state=excluded.state, updated_at=excluded.updated_at",
            (lane_id, json.dumps(state, ensure_ascii=False), stamp))

    # --- records (in the caller's transaction) -------------------------------------------------------------------
    def add_sync(self, e: fx.NewRecord, stamp: str) -> None:
        row = row_of(e)
        row["detail"] = json.dumps(list(e.detail), ensure_ascii=False)
        row["ts"] = datetime.fromisoformat(e.at).timestamp()
        row["updated_at"] = stamp
        insert_row(self.uow.conn, "records", row)

    def patch_sync(self, e: fx.PatchRecord, stamp: str) -> None:
        changes = dict(e.changes)
        bad = set(changes) - RECORD_COLUMNS
        if bad:
            raise StoreError(f"cannot patch record columns {sorted(bad)}")
        if "detail" in changes:  # stored as NewRecord's is (a JSON list, Chinese kept readable)
            changes["detail"] = json.dumps(list(changes["detail"]), ensure_ascii=False)
        changes["updated_at"] = stamp
        update_row(self.uow.conn, "records", "record_id", e.record_id, changes)

    def record_sync(self, record_id: str) -> Optional[dict[str, Any]]:
        row = self.uow.conn.execute("SELECT * FROM records WHERE record_id=?", (record_id,)).fetchone()
        return record_dict(row) if row is not None else None

    async def record(self, record_id: str) -> Optional[dict[str, Any]]:
        """One record by its id (the console's pictures), or None."""
        return await self.uow.run(self.record_sync, record_id)

    def inside_sync(self) -> dict[str, InsideCar]:
        """The cars inside, re-derived from the records: entry records still `inside`, with what was paid ahead
        for them. Read once at open; from then on the store keeps it from the committed effects (core/inside.py)."""
        return {
            r["plate"]: InsideCar(r["record_id"], datetime.fromisoformat(r["at"]), r["lane_id"], r["reason"],
                                  r["color"], r["paid"] or 0,
                                  datetime.fromisoformat(r["paid_at"]) if r["paid_at"] else None, r["image"])
            for r in self.uow.conn.execute(
                "SELECT r.plate, r.record_id, r.at, r.lane_id, r.reason, r.color, r.image, "
                "SUM(p.amount_fen) AS paid, "
                "MAX(p.paid_at) AS paid_at FROM records r LEFT JOIN prepayments p ON p.entry_record_id = r.record_id "
                "WHERE r.kind='entry' AND r.status='inside' AND r.plate != '' GROUP BY r.record_id ORDER BY r.ts")
        }

    async def derive_inside(self) -> dict[str, InsideCar]:
        return await self.uow.run(self.inside_sync)

    # --- queries (CLI through the control socket) ----------------------------------------------------------------
    async def records(self, *, plate: Optional[str] = None, lane: Optional[str] = None,
                      since: Optional[datetime] = None, until: Optional[datetime] = None,
                      limit: int = 100) -> list[dict[str, Any]]:
        where, params = [], []
        if plate:
            where.append("plate = ?")
            params.append(plate)
        if lane:
            where.append("lane_id = ?")
            params.append(lane)
        if since:
            where.append("ts >= ?")
            params.append(since.timestamp())
        if until:
            where.append("ts < ?")
            params.append(until.timestamp())

        def _query() -> list[dict[str, Any]]:
            sql = ("SELECT * FROM records" + (" WHERE " + " AND ".join(where) if where else "")
                   + " ORDER BY ts DESC, rowid DESC LIMIT ?")
            return [record_dict(r) for r in self.uow.conn.execute(sql, (*params, -1 if limit is None else limit))]
        return await self.uow.run(_query)


def record_dict(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["detail"] = json.loads(d.get("detail") or "[]")
    d.pop("ts", None)
    return d
