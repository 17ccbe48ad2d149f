"""Benchmark: the daemon's own work between a plate line decoded and the OPEN handed to the barrier driver,
in-process and without the rig, next to a bare SQLite transaction on the same disk in the same run.

The daemon as `lanectl run` builds it (lanectl/bootstrap.py build_app: its SqliteStore on a scratch file with the
daemon's pragmas, its policy, metrics, lane runners, logging at INFO to a file as to the journal), with one
entry and one exit lane whose barrier is a double that notes when `open()` is called. Cars alternate:
a whitelisted car enters, then leaves free at the exit (its stay matched, its entry record closed); `--inside`
other cars are parked in the lot first, as in a real one. For each car, on the monotonic clock:

- queue: the PlateRead handed to the lane (`emit`, as a plate reader does) -> the lane takes it off its queue
- decide: -> the write-ahead commit called (core decision: rules, tariff, match, the state to store)
- commit: -> the commit done (writer-thread hop, SQL, COMMIT with synchronous=FULL, hop back), of which
  `COMMIT` is the statement alone (WAL frames appended + the sync: the disk's cost)
- hand-over: commit done -> `open()` called on the barrier driver
- total: emit -> `open()`

and after each car, the floor: the same disk's cheapest durable write — one row INSERTed and COMMITted with
synchronous=FULL in WAL on a connection of its own, on the bench's thread (no hop) — and the same through a
one-thread executor as the store's (`floor + hop`). Read the total as "our cost over the floor": what the daemon
does on top of the sync it must pay before an OPEN.

    python -m hil.bench.decision_path [--cars 300] [--inside 300] [--dir /var/lib/lanectl] [--log-level INFO]

What was changed, each step measured here (Dec 2026, a 2-core machine shared with other work, /tmp; p50 in ms,
the median of 4 runs of 200 cars, the versions taking turns; "own" = total less the COMMIT statement):

    change                                                        decide  commit  hand-over  total   own
    before                                                          0.60    0.98     0.27     1.90   1.51
    lane state stored without asdict's deep copy; the policy's       0.28    0.95     0.26     1.55   1.17
      `present` and the exit's exact match read through the cars
      inside (no copy / no normalizing of the whole lot per car)
    store rows: statements built once per table and columns,         0.30    0.88     0.27     1.50   1.12
      effects to rows without asdict
    outbox: nothing read for a booth that uploads nowhere, the        0.30    0.76     0.26     1.41   1.04
      payload serialized once for all destinations
    the OPEN handed to the driver before the step's other work       0.31    0.83     0.06     1.27   0.88
      (log line, board, status, listeners)
    an OPEN decision builds the lane's next state in one replace     0.27    0.82     0.05     1.21   0.83
    the commit on the writer thread when called, one hop back         0.28    0.82     0.05     1.22   0.82
      (8 runs taking turns with the step before: total 1.15 -> 1.12, own 0.79 -> 0.76; with the loop kept busy
      by 8 callbacks of 25 us every 2 ms, 3 runs: total 1.32 / 1.51 / 1.51 -> 1.33 / 1.32 / 1.35, hand-over
      0.27 / 0.09 / 0.27 -> 0.05 — the hops it removes are where other ready work gets in)

The floor meanwhile: 0.49-0.53 ms. Before and after all of it, 4 runs each of 300 cars taking turns: total p50
1.76 -> 1.17 ms, p99 3.12 -> 2.22 ms, own work p50 1.36 -> 0.76 ms (the floor 0.51 / 0.55 ms).
The last change (the Modbus request without a task of its own, and the step's own work after the loop's next
turn so the serial transport writes the frame first) does not show here (the barrier double has no transport);
`decision_latency --trace` at 115200, 2 runs of 40 cars each way, taking turns: the frame on the wire p50
1.86 / 1.89 -> 1.47 / 1.49 ms.

Where the rest goes (p50): the COMMIT ~0.4 ms (the disk's sync, as the floor's); the SQL around it ~0.2 ms
(BEGIN IMMEDIATE, the record with its indexes, the audit row, the lane's state, an exit's PATCH of its entry);
the hops to the writer thread and back ~0.1 ms; the decision ~0.27 ms, of which `handle` is 45 us (entry) /
66 us (exit) when hot but 4-5x that here: after 20 ms idle the same call takes ~300 us (caches and clock speed
of an idle core — a lane PC is idle between cars, so every line on this path is paid at its cold price); the
lane's queue ~0.05 ms. Tried and dropped: sys.setswitchinterval(0.0005) (6 pairs of runs: no difference beyond
which of a pair ran first).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Optional
from zoneinfo import ZoneInfo

import yaml

from hil.bench.figures import Figure, Figures, percentile

TZ = "Asia/Shanghai"
PAUSE_S = 0.02  # between cars: the writer thread's after-work (the command's outcome, a checkpoint) is done
STAGES = ("queue", "decide", "commit", "COMMIT", "hand-over", "total")


def entry_plates(n: int) -> list[str]:
    return [f"粤B{20000 + i:05d}" for i in range(n)]


def write_config(directory: Path, plates: list[str]) -> Path:
    """A site like the rig's (hil/rig.py) with an entry lane and an exit lane; the bench's plates whitelisted."""
    etc = directory / "etc"
    (etc / "lanes").mkdir(parents=True)
    site = {"park_id": "bench", "timezone": TZ, "database": str(directory / "lanectl.db"),
            "http": {"listen": "127.0.0.1:0"}, "lan": {"listen": "127.0.0.1:0"},
            "control": {"socket": str(directory / "control.sock")},
            "tariffs": {"default": {"free_minutes": 0, "first_minutes": 60, "first_fen": 500,
                                    "increment_minutes": 60, "increment_fen": 100,
                                    "no_entry": "fixed", "no_entry_fen": 1000}},
            "vehicles": {"whitelist": {p: {"kind": "vip"} for p in plates}}}
    (etc / "site.yaml").write_text(yaml.safe_dump(site, allow_unicode=True, sort_keys=False))
    for lane_id, direction, unit in (("in1", "entry", 1), ("out1", "exit", 2)):
        doc = {"id": lane_id, "direction": direction,
               "devices": {"barrier": {"kind": "modbus_rtu", "port": "/dev/null-bench", "unit": unit}},
               "rules": {"duplicate_window_s": 5}}
        (etc / "lanes" / f"{lane_id}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return etc


class BarrierDouble:
    """The Barrier port: notes when an OPEN reaches it; the bench plays the arm's inputs through `emit`."""

    def __init__(self) -> None:
        self.emit: Optional[Callable[[Any], None]] = None
        self.opened: list[float] = []
        self.open_seen = asyncio.Event()
        self.closed = asyncio.Event()

    async def run(self, emit: Callable[[Any], None]) -> None:
        self.emit = emit
        await asyncio.Event().wait()

    async def open(self) -> None:
        self.opened.append(time.monotonic())
        self.open_seen.set()

    async def close(self) -> None:
        self.closed.set()


class BenchDevices:
    """The DeviceFactory (lanectl/app.py): a BarrierDouble per lane, no other device."""

    def __init__(self) -> None:
        self.barriers: dict[str, BarrierDouble] = {}

    def barrier(self, lane: Any, camera: Any) -> BarrierDouble:
        return self.barriers.setdefault(lane.id, BarrierDouble())

    def camera(self, *a: Any) -> Any:
        raise AssertionError("no camera in this bench")

    mqtt_camera = camera

    def display(self, lane: Any, via: Any) -> None:
        return None

    def plate_reader(self, lane: Any, on_activity: Any) -> None:
        return None

    def scanner(self, lane: Any) -> None:
        return None

    async def aclose(self) -> None:
        pass


class Floor:
    """One row, durably: WAL, synchronous=FULL, its own connection and file beside the daemon's database."""

    def __init__(self, directory: Path) -> None:
        self.conn = sqlite3.connect(directory / "floor.db", isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload TEXT)")
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-floor")
        self.n = 0

    def write(self) -> float:
        self.n += 1
        started = time.monotonic()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO t (id, payload) VALUES (?, ?)", (self.n, "x" * 200))
        self.conn.execute("COMMIT")
        return time.monotonic() - started

    async def write_through_thread(self) -> float:
        started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(self.pool, self.write)
        return time.monotonic() - started

    def close(self) -> None:
        self.pool.shutdown()
        self.conn.close()


@dataclass(frozen=True)
class Result:
    cars: int
    inside: int
    rows: list[dict[str, float]]  # per car, ms by stage
    floor: list[float]  # ms
    floor_hop: list[float]  # ms
    directory: str

    def column(self, stage: str, kind: str = "") -> list[float]:
        return [r[stage] for r in self.rows if not kind or r["kind"] == kind]

    def lines(self) -> list[str]:
        def q(xs: list[float]) -> str:
            return f"p50 {percentile(xs, .5):6.3f}  p99 {percentile(xs, .99):6.3f}  max {max(xs):7.3f}"
        out = [f"decision path in-process, {self.cars} cars (whitelisted entries and free exits alternating), "
               f"{self.inside} other cars inside, database on {self.directory} (ms)"]
        for stage in STAGES:
            out.append(f"  {stage:10} {q(self.column(stage))}   entry p50 "
                       f"{percentile(self.column(stage, 'entry'), .5):6.3f}  exit p50 "
                       f"{percentile(self.column(stage, 'exit'), .5):6.3f}")
        out.append(f"  {'floor':10} {q(self.floor)}   one row INSERT + COMMIT, synchronous=FULL, no hop")
        out.append(f"  {'floor+hop':10} {q(self.floor_hop)}   the same through a one-thread executor")
        total = self.column("total")
        out.append(f"  our cost over the floor: p50 {percentile(total, .5) - percentile(self.floor, .5):+.3f}  "
                   f"p99 {percentile(total, .99) - percentile(self.floor, .99):+.3f} ms")
        return out

    def figures(self) -> Figures:
        total = self.column("total")
        own = [r["total"] - r["COMMIT"] for r in self.rows]
        return {
            "plate decoded -> OPEN handed over p50": Figure(percentile(total, .5), "ms", percentile(self.floor, .5)),
            "plate decoded -> OPEN handed over p99": Figure(percentile(total, .99), "ms",
                                                            percentile(self.floor, .99)),
            "the daemon's own work (total less the COMMIT) p50": Figure(percentile(own, .5), "ms"),
            "the daemon's own work (total less the COMMIT) p99": Figure(percentile(own, .99), "ms"),
        }


def _log_to(path: Path, level: str) -> Callable[[], None]:
    """As `lanectl run` logs (cli/run.py), to a file standing in for the journal's stream; returns the undo."""
    from lanectl.adapters.log_format import formatter
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(formatter("text", ZoneInfo(TZ), stream=handler.stream))
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(level.upper())

    def undo() -> None:
        root.removeHandler(handler)
        root.setLevel(before)
        handler.close()
    return undo


async def _seed_inside(database: Path, n: int) -> None:
    """Cars parked before the bench starts, recorded by an entry lane as the daemon would have."""
    from lanectl.adapters.store import SqliteStore
    from lanectl.core import effects as fx
    from lanectl.core.lane import LaneState, make_id

    if n == 0:
        return
    store = SqliteStore(database)
    await store.open()
    try:
        now = datetime.now(ZoneInfo(TZ))
        effects: list[fx.Effect] = []
        for seq in range(1, n + 1):
            at = now - timedelta(minutes=30 + seq)
            effects.append(fx.NewRecord(make_id("in0", at, seq), "in0", "entry", f"粤A{seq:05d}", "blue",
                                        at.isoformat(), "inside", "temporary", "temporary"))
        await store.commit_lane("in0", LaneState(seq=n).to_dict(), effects, now)
    finally:
        await store.close()


async def _cycle(runner: Any, barrier: BarrierDouble) -> None:
    """The arm goes up, the car passes, the lane lowers it, the arm comes down: the lane is idle again."""
    from lanectl.core.events import IoSnapshot

    assert barrier.emit is not None
    barrier.closed.clear()
    for snap in (IoSnapshot(True, False, True, False), IoSnapshot(False, True, True, False),
                 IoSnapshot(False, False, True, False)):
        barrier.emit(snap)
    await asyncio.wait_for(barrier.closed.wait(), 5)
    barrier.emit(IoSnapshot(False, False, False, True))
    deadline = time.monotonic() + 5
    while runner.state.phase.value != "idle" or not runner.queue.empty():
        if time.monotonic() > deadline:
            raise SystemExit(f"lane {runner.lane_id} did not come back to idle: {runner.state.phase.value}")
        await asyncio.sleep(0.001)


async def measure(cars: int, inside: int = 300, directory: Optional[Path] = None,
                  log_level: str = "INFO") -> Result:
    from hil.bench.fsync import timed_transaction
    from lanectl.bootstrap import build_app
    from lanectl.config import load_config
    from lanectl.core.events import IoSnapshot, PlateRead

    scratch = Path(tempfile.mkdtemp(prefix="lc-path-", dir=directory or "/tmp"))
    plates = entry_plates((cars + 1) // 2)
    unlog = _log_to(scratch / "daemon.log", log_level)
    floor = Floor(scratch)
    rows: list[dict[str, float]] = []
    floors: list[float] = []
    floors_hop: list[float] = []
    try:
        etc = write_config(scratch, plates)
        await _seed_inside(scratch / "lanectl.db", inside)
        devices = BenchDevices()
        app = build_app(load_config(etc), devices=devices)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        try:
            await asyncio.wait_for(app.ready.wait(), 20)
            marks: dict[str, float] = {}
            commits: list[float] = []
            timed_transaction(app.store.uow, lambda began, started, done: commits.append(done - started))
            for runner in app.runners.values():
                step = runner.step

                async def traced_step(event: Any, step: Any = step) -> Any:
                    if isinstance(event, PlateRead):
                        marks["step"] = time.monotonic()
                    return await step(event)

                runner.step = traced_step  # type: ignore[method-assign]

            commit_lane = app.store.commit_lane

            def traced_commit(lane_id: str, state: Any, effects: Any, now: datetime) -> Any:
                """Marks the call and the answer, and hands back what the store gave: a future (SqliteStore
                since Dec 2026) stays a future, as the lane awaits it; a coroutine (before) stays awaitable."""
                opening = any(type(e).__name__ == "OpenBarrier" for e in effects)
                if opening:
                    marks["commit"] = time.monotonic()
                answer = commit_lane(lane_id, state, effects, now)
                if not opening:
                    return answer
                if isinstance(answer, asyncio.Future):  # its callbacks run in order: this mark, then the lane
                    answer.add_done_callback(lambda _: marks.__setitem__("committed", time.monotonic()))
                    return answer

                async def awaited() -> None:
                    await answer
                    marks["committed"] = time.monotonic()
                return awaited()

            app.store.commit_lane = traced_commit  # type: ignore[method-assign]
            for lane_id, barrier in devices.barriers.items():
                while barrier.emit is None:
                    await asyncio.sleep(0.01)
                barrier.emit(IoSnapshot(False, False, False, True))
            await asyncio.sleep(0.1)
            for i in range(cars):
                lane_id, kind = ("in1", "entry") if i % 2 == 0 else ("out1", "exit")
                runner, barrier = app.runners[lane_id], devices.barriers[lane_id]
                barrier.emit(IoSnapshot(True, False, False, True))  # the car on the arming loop
                await asyncio.sleep(0.005)
                barrier.open_seen.clear()
                marks.clear()
                del commits[:]
                emitted = time.monotonic()
                runner.emit(PlateRead(plates[i // 2], "blue", 90, "bench"))
                await asyncio.wait_for(barrier.open_seen.wait(), 5)
                opened = barrier.opened[-1]
                rows.append({"kind": kind, "queue": marks["step"] - emitted, "decide": marks["commit"] - marks["step"],
                             "commit": marks["committed"] - marks["commit"], "COMMIT": commits[0],
                             "hand-over": opened - marks["committed"], "total": opened - emitted})
                rows[-1] = {k: (v * 1000 if k != "kind" else v) for k, v in rows[-1].items()}  # type: ignore[misc]
                await _cycle(runner, barrier)
                await asyncio.sleep(PAUSE_S)
                floors.append(floor.write() * 1000)
                floors_hop.append(await floor.write_through_thread() * 1000)
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
    finally:
        floor.close()
        unlog()
        shutil.rmtree(scratch, ignore_errors=True)
    return Result(cars, inside, rows, floors, floors_hop, str(directory or "/tmp"))


async def figures(smoke: bool = False) -> dict[str, Figures]:
    result = await measure(10 if smoke else 300, 20 if smoke else 300)
    print("\n".join(result.lines()), flush=True)
    return {"decision path": result.figures()}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cars", type=int, default=300)
    ap.add_argument("--inside", type=int, default=300, help="other cars parked in the lot before the bench")
    ap.add_argument("--dir", type=Path, help="a directory on the disk to measure (default /tmp)")
    ap.add_argument("--log-level", default="INFO", help="the daemon's log level (INFO: one line per decision)")
    args = ap.parse_args(argv)
    if args.cars < 2 or args.inside < 0:
        ap.error("--cars: at least 2; --inside: 0 or more")
    print("\n".join(asyncio.run(measure(args.cars, args.inside, args.dir, args.log_level)).lines()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
