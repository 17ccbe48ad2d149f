"""Schema migration of a year of records: a database as the oldest schema (v1) left it after a busy year,
migrated to the current schema the way the daemon does it at start.

    python -m hil.bench.migration [--rows 1000000] [--dir DIR] [--keep]

`--rows` is the number of lane records (entries and exits; ~1 M is a year of a lot with ~1 400 cars a day).
With them, as v1 wrote them: two barrier commands per record that opened the arm, a webhook upload per record
(the last few still pending), a booth payment per paid exit, and the lane states. The migration runs in a
child process opened like the store opens the file (WAL, synchronous=FULL, foreign keys on), so its peak
memory is its own. Prints the build time, the migration time, rows per second, the file size before and after
(database + WAL, then after a checkpoint), the child's peak RSS, and the first store open on the result
(projections loaded: cars inside, balances). Seeded, so two runs build the same file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from hil.bench.figures import Figure, Figures

LOT_TZ = timezone(timedelta(hours=8))
YEAR_START = datetime(2025, 12, 1, tzinfo=LOT_TZ)
PROVINCES = "粤京沪苏浙鲁川湘鄂闽皖赣豫冀"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
BATCH = 20_000
PENDING_UPLOADS = 50  # the webhook was down for the last few minutes before the upgrade


@dataclass(frozen=True)
class Result:
    records: int
    rows: int  # every row in the file (records, barrier commands, uploads, payments, lane states)
    build_s: float
    migrate_s: float
    from_version: int
    to_version: int
    size_before: int  # database + WAL, bytes
    size_after: int  # database + WAL right after the migration
    size_checkpointed: int
    peak_rss_kb: int  # the migrating process
    baseline_rss_kb: int  # the same process before it migrated (interpreter + lanectl)
    open_s: float  # first SqliteStore.open on the migrated file
    steps: dict[str, float]  # seconds to reach each version

    def lines(self) -> list[str]:
        mib = 1024 * 1024
        return [
            f"records: {self.records}  rows in the file: {self.rows}  (built in {self.build_s:.1f} s)",
            f"migration v{self.from_version} -> v{self.to_version}: {self.migrate_s:.2f} s  "
            f"({self.rows / max(self.migrate_s, 1e-9):,.0f} rows/s, "
            f"{self.records / max(self.migrate_s, 1e-9):,.0f} records/s)",
            f"file: {self.size_before / mib:.1f} MiB before, {self.size_after / mib:.1f} MiB after "
            f"(with WAL), {self.size_checkpointed / mib:.1f} MiB checkpointed; the upgrade needed "
            f"{(self.size_after - self.size_before) / mib:.1f} MiB free (its WAL)",
            f"peak RSS of the migrating process: {self.peak_rss_kb / 1024:.1f} MiB "
            f"(baseline {self.baseline_rss_kb / 1024:.1f} MiB)",
            "per step: " + "  ".join(f"{v} {s:.2f} s" for v, s in self.steps.items()),
            f"first store open after the upgrade (cars inside, balances loaded): {self.open_s:.2f} s",
        ]


def _plate(rng: random.Random) -> str:
    tail = "".join(rng.choice(LETTERS + "0123456789") for _ in range(4))
    if rng.random() < 0.15:  # new-energy: 8 characters
        return f"{rng.choice(PROVINCES)}{rng.choice(LETTERS)}{rng.choice('DF')}{rng.randrange(10)}{tail}"
    return f"{rng.choice(PROVINCES)}{rng.choice(LETTERS)}{rng.randrange(10)}{tail}"


def _visits(records: int, seed: int) -> Iterator[tuple[tuple, ...]]:
    """(records, barrier actions, uploads, payments) of one car at a time, spread over a year, in time order."""
    rng = random.Random(seed)
    cars = (records + 1) // 2
    step = 365 * 86400 / max(cars, 1)
    seq = {"east_in": 0, "east_out": 0}
    made = 0

    def rid(lane: str, at: datetime) -> str:
        seq[lane] += 1
        return f"{lane}_{at.strftime('%Y%m%d%H%M%S')}_{seq[lane]}"

    still_inside = min(200, records // 10)  # the last cars are still inside when the upgrade comes
    for n in itertools.count():
        entered = YEAR_START + timedelta(seconds=n * step + rng.uniform(0, step))
        plate = _plate(rng)
        color = "green" if len(plate) == 8 else "blue"
        e_at = entered.isoformat()
        entry = rid("east_in", entered)
        refused = rng.random() < 0.005
        recs, acts, ups, pays = [], [], [], []
        left_lot = not refused and made + 2 <= records - still_inside
        status = "refused" if refused else ("exited" if left_lot else "inside")
        recs.append((entry, "east_in", "entry", plate, color, e_at, entered.timestamp(), status, "temporary",
                     "blacklist" if refused else "temporary", "", "", 0, 0, 0, "", '["临时车"]', e_at))
        ups.append(("webhook", "entry", entry, e_at))
        if not refused:
            for cmd, dt in (("open", 0), ("close", 9)):
                acts.append((rid("east_in", entered), "east_in", entry, cmd, "rules" if cmd == "open" else "",
                             "temporary" if cmd == "open" else "car_passed", "sent",
                             (entered + timedelta(seconds=dt)).isoformat(),
                             (entered + timedelta(seconds=dt + 1)).isoformat()))
        made += 1
        if left_lot:
            stay = rng.choice((20, 45, 90, 150, 240, 480, 600, 1440)) + rng.uniform(0, 30)
            left = entered + timedelta(minutes=stay)
            l_at = left.isoformat()
            fee = 0 if stay < 30 else min(500 + 100 * max(0, math.ceil((stay - 60) / 60)), 3000)  # 5 yuan, then 1/h
            exit_id = rid("east_out", left)
            roll = rng.random()
            status = "released" if roll < 0.01 else ("abandoned" if roll < 0.015 else "leaving")
            paid = fee if status == "leaving" else 0
            recs.append((exit_id, "east_out", "exit", plate, color, l_at, left.timestamp(), status, "temporary",
                         "manual" if status == "released" else "", entry, e_at, fee, fee, paid,
                         "李四" if status == "released" else "",
                         json.dumps([f"停车{int(stay) // 60}小时{int(stay) % 60}分", f"应收{fee / 100:.2f}元"],
                                    ensure_ascii=False), l_at))
            ups.append(("webhook", "exit", exit_id, l_at))
            if paid:
                pays.append((exit_id, "east_out", paid, rng.choice(("cash", "wechat_qr", "alipay_qr")), "", l_at))
            if status != "abandoned":
                for cmd, dt in (("open", 0), ("close", 8)):
                    acts.append((rid("east_out", left), "east_out", exit_id, cmd,
                                 ("operator" if status == "released" else "rules") if cmd == "open" else "",
                                 ("manual" if status == "released" else "paid") if cmd == "open" else "car_passed",
                                 "sent", (left + timedelta(seconds=dt)).isoformat(),
                                 (left + timedelta(seconds=dt + 1)).isoformat()))
            made += 1
        yield tuple(recs), tuple(acts), tuple(ups), tuple(pays)
        if made >= records:
            break


def build_v1(path: Path, records: int, seed: int = 20261207) -> int:
    """The v1 file after a year: returns how many rows it holds. Built fast (no journal); the result is a
    plain WAL database as v1 left it, at user_version 1."""
    from lanectl.adapters.store.schema import MIGRATIONS
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.executescript(f"BEGIN;\n{MIGRATIONS[0]}\nPRAGMA user_version=1;\nCOMMIT;")
        conn.execute("BEGIN")
        batch: tuple[list, list, list, list] = ([], [], [], [])

        def flush() -> None:
            conn.executemany("INSERT INTO records (record_id, lane_id, kind, plate, color, at, ts, status, "
                             "vehicle_class, reason, entry_record_id, entered_at, total_fen, due_fen, paid_fen, "
                             "operator, detail, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch[0])
            conn.executemany("INSERT INTO barrier_actions (action_id, lane_id, record_id, command, authority, "
                             "reason, status, requested_at, done_at) VALUES (?,?,?,?,?,?,?,?,?)", batch[1])
            # the upload as v1 queued it: the record as it stood, with its payments (none yet at the entry)
            conn.executemany("INSERT INTO outbox (destination, kind, key, payload, created_at, attempts, status, "
                             "done_at) SELECT ?1, ?2, ?2 || ':' || r.record_id, json_object("
                             "'record_id', r.record_id, 'lane_id', r.lane_id, 'kind', r.kind, 'plate', r.plate, "
                             "'color', r.color, 'at', r.at, 'status', r.status, 'vehicle_class', r.vehicle_class, "
                             "'reason', r.reason, 'entry_record_id', r.entry_record_id, 'entered_at', r.entered_at, "
                             "'total_fen', r.total_fen, 'due_fen', r.due_fen, 'paid_fen', r.paid_fen, "
                             "'operator', r.operator, 'detail', json(r.detail), 'updated_at', r.updated_at, "
                             "'payments', json_array()), ?4, 1, 'done', ?4 FROM records r WHERE r.record_id = ?3",
                             batch[2])
            conn.executemany("INSERT INTO payments (record_id, lane_id, amount_fen, method, reference, at) "
                             "VALUES (?,?,?,?,?,?)", batch[3])
            for b in batch:
                b.clear()

        for recs, acts, ups, pays in _visits(records, seed):
            for into, rows in zip(batch, (recs, acts, ups, pays)):
                into.extend(rows)
            if len(batch[0]) >= BATCH:
                flush()
        flush()
        conn.execute("UPDATE outbox SET status='pending', attempts=0, done_at='' WHERE id > "
                     "(SELECT MAX(id) FROM outbox) - ?", (PENDING_UPLOADS,))
        for lane in ("east_in", "east_out"):
            conn.execute("INSERT INTO lane_state (lane_id, state, updated_at) VALUES (?, ?, ?)",
                         (lane, json.dumps({"phase": "idle", "seq": records, "visit": None, "io": None,
                                            "barrier_fault": "", "last_plate": "", "last_plate_at": None,
                                            "held": None, "deadlines": [], "pending_action": ""}),
                          YEAR_START.isoformat()))
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
        return sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                   for t in ("records", "barrier_actions", "outbox", "payments", "lane_state"))
    finally:
        conn.close()


def size_of(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def peak_rss_kb() -> int:
    """This process's peak resident memory since it started (VmHWM: not inherited from the parent that
    built the file, as ru_maxrss is across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def migrate_here(path: Path) -> dict[str, float]:
    """In this process: open like the store does, migrate, report time and memory (the child's job)."""
    import logging

    from lanectl.adapters.store.schema import migrate, schema_version

    class StepTimes(logging.Handler):
        """The real `migrate` logs each version it reaches: the time between those lines is each step's."""

        def __init__(self) -> None:
            super().__init__(logging.INFO)
            self.done: list[tuple[int, float]] = []

        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("store: migrated schema to v"):
                self.done.append((int(record.args[0]), time.perf_counter()))  # type: ignore[index]

    steps = StepTimes()
    store_log = logging.getLogger("lanectl.store")
    store_log.addHandler(steps)
    store_log.setLevel(logging.INFO)
    baseline = peak_rss_kb()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    before = schema_version(conn)
    start = time.perf_counter()
    migrate(conn)
    seconds = time.perf_counter() - start
    marks = [start] + [t for _, t in steps.done]
    per_step = {f"v{v}": marks[i + 1] - marks[i] for i, (v, _) in enumerate(steps.done)}
    after = schema_version(conn)
    size_after = size_of(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"seconds": seconds, "steps": per_step, "from": before, "to": after, "size_after": size_after,
            "size_checkpointed": size_of(path), "peak_rss_kb": peak_rss_kb(),
            "baseline_rss_kb": baseline}


def first_open(path: Path) -> float:
    import asyncio

    from lanectl.adapters.store import SqliteStore

    async def _open() -> float:
        store = SqliteStore(path)
        start = time.perf_counter()
        await store.open()
        seconds = time.perf_counter() - start
        await store.close()
        return seconds
    return asyncio.run(_open())


def run(records: int, directory: Path) -> Result:
    path = directory / "lanectl-v1.db"
    path.unlink(missing_ok=True)
    start = time.perf_counter()
    rows = build_v1(path, records)
    build_s = time.perf_counter() - start
    size_before = size_of(path)
    child = subprocess.run([sys.executable, "-m", "hil.bench.migration", "--migrate-only", str(path)],
                           capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2])
    m = json.loads(child.stdout.strip().splitlines()[-1])
    return Result(records=records, rows=rows, build_s=build_s, migrate_s=m["seconds"], from_version=m["from"],
                  to_version=m["to"], size_before=size_before, size_after=m["size_after"],
                  size_checkpointed=m["size_checkpointed"], peak_rss_kb=m["peak_rss_kb"],
                  baseline_rss_kb=m["baseline_rss_kb"], open_s=first_open(path), steps=m["steps"])


def figures(smoke: bool = False) -> dict[str, Figures]:
    records = 2000 if smoke else 1_000_000
    with tempfile.TemporaryDirectory(prefix="lanectl-migration-") as directory:
        r = run(records, Path(directory))
    print("\n".join(r.lines()), flush=True)
    return {"schema migration": {
        f"v{r.from_version} -> v{r.to_version}, {records:,} records": Figure(r.migrate_s, "s"),
        "rows migrated per second": Figure(r.rows / max(r.migrate_s, 1e-9), "rows/s"),
        "peak RSS of the migrating process": Figure(r.peak_rss_kb / 1024, "MiB", r.baseline_rss_kb / 1024),
        "first store open after the upgrade": Figure(r.open_s, "s"),
    }}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="lane records in the v1 database")
    parser.add_argument("--dir", type=Path, help="where to build the file (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the migrated file")
    parser.add_argument("--migrate-only", type=Path, help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args(argv)
    if args.migrate_only:
        print(json.dumps(migrate_here(args.migrate_only)))
        return 0
    if args.rows < 2:
        parser.error("--rows: at least 2 (one car in and out)")
    directory = args.dir or Path(tempfile.mkdtemp(prefix="lanectl-migration-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        for line in run(args.rows, directory).lines():
            print(line)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    if args.keep:
        print(f"kept: {directory / 'lanectl-v1.db'} (now at the current schema)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
