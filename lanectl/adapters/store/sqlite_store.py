"""The local store: one SQLite file (WAL, synchronous=FULL), versioned migrations, one writer thread.

Write ahead, then act: a lane's state change, its records, its barrier-action audit rows and its outbox rows
commit in ONE transaction (`commit_lane`) before anything goes to the wire. The event loop never blocks: every
statement runs on the store's own thread (unit_of_work.py).

`SqliteStore` composes the repositories over one unit of work and keeps the callers' names: lanes
(lanes.py, audit.py), settlements, inbox, ledger and outbox each own their tables; `commit_lane` hands every
effect of a lane step to its repository inside one transaction, then brings the in-memory projections (cars
inside, balances) up to date with what was committed.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import Executor
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, TypeVar

from lanectl.adapters.store.audit import BarrierAudit
from lanectl.adapters.store.faults import DatabaseUnusable, StoreError, storage_fault
from lanectl.adapters.store.inbox import InboxRepository
from lanectl.adapters.store.lanes import RECORD_COLUMNS, LaneRepository
from lanectl.adapters.store.ledger import LedgerRepository
from lanectl.adapters.store.outbox import OutboxRepository
from lanectl.adapters.store.reads import StoreReads
from lanectl.adapters.store.replica import ReplicaRepository
from lanectl.adapters.store.schema import MIGRATIONS, migrate, schema_version
from lanectl.adapters.store.settlements import FirstAttempt, SettlementRepository
from lanectl.adapters.store.unit_of_work import UnitOfWork
from lanectl.core import effects as fx
from lanectl.core import site_replica as sr
from lanectl.core.inside import InsideCars, Prepaid
from lanectl.core.lane import InsideCar
from lanectl.service.claims import ClaimLost, PaymentClaim
from lanectl.service.storage import StorageHealth

__all__ = ["MIGRATIONS", "RECORD_COLUMNS", "DatabaseUnusable", "SqliteStore", "StoreError", "migrate",
           "schema_version", "storage_fault"]

T = TypeVar("T")


class SqliteStore:
    """Storage faults (disk full, read-only, I/O error, locked) become StorageUnavailable after a clean rollback,
    are reported to `health` (one log line when they start, one when they end), and end only when a probe that
    needs real disk space succeeds and the barrier audit rows kept in memory meanwhile are written."""

    def __init__(self, path: str | Path, *, destinations: Sequence[str] = (), probe_bytes: int = 256 * 1024,
                 probe_interval_s: float = 5.0, audit_limit: int = 1000, site_booth: Optional[str] = None) -> None:
        self.uow = UnitOfWork(path, probe_bytes=probe_bytes, probe_interval_s=probe_interval_s)
        self.lanes = LaneRepository(self.uow)
        self.audit = BarrierAudit(self.uow, limit=audit_limit)
        self.ledger = LedgerRepository(self.uow)
        self.settlements = SettlementRepository(self.uow)
        self.inbox = InboxRepository(self.uow, self.ledger)
        self.outbox = OutboxRepository(self.uow, self.lanes, self.ledger, destinations)
        self.reads = StoreReads(self.uow.path)  # the booth console's reads: own connection and thread
        # Projections of what was committed, kept in memory and updated after each commit (on the loop).
        self._inside = InsideCars()
        self._balances: dict[str, int] = {}
        self._balances_view: Mapping[str, int] = MappingProxyType(self._balances)
        # In-park replication (site_booth set: this booth's id on the site bus): the other booths' entries, and
        # the lanes' view of the cars inside = ours + theirs, one stay per plate (core/site_replica.py).
        self.replica = ReplicaRepository(self.uow, self.lanes, self.ledger, site_booth) if site_booth else None
        self._remote = sr.RemoteInside()
        self._remote_cars = sr.RemoteCars()
        self._seqs = sr.SeqTracker()
        self._forwarded: dict[str, list[sr.SitePrepay]] = {}  # prepayments kept here for other booths' cars
        self._view = sr.InsideView(self._inside.view, self._remote_cars)

        # The callers' names (lane runner, settlement driver, inbound handlers, outbox relay, control socket).
        self.load_lane_state = self.lanes.load_lane_state
        self.records = self.lanes.records
        self.record = self.lanes.record
        self.mark_action = self.audit.mark_action
        self.defer_action = self.audit.defer_action
        self.barrier_actions = self.audit.barrier_actions
        self.payments = self.ledger.payments
        self.balance_moves = self.ledger.balance_moves
        self.open_settlements = self.settlements.open_settlements
        self.settlement_order = self.settlements.settlement_order
        self.settlement_open = self.settlements.settlement_open
        self.new_attempt = self.settlements.new_attempt
        self.attempts = self.settlements.attempts
        self.mark_attempt = self.settlements.mark_attempt
        self.settle_attempt = self.settlements.settle_attempt
        self.take_ahead = self.settlements.take_ahead
        self.inbox_put = self.inbox.inbox_put
        self.set_mark = self.inbox.set_mark
        self.mark = self.inbox.mark
        self.add_renewal = self.inbox.add_renewal
        self.renewals = self.inbox.renewals
        self.due = self.outbox.due
        self.next_due_at = self.outbox.next_due_at
        self.mark_done = self.outbox.mark_done
        self.mark_retry = self.outbox.mark_retry
        self.mark_dead = self.outbox.mark_dead
        self.outbox_summary = self.outbox.outbox_summary
        self.outbox_depths = self.outbox.outbox_depths
        self.probe = self.uow.probe
        self.watch = self.uow.watch

    # --- lifecycle -------------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Create or open the database (StartupError naming the path when it cannot be), mark the commands a
        dead process left `requested` as interrupted, and load the projections."""
        def _load() -> None:
            self._inside = InsideCars(self.lanes.inside_sync())
            self._view = sr.InsideView(self._inside.view, self._remote_cars)
            if self.replica is not None:
                entries, peers = self.replica.load_sync()
                self._remote = sr.RemoteInside(entries)
                self._remote_cars = sr.RemoteCars()
                for e in entries:
                    self._remote_cars.update(e)
                self._seqs = sr.SeqTracker(dict(peers))
                self._forwarded = self.replica.forwarded_sync()
                self._view = sr.InsideView(self._inside.view, self._remote_cars)
            self._balances.clear()
            self._balances.update(self.ledger.balances_sync())
        await self.uow.open(startup_writes=[self.audit.interrupt_sync], loads=[_load])

    async def close(self) -> None:
        await self.uow.close()
        await self.reads.close()

    # --- what tools and tests reach through the store --------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.uow.path

    @property
    def destinations(self) -> tuple[str, ...]:
        return self.outbox.destinations

    @property
    def health(self) -> StorageHealth:
        return self.uow.health

    @property
    def conn(self) -> sqlite3.Connection:
        return self.uow.conn

    @property
    def probe_interval_s(self) -> float:
        return self.uow.probe_interval_s

    @probe_interval_s.setter
    def probe_interval_s(self, seconds: float) -> None:
        self.uow.probe_interval_s = seconds

    @property
    def _pool(self) -> Executor:
        return self.uow.pool

    @_pool.setter
    def _pool(self, pool: Executor) -> None:  # tests run the writer inline (tests/integration/test_settlement.py)
        self.uow.pool = pool

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.uow.run(fn, *args)

    # --- projections -------------------------------------------------------------------------------------------
    def inside(self) -> dict[str, InsideCar]:
        """Cars inside the lot by our books (open entry records), as a copy."""
        return self._inside.snapshot()

    def inside_view(self) -> Mapping[str, InsideCar]:
        """What a lane step reads, live and read-only (no copy per step): our cars inside, and with site
        replication those the other booths recorded too, one stay per plate."""
        return self._view if self.replica is not None else self._inside.view

    def site_inside(self) -> list[sr.SiteRecord]:
        """The other booths' cars inside, as replicated here."""
        return self._remote.inside()

    def balances(self) -> dict[str, int]:
        """Stored-value balances by plate (fen), as a copy."""
        return dict(self._balances)

    def balances_view(self) -> Mapping[str, int]:
        return self._balances_view

    def write_first_attempts(self, first: FirstAttempt) -> None:
        """A fresh exit's first payment attempt is written with its step (settlements.py `first_attempt`)."""
        self.settlements.first_attempt = first

    # --- a lane step: one transaction over the repositories ----------------------------------------------------
    def commit_lane(self, lane_id: str, state: dict[str, Any], effects: Iterable[fx.Effect],
                    now: datetime, claim: Optional[PaymentClaim] = None) -> "asyncio.Future[None]":
        """The lane's new state and the persistent effects of one event, atomically; then the projections. With
        a `claim`, only if its compare-and-set wins in the same transaction, else ClaimLost (nothing written).
        The transaction is on the writer thread before this returns, and it and the projections finish whatever
        the caller does (cancelling the returned future only stops the wait): a lane awaits it as it is."""
        effects = [e for e in effects if fx.is_persistent(e)]
        closing: list[tuple[sr.RemoteEntry, str]] = []
        if self.replica is not None:
            effects, closing = self._site_closings(effects)

        def committed(result: None) -> None:
            self._inside.apply(effects)
            for entry, _ in closing:
                self._remote.put([entry])
                self._remote_cars.update(entry)
            for e in effects:
                if isinstance(e, fx.DebitBalance):
                    self._balances[e.plate] = self._balances.get(e.plate, 0) - e.amount_fen
        return self.uow.submit(self._commit_sync, lane_id, state, effects, now, closing, claim, then=committed)

    def _commit_sync(self, lane_id: str, state: dict[str, Any], effects: list[fx.Effect], now: datetime,
                     closing: Sequence[tuple[sr.RemoteEntry, str]] = (), claim: Optional[PaymentClaim] = None) -> None:
        stamp = now.isoformat()
        remote = {entry.record.record_id for entry, _ in closing}
        new = {e.record_id for e in effects if isinstance(e, fx.NewRecord)}
        ahead = []  # first attempts of fresh exits, written ahead with their step
        with self.uow.transaction():
            if claim is not None and not self.settlements.claim_sync(claim):
                raise ClaimLost(f"attempt {claim.attempt_id} was confirmed before")  # rolls the step back
            for e in effects:
                if isinstance(e, fx.NewRecord):
                    self.lanes.add_sync(e, stamp)
                elif isinstance(e, fx.PatchRecord):
                    if e.record_id not in remote:  # another booth's entry: closed by a correction below
                        self.lanes.patch_sync(e, stamp)
                elif isinstance(e, fx.RecordPayment):
                    self.ledger.pay_sync(e)
                    self.settlements.delivered_sync(e)
                elif isinstance(e, fx.StartSettlement):
                    attempt = self.settlements.start_sync(e, stamp, now, fresh=e.record_id in new)
                    if attempt is not None:
                        ahead.append(attempt)
                elif isinstance(e, fx.StopSettlement):
                    self.settlements.stop_sync(e, stamp)
                elif isinstance(e, fx.DebitBalance):
                    self.ledger.debit_sync(e)
                elif isinstance(e, (fx.OpenBarrier, fx.CloseBarrier)):
                    self.audit.command_sync(lane_id, e, stamp)
                elif isinstance(e, fx.AuditAction):
                    self.audit.confirm_sync(e)
                elif isinstance(e, fx.Publish):
                    self.outbox.enqueue_sync(e, stamp, now)
            if self.replica is not None:
                self._publish_site_sync(effects, closing, now)
            self.lanes.save_state_sync(lane_id, state, stamp)
        self.settlements.keep_ahead(ahead)

    # --- in-park replication -----------------------------------------------------------------------------------------
    def _site_closings(self, effects: list[fx.Effect]) -> tuple[list[fx.Effect], list[tuple[sr.RemoteEntry, str]]]:
        """The other booths' entries this step closes (the lane patched a stay it saw in the replica), and the
        partition rule: an exit that closes a plate's stay supersedes the plate's other stays inside anywhere."""
        caused_by = next((e.record_id for e in effects if isinstance(e, fx.NewRecord)), "")
        out = list(effects)
        closing: dict[str, tuple[sr.RemoteEntry, str]] = {}
        for e in effects:
            if not isinstance(e, fx.PatchRecord):
                continue
            status = dict(e.changes).get("status")
            if status is None or status == "inside":
                continue
            plate = self._plate_of(e.record_id)
            closed = self._remote.close(e.record_id, status)
            if closed is not None:
                closing[e.record_id] = (closed, caused_by)
            if status != "exited" or plate is None:
                continue
            for other in self._view.others(plate):  # the partition rule
                if other.record_id == e.record_id or other.record_id in closing:
                    continue
                superseded = self._remote.close(other.record_id, "superseded")
                if superseded is not None:
                    closing[other.record_id] = (superseded, caused_by)
                elif self._inside.car(other.record_id) is not None:
                    out.append(fx.PatchRecord(other.record_id, (("status", "superseded"),)))
        return out, list(closing.values())

    def _plate_of(self, record_id: str) -> Optional[str]:
        entry = self._remote.entry(record_id)
        if entry is not None:
            return entry.record.plate
        return next((p for p, c in self._inside.view.items() if c.record_id == record_id), None)

    def _publish_site_sync(self, effects: list[fx.Effect], closing: Sequence[tuple[sr.RemoteEntry, str]],
                           now: datetime) -> None:
        """Every record this step published and every own entry it closed go to the site bus, in order."""
        assert self.replica is not None
        remote = {entry.record.record_id for entry, _ in closing}
        sent: set[str] = set()
        for e in effects:
            if isinstance(e, fx.Publish) and e.record_id not in sent:
                self.replica.publish_record_sync(e.record_id, e.kind, now)
                sent.add(e.record_id)
        for e in effects:  # our own entries closed by this step without a Publish of their own (superseded)
            if isinstance(e, fx.PatchRecord) and e.record_id not in sent and e.record_id not in remote \
                    and self._inside.car(e.record_id) is not None:
                self.replica.publish_record_sync(e.record_id, "entry", now)
                sent.add(e.record_id)
        for entry, caused_by in closing:
            self.replica.publish_correction_sync(entry, entry.closed, caused_by, now)

    async def apply_site(self, record: sr.SiteRecord, now: datetime) -> str:
        """One message from another booth: "applied", "duplicate" (received before) or "own" (ours, echoed).
        An exit or correction that closes one of OUR entries marks it here too (and publishes that)."""
        if self.replica is None:
            raise StoreError("site replication is off (no booth id)")
        if record.booth == self.replica.booth:
            return "own"
        seqs = self._seqs.after(record.booth, record.seq)
        if seqs is None:
            return "duplicate"
        changed = [self._counting(e, record) for e in self._remote.plan(record)]
        ended = sr.closes(record)
        own: Optional[fx.PatchRecord] = None
        if ended is not None and self._inside.car(ended[0]) is not None:
            own = fx.PatchRecord(ended[0], (("status", ended[1]),))
        ours = record.prepay is not None and record.owned_by == self.replica.booth
        try:
            kept = await self.uow.write(self._apply_site_sync, record, changed, own, seqs[0], now, ours)
        finally:
            if record.kind == "entry" and record.plate:  # its marks may have changed in the table
                self.inbox.forget_marks(record.plate)
        self._seqs.mark(record.booth, seqs)
        if kept and record.prepay is not None:  # another booth kept money paid ahead for our car
            self._inside.apply([Prepaid(record.record_id, record.prepay.amount_fen,
                                        datetime.fromisoformat(record.prepay.paid_at))])
        self._remote.put(changed)
        for e in changed:
            self._remote_cars.update(e)
        if own is not None:
            self._inside.apply([own])
        return "applied"

    def _counting(self, entry: sr.RemoteEntry, received: sr.SiteRecord) -> sr.RemoteEntry:
        """The owner's new snapshot, with what we passed on that it does not show yet (never our stored copy,
        which counts it already)."""
        fresh = entry.record is received
        forwarded = self._forwarded.get(entry.record.record_id)
        return replace(entry, record=sr.counting(entry.record, forwarded)) if fresh and forwarded else entry

    def _apply_site_sync(self, record: sr.SiteRecord, changed: list[sr.RemoteEntry], own: Optional[fx.PatchRecord],
                         upto: int, now: datetime, ours: bool = False) -> bool:
        assert self.replica is not None
        booth = record.booth
        kept = False
        with self.uow.transaction():
            if ours:
                kept = self.replica.keep_prepay_sync(record, now)
            self.replica.put_sync(changed, now)
            if record.kind == "entry" and record.plate:
                self.replica.marks_sync(record)
            if own is not None:
                self.lanes.patch_sync(own, now.isoformat())
                self.replica.publish_record_sync(own.record_id, "entry", now)
            self.replica.peer_sync(booth, upto, now)
        return kept

    def site_gaps(self) -> dict[str, int]:
        """Per other booth: the seq up to which every message is here (what a catch-up request asks after)."""
        return dict(self._seqs.upto)

    def site_gap(self, booth: str) -> bool:
        return self._seqs.gap(booth)

    async def site_since(self, after_seq: int, limit: int = 500) -> list[dict[str, Any]]:
        if self.replica is None:
            return []
        return await self.replica.since(after_seq, limit)

    # --- writes that change a projection ---------------------------------------------------------------------------
    async def add_prepayment(self, provider: str, trade_no: str, *, order_id: str, plate: str, amount_fen: int,
                             paid_at: datetime, now: datetime) -> str:
        """Money paid ahead for a car inside: kept against its entry record (found by the order id the platform
        names, else by plate), with a payment row, in one transaction. Returns "recorded", "duplicate" or
        "not_inside" (kept nowhere: the caller logs it for the operator)."""
        car = self._inside.car(order_id)
        if car is None and self.replica is not None:  # another booth's car (issue 17): through the replica
            remote = self._remote_stay(order_id, plate)
            if remote is not None:
                return await self._prepay_remote(provider, trade_no, remote, amount_fen=amount_fen,
                                                 paid_at=paid_at, now=now)
        car = car or self._inside.view.get(plate)
        if car is None:
            return "not_inside"
        replica = self.replica
        then = (lambda: replica.publish_record_sync(car.record_id, "entry", now)) if replica is not None else None
        if not await self.inbox.prepay(provider, trade_no, car, amount_fen, paid_at, now, then):
            return "duplicate"
        self._inside.apply([Prepaid(car.record_id, amount_fen, paid_at)])
        return "recorded"

    def _remote_stay(self, order_id: str, plate: str) -> Optional[sr.RemoteEntry]:
        """Another booth's car inside that a prepay notice names: by the order id (its entry record), else by the
        plate when this booth has no car of that plate inside."""
        entry = self._remote.entry(order_id)
        if entry is not None and not entry.closed:
            return entry
        if plate in self._inside.view:
            return None
        car = self._view.get(plate)
        entry = self._remote.entry(car.record_id) if car is not None else None
        return entry if entry is not None and not entry.closed else None

    async def _prepay_remote(self, provider: str, trade_no: str, entry: sr.RemoteEntry, *, amount_fen: int,
                             paid_at: datetime, now: datetime) -> str:
        """A car another booth recorded (seen here through the replica): the prepayment is kept here once per trade
        (inbox), counted in the replica's entry so an exit here deducts it, and sent to the owner through the
        site_bus outbox in the same transaction; the owner keeps it and republishes its entry."""
        replica = self.replica
        assert replica is not None
        method = f"{provider}:prepay"
        if any(p.method == method and p.reference == trade_no for p in entry.record.payments):
            return "duplicate"  # the owner kept this trade already (the platform told it first): counted once
        held = entry
        prepay = sr.SitePrepay(provider=provider, trade_no=trade_no, amount_fen=amount_fen,
                               paid_at=paid_at.isoformat())
        kept = json.dumps({"record_id": held.record.record_id, "owner": held.record.booth,
                           "prepay": prepay.model_dump(mode="json")}, ensure_ascii=False)
        updated = await self.inbox.prepay_elsewhere(provider, trade_no, kept, now,
                                                    lambda: replica.publish_prepay_sync(held, prepay, now))
        if updated is None:
            return "duplicate"
        self._forwarded.setdefault(held.record.record_id, []).append(prepay)
        self._remote.put([updated])
        self._remote_cars.update(self._remote.entry(updated.record.record_id) or updated)
        return "recorded"

    async def seed_balances(self, opening: dict[str, int], now: datetime) -> list[str]:
        """Opening balances from the configuration, for plates the ledger has never seen (returns them)."""
        seeded = await self.ledger.seed(opening, frozenset(self._balances), now)
        self._balances.update(seeded)  # only once committed
        return list(seeded)

    async def topup(self, plate: str, amount_fen: int, reference: str, now: datetime,
                    operator_uid: Optional[int] = None) -> int:
        """Credit a stored-value balance (operator, reason in `reference`; the operator's unix uid when the
        kernel told it); returns the new balance."""
        balance = await self.ledger.topup(plate, amount_fen, reference, now, operator_uid)
        self._balances[plate] = balance
        return balance
