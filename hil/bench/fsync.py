"""Benchmark: what the write-ahead commit's sync costs on this disk, printed as its own figure.

Two measurements, each against a same-run reference:

- the store's own commit of an entry decision (its record, the OPEN's audit row, the outbox rows, the lane's
  state — the transaction the OPEN waits for), through `SqliteStore.commit_lane` on a scratch database in the
  directory given: the time of the COMMIT statement alone (WAL frames appended + the sync) with the daemon's
  `synchronous=FULL`, next to the same commits on a second store with `synchronous=NORMAL` (no sync per
  commit), the two stores taking turns so the machine's noise lands on both; and the whole transaction (SQL +
  COMMIT) on the writer thread;
- the whole transaction, next to the same on a third store that checkpoints as SQLite does by itself (inside
  the COMMIT that fills the WAL past 1000 pages) — as the daemon did before Dec 2026; it now checkpoints after
  the write has answered (lanectl/adapters/store/unit_of_work.py);
- the raw file system: 64 KiB (about one decision's WAL frames) written and `fdatasync`ed, appended at the end
  of a growing file vs overwritten in place in a file already that large. An append also changes the file's
  size, so its sync commits the file system's journal too; an overwrite syncs data blocks only.

    python -m hil.bench.fsync [--commits 300] [--dir /var/lib/lanectl]

Run it on the lane PC's database disk (`--dir`): the sync's cost is the disk's, not the daemon's. The daemon
does not change its durability for it: the OPEN is sent only after the decision's transaction is synced.
SQLite's WAL is reused in place after each checkpoint (its size is kept), so a commit normally overwrites
blocks it has written before; what it still pays is one data sync of ~16 pages (a record with its 5 indexes,
the audit row, the outbox rows, the lane's state).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from hil.bench.figures import Figure, Figures, percentile

CHUNK = 64 * 1024


def timed_transaction(uow: Any, on_commit: Callable[[float, float, float], None]) -> None:
    """Replace the store's transaction with one that reports (began, COMMIT started, COMMIT done) on the
    monotonic clock — the COMMIT statement is the WAL append and its sync — with the same statements in the same
    order as UnitOfWork.transaction."""
    @contextlib.contextmanager
    def transaction() -> Iterator[Any]:
        conn = uow.conn
        began = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            started = time.monotonic()
            conn.execute("COMMIT")
            on_commit(began, started, time.monotonic())
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    uow.transaction = transaction


@dataclass(frozen=True)
class Result:
    commits: int
    full: list[float]  # seconds: COMMIT statements, synchronous=FULL (the daemon's)
    normal: list[float]  # the same commits without a sync per commit
    transaction: list[float]  # seconds: the whole transaction, FULL
    sqlite_checkpoint: list[float]  # the whole transaction, FULL, with SQLite's own checkpoint inside COMMITs
    append: list[float]  # seconds: 64 KiB appended + fdatasync
    overwrite: list[float]  # 64 KiB overwritten in place + fdatasync
    directory: str

    def lines(self) -> list[str]:
        def row(label: str, xs: list[float]) -> str:
            return (f"  {label:58} p50 {percentile(xs, .5) * 1000:6.2f}  p99 {percentile(xs, .99) * 1000:6.2f}  "
                    f"max {max(xs) * 1000:6.2f} ms")
        return [f"write-ahead commit on {self.directory}, {self.commits} entry decisions (the daemon's transaction)",
                row("COMMIT, synchronous=FULL (the daemon's: append + sync)", self.full),
                row("COMMIT, synchronous=NORMAL (the same, no sync)", self.normal),
                row("whole transaction, FULL (SQL + COMMIT, writer thread)", self.transaction),
                row("same, SQLite checkpoints inside the COMMIT (before)", self.sqlite_checkpoint),
                row("file system: 64 KiB appended + fdatasync", self.append),
                row("file system: 64 KiB overwritten in place + fdatasync", self.overwrite)]

    def figures(self) -> Figures:
        full, normal = self.full, self.normal
        return {
            "commit fsync p50": Figure(percentile(full, .5) * 1000, "ms", percentile(normal, .5) * 1000),
            "commit fsync p99": Figure(percentile(full, .99) * 1000, "ms", percentile(normal, .99) * 1000),
            "whole write-ahead transaction p99": Figure(percentile(self.transaction, .99) * 1000, "ms",
                                                        percentile(self.sqlite_checkpoint, .99) * 1000),
            "64 KiB append + fdatasync p99": Figure(percentile(self.append, .99) * 1000, "ms",
                                                    percentile(self.overwrite, .99) * 1000),
        }


async def _store_commits(directory: Path, n: int) -> tuple[list[float], list[float], list[float], list[float]]:
    from lanectl.adapters.store import SqliteStore
    from lanectl.core import effects as fx
    from lanectl.core.lane import LaneState, make_id

    stores, commits, totals = {}, {}, {}
    for sync in ("FULL", "NORMAL", "SQLITE_CHECKPOINT"):
        store = SqliteStore(directory / f"commit-{sync.lower()}.db", destinations=("bolink", "xft", "tdzn"))
        await store.open()
        level = "NORMAL" if sync == "NORMAL" else "FULL"
        await store.uow.run(lambda s=store, v=level: s.uow.conn.execute(f"PRAGMA synchronous={v}"))
        if sync == "SQLITE_CHECKPOINT":  # as before Dec 2026: SQLite's checkpoint inside the COMMIT, every 1000 pages
            await store.uow.run(lambda s=store: s.uow.conn.execute("PRAGMA wal_autocheckpoint=1000"))
            store.uow._writes_since_checkpoint = -10 ** 9
        commits[sync], totals[sync] = [], []

        def on_commit(began: float, started: float, done: float, sync: str = sync) -> None:
            commits[sync].append(done - started)
            totals[sync].append(done - began)
        timed_transaction(store.uow, on_commit)
        stores[sync] = store
    try:
        now = datetime.now(timezone.utc)
        for i in range(n):
            for sync, store in stores.items():  # taking turns: the machine's noise lands on both
                rid = make_id("in1", now, i + 1)
                effects = [fx.NewRecord(rid, "in1", "entry", f"粤B{i:05d}", "blue", now.isoformat(), "inside",
                                        "temporary", "temporary"),
                           fx.OpenBarrier(f"{rid}-open", rid, "rules", "whitelist"), fx.Publish(rid, "entry")]
                await store.commit_lane("in1", LaneState(seq=i + 1).to_dict(), effects, now)
            await asyncio.sleep(0.01)  # cars come one after another, not in a burst
    finally:
        for store in stores.values():
            await store.close()
    return commits["FULL"], commits["NORMAL"], totals["FULL"], totals["SQLITE_CHECKPOINT"]


def _file_syncs(directory: Path, n: int) -> tuple[list[float], list[float]]:
    out: dict[str, list[float]] = {"append": [], "overwrite": []}
    paths = {kind: directory / f"sync-{kind}" for kind in out}
    fds = {kind: os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600) for kind, path in paths.items()}
    try:
        os.pwrite(fds["overwrite"], b"\0" * CHUNK * n, 0)
        os.fsync(fds["overwrite"])
        for i in range(n):
            for kind, fd in fds.items():  # taking turns
                os.pwrite(fd, os.urandom(CHUNK), i * CHUNK)
                started = time.perf_counter()
                os.fdatasync(fd)
                out[kind].append(time.perf_counter() - started)
            time.sleep(0.005)
    finally:
        for fd in fds.values():
            os.close(fd)
    return out["append"], out["overwrite"]


async def measure(n: int, directory: Path | None = None) -> Result:
    scratch = Path(tempfile.mkdtemp(prefix="lanectl-fsync-", dir=directory or "/tmp"))
    try:
        full, normal, transaction, sqlite_checkpoint = await _store_commits(scratch, n)
        append, overwrite = _file_syncs(scratch, n)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Result(n, full, normal, transaction, sqlite_checkpoint, append, overwrite, str(directory or "/tmp"))


async def figures(smoke: bool = False) -> dict[str, Figures]:
    result = await measure(20 if smoke else 300)
    print("\n".join(result.lines()), flush=True)
    return {"write-ahead commit": result.figures()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=300)
    ap.add_argument("--dir", type=Path, help="a directory on the disk to measure (default /tmp)")
    args = ap.parse_args()
    if args.commits < 2:
        ap.error("--commits: at least 2")
    print("\n".join(asyncio.run(measure(args.commits, args.dir)).lines()))


if __name__ == "__main__":
    main()
