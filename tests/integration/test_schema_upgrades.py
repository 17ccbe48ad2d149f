"""Upgrades: a database that each earlier lanectl version filled (tests/schema_fixtures.py) is migrated to the
current schema with every row kept, the new columns at their defaults and the file sound; then the daemon,
started on it, lists the same records, keeps the pending uploads pending, resumes the open settlement and
has the same balances and cars inside. A database newer than this lanectl is refused by name."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from lanectl.adapters.store import MIGRATIONS, SqliteStore, migrate, schema_version
from lanectl.bootstrap import build_app, outbox_destinations
from lanectl.config import load_config
from lanectl.startup import StartupError
from tests.fakes import FakeControlServer, FakeLaneDevices, FakeListener, FakeNotifier
from tests.minimal_site import write_minimal_config
from tests.schema_fixtures import (ENTRY, EXIT, build_fixture, columns, create_at, open_business, rewritten,
                                   snapshot, tables)

CURRENT = len(MIGRATIONS)
EARLIER = range(1, CURRENT)  # a new schema version brings its own fill (schema_fixtures.FILLS), nothing else


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """One file per earlier version, built once; each test works on its own copy."""
    d = tmp_path_factory.mktemp("schemas")
    return {v: build_fixture(d / f"lanectl-v{v}.db", v) for v in EARLIER}


def copy_of(fixtures: dict[int, Path], version: int, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(fixtures[version], where / "lanectl.db"))


def default_of(conn: sqlite3.Connection, sql_default: Any) -> Any:
    """A column's declared default as the value SQLite gives an existing row (NULL when none is declared)."""
    return None if sql_default is None else conn.execute(f"SELECT {sql_default}").fetchone()[0]


def shape(conn: sqlite3.Connection) -> dict[str, Any]:
    """Tables with their columns (name, type, not null, default, pk) and indexes (name, columns, unique)."""
    return {t: ([tuple(r)[1:] for r in conn.execute(f"PRAGMA table_info({t})")],
                sorted((r[1], r[2], tuple(c[2] for c in conn.execute(f"PRAGMA index_info({r[1]})")))
                       for r in conn.execute(f"PRAGMA index_list({t})")))
            for t in tables(conn)}


def test_the_fixtures_are_the_versions_they_claim(fixtures):
    for version, path in fixtures.items():
        with sqlite3.connect(path) as conn:
            assert schema_version(conn) == version
            assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] > 50
            created = create_at(path.with_name(f"empty-v{version}.db"), version)
            assert shape(conn) == shape(created)  # the released steps, nothing more
            created.close()


@pytest.mark.parametrize("version", EARLIER)
def test_an_earlier_database_migrates_with_every_row_kept(fixtures, version, tmp_path):
    path = copy_of(fixtures, version, tmp_path)
    before = snapshot(path)
    with sqlite3.connect(path) as old:
        old_columns = {t: columns(old, t) for t in tables(old)}

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys=ON")
        migrate(conn)
        assert schema_version(conn) == CURRENT
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        fresh = create_at(tmp_path / "fresh.db", CURRENT)
        assert shape(conn) == shape(fresh)  # the same schema as a database created by this version
        fresh.close()

        for table in tables(conn):
            now_columns = columns(conn, table)
            if table not in old_columns:  # a table added since: there, and empty
                assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, table
                continue
            kept = [c for c in old_columns[table] if c not in rewritten(version, table)]
            rows = conn.execute(f"SELECT {', '.join(kept)} FROM {table}").fetchall()
            assert sorted((tuple(zip(kept, r)) for r in rows), key=repr) == \
                sorted((tuple(p for p in row if p[0] in kept) for row in before[table]), key=repr), table
            for added in set(now_columns) - set(kept):  # every old row has the new column's default
                want = default_of(conn, now_columns[added])
                got = {r[0] for r in conn.execute(f"SELECT DISTINCT {added} FROM {table}")}
                assert got <= {want}, f"{table}.{added}: {got} (default {want!r})"
    finally:
        conn.close()


def test_migrating_again_changes_nothing(fixtures, tmp_path):
    path = copy_of(fixtures, 1, tmp_path)
    with sqlite3.connect(path, isolation_level=None) as conn:
        migrate(conn)
    once = snapshot(path)
    with sqlite3.connect(path, isolation_level=None) as conn:
        migrate(conn)
        assert schema_version(conn) == CURRENT
    assert snapshot(path) == once


async def test_a_newer_database_is_refused_by_name_and_left_alone(fixtures, tmp_path):
    path = copy_of(fixtures, 1, tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={CURRENT + 1}")
    before = snapshot(path)
    store = SqliteStore(path)
    with pytest.raises(StartupError) as refused:
        await store.open()
    assert str(path) in str(refused.value)
    assert f"v{CURRENT + 1} is newer than this lanectl (v{CURRENT})" in str(refused.value)
    await store.close()
    assert snapshot(path) == before  # not migrated, not touched


# --- the daemon on an upgraded database ---------------------------------------------------------------------
LANES = {ENTRY: "id: {id}\ndirection: entry\ndevices:\n  barrier: {{kind: modbus_rtu, port: /dev/null-a, unit: 1}}\n",
         EXIT: "id: {id}\ndirection: exit\npayments: [xft]\n"
               "devices:\n  barrier: {{kind: modbus_rtu, port: /dev/null-a, unit: 2}}\n"}


def dead_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def site_on(tmp_path: Path, database: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Two lanes as the fixtures have them; the exit charges through XFT, whose address nobody listens on (a
    resumed charge is written ahead, then fails: nothing leaves this machine)."""
    monkeypatch.setenv("LANECTL_TEST_XFT_KEY", "xft-key-for-upgrade-tests")
    etc = write_minimal_config(tmp_path, database=str(database), payments={"xft": {
        "base_url": f"http://127.0.0.1:{dead_port()}/parking", "app_id": "wx1", "merchant_code": "M1",
        "store_code": "S1", "key": {"env": "LANECTL_TEST_XFT_KEY"}, "notify_url": "https://lane.example.com/xft/notify",
        "relation_check": False, "timeout_s": 1.0}})
    (etc / "lanes" / "in1.yaml").unlink()
    for lane, text in LANES.items():
        (etc / "lanes" / f"{lane}.yaml").write_text(text.format(id=lane))
    return load_config(etc)


async def eventually(check, timeout_s: float = 5.0) -> Any:
    async with asyncio.timeout(timeout_s):
        while not (result := await check()):
            await asyncio.sleep(0.02)
    return result


@pytest.mark.parametrize("version", EARLIER)
async def test_the_daemon_starts_on_an_upgraded_database_with_nothing_lost(fixtures, version, tmp_path,
                                                                           monkeypatch):
    path = copy_of(fixtures, version, tmp_path / "db")
    left = open_business(path)
    config = site_on(tmp_path, path, monkeypatch)
    store = SqliteStore(path, destinations=outbox_destinations(config))  # the real store migrates at open
    app = build_app(config, store=store, devices=FakeLaneDevices(), listener=FakeListener,
                    control=FakeControlServer, notifier=FakeNotifier(), raise_nofile=lambda: (4096, 4096))
    stop = asyncio.Event()
    daemon = asyncio.create_task(app.run(stop))
    try:
        await asyncio.wait_for(app.ready.wait(), 10)
        assert schema_version(store.conn) == CURRENT

        listed = await app.records(plate=None, lane=None, since=None, until=None, limit=10_000)
        waiting = set(left["open_settlements"])  # a resumed settlement may move its own exit record on
        assert {r["record_id"]: (r["kind"], r["plate"], r["status"], r["total_fen"], r["paid_fen"])
                for r in listed if r["record_id"] not in waiting} == \
            {k: v for k, v in left["records"].items() if k not in waiting}
        assert {r["record_id"] for r in listed} == set(left["records"])
        plate = next(r["plate"] for r in listed if r["plate"].startswith("粤B") and r["kind"] == "entry")
        assert {r["plate"] for r in await app.records(plate=plate, lane=None, since=None, until=None,
                                                      limit=100)} == {plate}

        outbox = await app.outbox(limit=1000)
        assert [(p["id"], p["destination"], p["key"]) for p in outbox["pending"]] == left["pending_outbox"]

        assert (await app.balances(plate=None, limit=100))["balances"] == left["balances"]
        inside = store.inside()
        assert {plate: car.record_id for plate, car in inside.items()} == left["inside"]
        assert {car.record_id: car.paid_fen for car in inside.values() if car.paid_fen} == left["prepaid"]
        audit = await store.barrier_actions(limit=100_000)
        assert not [a for a in audit if a["status"] == "requested"]  # the dead process's command: interrupted

        assert [o.record_id for o in await store.open_settlements()] == left["open_settlements"]
        for record_id in waiting:  # resumed: a charge written ahead of the call to the platform
            attempts = await eventually(lambda: store.attempts(record_id=record_id))
            assert attempts[0].provider == "xft" and attempts[0].amount_fen == 1500
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 10)


async def test_an_upgrade_stopped_by_a_full_disk_keeps_every_row_and_the_next_start_finishes_it(fixtures):
    """Each step commits on its own: a disk that fills during the upgrade (the v7 rebuild of a long barrier
    history needs its size again in the WAL) leaves the file at the last step that fit, nothing lost; the
    next start with room takes it from there."""
    from tests.tmpfs import fill, small_tmpfs
    with small_tmpfs("32m") as fs:
        path = Path(shutil.copy(fixtures[1], fs / "lanectl.db"))
        with sqlite3.connect(path) as conn:  # years of barrier commands: the rebuild needs megabytes
            conn.executemany("INSERT INTO barrier_actions (action_id, lane_id, record_id, command, status, "
                             "requested_at) VALUES (?, 'east_in', '', 'open', 'sent', '2025-12-01T08:00:00+08:00')",
                             ((f"east_in_old_{n}",) for n in range(40_000)))
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = snapshot(path)
        fill(fs / "filler")
        with open(fs / "filler", "r+b") as f:  # room for the small steps, not for the rebuild
            f.truncate(f.seek(0, 2) - 512 * 1024)

        store = SqliteStore(path)
        with pytest.raises(StartupError) as full:
            await store.open()
        await store.close()
        assert str(path) in str(full.value) and "full" in str(full.value)
        with sqlite3.connect(path) as conn:
            stopped_at = schema_version(conn)
            kept = {t: list(columns(conn, t)) for t in before}
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert 1 < stopped_at < 7, stopped_at  # here v6: the small steps fit, the rebuild did not
        for table, rows in before.items():  # every row, whatever step it stopped at
            assert [tuple(p for p in row if p[0] in kept[table]) for row in rows] == rows, table
        assert snapshot(path)["barrier_actions"] == before["barrier_actions"]

        (fs / "filler").unlink()
        store = SqliteStore(path)
        await store.open()
        try:
            assert schema_version(store.conn) == CURRENT
            assert len(await store.barrier_actions(limit=100_000)) == len(before["barrier_actions"])
            assert len(await store.records(limit=100_000)) == len(before["records"])
        finally:
            await store.close()
