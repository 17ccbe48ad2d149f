"""Housekeeping on a real SQLite file: the daily backup (a copy that opens with the same records, N generations,
a failed one leaves the others), retention (old settled and uploaded records go with their rows, anything still
open stays), VACUUM shrinking the file, the shift report's contents, and a backup restored into a daemon."""

from __future__ import annotations

import asyncio
import csv
import random
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lanectl.adapters.housekeeping import Housekeeping
from lanectl.adapters.housekeeping.backup import RestoreError, generations, restore_sync
from lanectl.adapters.store import SqliteStore
from lanectl.adapters.store.schema import MIGRATIONS
from lanectl.config.housekeeping import HousekeepingConfig
from tests.fakes import FakeClock
from tests.schema_fixtures import ENTRY, EXIT, Lot
from tests.tmpfs import small_tmpfs

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 6, 1, 8, 0, tzinfo=TZ)


def fill(path: Path, start: datetime, visits: int, seed: int = 7) -> Lot:
    """Cars in and out (paid cash, uploaded) written the way the lanes write them, from `start` on."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys=ON")
    lot = Lot(conn, random.Random(seed), start)
    conn.execute("BEGIN")
    for _ in range(visits):
        lot.visit(lot.plate(), 45, fee_fen=500)
    conn.execute("COMMIT")
    return lot


async def opened(path: Path) -> SqliteStore:
    store = SqliteStore(path, destinations=["webhook"])
    await store.open()
    return store


def housekeeping(store: SqliteStore, tmp_path: Path, clock: FakeClock, **cfg) -> Housekeeping:
    return Housekeeping(store, HousekeepingConfig(**cfg), backup_dir=tmp_path / "backups",
                        report_dir=tmp_path / "reports", clock=clock, tz=TZ)


def record_ids(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT record_id FROM records")}
    finally:
        conn.close()


@pytest.fixture
async def new_db(tmp_path: Path) -> Path:
    path = tmp_path / "db" / "lanectl.db"
    store = await opened(path)  # created and migrated as the daemon does
    await store.close()
    return path


# --- backup ------------------------------------------------------------------------------------------------------
async def test_a_backup_opens_with_the_same_records_and_n_generations_are_kept(new_db, tmp_path):
    fill(new_db, NOW - timedelta(days=3), 20).conn.close()
    store = await opened(new_db)
    clock = FakeClock(NOW)
    hk = housekeeping(store, tmp_path, clock, generations=3)
    try:
        first = await hk.run_job("backup")
        assert first.ok, first.result
        copy = Path(first.result["file"])
        assert record_ids(copy) == record_ids(new_db) and len(record_ids(copy)) == 40
        assert first.result["records"] == 40
        for _ in range(4):
            await clock.advance(86400)
            st = await hk.run_job("backup")
            assert st.ok, st.result
        kept = generations(tmp_path / "backups")
        assert len(kept) == 3 and kept[-1] == Path(st.result["file"])
        assert copy not in kept  # the oldest went first
        assert st.result["kept"] == 3 and len(st.result["removed"]) == 1
        assert not list((tmp_path / "backups").glob("*.part"))
    finally:
        await store.close()


async def test_a_backup_does_not_wait_for_a_lane_commit_in_progress_and_copies_only_what_was_committed(new_db,
                                                                                                       tmp_path):
    fill(new_db, NOW - timedelta(days=1), 50).conn.close()
    store = await opened(new_db)
    hk = housekeeping(store, tmp_path, FakeClock(NOW))
    # a lane step half-way through its transaction on the writer thread (the write lock held, not committed)
    await store.uow.run(lambda: store.conn.execute("BEGIN IMMEDIATE"))
    await store.uow.run(lambda: store.conn.execute("DELETE FROM payments"))
    try:
        st = await asyncio.wait_for(hk.run_job("backup"), 10)
    finally:
        await store.uow.run(lambda: store.conn.execute("ROLLBACK"))
        await store.close()
    assert st.ok, st.result
    copy = sqlite3.connect(st.result["file"])
    try:
        assert copy.execute("SELECT count(*) FROM payments").fetchone()[0] == 50  # the uncommitted delete is not in it
    finally:
        copy.close()
    assert record_ids(Path(st.result["file"])) == record_ids(new_db)


async def test_a_backup_that_fills_the_disk_fails_once_in_status_and_leaves_the_previous_ones(new_db, tmp_path,
                                                                                            caplog):
    fill(new_db, NOW - timedelta(days=3), 10).conn.close()
    with small_tmpfs("1m") as disk:
        store = await opened(new_db)
        clock = FakeClock(NOW)
        hk = Housekeeping(store, HousekeepingConfig(generations=5), backup_dir=disk / "backups",
                          report_dir=tmp_path / "reports", clock=clock, tz=TZ)
        try:
            for _ in range(2):
                assert (await hk.run_job("backup")).ok
                await clock.advance(3600)
            before = generations(disk / "backups")
            # the lot grows past what the backup disk holds
            fill(new_db, NOW - timedelta(days=2), 1500, seed=8).conn.close()
            caplog.set_level("ERROR", logger="lanectl.housekeeping")
            failed = await hk.run_job("backup")
            await clock.advance(3600)
            again = await hk.run_job("backup")
        finally:
            await store.close()
        assert not failed.ok and not again.ok
        assert "full" in failed.result["error"]  # SQLITE_FULL or ENOSPC, as the disk filled
        assert generations(disk / "backups") == before and len(before) == 2
        assert not list((disk / "backups").glob("*.part"))  # no half copy left taking the space
        assert hk.status()["backup"]["ok"] is False and hk.status()["backup"]["failures"] == 2
        assert len([r for r in caplog.records if "backup failed" in r.getMessage()]) == 1  # logged once


# --- retention ------------------------------------------------------------------------------------------------------
async def test_retention_deletes_old_settled_uploaded_records_and_keeps_what_is_still_open(new_db, tmp_path, caplog):
    old = NOW - timedelta(days=500)
    lot = fill(new_db, old, 25)  # 50 old records, all paid and uploaded
    conn = lot.conn
    conn.execute("BEGIN")
    pending_exit = lot.visit(lot.plate(), 30, fee_fen=300, outbox="pending")  # not uploaded yet
    dead_exit = lot.visit(lot.plate(), 30, fee_fen=300, outbox="dead")  # given up on: nobody has it
    still_inside = lot.arrive(lot.plate())  # an entry a year and a half old, the car never left
    settling = lot.visit(lot.plate(), 30, fee_fen=300)
    conn.execute("INSERT INTO settlements (record_id, lane_id, exit_order, status, created_at) "
                 "VALUES (?, ?, '{}', 'open', ?)", (settling, EXIT, old.isoformat()))
    charging = lot.visit(lot.plate(), 30, fee_fen=300)
    conn.execute("INSERT INTO payment_attempts (record_id, lane_id, provider, order_ref, amount_fen, status, "
                 "created_at, created_ts, updated_at) VALUES (?, ?, 'xft', 'o1', 300, 'pending', ?, ?, ?)",
                 (charging, EXIT, old.isoformat(), old.timestamp(), old.isoformat()))
    lot.move("粤B00001", 1000, "opening")
    replicating = lot.visit(lot.plate(), 30, fee_fen=300)  # uploaded, but its site bus message is still queued
    for seq, rid, status in ((1, replicating, "pending"), (2, pending_exit, "done")):
        conn.execute("INSERT INTO outbox (destination, kind, key, payload, created_at, status, seq) "
                     "VALUES ('site_bus', 'exit', ?, '{}', ?, ?, ?)", (f"exit:{rid}:{seq}", old.isoformat(), status,
                                                                      seq))
    conn.execute("COMMIT")
    lot.clock = NOW - timedelta(days=10)
    conn.execute("BEGIN")
    recent = [lot.visit(lot.plate(), 30, fee_fen=200) for _ in range(3)]
    conn.execute("COMMIT")
    old_ids = {r[0] for r in conn.execute("SELECT record_id FROM records WHERE ts < ?",
                                          ((NOW - timedelta(days=400)).timestamp(),))}
    conn.close()
    keep = {pending_exit, dead_exit, still_inside, settling, charging, replicating}

    store = await opened(new_db)
    hk = housekeeping(store, tmp_path, FakeClock(NOW), retention_batch=10)
    caplog.set_level("INFO", logger="lanectl.housekeeping")
    try:
        st = await hk.run_job("retention")
    finally:
        await store.close()
    assert st.ok, st.result
    left = record_ids(new_db)
    assert keep <= left and set(recent) <= left
    gone = old_ids - keep
    assert not gone & left and len(gone) == 50 + 5 * 2 + 1 - len(keep)  # a visit: entry + exit; one car inside
    deleted = st.result["deleted"]
    assert deleted["records"] == len(gone) and st.result["batches"] >= len(gone) // 10
    assert st.result["kept_unsent"] == 3  # the pending and the dead upload, the queued site bus message
    conn = sqlite3.connect(new_db)
    try:
        for table, column in (("payments", "record_id"), ("barrier_actions", "record_id"),
                              ("payment_attempts", "record_id"), ("settlements", "record_id")):
            orphans = conn.execute(f"SELECT count(*) FROM {table} WHERE {column} != '' AND {column} NOT IN "
                                   "(SELECT record_id FROM records)").fetchone()[0]
            assert orphans == 0, table
        keys = {r[0] for r in conn.execute("SELECT key FROM outbox")}
        assert not {k for k in keys if k.split(":")[1] in gone and not k.endswith(":2")}
        assert f"exit:{pending_exit}" in keys and f"exit:{dead_exit}" in keys
        # the site bus log is never trimmed here: its highest seq numbers the booth's next message
        assert conn.execute("SELECT count(*) FROM outbox WHERE destination='site_bus'").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM balance_moves").fetchone()[0] == 1  # the ledger stays
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()
    assert any(f"{len(gone)} records" in r.getMessage() for r in caplog.records)


async def test_retention_trims_the_site_bus_log_and_the_replica_but_never_what_is_unsent_or_the_top_seq(
        new_db, tmp_path):
    old, recent = NOW - timedelta(days=500), NOW - timedelta(days=3)
    lot = fill(new_db, old, 3)  # three old visits: their records go
    conn = lot.conn
    going = [r[0] for r in conn.execute("SELECT record_id FROM records")]
    conn.execute("BEGIN")
    inside = lot.arrive(lot.plate())  # an old entry still inside: kept, and so is its message
    rows = [(rid, "done", old) for rid in going]  # sent long ago, the record goes: the message goes
    rows += [(inside, "done", old),  # its record stays: kept
             ("B-0001", "done", old),  # a correction of another booth's record, sent long ago: goes
             ("B-0002", "pending", old),  # never sent: kept whatever its age
             ("B-0003", "done", recent),  # sent three days ago: kept
             ("B-0004", "done", old)]  # the highest seq: kept, it numbers the next message
    for seq, (rid, status, at) in enumerate(rows, start=1):
        conn.execute("INSERT INTO outbox (destination, kind, key, payload, created_at, next_at, status, seq) "
                     "VALUES ('site_bus', 'exit', ?, '{}', ?, ?, ?, ?)",
                     (f"exit:{rid}:{seq}", at.isoformat(), at.timestamp(), status, seq))
    for rid, closed, at in (("C-1", "exited", old), ("C-2", "", old), ("C-3", "exited", recent)):
        conn.execute("INSERT INTO site_replica (record_id, booth, seq, plate, closed, message, updated_at) "
                     "VALUES (?, 'B', 1, '粤A00001', ?, '{}', ?)", (rid, closed, at.isoformat()))
    conn.execute("COMMIT")
    conn.close()

    store = await opened(new_db)
    try:
        st = await housekeeping(store, tmp_path, FakeClock(NOW), retention_batch=10).run_job("retention")
    finally:
        await store.close()
    assert st.ok, st.result
    assert st.result["deleted"]["site_bus_sent"] == len(going) + 1
    assert st.result["deleted"]["site_replica"] == 1
    conn = sqlite3.connect(new_db)
    try:
        left = {r[0] for r in conn.execute("SELECT key FROM outbox WHERE destination='site_bus'")}
        assert {k.split(":")[1] for k in left} == {inside, "B-0002", "B-0003", "B-0004"}
        assert {r[0] for r in conn.execute("SELECT record_id FROM site_replica")} == {"C-2", "C-3"}
        # the booth's next message is numbered after the highest seq it ever used (ReplicaRepository._next_seq_sync)
        assert conn.execute("SELECT MAX(seq) FROM outbox WHERE destination='site_bus'").fetchone()[0] == len(rows)
    finally:
        conn.close()


async def test_a_lane_write_waits_for_one_retention_batch_not_for_the_whole_run(new_db, tmp_path):
    fill(new_db, NOW - timedelta(days=600), 1000).conn.close()
    store = await opened(new_db)
    hk = housekeeping(store, tmp_path, FakeClock(NOW), retention_batch=10)
    try:
        retention = asyncio.create_task(hk.run_job("retention"))
        await asyncio.sleep(0)  # it has queued its first work on the writer thread

        def lane_step() -> None:
            with store.uow.transaction() as conn:
                conn.execute("INSERT INTO lane_state (lane_id, state, updated_at) VALUES ('in1', '{}', 'now')")
        await store.uow.write(lane_step)
        assert not retention.done()  # the lane's write went between two batches
        st = await retention
    finally:
        await store.close()
    assert st.ok and st.result["deleted"]["records"] == 2000 and st.result["batches"] == 200


async def test_retention_with_nothing_old_deletes_nothing(new_db, tmp_path):
    fill(new_db, NOW - timedelta(days=30), 5).conn.close()
    store = await opened(new_db)
    try:
        st = await housekeeping(store, tmp_path, FakeClock(NOW)).run_job("retention")
    finally:
        await store.close()
    assert st.ok and st.result["deleted"] == {} and len(record_ids(new_db)) == 10


# --- VACUUM / ANALYZE ----------------------------------------------------------------------------------------------
async def test_vacuum_gives_back_what_retention_freed(new_db, tmp_path):
    fill(new_db, NOW - timedelta(days=600), 1500).conn.close()
    store = await opened(new_db)
    hk = housekeeping(store, tmp_path, FakeClock(NOW))
    try:
        assert (await hk.run_job("retention")).result["deleted"]["records"] == 3000
        st = await hk.run_job("vacuum")
        stats = await store.uow.run(lambda: store.conn.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0])
    finally:
        await store.close()
    assert st.ok, st.result
    assert st.result["bytes_after"] < st.result["bytes_before"] / 3
    assert stats > 0  # ANALYZE ran


# --- shift report --------------------------------------------------------------------------------------------------
async def test_the_shift_report_counts_the_day_and_its_money(new_db, tmp_path):
    day = date(2026, 5, 31)
    lot = fill(new_db, datetime(2026, 5, 31, 7, 0, tzinfo=TZ), 3)  # 3 in, 3 out, 3 x 5.00 cash
    conn = lot.conn
    conn.execute("BEGIN")
    lot.visit(lot.plate(), 60, fee_fen=800, method="xft")
    entry = lot.arrive(lot.plate())
    at = lot.tick(90)
    released = lot.record(EXIT, "exit", "粤B99999", at, "released", entry_record_id=entry, total_fen=900,
                          due_fen=900, paid_fen=600, operator="赵六", short_fen=300, reason="manual")
    lot.pay(released, EXIT, 600, "cash", at)
    lot.record(EXIT, "release", "", at + timedelta(minutes=5), "released", operator="王五", reason="manual")
    conn.execute("COMMIT")
    lot.clock = datetime(2026, 6, 1, 9, 0, tzinfo=TZ)  # the next day: not in the report
    conn.execute("BEGIN")
    lot.visit(lot.plate(), 60, fee_fen=1000)
    conn.execute("COMMIT")
    conn.close()

    store = await opened(new_db)
    try:
        st = await housekeeping(store, tmp_path, FakeClock(NOW)).run_job(
            "report", datetime(2026, 6, 1, 0, 10, tzinfo=TZ))
    finally:
        await store.close()
    assert st.ok, st.result
    path = tmp_path / "reports" / "shift-2026-05-31.csv"
    assert st.result["file"] == str(path) and st.result["day"] == day.isoformat()
    rows = {(r["section"], r["key"]): r for r in csv.DictReader(path.open(encoding="utf-8"))}
    assert rows[("summary", "entries")]["count"] == "5"
    assert rows[("summary", "exits")]["count"] == "5"
    assert rows[("entries", ENTRY)]["count"] == "5"
    assert rows[("money", "cash")]["count"] == "4" and rows[("money", "cash")]["amount_fen"] == "2100"
    assert rows[("money", "xft")]["amount_fen"] == "800"
    assert rows[("summary", "money")]["amount_fen"] == "2900"
    assert rows[("summary", "releases")]["count"] == "2"
    assert rows[("operator", "赵六")]["short_fen"] == "300" and rows[("operator", "赵六")]["amount_fen"] == "600"
    assert rows[("operator", "王五")]["count"] == "1"
    assert rows[("summary", "short_over")]["short_fen"] == "300"


# --- restore ------------------------------------------------------------------------------------------------------
def test_restore_refuses_what_is_not_a_sound_lanectl_database(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(RestoreError, match="not a lanectl database"):
        restore_sync(junk, tmp_path / "lanectl.db", len(MIGRATIONS), NOW)
    with pytest.raises(RestoreError, match="no such file"):
        restore_sync(tmp_path / "missing.db", tmp_path / "lanectl.db", len(MIGRATIONS), NOW)
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute("CREATE TABLE records (record_id TEXT)")
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(RestoreError, match="newer than this lanectl"):
        restore_sync(newer, tmp_path / "lanectl.db", len(MIGRATIONS), NOW)
    assert not (tmp_path / "lanectl.db").exists()
