"""When the housekeeping jobs run, and what each last did.

The times come from apscheduler's cron triggers in the lot's zone. The last run of each job (the scheduled time
it was for, when it ran, its result) is kept in the store (`housekeeping_runs`), so the schedule survives a
restart: a run that fell while the daemon was down (or the PC was off) happens right after the next start —
once, however many were missed. The loop reads time only from the injected Clock and naps at most a minute, so
a test drives it with a fake clock and a wall-clock step (NTP, a resumed PC) is noticed within a minute.

Why not apscheduler's own scheduler and job stores: its persistent store needs SQLAlchemy and a second
database; one small table in the store keeps a single file (and the backups carry the schedule too).

A job that fails is logged once when it starts failing and once when it works again; its error is in status.
Nothing a job meets ends the loop (its end would stop the daemon).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from lanectl.adapters.housekeeping.backup import backup_sync
from lanectl.adapters.housekeeping.retention import (candidates_sync, delete_batch_sync, outbox_kinds_sync,
                                                     prune_site_bus_sync)
from lanectl.adapters.housekeeping.shift_report import write_report_sync
from lanectl.adapters.housekeeping.vacuum import vacuum_sync
from lanectl.adapters.store.faults import storage_fault
from lanectl.config.housekeeping import HousekeepingConfig
from lanectl.service.ports import Clock, StorageUnavailable

log = logging.getLogger("lanectl.housekeeping")
JOBS = ("backup", "retention", "vacuum", "report")  # at the same time, in this order: back up, then delete
MAX_NAP_S = 60.0
MAX_CATCH_UP = 4000  # fire times looked at to find the last one missed (11 years of a daily job)
MAX_REPORT_DAYS = 31  # after a long stop, the reports of at most this many missed days are written
Offload = Callable[..., Awaitable[Any]]  # runs a blocking function on a thread (asyncio.to_thread)


@dataclass
class JobState:
    fire_time: Optional[datetime] = None  # the scheduled time the last run was for
    ran_at: Optional[datetime] = None
    ok: Optional[bool] = None
    result: dict[str, Any] = field(default_factory=dict)
    next_run: Optional[datetime] = None
    runs: int = 0  # since this start
    failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"last_run": self.ran_at.isoformat() if self.ran_at else None, "ok": self.ok,
                "result": self.result, "next_run": self.next_run.isoformat() if self.next_run else None,
                "runs": self.runs, "failures": self.failures}


def triggers(cfg: HousekeepingConfig, tz: ZoneInfo) -> dict[str, CronTrigger]:
    def at(hh_mm: str, **more: Any) -> CronTrigger:
        hour, minute = hh_mm.split(":")
        return CronTrigger(hour=int(hour), minute=int(minute), second=0, timezone=tz, **more)
    return {"backup": at(cfg.backup_at), "retention": at(cfg.backup_at),
            "vacuum": at(cfg.vacuum_at, day_of_week=cfg.vacuum_weekday), "report": at(cfg.report_at)}


class Housekeeping:
    def __init__(self, store: Any, cfg: HousekeepingConfig, *, backup_dir: Path, report_dir: Path, clock: Clock,
                 tz: ZoneInfo, offload: Offload = asyncio.to_thread) -> None:
        self.store = store  # SqliteStore: its unit of work (writer thread) and its file
        self.uow = store.uow
        self.cfg = cfg
        self.backup_dir = backup_dir
        self.report_dir = report_dir
        self.clock = clock
        self.tz = tz
        self.offload = offload
        self.triggers = triggers(cfg, tz)
        self.jobs: dict[str, Callable[[datetime], Awaitable[dict[str, Any]]]] = {
            "backup": self.backup, "retention": self.retention, "vacuum": self.vacuum, "report": self.report}
        self.state = {name: JobState() for name in JOBS}
        self.loaded = asyncio.Event()

    # --- the schedule ------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Runs with the daemon; never ends on its own."""
        await self.load()
        while True:
            now = self.clock.now()
            name = min(JOBS, key=lambda n: (self._next(n), JOBS.index(n)))
            due = self._next(name)
            if due > now:
                await self.clock.sleep(min(MAX_NAP_S, (due - now).total_seconds()))
                continue
            await self.run_job(name, self._latest(name, due, now))

    def _latest(self, name: str, due: datetime, now: datetime) -> datetime:
        """Of the runs missed since `due`, the last one: they are made up for by one run, for that time."""
        trigger, latest = self.triggers[name], due
        for _ in range(MAX_CATCH_UP):
            after = trigger.get_next_fire_time(latest, now)
            if after is None or after > now:
                break
            latest = after
        return latest

    def _next(self, name: str) -> datetime:
        st = self.state[name]
        assert st.next_run is not None
        return st.next_run

    async def load(self) -> None:
        """The last runs from the store; each job's next run (at once, if one was missed)."""
        def _read() -> list[Any]:
            return self.uow.conn.execute("SELECT * FROM housekeeping_runs").fetchall()
        try:
            rows = {r["job"]: r for r in await self.uow.run(_read)}
        except Exception as exc:  # never the daemon's end: the jobs still run, from now on
            log.warning("housekeeping: last runs unreadable (%s): each job waits for its next time", _describe(exc))
            rows = {}
        now = self.clock.now()
        for name in JOBS:
            st = self.state[name]
            row = rows.get(name)
            if row is not None:
                st.fire_time = datetime.fromisoformat(row["fire_time"])
                st.ran_at = datetime.fromisoformat(row["ran_at"])
                st.ok = bool(row["ok"])
                st.result = json.loads(row["result"])
            # after a run: the first time after it (in the past if one was missed); never run: the next one
            st.next_run = self.triggers[name].get_next_fire_time(st.fire_time, now)
        self.loaded.set()

    async def run_job(self, name: str, fire_time: Optional[datetime] = None) -> JobState:
        """Run `name` now (for its scheduled `fire_time`, default now), record the result, schedule the next."""
        st = self.state[name]
        fire_time = fire_time or self.clock.now()
        started = self.clock.monotonic()
        try:
            result = await self.jobs[name](fire_time)
            ok = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a job's failure is its result; the schedule goes on
            result, ok = {"error": _describe(exc)}, False
        result["duration_s"] = round(self.clock.monotonic() - started, 3)
        if not ok and st.ok is not False:
            log.error("housekeeping: %s failed: %s (logged once until it works again; see lanectl status)",
                      name, result["error"])
        elif ok and st.ok is False:
            log.info("housekeeping: %s works again", name)
        st.fire_time, st.ran_at, st.ok, st.result = fire_time, self.clock.now(), ok, result
        st.runs += 1
        st.failures += 0 if ok else 1
        # missed several while down: they were one run; the next is the first time still ahead
        st.next_run = self.triggers[name].get_next_fire_time(None, max(fire_time, st.ran_at) + timedelta(seconds=1))
        await self._save(name, st)
        return st

    async def _save(self, name: str, st: JobState) -> None:
        assert st.fire_time is not None and st.ran_at is not None
        row = (name, st.fire_time.isoformat(), st.ran_at.isoformat(), int(bool(st.ok)),
               json.dumps(st.result, ensure_ascii=False))

        def _write() -> None:
            with self.uow.transaction() as conn:
                conn.execute("INSERT INTO housekeeping_runs (job, fire_time, ran_at, ok, result) VALUES (?,?,?,?,?) "
                             "ON CONFLICT (job) DO UPDATE SET fire_time=excluded.fire_time, ran_at=excluded.ran_at, "
                             "ok=excluded.ok, result=excluded.result", row)
        try:
            await self.uow.write(_write)
        except Exception as exc:  # the store logs its own faults; this run may be repeated after a restart
            log.warning("housekeeping: %s result not stored (%s)", name, _describe(exc))

    def status(self) -> dict[str, Any]:
        return {name: st.as_dict() for name, st in self.state.items()}

    # --- the jobs ----------------------------------------------------------------------------------------------
    async def backup(self, fire_time: datetime) -> dict[str, Any]:
        return await self.offload(backup_sync, self.store.path, self.backup_dir, self.cfg.generations,
                                  self.clock.now())

    async def retention(self, fire_time: datetime) -> dict[str, Any]:
        cutoff = (self.clock.now() - timedelta(days=self.cfg.retention_days)).timestamp()
        kinds = await self.uow.run(lambda: outbox_kinds_sync(self.uow.conn))
        after: tuple[float, str] = (float("-inf"), "")
        totals: Counter[str] = Counter()
        batches = 0

        def _batch(after: tuple[float, str]) -> tuple[Optional[tuple[float, str]], dict[str, int]]:
            with self.uow.transaction() as conn:  # chosen and deleted in one transaction: nothing opens between
                found = candidates_sync(conn, cutoff, after, self.cfg.retention_batch)
                if not found:
                    return None, {}
                return found[-1], delete_batch_sync(conn, [rid for _, rid in found], kinds)

        while True:
            last, counts = await self.uow.write(_batch, after)
            if last is None:
                break
            after = last
            batches += 1
            totals.update(counts)
            await self.clock.sleep(0)  # the lanes' writes queued meanwhile go before the next batch

        def _site_bus() -> dict[str, int]:
            with self.uow.transaction() as conn:
                return prune_site_bus_sync(conn, cutoff, self.cfg.retention_batch)

        while True:  # then the site bus log and replica, in batches too
            counts = await self.uow.write(_site_bus)
            totals.update(counts)
            if max(counts.values()) < self.cfg.retention_batch:
                break
            batches += 1
            await self.clock.sleep(0)
        deleted = {k: v for k, v in totals.items() if k != "kept_unsent" and v}
        if deleted:
            log.info("housekeeping: retention deleted %s (records older than %d days); kept %d not yet uploaded",
                     ", ".join(f"{v} {k}" for k, v in sorted(deleted.items())), self.cfg.retention_days,
                     totals["kept_unsent"])
        return {"cutoff": datetime.fromtimestamp(cutoff, self.tz).isoformat(), "batches": batches,
                "deleted": deleted, "kept_unsent": totals["kept_unsent"]}

    async def vacuum(self, fire_time: datetime) -> dict[str, Any]:
        # on the writer thread (VACUUM needs the database to itself); as a read: a full disk fails the job, it
        # does not mark the store faulted
        return await self.uow.run(vacuum_sync, self.uow.conn, self.store.path)

    async def report(self, fire_time: datetime) -> dict[str, Any]:
        """The day that just ended; after a stop, each day since the last report too (at most 31)."""
        last_day = fire_time.astimezone(self.tz).date() - timedelta(days=1)
        previous = self.state["report"].fire_time
        first_day = last_day
        if previous is not None:
            first_day = max(previous.astimezone(self.tz).date(), last_day - timedelta(days=MAX_REPORT_DAYS - 1))
        days, result = [], {}
        day = first_day
        while day <= last_day:
            result = await self.offload(write_report_sync, self.store.path, self.report_dir, day, self.tz)
            days.append(day.isoformat())
            day += timedelta(days=1)
        return {**result, "days": days}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StorageUnavailable):
        return f"storage unavailable: {exc.reason}"
    reason = storage_fault(exc)  # disk full, read-only, I/O error: said the way the store says it
    if reason is not None:
        where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
        return f"{reason}{where}"
    return f"{type(exc).__name__}: {exc}"
