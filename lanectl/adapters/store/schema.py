"""The database schema: versioned migrations, applied in order at open. Never edit a released step."""

from __future__ import annotations

import logging
import sqlite3

from lanectl.adapters.store.faults import StoreError

log = logging.getLogger("lanectl.store")

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
    # v9: in-park replication (issue 17). Our own messages to the site bus are outbox rows numbered per booth
    # (`seq`, NULL for the other destinations), kept after sending to answer catch-up requests; the entries of
    # the OTHER booths (newest snapshot, and whether their stay is over); per other booth, the seq up to which
    # every message was received.
    """
    ALTER TABLE outbox ADD COLUMN seq INTEGER;
    CREATE UNIQUE INDEX outbox_site_seq ON outbox (destination, seq);
    CREATE TABLE site_replica (
        record_id TEXT PRIMARY KEY,
        booth TEXT NOT NULL,
        seq INTEGER NOT NULL,
        plate TEXT NOT NULL,
        closed TEXT NOT NULL DEFAULT '',   -- '' while the car is inside; else exited / superseded / refused
        message TEXT NOT NULL,             -- the newest snapshot received (core/site_replica.py SiteRecord)
        updated_at TEXT NOT NULL
    );
    CREATE INDEX site_replica_inside ON site_replica (closed, plate);
    CREATE TABLE site_peers (
        booth TEXT PRIMARY KEY,
        upto INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
    # v10: scheduled housekeeping (adapters/housekeeping/): each job's last run, so a run missed while the daemon
    # was down happens at the next start; records by time, for retention and the shift report.
    """
    CREATE TABLE housekeeping_runs (
        job TEXT PRIMARY KEY,
        fire_time TEXT NOT NULL,           -- the scheduled time the last run was for (lot time with offset)
        ran_at TEXT NOT NULL,
        ok INTEGER NOT NULL,
        result TEXT NOT NULL               -- JSON: what the run did, or its error
    );
    CREATE INDEX records_ts ON records (ts, record_id);
    """,
    # v11: a plate the booth operator corrected (issue 18): `plate` is the corrected one, `read_plate` what the
    # camera read, `corrected_by` who corrected it ('' on records never corrected).
    """
    ALTER TABLE records ADD COLUMN read_plate TEXT NOT NULL DEFAULT '';
    ALTER TABLE records ADD COLUMN corrected_by TEXT NOT NULL DEFAULT '';
    """,
)


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
