"""Site replica repository (issue 17 item 2): our own messages to the site bus, numbered per booth and queued in
the outbox (destination `site_bus`) in the lane step's transaction; the other booths' entries as received; and
per other booth, the seq up to which we hold every message. The rules are core/site_replica.py's."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Optional

from lanectl.adapters.store.lanes import LaneRepository
from lanectl.adapters.store.ledger import LedgerRepository
from lanectl.adapters.store.unit_of_work import UnitOfWork
from lanectl.core import site_replica as sr

DESTINATION = "site_bus"


class ReplicaRepository:
    def __init__(self, uow: UnitOfWork, lanes: LaneRepository, ledger: LedgerRepository, booth: str) -> None:
        self.uow = uow
        self.lanes = lanes
        self.ledger = ledger
        self.booth = booth

    # --- our messages (in the caller's transaction) -------------------------------------------------------------
    def _next_seq_sync(self) -> int:
        row = self.uow.conn.execute("SELECT COALESCE(MAX(seq), 0) AS n FROM outbox WHERE destination=?",
                                    (DESTINATION,)).fetchone()
        return row["n"] + 1

    def _queue_sync(self, message: sr.SiteRecord, now: datetime) -> None:
        self.uow.conn.execute(
            "INSERT INTO outbox (destination, kind, key, payload, created_at, next_at, seq) VALUES (?,?,?,?,?,?,?)",
            (DESTINATION, message.kind, f"{message.kind}:{message.record_id}:{message.seq}",
             sr.encode(message).decode(), now.isoformat(), now.timestamp(), message.seq))

    def publish_record_sync(self, record_id: str, kind: str, now: datetime) -> Optional[sr.SiteRecord]:
        """Our record as it stands now, with its payments, platform order ids and what was paid ahead."""
        row = self.lanes.record_sync(record_id)
        if row is None:
            return None
        conn = self.uow.conn
        row["payments"] = [{k: p[k] for k in ("amount_fen", "method", "reference", "at", "flag")}
                           for p in self.ledger.payments_sync(record_id)]
        row["order_ids"] = {r["provider"]: r["order_ref"] for r in conn.execute(
            "SELECT provider, order_ref FROM payment_attempts WHERE record_id=? ORDER BY id", (record_id,))}
        pre = conn.execute("SELECT COALESCE(SUM(amount_fen), 0) AS fen, MAX(paid_at) AS at FROM prepayments "
                           "WHERE entry_record_id=?", (record_id,)).fetchone()
        row["prepaid_fen"], row["prepaid_at"] = pre["fen"], pre["at"] or ""
        if kind == "entry" and row.get("plate"):
            row["marks"] = [dict(r) for r in conn.execute(
                "SELECT provider, name, value, updated_at FROM provider_marks WHERE plate=? ORDER BY provider, name",
                (row["plate"],))]
        message = sr.record_message(self.booth, self._next_seq_sync(), kind, row)
        self._queue_sync(message, now)
        return message

    def publish_correction_sync(self, entry: sr.RemoteEntry, status: str, caused_by: str, now: datetime) -> None:
        """We closed another booth's entry: tell every booth (its owner marks its own record)."""
        message = sr.correction(self.booth, self._next_seq_sync(), entry.record.record_id, entry.record.booth,
                                status, caused_by)
        self._queue_sync(message, now)
        self.put_sync([entry], now)

    def publish_prepay_sync(self, entry: sr.RemoteEntry, prepay: sr.SitePrepay, now: datetime) -> sr.RemoteEntry:
        """We kept money paid ahead for another booth's car: tell its owner (it keeps it and republishes the
        entry), and count it in our replica of the entry meanwhile. Returns the replica's entry as it is now."""
        self._queue_sync(sr.prepay_notice(self.booth, self._next_seq_sync(), entry.record, prepay), now)
        updated = sr.RemoteEntry(sr.with_prepayment(entry.record, prepay.amount_fen, prepay.paid_at), entry.closed)
        self.put_sync([updated], now)
        return updated

    def keep_prepay_sync(self, record: sr.SiteRecord, now: datetime) -> bool:
        """Another booth's notice of money paid ahead for one of OUR entries: kept once (provider, trade_no), with
        its payment row, and our entry republished with it. False if kept before or not our record."""
        prepay = record.prepay
        assert prepay is not None
        row = self.lanes.record_sync(record.record_id)
        if row is None or row.get("kind") != "entry":
            return False
        cur = self.uow.conn.execute(
            "INSERT INTO prepayments (provider, trade_no, entry_record_id, amount_fen, paid_at, received_at) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (provider, trade_no) DO NOTHING",
            (prepay.provider, prepay.trade_no, record.record_id, prepay.amount_fen, prepay.paid_at, now.isoformat()))
        if cur.rowcount != 1:  # kept before (a redelivery, or the platform told us too): our snapshot again, so
            if row.get("status") == "inside":  # a booth that counted it in its replica counts it once
                self.publish_record_sync(record.record_id, "entry", now)
            return False
        self.ledger.prepay_sync(record.record_id, row.get("lane_id", ""), prepay.amount_fen,
                                f"{prepay.provider}:prepay", prepay.trade_no, prepay.paid_at)
        self.publish_record_sync(record.record_id, "entry", now)
        return True

    def put_sync(self, entries: list[sr.RemoteEntry], now: datetime) -> None:
        for e in entries:
            self.uow.conn.execute(
                "INSERT INTO site_replica (record_id, booth, seq, plate, closed, message, updated_at) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT (record_id) DO UPDATE SET "
                # a closed stay stays closed; the newest snapshot (highest seq) is kept
                "closed=CASE WHEN closed != '' THEN closed ELSE excluded.closed END, "
                "message=CASE WHEN excluded.seq >= seq THEN excluded.message ELSE message END, "
                "seq=MAX(seq, excluded.seq), updated_at=excluded.updated_at",
                (e.record.record_id, e.record.booth, e.record.seq, e.record.plate, e.closed,
                 sr.encode(e.record).decode(), now.isoformat()))

    def marks_sync(self, record: sr.SiteRecord) -> None:
        """Another booth's marks of a plate (its sign-free flag ...) kept here too, where they are newer."""
        for m in record.marks:
            self.uow.conn.execute(
                "INSERT INTO provider_marks (provider, plate, name, value, updated_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT (provider, plate, name) DO UPDATE SET value=excluded.value, "
                "updated_at=excluded.updated_at WHERE excluded.updated_at > provider_marks.updated_at",
                (m.provider, record.plate, m.name, m.value, m.updated_at))

    def peer_sync(self, booth: str, upto: int, now: datetime) -> None:
        self.uow.conn.execute(
            "INSERT INTO site_peers (booth, upto, updated_at) VALUES (?,?,?) ON CONFLICT (booth) "
            "DO UPDATE SET upto=MAX(upto, excluded.upto), updated_at=excluded.updated_at",
            (booth, upto, now.isoformat()))

    # --- reads ----------------------------------------------------------------------------------------------------
    def load_sync(self) -> tuple[list[sr.RemoteEntry], dict[str, int]]:
        conn = self.uow.conn
        entries = [sr.RemoteEntry(sr.decode(r["message"]), r["closed"])
                   for r in conn.execute("SELECT message, closed FROM site_replica ORDER BY rowid")]
        peers = {r["booth"]: r["upto"] for r in conn.execute("SELECT booth, upto FROM site_peers")}
        return entries, peers

    def forwarded_sync(self) -> dict[str, list[sr.SitePrepay]]:
        """The prepayments this booth kept for other booths' cars and passed on, by entry record id."""
        out: dict[str, list[sr.SitePrepay]] = {}
        for r in self.uow.conn.execute("SELECT payload FROM inbox WHERE trade_no LIKE 'site-prepay:%' ORDER BY id"):
            raw = json.loads(r["payload"])
            out.setdefault(raw["record_id"], []).append(sr.SitePrepay.model_validate(raw["prepay"]))
        return out

    async def since(self, after_seq: int, limit: int) -> list[dict[str, Any]]:
        """Our messages after `after_seq`, in order (what a booth that missed them asks for)."""
        def _query() -> list[dict[str, Any]]:
            return [json.loads(r["payload"]) for r in self.uow.conn.execute(
                "SELECT payload FROM outbox WHERE destination=? AND seq > ? ORDER BY seq LIMIT ?",
                (DESTINATION, after_seq, limit))]
        return await self.uow.run(_query)
