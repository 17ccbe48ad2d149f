"""Benchmark: plate line written → OPEN coil seen by the IO emulator, for a whitelisted car, the daemon next to
the bare path measured on the same cables in the same run.

The bare path (hil/bench/bare_path.py, its own process) reads the plate line from the same throttled camera
tty and writes one coil with pymodbus to the same Modbus emulator — nothing else. Each run drives `--cars` cars
through the bare path, then the same number through the daemon (its own process, 2 lanes, inputs polled every
50 ms on the same bus) on the same rig, and prints p50/p99 of both and their ratios; `--runs N` repeats that
and reports the worst run (the goal is held against the worst, not the best). The machine's noise lands on
both sides of a run, so the ratio is the figure to read; absolute times vary with what else the machine runs.
Also prints the daemon's peak RSS with 2 lanes.

    python -m hil.bench.decision_latency [--cars 200] [--baud 9600] [--runs 3] [--trace] [--gc-freeze]
                                         [--cables process|threads] [--nice -10]

Where the daemon's time goes (`--trace`, 9600 baud, 2 lanes on one bus, a shared 2-core machine, Dec 2026):
the plate line itself takes ~19.3 ms to come in (the bare path pays that too); the lane's queue ~0.04 ms; the
decision ~0.5 ms; the write-ahead commit (writer-thread hop, SQL, then the COMMIT: WAL append + sync — it stays
before the OPEN) ~2.3 ms at p50, of which the COMMIT ~1 ms; handing the OPEN to the driver ~0.4 ms; the frame
on the wire ~9.2 ms. So the median's cost over the bare path (~3.5 ms) is mostly the commit.

The tail, source by source (what was done, what remains):
- a second lane's poll queued for the bus when the plate line began took the line anyway and the OPEN waited
  ~19 ms for it — fixed (the poll re-checks the hint once it holds the slot);
- SQLite's own checkpoint ran inside the COMMIT that filled the WAL past 1000 pages: one decision in ~60 copied
  ~4 MiB into the database file and synced it before its OPEN — now the store checkpoints every 32 writes after
  the write has answered (adapters/store/unit_of_work.py), which also keeps the WAL small and overwritten in
  place. `python -m hil.bench.fsync` prints the commit's sync as its own figure and the transaction's p99 next
  to SQLite's own checkpointing (3 runs of 400: 3.4 / 4.0 / 9.6 ms vs 5.1 / 3.9 / 31.0 ms);
- the write-ahead sync's own tail: ~0.5 ms at p50 on this disk, 2–10 ms at p99, and 30–50 ms when other
  processes load the disk — the daemon pays it, the bare path does not (durability stays: no OPEN before it);
- the rig: its serial relays shared the bench's interpreter lock with the emulators (a byte's thread waiting
  for the lock) — they now run in a process of their own (`--cables threads` for the old way); the Modbus
  emulator still lives in the bench's process, and when it answers a poll late the daemon's OPEN waits for that
  poll (seen: 29–417 ms) — the bare path does not poll, so this noise lands on one side only;
- the machine: other work on the 2 shared cores delays the plate line, the hand-over or the frame by 10–140 ms
  now and then, on both sides. GC inside a car's window: <= 3 ms, rare.
On this shared machine (other helpers' tests and a browser running) the worst of 2 runs of 100 cars was
dominated by such single stalls: p99 ratio 6.69 before these changes, 2.92 after, 12.57 with `--nice -10` (a
417 ms wait for the bus behind a late poll answer) — with 100 cars p99 is the worst car, so one stall decides
it; the median ratio stays 1.12–1.17. The bare path's own p99 ranged 36–186 ms in those runs. With all of the
changes, 3 runs of 200 cars (p99 = the 2nd worst car): p99 ratio 1.00 (both sides hit by stalls: bare 56.5, daemon
56.5 ms), 1.98 (bare 32.8, daemon 65.0 ms: a daemon-only tail) and 1.16 (32.3 vs 37.4 ms); p50 ratio 1.11–1.12.
So the goal (1.15 in every run) is not met on this machine: the worst run is set by the daemon-only tail sources
above (the sync under other disk load, late poll answers from the emulator), not by a queue of the daemon's own.
At 115200, 2 runs of 200 cars with all of the changes: bare p50/p99 3.31/4.28 and 3.35/6.73 ms, daemon 6.13/8.29
and 6.17/12.93 ms: +4.0 and +6.2 ms at p99 (+2.8 ms at p50). Earlier traces (60 cars): the commit 2.3 ms at p50
and 4.1 ms at worst (its COMMIT, the sync, ~0.5–1 ms of it at p50 on this disk; `python -m hil.bench.fsync`), the
decision 0.4–1.6 ms, the hand-over 0.4–0.8 ms: the 2 ms goal cannot be met while a synced commit of this disk's
cost, plus the writer-thread hop and the decision, stays in front of the OPEN.
Then the daemon's own CPU on that path was cut (`python -m hil.bench.decision_path` measures it in-process, change
by change, next to the disk's floor: p50 plate decoded -> OPEN handed over 1.90 -> 1.22 ms, of which the
daemon's own work, the COMMIT statement aside, 1.51 -> 0.82 ms): no deep copies of the lane's state and records,
no copy or re-normalizing of the whole lot per decision, SQL text built once, the commit handed to the writer
thread at once with one hop back, and the OPEN's frame written before the step's log line, board and status. A
traced run of 60 cars at 115200 after it (same machine, Dec 2026): decide 0.28 ms p50 (was 0.50), commit 1.09
(1.53; its COMMIT 0.50), to the bus 0.06 (0.45), the frame on the wire 1.41 (1.49); daemon p50 4.95 / p99 7.39
ms vs bare 3.51 / 5.51: +1.44 ms at p50 (was +2.1), +1.87 ms at p99 — one run of 60 cars, where p99 is the worst
car: the write-ahead sync's own tail (2.4 ms for one car here) still decides it. `--gc-freeze` (gc.freeze() after the
imports, 40 cars): no gain seen (GC inside a window still <= 1.1 ms, p99 ratio 1.19), so the daemon does not do
it. `--nice -10` (the bare path, the daemon and the rig at that priority): no gain that stood out from the noise
in 2 runs, so neither the unit nor docs/operations.md recommend it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hil.bench.figures import Figure, Figures, over_baseline_at_most, percentile, ratio_at_most
from hil.daemon_process import DaemonProcess
from hil.emulators.barrier_io import Physics
from hil.rig import Rig, RigLane

IDLE_S = 0.5  # > the 300 ms coil pulse + a 50 ms poll: the next car meets a lane at rest
LANE, UNIT = "in1", 1


def plates(n: int, run: int = 0) -> list[str]:
    return [f"粤B{10000 + run * 5000 + i:05d}" for i in range(n)]


@dataclass(frozen=True)
class Run:
    bare: list[float]  # seconds, plate line written -> OPEN coil seen
    daemon: list[float]

    def p(self, side: str, q: float) -> float:
        return percentile(getattr(self, side), q) * 1000

    def p50(self, side: str) -> float:
        return statistics.median(getattr(self, side)) * 1000


@dataclass(frozen=True)
class Result:
    cars: int
    baud: int
    poll_ms: int
    runs: list[Run]
    rss_kib: int

    def worst(self) -> Run:
        """The run whose daemon p99 is furthest from its bare p99 — by ratio at 9600 baud, by difference above
        (as each goal is held)."""
        if self.baud <= 9600:
            return max(self.runs, key=lambda r: r.p("daemon", 0.99) / r.p("bare", 0.99))
        return max(self.runs, key=lambda r: r.p("daemon", 0.99) - r.p("bare", 0.99))

    def lines(self) -> list[str]:
        out = [f"decision latency, plate line written -> OPEN coil seen, {self.cars} whitelisted cars per side "
               f"per run at {self.baud} baud, the daemon's inputs polled every {self.poll_ms} ms on the same bus"]
        for i, r in enumerate(self.runs, 1):
            out.append(f"  run {i}: bare p50 {r.p50('bare'):6.2f} p99 {r.p('bare', 0.99):6.2f} max "
                       f"{max(r.bare) * 1000:6.2f} | daemon p50 {r.p50('daemon'):6.2f} p99 "
                       f"{r.p('daemon', 0.99):6.2f} max {max(r.daemon) * 1000:6.2f} ms | ratio p50 "
                       f"{r.p50('daemon') / r.p50('bare'):4.2f} p99 {r.p('daemon', 0.99) / r.p('bare', 0.99):4.2f}"
                       f" | p99 over bare {r.p('daemon', 0.99) - r.p('bare', 0.99):+6.2f} ms")
        w = self.worst()
        out.append(f"  worst of {len(self.runs)}: p99 ratio {w.p('daemon', 0.99) / w.p('bare', 0.99):4.2f}, "
                   f"p99 over bare {w.p('daemon', 0.99) - w.p('bare', 0.99):+.2f} ms")
        out.append(f"daemon peak RSS with 2 lanes: {self.rss_kib / 1024:.1f} MiB")
        return out

    def figures(self) -> Figures:
        w = self.worst()
        goal = (Figure(w.p("daemon", 0.99), "ms", w.p("bare", 0.99), "ratio <= 1.15", ratio_at_most(1.15))
                if self.baud <= 9600 else
                Figure(w.p("daemon", 0.99), "ms", w.p("bare", 0.99), "<= bare + 2 ms", over_baseline_at_most(2.0)))
        worst_p50 = max(self.runs, key=lambda r: r.p50("daemon") / r.p50("bare"))
        return {
            f"{self.baud} baud p50, worst of {len(self.runs)}": Figure(worst_p50.p50("daemon"), "ms",
                                                                       worst_p50.p50("bare")),
            f"{self.baud} baud p99, worst of {len(self.runs)}": goal,
            "daemon peak RSS, 2 lanes": Figure(self.rss_kib / 1024, "MiB"),
        }


async def _bare_cars(rig: Rig, cars: list[str], baud: int, nice: int = 0) -> list[float]:
    """The bare path's process on the daemon's side of the cables; the bench closes the arm itself."""
    assert rig.io is not None
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil.bench.bare_path", str(rig.camera_path(LANE)), str(rig.bus_path),
        "--baud", str(baud), "--unit", str(UNIT), stdout=subprocess.PIPE,
        preexec_fn=(lambda: os.setpriority(os.PRIO_PROCESS, 0, nice)) if nice else None)
    try:
        assert proc.stdout is not None
        if (await asyncio.wait_for(proc.stdout.readline(), 20)).strip() != b"ready":
            raise SystemExit("the bare path did not start")
        model = rig.io.barrier(UNIT)
        out = []
        for plate in cars:
            rig.io.set_loop(UNIT, "arming", True)
            await asyncio.sleep(0.05)  # as rig.car: the camera reads the car once it is on the loop
            t_plate = time.monotonic()
            await rig.cameras[LANE].send(plate, "blue")
            event = await rig.io.wait_event(UNIT, "open", timeout=5.0, after=t_plate)
            out.append(event.t - t_plate)
            rig.io.set_loop(UNIT, "arming", False)
            await rig.io.wait_until(lambda: model.up_limit, timeout=5.0)
            model.command("close")
            await rig.wait_down(LANE, timeout=5.0)
            await asyncio.sleep(IDLE_S)
        return out
    finally:
        proc.terminate()
        await proc.wait()


async def _daemon_cars(rig: Rig, daemon: DaemonProcess, cars: list[str], workdir: Path) -> list[tuple[float, float]]:
    """(t_plate, t_open) per car, on the monotonic clock."""
    out = []
    for i, plate in enumerate(cars):
        result = await rig.car(LANE, plate, wait_open_s=5.0, drive_s=0.05, on_safety_s=0.2)
        if not result.opened:
            raise SystemExit(f"car {i} ({plate}) was not let in: see {workdir / 'daemon.log'}")
        out.append((result.t_plate, result.t_open))
        await rig.wait_down(LANE, timeout=5.0)
        await asyncio.sleep(IDLE_S)
    return out


STAGES = ("line in", "queue", "decide", "commit", "to bus", "slot wait", "on the wire")
MARKS = ("emit", "step", "commit", "committed", "write", "slot")


def stages(trace: dict[str, list], cars: list[tuple[float, float]]) -> list[dict[str, float]]:
    """Per car, ms spent in each stage (hil/bench/traced_daemon.py's marks, the first of each kind after the
    plate line began) and in garbage collection meanwhile."""
    out = []
    for t_plate, t_open in cars:
        marks = [t_plate]
        for kind in MARKS:
            marks.append(next((t for t in trace[kind] if t >= marks[-1]), float("nan")))
        marks.append(t_open)
        row = {name: (b - a) * 1000 for name, a, b in zip(STAGES, marks, marks[1:])}
        for kind in ("gc", "acquire", "settle", "read", "fsync"):  # time inside the car's window
            row[kind] = sum(d for t, d, _ in trace[kind] if t_plate <= t <= t_open) * 1000
        row["total"] = (t_open - t_plate) * 1000
        out.append(row)
    return out


def stage_lines(rows: list[dict[str, float]]) -> list[str]:
    names = (*STAGES, "gc", "acquire", "settle", "read", "fsync", "total")
    out = ["  stages (ms)       " + " ".join(f"{n:>11}" for n in names),
           "  (gc, acquire: a command waiting for the bus slot, settle: coils reset before a command, read: input "
           "polls, fsync: the COMMIT statement (WAL append + sync) — each summed over the car's window)"]
    for label, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        out.append(f"  {label:17} " + " ".join(f"{percentile([r[n] for r in rows], q):11.2f}" for n in names))
    for r in sorted(rows, key=lambda r: r["total"])[-3:]:
        out.append("  a slow car       " + " ".join(f"{r[n]:11.2f}" for n in names))
    return out


async def measure(cars: int, baud: int, runs: int = 1, poll_ms: int = 50, trace: bool = False,
                  gc_freeze: bool = False, cables: str = "process", nice: int = 0) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="lanectl-bench-", dir="/tmp"))
    everyone = [p for run in range(runs) for p in plates(cars, run)]
    rig = Rig(workdir, [RigLane(LANE, "entry", UNIT), RigLane("in2", "entry", 2)], baudrate=baud,
              physics=Physics(rise_s=0.05, fall_s=0.05), poll_ms=poll_ms,
              site_overrides={"vehicles": {"whitelist": {p: {} for p in everyone}}},
              cables_in_process=cables == "process", cable_nice=nice)
    await rig.start()
    socket = workdir / "control.sock"
    config = rig.write_config(workdir / "etc", socket)
    results, rss = [], 0
    try:
        for run in range(runs):
            bare = await _bare_cars(rig, [p.replace("粤B", "粤C") for p in plates(cars, run)], baud, nice)
            traced = trace or gc_freeze
            env = {"LANECTL_TRACE": str(workdir / f"trace-{run}.json"), "LANECTL_GC_FREEZE": str(int(gc_freeze))}
            daemon = DaemonProcess(config, socket, workdir / "daemon.log", log_level="WARNING",
                                   module="hil.bench.traced_daemon" if traced else "lanectl",
                                   env=env if traced else None, nice=nice)
            try:
                await daemon.start()
                await asyncio.sleep(0.5)
                windows = await _daemon_cars(rig, daemon, plates(cars, run), workdir)
                rss = max(rss, daemon.peak_rss_kib())
            finally:
                await daemon.stop()
            results.append(Run(bare, [b - a for a, b in windows]))
            if trace:
                rows = stages(json.loads((workdir / f"trace-{run}.json").read_text()), windows)
                print(f"run {run + 1}, where the daemon's time went:")
                print("\n".join(stage_lines(rows)), flush=True)
    finally:
        await rig.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return Result(cars, baud, poll_ms, results, rss)


async def figures(smoke: bool = False, runs: int = 1) -> dict[str, Figures]:
    """Both line speeds, as `python -m hil.bench all` reports them."""
    out = {}
    for baud in (9600, 115200):
        result = await measure(5 if smoke else 200, baud, 1 if smoke else runs)
        print("\n".join(result.lines()), flush=True)
        out[f"decision latency {baud}"] = result.figures()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cars", type=int, default=200)
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--runs", type=int, default=1, help="repeat bare + daemon; the worst run is reported")
    ap.add_argument("--poll-ms", type=int, default=50, help="the daemon's barrier input polling period")
    ap.add_argument("--trace", action="store_true",
                    help="run the daemon with stage timestamps (hil/bench/traced_daemon.py) and print the stages")
    ap.add_argument("--gc-freeze", action="store_true", help="experiment: gc.freeze() in the daemon after start")
    ap.add_argument("--nice", type=int, default=0,
                    help="e.g. -10: the bare path, the daemon and the rig (this process and its cable relays) run at "
                         "this priority — the daemon as under a unit with Nice=-10 (needs the privilege to raise it)")
    ap.add_argument("--cables", choices=("process", "threads"), default="process",
                    help="the rig's serial relays in a process of their own (default) or as threads of the bench")
    args = ap.parse_args()
    if args.cars < 2 or args.runs < 1:
        ap.error("--cars: at least 2; --runs: at least 1")
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # the rig's emulators live in this process
    print("\n".join(asyncio.run(measure(args.cars, args.baud, args.runs, args.poll_ms, args.trace,
                                                 args.gc_freeze, args.cables, args.nice)).lines()))


if __name__ == "__main__":
    main()
