"""The housekeeping schedule on a fake clock: the next run of each job from a fresh start, runs at their times in
order, a run missed while the daemon was down happens at start (once), the schedule survives a restart, and a
backup restored by `lanectl restore` gives a daemon (built by bootstrap) that lists the same records."""

from __future__ import annotations

import asyncio
import json
import socket
from concurrent.futures import Executor, Future
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable


from lanectl.adapters.housekeeping import Housekeeping
from lanectl.adapters.housekeeping.backup import generations
from lanectl.adapters.store import SqliteStore
from lanectl.bootstrap import build_app
from lanectl.cli.main import main
from lanectl.config import load_config
from lanectl.config.housekeeping import HousekeepingConfig
from tests.fakes import FakeClock, FakeControlServer, FakeLaneDevices, FakeListener, FakeNotifier, FakeSession
from tests.integration.test_housekeeping import NOW, TZ, fill, record_ids
from tests.minimal_site import write_minimal_config

MONDAY = NOW  # 2026-06-01 08:00 lot time


class InlineExecutor(Executor):
    """The store's work at once on the loop's thread: the fake clock then sees the loop go quiet only when
    nothing is left to do (a busy writer thread looks idle to it)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        done: Future = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            done.set_exception(exc)
        return done


async def inline(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


async def inline_store(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    store._pool = InlineExecutor()
    await store.open()
    return store


def at(day: int, hh: int, mm: int) -> datetime:
    return datetime(2026, 6, day, hh, mm, tzinfo=TZ)


def schedule(store: SqliteStore, tmp_path: Path, clock: FakeClock) -> Housekeeping:
    return Housekeeping(store, HousekeepingConfig(), backup_dir=tmp_path / "backups",
                        report_dir=tmp_path / "reports", clock=clock, tz=TZ, offload=inline)


def recording(hk: Housekeeping) -> list[tuple[str, datetime]]:
    ran: list[tuple[str, datetime]] = []
    for name in hk.jobs:
        async def job(fire: datetime, name: str = name) -> dict[str, Any]:
            ran.append((name, fire))
            return {}
        hk.jobs[name] = job
    return ran


async def stopped(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_from_a_fresh_start_each_job_waits_for_its_time_and_they_run_in_order(tmp_path):
    store = await inline_store(tmp_path / "lanectl.db")
    clock = FakeClock(MONDAY)
    hk = schedule(store, tmp_path, clock)
    ran = recording(hk)
    task = asyncio.create_task(hk.run())
    try:
        await clock.settle()
        nexts = {name: st["next_run"] for name, st in hk.status().items()}
        assert nexts == {"backup": at(2, 3, 30).isoformat(), "retention": at(2, 3, 30).isoformat(),
                         "report": at(2, 0, 10).isoformat(), "vacuum": at(7, 4, 0).isoformat()}  # Sunday
        assert ran == []  # nothing was missed: nothing runs at start
        await clock.advance((at(2, 3, 30) - MONDAY).total_seconds())
        assert ran == [("report", at(2, 0, 10)), ("backup", at(2, 3, 30)), ("retention", at(2, 3, 30))]
        assert hk.status()["backup"]["next_run"] == at(3, 3, 30).isoformat()
        assert max(clock.sleeps) <= 60  # a wall-clock step is noticed within a minute
        await clock.advance((at(7, 4, 0) - at(2, 3, 30)).total_seconds())
        assert ran.count(("vacuum", at(7, 4, 0))) == 1 and [n for n, _ in ran].count("backup") == 6
    finally:
        await stopped(task)
        await store.close()


async def test_a_run_missed_while_down_happens_at_start_once_and_the_schedule_survives_a_restart(tmp_path):
    path = tmp_path / "lanectl.db"
    store = await inline_store(path)
    # the daemon ran the backup and the report three days ago, then was down until Monday 08:00
    for job, fire in (("backup", at(1, 3, 30) - timedelta(days=3)), ("report", at(1, 0, 10) - timedelta(days=3))):
        store.conn.execute("INSERT INTO housekeeping_runs (job, fire_time, ran_at, ok, result) VALUES (?,?,?,1,?)",
                           (job, fire.isoformat(), fire.isoformat(), json.dumps({})))
    await store.close()
    fill(path, MONDAY - timedelta(days=2), 5).conn.close()

    store = await inline_store(path)
    clock = FakeClock(MONDAY)
    hk = schedule(store, tmp_path, clock)  # the real jobs
    task = asyncio.create_task(hk.run())
    try:
        await clock.settle()
        status = hk.status()
        # missed three times each: run once, at start
        assert status["backup"]["runs"] == 1 and status["backup"]["ok"] and status["backup"]["last_run"] == \
            MONDAY.isoformat()
        assert len(generations(tmp_path / "backups")) == 1
        assert status["report"]["runs"] == 1 and status["report"]["result"]["day"] == "2026-05-31"
        # the run of 05-29 00:10 reported 05-28; the days since are written now
        assert status["report"]["result"]["days"] == ["2026-05-29", "2026-05-30", "2026-05-31"]
        assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
            f"shift-2026-05-{d}.csv" for d in (29, 30, 31)]
        assert status["retention"]["runs"] == 0  # never ran before: it waits for its time
        assert status["backup"]["next_run"] == at(2, 3, 30).isoformat()
    finally:
        await stopped(task)
        await store.close()

    store = await inline_store(path)  # a restart an hour later: nothing is due again
    clock = FakeClock(MONDAY + timedelta(hours=1))
    hk = schedule(store, tmp_path, clock)
    ran = recording(hk)
    task = asyncio.create_task(hk.run())
    try:
        await clock.settle()
        assert ran == []
        assert hk.status()["backup"]["last_run"] == MONDAY.isoformat()  # the stored result, in status
        assert hk.status()["backup"]["next_run"] == at(2, 3, 30).isoformat()
    finally:
        await stopped(task)
        await store.close()


async def test_a_failing_job_is_in_status_and_the_schedule_goes_on(tmp_path):
    store = await inline_store(tmp_path / "lanectl.db")
    clock = FakeClock(MONDAY)
    hk = schedule(store, tmp_path, clock)
    (tmp_path / "backups").write_text("a file where the backup folder should be")
    task = asyncio.create_task(hk.run())
    try:
        await clock.advance((at(2, 3, 30) - MONDAY).total_seconds())
        st = hk.status()
        assert st["backup"]["ok"] is False and "backups" in st["backup"]["result"]["error"]
        assert st["retention"]["ok"] is True  # the next job still ran
        assert st["backup"]["next_run"] == at(3, 3, 30).isoformat()
        assert not task.done()
    finally:
        await stopped(task)
        await store.close()


# --- restore into a daemon --------------------------------------------------------------------------------------
def daemon_adapters() -> dict[str, Any]:
    return dict(clock=FakeClock(NOW), devices=FakeLaneDevices(), listener=FakeListener, control=FakeControlServer,
                session=FakeSession, notifier=FakeNotifier(), raise_nofile=lambda: (4096, 4096))


async def test_a_backup_restored_with_lanectl_restore_gives_a_daemon_that_lists_the_same_records(tmp_path, capsys):
    lot_db = tmp_path / "lot" / "lanectl.db"
    source = SqliteStore(lot_db)
    await source.open()
    await source.close()
    fill(lot_db, NOW - timedelta(days=5), 30).conn.close()
    source = SqliteStore(lot_db)
    await source.open()
    try:
        taken = await Housekeeping(source, HousekeepingConfig(), backup_dir=tmp_path / "backups",
                                   report_dir=tmp_path / "reports", clock=FakeClock(NOW), tz=TZ).run_job("backup")
        before = await source.records(limit=1000)
    finally:
        await source.close()
    assert taken.ok and len(before) == 60

    etc = write_minimal_config(tmp_path)  # this PC: a database with other things in it
    config = load_config(etc)
    here = SqliteStore(config.site.database)
    await here.open()
    await here.close()
    fill(config.site.database, NOW - timedelta(days=1), 2, seed=99).conn.close()
    replaced = record_ids(config.site.database)

    assert main(["restore", "--config", str(etc), taken.result["file"]]) == 0
    out = capsys.readouterr().out
    assert "60 records" in out and "kept as" in out
    kept = next(config.site.database.parent.glob("lanectl.db.before-restore-*"))
    assert record_ids(kept) == replaced  # the database it replaced is kept, not deleted

    app = build_app(config, **daemon_adapters())  # the real SqliteStore on the restored file
    stop = asyncio.Event()
    daemon = asyncio.create_task(app.run(stop))
    try:
        await asyncio.wait_for(app.ready.wait(), 10)
        listed = await app.records(plate=None, lane=None, since=None, until=None, limit=1000)
        assert sorted(r["record_id"] for r in listed) == sorted(r["record_id"] for r in before)
        assert [r["plate"] for r in sorted(listed, key=lambda r: r["record_id"])] == \
            [r["plate"] for r in sorted(before, key=lambda r: r["record_id"])]
        assert "housekeeping" in await app.status()
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 10)


def test_restore_refuses_while_the_daemon_runs(tmp_path, capsys):
    etc = write_minimal_config(tmp_path)
    config = load_config(etc)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(config.site.control.socket))
        live.listen(1)
        assert main(["restore", "--config", str(etc), str(tmp_path / "any.db")]) == 1
    assert "stop it first" in capsys.readouterr().err
    assert not config.site.database.exists()
