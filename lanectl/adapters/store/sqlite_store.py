"""The local store: one SQLite file (WAL, synchronous=FULL), versioned migrations, one writer thread.

Write ahead, then act: a lane's state change, its records, its barrier-action audit rows and its outbox rows
commit in ONE transaction (`commit_lane`) before anything goes to the wire. The event loop never blocks: every
statement runs on the store's own thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, TypeVar

import sqlite_utils

from lanectl.core import effects as fx
from lanectl.core.lane import InsideCar
from lanectl.service.outbox import OutboxItem
from lanectl.service.ports import StorageUnavailable
from lanectl.startup import EX_CANTCREAT, StartupError, os_reason
from lanectl.service.settlement import ATTEMPT_OPEN, ATTEMPT_PAYABLE, Attempt
from lanectl.service.storage import StorageHealth

log = logging.getLogger("lanectl.store")
T = TypeVar("T")

# Each entry migrates from version i to i+1. Never edit a released step: append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE records (
        record_id TEXT PRIMARY KEY,
        lane_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('entry', 'exit', 'release')),
        plate TEXT NOT NULL,
        color TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL,                 -- local time with offset, as the lane saw it
        ts REAL NOT NULL,                 -- unix seconds, for ordering and filters
        status TEXT NOT NULL,
        vehicle_class TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        entry_record_id TEXT NOT NULL DEFAULT '',
        entered_at TEXT NOT NULL DEFAULT '',
        total_fen INTEGER NOT NULL DEFAULT 0,
        due_fen INTEGER NOT NULL DEFAULT 0,
        paid_fen INTEGER NOT NULL DEFAULT 0,
        operator TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '[]',
        updated_at TEXT NOT NULL
    );
    CREATE INDEX records_plate ON records (plate, ts);
    CREATE INDEX records_lane_ts ON records (lane_id, ts);
    CREATE INDEX records_inside ON records (kind, status);
    CREATE TABLE payments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id TEXT NOT NULL REFERENCES records (record_id),
        lane_id TEXT NOT NULL,
        amount_fen INTEGER NOT NULL CHECK (amount_fen >= 0),
        method TEXT NOT NULL,
        reference TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL
    );
    CREATE TABLE barrier_actions (
        action_id TEXT PRIMARY KEY,
        lane_id TEXT NOT NULL,
        record_id TEXT NOT NULL DEFAULT '',
        command TEXT NOT NULL CHECK (command IN ('open', 'close')),
        authority TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        operator TEXT NOT NULL DEFAULT '',
        trade_no TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('requested', 'sent', 'failed', 'interrupted')),
        requested_at TEXT NOT NULL,
        done_at TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        destination TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'dead')),
        last_error TEXT NOT NULL DEFAULT '',
        done_at TEXT NOT NULL DEFAULT '',
        UNIQUE (destination, key)
    );
    CREATE INDEX outbox_due ON outbox (destination, status, id);
    CREATE TABLE inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        provider TEXT NOT NULL,
        trade_no TEXT NOT NULL,
        received_at TEXT NOT NULL,
        payload TEXT NOT NULL,
        UNIQUE (provider, trade_no)
    );
    CREATE TABLE lane_state (
        lane_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
    # v2: stored-value balances as a ledger: every move is a row; `balances` is their running sum per plate
    """
    CREATE TABLE balance_moves (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        plate TEXT NOT NULL,
        delta_fen INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('opening', 'debit', 'topup')),
        record_id TEXT NOT NULL DEFAULT '',
        reference TEXT NOT NULL DEFAULT '',  -- operator and reason of a top-up
        at TEXT NOT NULL
    );
    CREATE INDEX balance_moves_plate ON balance_moves (plate, id);
    CREATE TABLE balances (
        plate TEXT PRIMARY KEY,
        balance_fen INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
    # v3: exit settlements through payment providers, and their attempts (one per provider and exit)
    """
    ALTER TABLE payments ADD COLUMN flag TEXT NOT NULL DEFAULT '';
    CREATE TABLE settlements (
        record_id TEXT PRIMARY KEY REFERENCES records (record_id),
        lane_id TEXT NOT NULL,
        exit_order TEXT NOT NULL,          -- the StartSettlement effect, as JSON
        status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
        outcome TEXT NOT NULL DEFAULT '',  -- paid | released | abandoned
        created_at TEXT NOT NULL,
        closed_at TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX settlements_open ON settlements (status);
    CREATE TABLE payment_attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id TEXT NOT NULL,
        lane_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        order_ref TEXT NOT NULL,           -- the provider's id for this charge (Bolink order_id, XFT out_trade_no)
        amount_fen INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('charging', 'pending', 'fallback', 'paid', 'failed', 'skipped')),
        trade_no TEXT NOT NULL DEFAULT '',
        paid_fen INTEGER NOT NULL DEFAULT 0,
        method TEXT NOT NULL DEFAULT '',
        delivered INTEGER NOT NULL DEFAULT 0,  -- the lane committed the payment this attempt confirmed
        detail TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        created_ts REAL NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX payment_attempts_ref ON payment_attempts (provider, order_ref);
    CREATE INDEX payment_attempts_record ON payment_attempts (record_id);
    -- what a platform told us about a plate (e.g. Bolink sign-free membership), newest wins
    CREATE TABLE provider_marks (
        provider TEXT NOT NULL,
        plate TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (provider, plate, name)
    );
    """,
    # v4: monthly cards renewed on a platform; applied over the YAML cards at every start
    """
    CREATE TABLE card_renewals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        provider TEXT NOT NULL,
        trade_no TEXT NOT NULL,
        card_id TEXT NOT NULL DEFAULT '',
        plate TEXT NOT NULL DEFAULT '',
        start TEXT NOT NULL DEFAULT '',      -- YYYY-MM-DD or ''
        end TEXT NOT NULL,                   -- YYYY-MM-DD
        amount_fen INTEGER NOT NULL DEFAULT 0,
        received_at TEXT NOT NULL,
        UNIQUE (provider, trade_no)
    );
    """,
    # v5: money paid ahead inside the lot (platform prepay notices), against the entry record
    """
    CREATE TABLE prepayments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        provider TEXT NOT NULL,
        trade_no TEXT NOT NULL,
        entry_record_id TEXT NOT NULL REFERENCES records (record_id),
        amount_fen INTEGER NOT NULL CHECK (amount_fen >= 0),
        paid_at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        UNIQUE (provider, trade_no)
    );
    CREATE INDEX prepayments_entry ON prepayments (entry_record_id);
    """,
    # v6: the camera's picture of the car, where the lane saved it
    """
    ALTER TABLE records ADD COLUMN image TEXT NOT NULL DEFAULT '';
    """,
    # v7: a barrier command's audit tells `sent` (the module acknowledged) from `confirmed` (the limit input
    # agreed) and `unconfirmed` (acknowledged, the limit never came). SQLite cannot alter a CHECK: rebuild.
    """
    CREATE TABLE barrier_actions_v7 (
        action_id TEXT PRIMARY KEY,
        lane_id TEXT NOT NULL,
        record_id TEXT NOT NULL DEFAULT '',
        command TEXT NOT NULL CHECK (command IN ('open', 'close')),
        authority TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        operator TEXT NOT NULL DEFAULT '',
        trade_no TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('requested', 'sent', 'confirmed', 'unconfirmed', 'failed',
                                               'interrupted')),
        requested_at TEXT NOT NULL,
        done_at TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO barrier_actions_v7 SELECT action_id, lane_id, record_id, command, authority, reason, operator,
        trade_no, status, requested_at, done_at, error FROM barrier_actions;
    DROP TABLE barrier_actions;
    ALTER TABLE barrier_actions_v7 RENAME TO barrier_actions;
    CREATE INDEX barrier_actions_lane ON barrier_actions (lane_id, requested_at);
    """,
    # v8: who released a car, as the kernel told it (the control socket caller's unix uid; NULL when the release
    # did not come through the socket, and on rows written before v8), and what a released car's takings were
    # short of (or over) what it owed.
    """
    ALTER TABLE records ADD COLUMN operator_uid INTEGER;
    ALTER TABLE records ADD COLUMN short_fen INTEGER NOT NULL DEFAULT 0 CHECK (short_fen >= 0);
    ALTER TABLE records ADD COLUMN over_fen INTEGER NOT NULL DEFAULT 0 CHECK (over_fen >= 0);
    ALTER TABLE barrier_actions ADD COLUMN operator_uid INTEGER;
    ALTER TABLE balance_moves ADD COLUMN operator_uid INTEGER;
    """,
)

RECORD_COLUMNS = frozenset({"status", "reason", "paid_fen", "due_fen", "total_fen", "operator", "vehicle_class",
                            "entry_record_id", "entered_at", "detail", "operator_uid", "short_fen", "over_fen"})


# A command's outcome (sent / failed) on its audit row: only while it is still `requested` (the limit input may
# already have confirmed it, or a restart marked it interrupted).
_MARK_SQL = "UPDATE barrier_actions SET status=?, done_at=?, error=? WHERE action_id=? AND status='requested'"


class StoreError(Exception):
    pass


class DatabaseUnusable(StartupError, StoreError):
    """The database opens but cannot be used by this version (e.g. a newer schema): one line at start."""


# SQLite primary result codes that mean "the storage cannot take a write now", not "this write is wrong".
_STORAGE_CODES = {
    5: "database locked by another process",  # SQLITE_BUSY (after busy_timeout)
    8: "database is read-only",  # SQLITE_READONLY (read-only file system, file replaced, ...)
    10: "disk I/O error",  # SQLITE_IOERR and its extended codes (write, fsync, shm, ...)
    13: "disk full",  # SQLITE_FULL
    14: "cannot open a database file",  # SQLITE_CANTOPEN (WAL / SHM file)
}
_STORAGE_WORDS = ("database or disk is full", "disk i/o error", "readonly database", "unable to open database",
                  "database is locked")


def storage_fault(exc: BaseException) -> Optional[str]:
    """The reason, if `exc` says the storage cannot be written now (as opposed to a bad statement or row)."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _STORAGE_CODES:
        name = getattr(exc, "sqlite_errorname", "") or _STORAGE_CODES[code & 0xFF]
        return f"{_STORAGE_CODES[code & 0xFF]} ({name}: {exc})"
    text = str(exc).lower()
    if any(w in text for w in _STORAGE_WORDS):
        return str(exc)
    return None


class SqliteStore:
    """Storage faults (disk full, read-only, I/O error, locked) become StorageUnavailable after a clean rollback,
    are reported to `health` (one log line when they start, one when they end), and end only when a probe that
    needs real disk space succeeds and the barrier audit rows kept in memory meanwhile are written."""

    def __init__(self, path: str | Path, *, destinations: Sequence[str] = (), probe_bytes: int = 256 * 1024,
                 probe_interval_s: float = 5.0, audit_limit: int = 1000) -> None:
        self.path = Path(path)
        self.destinations = tuple(destinations)  # where Publish effects fan out to (outbox rows)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lanectl-store")
        self._conn: Optional[sqlite3.Connection] = None
        self._inside: dict[str, InsideCar] = {}
        self._balances: dict[str, int] = {}
        self.health = StorageHealth(str(self.path))
        self.probe_bytes = probe_bytes  # free space a recovery probe must find (a file of this size, fsynced)
        self.probe_interval_s = probe_interval_s  # while faulted: probe this often (writes in between fail fast)
        self.audit_limit = audit_limit
        # Barrier audit written later: rows of commands sent while storage was down, and status updates of
        # commands whose row could not be updated. Guarded by _audit_lock (the loop adds, the writer drains).
        self._audit_lock = threading.Lock()
        self._audit_rows: collections.deque[dict[str, Any]] = collections.deque()
        self._audit_marks: collections.deque[tuple[str, tuple]] = collections.deque()  # (sql, params) updates
        self._deferred_ids: set[str] = set()
        # Writer-thread state: the current fault (None while writable) and when it was last probed.
        self._fault: Optional[str] = None
        self._probed_at = 0.0

    # --- lifecycle -------------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Create or open the database. StartupError (EX_CANTCREAT) names the path when it cannot be: a
        read-only or missing directory that cannot be made, a file in the way, no permission, not a database."""
        await self._run(self._open_sync)

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = "exists but is not a directory" if isinstance(exc, (FileExistsError, NotADirectoryError)) \
                else f"cannot be created: {os_reason(exc)}"
            raise StartupError(f"database directory {self.path.parent}", reason, EX_CANTCREAT) from None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StartupError(f"database {self.path}", f"cannot be opened: {exc}", EX_CANTCREAT) from None
        try:
            conn.row_factory = sqlite3.Row
            # The first statements touch the file: a read-only directory or file fails here, not in connect().
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # records, outbox and inbox must survive power loss
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            migrate(conn)
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            conn.close()
            raise StartupError(f"database {self.path}", f"cannot be opened for writing: {exc}",
                               EX_CANTCREAT) from None
        except StoreError as exc:
            conn.close()
            raise DatabaseUnusable(f"database {self.path}", str(exc), EX_CANTCREAT) from None
        self._conn = conn
        # Commands written ahead but never confirmed sent belong to a process that died: never resend them.
        try:
            n = conn.execute("UPDATE barrier_actions SET status='interrupted', error='daemon stopped before the "
                             "command was confirmed sent' WHERE status='requested'").rowcount
        except sqlite3.Error as exc:
            # Started on a full (or read-only) disk: the lanes can still run safely (they refuse what cannot be
            # written); those rows stay 'requested' and are marked at the next start that can write. Never sent
            # again either way: nothing resends a 'requested' row.
            reason = storage_fault(exc)
            if reason is None:
                raise
            self._fault, self._probed_at = reason, time.monotonic()
            self.health.failed(reason)
            n = 0
        if n:
            log.warning("store: %d barrier command(s) interrupted by the last stop; not repeated", n)
        self._inside = {
            r["plate"]: InsideCar(r["record_id"], datetime.fromisoformat(r["at"]), r["lane_id"], r["reason"], r["color"],
                                  r["paid"] or 0, datetime.fromisoformat(r["paid_at"]) if r["paid_at"] else None,
                                  r["image"])
            for r in conn.execute(
                "SELECT r.plate, r.record_id, r.at, r.lane_id, r.reason, r.color, r.image, "
                "SUM(p.amount_fen) AS paid, "
                "MAX(p.paid_at) AS paid_at FROM records r LEFT JOIN prepayments p ON p.entry_record_id = r.record_id "
                "WHERE r.kind='entry' AND r.status='inside' AND r.plate != '' GROUP BY r.record_id ORDER BY r.ts")
        }
        self._balances = {r["plate"]: r["balance_fen"] for r in conn.execute("SELECT * FROM balances")}

    async def close(self) -> None:
        if self._conn is not None and self.health.queued:
            await self.probe()  # last chance for the audit rows kept in memory
            if self.health.queued:
                log.error("store: closing with %d barrier audit row(s) never written (storage still unavailable)",
                          self.health.queued)

        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        await self._run(_close)
        self._pool.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """A read (or the lifecycle) on the writer thread; a storage fault surfaces as StorageUnavailable."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._reading, fn, *args)

    def _reading(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as exc:
            reason = storage_fault(exc)
            if reason is None:
                raise
            raise StorageUnavailable(reason) from exc

    async def _write(self, fn: Callable[..., T], *args: Any, probe: bool = False) -> T:
        """Every write goes through here: on the writer thread, after any audit rows kept from an outage, with
        its outcome reported to `health`. While faulted, writes fail fast between probes; `probe` forces one."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._writing, probe, fn, *args)

    def _writing(self, probe: bool, fn: Callable[..., T], *args: Any) -> T:
        try:
            if self._fault is not None or self._audit_rows or self._audit_marks:
                self._recover_sync(force=probe)
                self.health.succeeded()  # the kept audit rows are written first, then "recovered" is said
            result = fn(*args)
        except StorageUnavailable as exc:
            self._fault = exc.reason
            self.health.failed(exc.reason)
            raise
        except (sqlite3.Error, OSError) as exc:
            reason = storage_fault(exc)
            if reason is None:
                raise
            self._fault = reason
            self._probed_at = time.monotonic()
            self.health.failed(reason)
            raise StorageUnavailable(reason) from exc
        self.health.succeeded()
        return result

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; on any error a ROLLBACK only if SQLite still has the transaction open (it
        has rolled back by itself on SQLITE_FULL / IOERR), and a failing ROLLBACK never hides the first error."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as exc:
                    log.warning("store: rollback failed after a failed write: %s", exc)
            raise

    # --- storage faults: probe, and the audit kept meanwhile ------------------------------------------------------
    def _recover_sync(self, force: bool = False) -> None:
        """Writer thread, while faulted (or audit rows wait): fail fast between probes; else probe for real space
        and write the kept audit rows first. Raises StorageUnavailable while storage is still down."""
        if not force and self._fault is not None and time.monotonic() - self._probed_at < self.probe_interval_s:
            raise StorageUnavailable(self._fault)
        self._probed_at = time.monotonic()
        try:
            self._probe_space_sync()
            self._flush_audit_sync()
        except (sqlite3.Error, OSError) as exc:
            reason = storage_fault(exc)
            if reason is None:
                raise
            raise StorageUnavailable(reason) from exc
        self._fault = None

    def _probe_space_sync(self) -> None:
        """A full disk still takes writes into pages SQLite allocated before, so a small commit proves little:
        write `probe_bytes` of new data beside the database, fsync it, remove it."""
        probe = self.path.with_name(self.path.name + ".space-probe")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            chunk = b"\0" * 65536
            left = self.probe_bytes
            while left > 0:
                left -= os.write(fd, chunk[:left])
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)

    def _flush_audit_sync(self) -> None:
        with self._audit_lock:
            rows, marks = list(self._audit_rows), list(self._audit_marks)
        if not rows and not marks:
            # still take the write lock once: a database locked by another process is not recovered
            with self._transaction():
                pass
            return
        with self._transaction() as conn:
            for row in rows:
                conn.execute(f"INSERT INTO barrier_actions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))}) "
                             "ON CONFLICT (action_id) DO NOTHING", tuple(row.values()))
            for sql, params in marks:
                conn.execute(sql, params)
        with self._audit_lock:
            for _ in rows:
                self._deferred_ids.discard(self._audit_rows.popleft()["action_id"])
            for _ in marks:
                self._audit_marks.popleft()
            self.health.queued = len(self._audit_rows) + len(self._audit_marks)
        log.info("store: wrote %d barrier audit row(s) and %d status update(s) kept during the outage",
                 len(rows), len(marks))

    def defer_action(self, lane_id: str, effect: fx.OpenBarrier | fx.CloseBarrier | fx.AuditAction,
                     now: datetime) -> bool:
        """A command sent while its audit row could not be written (or a limit input's word on an earlier one):
        keep it to write when storage is back. False if the memory for them is full (counted, logged once)."""
        if isinstance(effect, fx.AuditAction):
            return self._keep_audit(mark=_audit_update(effect))
        return self._keep_audit(row=_action_row(lane_id, effect, now.isoformat()))

    def _keep_audit(self, *, row: Optional[dict[str, Any]] = None,
                    mark: Optional[tuple[str, tuple]] = None) -> bool:
        with self._audit_lock:
            if len(self._audit_rows) + len(self._audit_marks) >= self.audit_limit:
                self.health.dropped += 1
                first = self.health.dropped == 1
                kept = False
            else:
                if row is not None:
                    self._audit_rows.append(row)
                    self._deferred_ids.add(row["action_id"])
                if mark is not None:
                    self._audit_marks.append(mark)
                self.health.queued = len(self._audit_rows) + len(self._audit_marks)
                kept = True
        if not kept and first:
            log.error("store: %d barrier audit rows kept in memory during the outage: no room for more; further "
                      "ones are dropped and counted (lanectl status)", self.audit_limit)
        return kept

    async def probe(self) -> bool:
        """While faulted: try to recover now (a write that needs real space, then the kept audit rows)."""
        if self.health.ok and not self.health.queued:
            return True
        try:
            await self._write(lambda: None, probe=True)
        except StorageUnavailable:
            return False
        return True

    async def watch(self) -> None:
        """Runs with the daemon: probes every `probe_interval_s` while storage is faulted, so it recovers (and
        says so) without waiting for the next write. Never ends on its own."""
        while True:
            await asyncio.sleep(self.probe_interval_s)
            if self._conn is None:
                continue
            try:
                await self.probe()
            except Exception:  # the watcher must outlive anything the probe meets
                log.exception("store: recovery probe failed unexpectedly")

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is not open")
        return self._conn

    # --- lanes ----------------------------------------------------------------------------------------------
    def inside(self) -> dict[str, InsideCar]:
        """Cars inside the lot by our books (open entry records). Kept in memory, updated on commit."""
        return dict(self._inside)

    def balances(self) -> dict[str, int]:
        """Stored-value balances by plate (fen). Kept in memory, updated on commit."""
        return dict(self._balances)

    async def load_lane_state(self, lane_id: str) -> Optional[dict[str, Any]]:
        def _load() -> Optional[dict[str, Any]]:
            row = self.conn.execute("SELECT state FROM lane_state WHERE lane_id=?", (lane_id,)).fetchone()
            return json.loads(row["state"]) if row else None
        return await self._run(_load)

    async def commit_lane(self, lane_id: str, state: dict[str, Any], effects: Iterable[fx.Effect],
                          now: datetime) -> None:
        """The lane's new state and the persistent effects of one event, atomically."""
        effects = [e for e in effects if fx.is_persistent(e)]
        await self._write(self._commit_sync, lane_id, state, effects, now)
        self._update_inside(effects)

    def _commit_sync(self, lane_id: str, state: dict[str, Any], effects: list[fx.Effect], now: datetime) -> None:
        stamp = now.isoformat()
        with self._transaction() as conn:
            db = sqlite_utils.Database(conn)
            for e in effects:
                if isinstance(e, fx.NewRecord):
                    row = asdict(e)
                    row["detail"] = json.dumps(list(e.detail), ensure_ascii=False)
                    row["ts"] = datetime.fromisoformat(e.at).timestamp()
                    row["updated_at"] = stamp
                    db["records"].insert(row)
                elif isinstance(e, fx.PatchRecord):
                    changes = dict(e.changes)
                    bad = set(changes) - RECORD_COLUMNS
                    if bad:
                        raise StoreError(f"cannot patch record columns {sorted(bad)}")
                    changes["updated_at"] = stamp
                    db["records"].update(e.record_id, changes)
                elif isinstance(e, fx.RecordPayment):
                    db["payments"].insert(asdict(e))
                    if e.reference:
                        conn.execute("UPDATE payment_attempts SET delivered=1 WHERE record_id=? AND "
                                     "(trade_no=? OR (trade_no='' AND order_ref=?))",
                                     (e.record_id, e.reference, e.reference))
                elif isinstance(e, fx.StartSettlement):
                    # a car identified later (plate-less, by a platform) re-opens its settlement with the stay
                    conn.execute("INSERT INTO settlements (record_id, lane_id, exit_order, status, created_at) "
                                 "VALUES (?,?,?,?,?) ON CONFLICT (record_id) DO UPDATE SET "
                                 "exit_order=excluded.exit_order, status='open', outcome='', closed_at=''",
                                 (e.record_id, e.lane_id, json.dumps(asdict(e), ensure_ascii=False), "open", stamp))
                elif isinstance(e, fx.StopSettlement):
                    conn.execute("UPDATE settlements SET status='closed', outcome=?, closed_at=? WHERE record_id=?",
                                 (e.outcome, stamp, e.record_id))
                elif isinstance(e, fx.DebitBalance):
                    self._move_sync(e.plate, -e.amount_fen, "debit", e.record_id, "", e.at)
                elif isinstance(e, (fx.OpenBarrier, fx.CloseBarrier)):
                    db["barrier_actions"].insert(_action_row(lane_id, e, stamp))
                elif isinstance(e, fx.AuditAction):
                    conn.execute(*_audit_update(e))
                elif isinstance(e, fx.Publish):
                    self._enqueue_sync(db, e, stamp, now)
            conn.execute(
                "INSERT INTO lane_state (lane_id, state, updated_at) VALUES (?, ?, ?) ON CONFLICT (lane_id) "
                "DO UPDATE SET state=excluded.state, updated_at=excluded.updated_at",
                (lane_id, json.dumps(state, ensure_ascii=False), stamp))

    def _enqueue_sync(self, db: sqlite_utils.Database, e: fx.Publish, stamp: str, now: datetime) -> None:
        row = self.conn.execute("SELECT * FROM records WHERE record_id=?", (e.record_id,)).fetchone()
        if row is None:
            raise StoreError(f"publish of unknown record {e.record_id}")
        payload = _record_dict(row)
        payload["payments"] = [
            {k: p[k] for k in ("amount_fen", "method", "reference", "at", "flag")}
            for p in self.conn.execute("SELECT * FROM payments WHERE record_id=? ORDER BY id", (e.record_id,))]
        for dest in self.destinations:
            self.conn.execute(
                "INSERT INTO outbox (destination, kind, key, payload, created_at, next_at) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT (destination, key) DO NOTHING",
                (dest, e.kind, f"{e.kind}:{e.record_id}", json.dumps(payload, ensure_ascii=False), stamp,
                 now.timestamp()))

    def _move_sync(self, plate: str, delta_fen: int, kind: str, record_id: str, reference: str, at: str,
                   operator_uid: Optional[int] = None) -> int:
        """One ledger move and the plate's new balance (inside the caller's transaction)."""
        self.conn.execute("INSERT INTO balance_moves (plate, delta_fen, kind, record_id, reference, at, operator_uid) "
                          "VALUES (?,?,?,?,?,?,?)", (plate, delta_fen, kind, record_id, reference, at, operator_uid))
        self.conn.execute("INSERT INTO balances (plate, balance_fen, updated_at) VALUES (?,?,?) ON CONFLICT (plate) "
                          "DO UPDATE SET balance_fen=balance_fen+excluded.balance_fen, updated_at=excluded.updated_at",
                          (plate, delta_fen, at))
        return self.conn.execute("SELECT balance_fen FROM balances WHERE plate=?", (plate,)).fetchone()[0]

    async def seed_balances(self, opening: dict[str, int], now: datetime) -> list[str]:
        """Opening balances from the configuration, for plates the ledger has never seen (returns them)."""
        def _seed() -> list[str]:
            balances: dict[str, int] = {}
            with self._transaction():
                for plate, fen in opening.items():
                    if plate not in self._balances:
                        balances[plate] = self._move_sync(plate, fen, "opening", "", "configuration",
                                                          now.isoformat())
            self._balances.update(balances)  # only once committed
            return list(balances)
        return await self._write(_seed)

    async def topup(self, plate: str, amount_fen: int, reference: str, now: datetime,
                    operator_uid: Optional[int] = None) -> int:
        """Credit a stored-value balance (operator, reason in `reference`; the operator's unix uid when the
        kernel told it); returns the new balance."""
        def _topup() -> int:
            with self._transaction():
                balance = self._move_sync(plate, amount_fen, "topup", "", reference, now.isoformat(), operator_uid)
            self._balances[plate] = balance
            return balance
        return await self._write(_topup)

    async def balance_moves(self, plate: Optional[str] = None, limit: int = 50) -> list[dict[str, Any]]:
        def _query() -> list[dict[str, Any]]:
            sql = "SELECT * FROM balance_moves" + (" WHERE plate=?" if plate else "") + " ORDER BY id DESC LIMIT ?"
            return [dict(r) for r in self.conn.execute(sql, ((plate,) if plate else ()) + (limit,))]
        return await self._run(_query)

    def _update_inside(self, effects: list[fx.Effect]) -> None:
        for e in effects:
            if isinstance(e, fx.DebitBalance):
                self._balances[e.plate] = self._balances.get(e.plate, 0) - e.amount_fen
            if isinstance(e, fx.NewRecord) and e.kind == "entry" and e.status == "inside" and e.plate:
                self._inside[e.plate] = InsideCar(e.record_id, datetime.fromisoformat(e.at), e.lane_id, e.reason,
                                                  e.color, image=e.image)
            elif isinstance(e, fx.PatchRecord) and dict(e.changes).get("status") in ("exited", "superseded"):
                for plate, car in list(self._inside.items()):
                    if car.record_id == e.record_id:
                        del self._inside[plate]

    async def mark_action(self, action_id: str, ok: bool, error: str, now: datetime) -> None:
        """A command's outcome on its audit row. Never raises StorageUnavailable: while storage is down (or the
        row itself still waits in memory) the update is kept and written with the kept rows."""
        mark = (_MARK_SQL, ("sent" if ok else "failed", now.isoformat(), error, action_id))
        with self._audit_lock:
            waiting = action_id in self._deferred_ids
        if waiting:
            self._keep_audit(mark=mark)
            return

        def _mark() -> None:
            # only a row still `requested`: the limit input may already have confirmed it
            self.conn.execute(*mark)
        try:
            await self._write(_mark)
        except StorageUnavailable:
            self._keep_audit(mark=mark)

    # --- settlements (service/settlement.py) -----------------------------------------------------------------
    async def open_settlements(self) -> list[fx.StartSettlement]:
        def _query() -> list[fx.StartSettlement]:
            return [fx.StartSettlement(**json.loads(r["exit_order"])) for r in self.conn.execute(
                "SELECT exit_order FROM settlements WHERE status='open' ORDER BY created_at")]
        return await self._run(_query)

    async def settlement_order(self, record_id: str) -> Optional[fx.StartSettlement]:
        def _query() -> Optional[fx.StartSettlement]:
            row = self.conn.execute("SELECT exit_order FROM settlements WHERE record_id=?", (record_id,)).fetchone()
            return fx.StartSettlement(**json.loads(row["exit_order"])) if row else None
        return await self._run(_query)

    async def settlement_open(self, record_id: str) -> bool:
        def _query() -> bool:
            row = self.conn.execute("SELECT status FROM settlements WHERE record_id=?", (record_id,)).fetchone()
            return row is not None and row["status"] == "open"
        return await self._run(_query)

    async def new_attempt(self, record_id: str, lane_id: str, provider: str, order_ref: str, amount_fen: int,
                          now: datetime) -> Attempt:
        """Written ahead of the provider call: a charge that might have reached the platform is never forgotten."""
        def _insert() -> Attempt:
            cur = self.conn.execute(
                "INSERT INTO payment_attempts (record_id, lane_id, provider, order_ref, amount_fen, status, "
                "created_at, created_ts, updated_at) VALUES (?,?,?,?,?,'charging',?,?,?)",
                (record_id, lane_id, provider, order_ref, amount_fen, now.isoformat(), now.timestamp(),
                 now.isoformat()))
            return self._attempt_sync(cur.lastrowid)
        return await self._write(_insert)

    def _attempt_sync(self, attempt_id: Optional[int]) -> Attempt:
        row = self.conn.execute("SELECT * FROM payment_attempts WHERE id=?", (attempt_id,)).fetchone()
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
            return [Attempt.from_row(dict(r)) for r in self.conn.execute(sql, params)]
        return await self._run(_query)

    async def mark_attempt(self, attempt_id: int, status: str, detail: str, now: datetime,
                           *, only_from: Sequence[str] = ATTEMPT_OPEN) -> bool:
        """Move an attempt that is still open (or in `only_from`) to `status`; False if it had settled."""
        def _mark() -> bool:
            cur = self.conn.execute(
                f"UPDATE payment_attempts SET status=?, detail=?, updated_at=? WHERE id=? "
                f"AND status IN ({','.join('?' * len(only_from))})",
                (status, detail[:500], now.isoformat(), attempt_id, *only_from))
            return cur.rowcount == 1
        return await self._write(_mark)

    async def settle_attempt(self, attempt_id: int, paid: bool, trade_no: str, paid_fen: int, method: str,
                             detail: str, now: datetime) -> bool:
        """Paid or failed, once: True only for the call that moved the attempt (a callback and a poll racing
        each other confirm a payment once). Paid may follow a skip or a failure (the driver paid by scanning)."""
        allowed = ATTEMPT_PAYABLE if paid else ATTEMPT_OPEN

        def _settle() -> bool:
            cur = self.conn.execute(
                f"UPDATE payment_attempts SET status=?, trade_no=?, paid_fen=?, method=?, detail=?, updated_at=? "
                f"WHERE id=? AND status IN ({','.join('?' * len(allowed))})",
                ("paid" if paid else "failed", trade_no, paid_fen, method, detail[:500], now.isoformat(), attempt_id,
                 *allowed))
            return cur.rowcount == 1
        return await self._write(_settle)

    # --- inbox and provider marks (platform callbacks) ---------------------------------------------------------
    async def inbox_put(self, provider: str, key: str, payload: str, now: datetime) -> bool:
        """Store a callback before it is acknowledged; False if (provider, key) was already stored (a repeat)."""
        def _put() -> bool:
            cur = self.conn.execute("INSERT INTO inbox (provider, trade_no, received_at, payload) VALUES (?,?,?,?) "
                                    "ON CONFLICT (provider, trade_no) DO NOTHING",
                                    (provider, key, now.isoformat(), payload))
            return cur.rowcount == 1
        return await self._write(_put)

    async def set_mark(self, provider: str, plate: str, name: str, value: str, now: datetime) -> None:
        await self._write(lambda: self.conn.execute(
            "INSERT INTO provider_marks (provider, plate, name, value, updated_at) VALUES (?,?,?,?,?) "
            "ON CONFLICT (provider, plate, name) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
            (provider, plate, name, value, now.isoformat())))

    async def mark(self, provider: str, plate: str, name: str) -> Optional[str]:
        def _get() -> Optional[str]:
            row = self.conn.execute("SELECT value FROM provider_marks WHERE provider=? AND plate=? AND name=?",
                                    (provider, plate, name)).fetchone()
            return row["value"] if row else None
        return await self._run(_get)

    async def add_prepayment(self, provider: str, trade_no: str, *, order_id: str, plate: str, amount_fen: int,
                             paid_at: datetime, now: datetime) -> str:
        """Money paid ahead for a car inside: kept against its entry record (found by the order id the platform
        names, else by plate), with a payment row, in one transaction. Returns "recorded", "duplicate" or
        "not_inside" (kept nowhere: the caller logs it for the operator)."""
        car = next((c for c in self._inside.values() if c.record_id == order_id), None) or self._inside.get(plate)
        if car is None:
            return "not_inside"

        def _add() -> bool:
            with self._transaction() as conn:
                cur = conn.execute(
                    "INSERT INTO prepayments (provider, trade_no, entry_record_id, amount_fen, paid_at, received_at) "
                    "VALUES (?,?,?,?,?,?) ON CONFLICT (provider, trade_no) DO NOTHING",
                    (provider, trade_no, car.record_id, amount_fen, paid_at.isoformat(), now.isoformat()))
                if cur.rowcount == 1:
                    conn.execute("INSERT INTO payments (record_id, lane_id, amount_fen, method, reference, at) "
                                 "VALUES (?,?,?,?,?,?)", (car.record_id, car.lane_id, amount_fen,
                                                          f"{provider}:prepay", trade_no, paid_at.isoformat()))
            return cur.rowcount == 1
        if not await self._write(_add):
            return "duplicate"
        for p, c in list(self._inside.items()):
            if c.record_id == car.record_id:
                latest = paid_at if c.paid_at is None else max(c.paid_at, paid_at)
                self._inside[p] = replace(c, paid_fen=c.paid_fen + amount_fen, paid_at=latest)
        return "recorded"

    async def add_renewal(self, provider: str, trade_no: str, card_id: str, plate: str, start: str, end: str,
                          amount_fen: int, now: datetime) -> bool:
        """Keep a platform card renewal (False if this trade was kept before)."""
        def _add() -> bool:
            cur = self.conn.execute(
                "INSERT INTO card_renewals (provider, trade_no, card_id, plate, start, end, amount_fen, received_at) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (provider, trade_no) DO NOTHING",
                (provider, trade_no, card_id, plate, start, end, amount_fen, now.isoformat()))
            return cur.rowcount == 1
        return await self._write(_add)

    async def renewals(self) -> list[dict[str, Any]]:
        return await self._run(lambda: [dict(r) for r in self.conn.execute(
            "SELECT * FROM card_renewals ORDER BY id")])

    async def payments(self, record_id: str) -> list[dict[str, Any]]:
        def _query() -> list[dict[str, Any]]:
            return [dict(r) for r in self.conn.execute("SELECT * FROM payments WHERE record_id=? ORDER BY id",
                                                       (record_id,))]
        return await self._run(_query)

    # --- queries (CLI through the control socket) -------------------------------------------------------------
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
            db = sqlite_utils.Database(self.conn)
            rows = db["records"].rows_where(" AND ".join(where) or None, params, order_by="ts DESC, rowid DESC",
                                            limit=limit)
            return [_record_dict(r) for r in rows]
        return await self._run(_query)

    async def barrier_actions(self, lane: Optional[str] = None, limit: int = 100) -> list[dict[str, Any]]:
        def _query() -> list[dict[str, Any]]:
            sql = "SELECT * FROM barrier_actions" + (" WHERE lane_id=?" if lane else "") + \
                  " ORDER BY rowid DESC LIMIT ?"
            return [dict(r) for r in self.conn.execute(sql, ((lane,) if lane else ()) + (limit,))]
        return await self._run(_query)

    async def outbox_summary(self, limit: int = 50) -> dict[str, Any]:
        def _query() -> dict[str, Any]:
            counts = {f"{r['destination']}/{r['status']}": r["n"] for r in self.conn.execute(
                "SELECT destination, status, COUNT(*) AS n FROM outbox GROUP BY destination, status")}
            pending = [
                {"id": r["id"], "destination": r["destination"], "kind": r["kind"], "key": r["key"],
                 "attempts": r["attempts"], "created_at": r["created_at"], "last_error": r["last_error"],
                 "next_at": datetime.fromtimestamp(r["next_at"]).astimezone().isoformat()}
                for r in self.conn.execute("SELECT * FROM outbox WHERE status='pending' ORDER BY id LIMIT ?",
                                           (limit,))]
            return {"counts": counts, "pending": pending}
        return await self._run(_query)

    # --- OutboxQueue port (for service/outbox.py) -----------------------------------------------------------
    async def due(self, destination: str, now: datetime, limit: int) -> list[OutboxItem]:
        def _due() -> list[OutboxItem]:
            rows = self.conn.execute(
                "SELECT * FROM outbox WHERE destination=? AND status='pending' ORDER BY id LIMIT ?",
                (destination, limit)).fetchall()
            items = []
            for r in rows:
                if r["next_at"] > now.timestamp():
                    break  # FIFO per destination: a retrying item holds back the ones behind it
                items.append(OutboxItem(r["id"], r["destination"], r["kind"], r["key"], json.loads(r["payload"]),
                                        r["attempts"], datetime.fromisoformat(r["created_at"])))
            return items
        return await self._run(_due)

    async def next_due_at(self, destination: str) -> Optional[float]:
        def _next() -> Optional[float]:
            row = self.conn.execute("SELECT next_at FROM outbox WHERE destination=? AND status='pending' "
                                    "ORDER BY id LIMIT 1", (destination,)).fetchone()
            return row["next_at"] if row else None
        return await self._run(_next)

    async def mark_done(self, item_id: int, now: datetime) -> None:
        await self._write(lambda: self.conn.execute(
            "UPDATE outbox SET status='done', done_at=?, attempts=attempts+1 WHERE id=?",
            (now.isoformat(), item_id)))

    async def mark_retry(self, item_id: int, attempts: int, next_at: datetime, error: str) -> None:
        await self._write(lambda: self.conn.execute(
            "UPDATE outbox SET attempts=?, next_at=?, last_error=? WHERE id=?",
            (attempts, next_at.timestamp(), error[:500], item_id)))

    async def mark_dead(self, item_id: int, error: str, now: datetime) -> None:
        await self._write(lambda: self.conn.execute(
            "UPDATE outbox SET status='dead', last_error=?, done_at=?, attempts=attempts+1 WHERE id=?",
            (error[:500], now.isoformat(), item_id)))


def _audit_update(e: fx.AuditAction) -> tuple[str, tuple]:
    """The limit input's word on a command. confirmed: whatever the row said before (the limit is the stronger
    word, even for a command cut by a restart); unconfirmed: only a command the module acknowledged."""
    allowed = ("requested", "sent", "interrupted", "unconfirmed") if e.status == "confirmed" else ("sent",)
    return (f"UPDATE barrier_actions SET status=?, error=CASE WHEN ?='' THEN error ELSE ? END "
            f"WHERE action_id=? AND status IN ({','.join('?' * len(allowed))})",
            (e.status, e.note, e.note, e.action_id, *allowed))


def _action_row(lane_id: str, e: fx.OpenBarrier | fx.CloseBarrier, stamp: str) -> dict[str, Any]:
    """The barrier_actions row written ahead of a command (status 'requested')."""
    return {"action_id": e.action_id, "lane_id": lane_id, "record_id": e.record_id,
            "command": "open" if isinstance(e, fx.OpenBarrier) else "close",
            "authority": getattr(e, "authority", ""), "reason": e.reason,
            "operator": getattr(e, "operator", ""), "trade_no": getattr(e, "trade_no", ""),
            "operator_uid": getattr(e, "operator_uid", None),
            "status": "requested", "requested_at": stamp}


def _record_dict(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["detail"] = json.loads(d.get("detail") or "[]")
    d.pop("ts", None)
    return d


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection) -> None:
    current = schema_version(conn)
    if current > len(MIGRATIONS):
        raise StoreError(f"database schema v{current} is newer than this lanectl (v{len(MIGRATIONS)}); "
                         "upgrade lanectl or restore a matching database")
    for version in range(current, len(MIGRATIONS)):
        # executescript commits first; the step and its version bump then run in one transaction
        conn.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[version]}\nPRAGMA user_version={version + 1};\nCOMMIT;")
        log.info("store: migrated schema to v%d", version + 1)
