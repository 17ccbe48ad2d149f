"""Kill campaign: SIGKILL the daemon on the rig again and again while cars stream through, then measure.

The daemon runs as its own process on the rig while cars stream through an entry and an exit lane, and is
SIGKILLed at random (seeded) moments — inside coil pulses, while a car is on a loop, while an exit
waits for payment — and restarted each time. At the end it prints what the rig's emulators and the daemon's
database say happened (hil/soak_analysis.py computes the figures; hil/README.md explains them).

    python -m hil.soak --kills 40 --seed 7 [--lanes in1:entry:1,out1:exit:2] [--baud 9600] [--keep DIR] [--json]

Exit code 0 when every bad count is 0 and the database is intact, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

from hil.daemon_process import DaemonProcess
from hil.emulators.barrier_io import BarrierEvent, Physics
from hil.rig import Rig, RigLane
from hil.soak_analysis import (Action, ArmState, CarTrace, Edge, Figures, LaneTiming, Record, Timeline, analyse)
from lanectl.adapters.control_client import ControlClientError

# The rig's site lists one whitelisted (粤B00001) and one blacklisted (粤B66666) plate. The soak lists a few of
# each and takes the one least recently seen: the same plate back at a lane within the daemon's duplicate
# window (5 s) is, rightly, the same car — a second car with it would be a fault of the soak, not the daemon.
FREE_PLATES = tuple(f"粤B0000{n}" for n in range(1, 10))
REFUSED_PLATES = tuple(f"粤B6666{n}" for n in range(1, 10))
OPERATOR = "soak"
PASS_TIMEOUT_S = 8.0
STUCK_AFTER_S = 20.0  # a car waiting this long with the arm down is released by the booth operator
GIVE_UP_S = 60.0
REREAD_S = 3.0  # the camera reads a car standing on its trigger loop again every few seconds
REFUSED_WAIT_S = 4.0  # a refused driver backs away after this
KILL_MODES = ("random", "pulse", "loop", "payment")


@dataclass
class Options:
    kills: int
    seed: int
    lanes: list[RigLane]
    baud: Optional[int] = 9600
    keep: Optional[Path] = None
    physics: Physics = Physics(rise_s=0.6, fall_s=0.6)
    progress_every: int = 5
    quiet: bool = False


@dataclass
class Outcome:
    figures: Figures
    cars: dict[str, int]
    kills: int
    kill_modes: dict[str, int]
    restarts: int
    restart_failures: int
    stuck_released: int
    gave_up: int
    arrived_while_down: int
    close_refused: int
    arm_hits: int
    integrity: str
    foreign_key_violations: int
    duration_s: float
    workdir: str
    log_excerpt: list[str] = field(default_factory=list)

    @property
    def bad(self) -> bool:
        f = self.figures
        return bool(f.lost_commands or f.double_opens or f.opens_without_authority or f.cars_without_record
                    or f.arm_up_no_car_s > 0 or self.integrity != "ok" or self.foreign_key_violations
                    or self.restart_failures or self.close_refused or self.arm_hits)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("figures", "log_excerpt")}
        d["figures"] = self.figures.as_dict()
        d["ok"] = not self.bad
        return d


class Campaign:
    def __init__(self, opts: Options, say: Callable[[str], None] = print) -> None:
        self.opts = opts
        self.rng = random.Random(opts.seed)
        self.say = say if not opts.quiet else (lambda text: None)
        self.workdir = opts.keep or Path(tempfile.mkdtemp(prefix="lanectl-soak-", dir="/tmp"))
        _clear_previous_run(self.workdir)
        vehicles = {"whitelist": {p: {"kind": "vip"} for p in FREE_PLATES},
                    "blacklist": {p: "逃费" for p in REFUSED_PLATES}, "stored_value": {}}
        self.rig = Rig(self.workdir, opts.lanes, baudrate=opts.baud, physics=opts.physics, led_boards=False,
                       lane_overrides={"pass_timeout_s": PASS_TIMEOUT_S}, site_overrides={"vehicles": vehicles})
        self.daemon: Optional[DaemonProcess] = None
        self.up = False
        self.cars: list[CarTrace] = []
        self.arm: list[ArmState] = []
        self.downtimes: list[tuple[float, float]] = []
        self.kill_times: list[float] = []
        self.kill_modes: dict[str, int] = {}
        self.restarts = self.restart_failures = 0
        self.gave_up = 0
        # cars parked since this morning (seeded into the database before the daemon starts): they owe money
        self.owing: list[str] = [f"粤C{n:05d}" for n in self.rng.sample(range(100000), 400)]
        self.waiting_payment: set[str] = set()
        self._want_paid = False
        self._edge = asyncio.Event()
        self._stop_cars = asyncio.Event()
        self._plates = 10000 + self.rng.randrange(80000)
        self.offset = 0.0  # wall clock - monotonic clock

    # --- the run ------------------------------------------------------------------------------------------
    async def run(self) -> Outcome:
        t0 = time.monotonic()
        await self.rig.start()
        assert self.rig.io is not None
        self.rig.io.on_command = lambda unit, name, t: self._edge.set()
        socket = self.workdir / "control.sock"
        config = self.rig.write_config(self.workdir / "etc", socket)
        await self.rig.seed_inside(self.workdir / "lanectl.db",
                                   [{"plate": p, "lane": self._entry_lane(), "minutes_ago": 180} for p in self.owing])
        self.daemon = DaemonProcess(config, socket, self.workdir / "daemon.log")
        self.offset = _clock_offset()
        tasks: list[asyncio.Task] = []
        try:
            await self.daemon.start()
            self.up = True
            tasks = [asyncio.create_task(self._sample_arms(), name="soak arm sampler"),
                     *[asyncio.create_task(self._stream(lane), name=f"soak cars {lane.id}")
                       for lane in self.opts.lanes]]
            for n in range(1, self.opts.kills + 1):
                await self._one_kill()
                if n % self.opts.progress_every == 0 or n == self.opts.kills:
                    self._progress(n, t0)
            self._stop_cars.set()
            streams = [t for t in tasks if t.get_name().startswith("soak cars")]
            await asyncio.wait(streams, timeout=GIVE_UP_S + 10)
            # let a correct daemon lower any arm left up: the pass timeout, the fall, some slack
            await asyncio.sleep(PASS_TIMEOUT_S + self.opts.physics.fall_s + 3.0)
            t_end = time.monotonic()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.daemon.proc is not None and self.daemon.proc.poll() is None:
                try:
                    await self.daemon.stop()
                except RuntimeError:
                    pass
            await self.rig.stop()
        outcome = self._measure(t_end, time.monotonic() - t0)
        if self.opts.keep is None and not outcome.bad:
            shutil.rmtree(self.workdir, ignore_errors=True)  # a failed run keeps its files for a look
        return outcome

    def _progress(self, n: int, t0: float) -> None:
        kinds = _count(c.kind for c in self.cars)
        self.say(f"[soak] {time.monotonic() - t0:6.0f} s  kills {n}/{self.opts.kills}  cars {len(self.cars)} "
                 + " ".join(f"{k}={v}" for k, v in sorted(kinds.items()))
                 + f"  stuck released {sum(c.stuck_released for c in self.cars)}")

    # --- kills --------------------------------------------------------------------------------------------
    async def _one_kill(self) -> None:
        assert self.daemon is not None and self.rig.io is not None
        await asyncio.sleep(self.rng.uniform(0.5, 2.0))  # let the restarted daemon do some work
        mode = self.rng.choice(KILL_MODES)
        io = self.rig.io
        try:
            if mode == "random":
                await asyncio.sleep(self.rng.uniform(0.0, 4.0))
            elif mode == "pulse":  # right after the module sees a coil go ON: inside the ~300 ms pulse
                self._edge.clear()
                await asyncio.wait_for(self._edge.wait(), 15.0)
                await asyncio.sleep(self.rng.uniform(0.0, 0.2))
            elif mode == "loop":
                await io.wait_until(lambda: any(m.arming or m.safety for m in io.barriers.values()), 15.0)
                await asyncio.sleep(self.rng.uniform(0.0, 0.3))
            elif mode == "payment":  # the exit lane's next car owes money; kill while it waits for the cash
                self._want_paid = True
                await io.wait_until(lambda: bool(self.waiting_payment), 20.0)
                await asyncio.sleep(self.rng.uniform(0.0, 0.5))
        except TimeoutError:
            mode += "(timed out)"
        self.kill_modes[mode] = self.kill_modes.get(mode, 0) + 1
        t_kill = time.monotonic()
        self.up = False
        self.daemon.kill9()
        self.kill_times.append(t_kill)
        await asyncio.sleep(self.rng.uniform(0.2, 2.0))
        for attempt in range(3):
            try:
                await self.daemon.start()
                break
            except RuntimeError as exc:
                self.restart_failures += 1
                self.say(f"[soak] restart failed ({exc.args[0].splitlines()[0]})")
                if attempt == 2:
                    raise
        self.restarts += 1
        self.up = True
        self.downtimes.append((t_kill, time.monotonic()))

    # --- cars ---------------------------------------------------------------------------------------------
    async def _stream(self, lane: RigLane) -> None:
        while not self._stop_cars.is_set():
            await asyncio.sleep(self.rng.uniform(2.0, 5.0))
            if self._stop_cars.is_set():
                return
            kind, plate = self._next_car(lane)
            await self._drive(lane, kind, plate)

    def _entry_lane(self) -> str:
        return next(lane.id for lane in self.opts.lanes if lane.direction == "entry")

    def _next_car(self, lane: RigLane) -> tuple[str, str]:
        roll = self.rng.random()
        if lane.direction == "entry":
            if roll < 0.12:
                return "refused", self._least_recent(REFUSED_PLATES)
            if roll < 0.22:
                return "plateless", ""
            self._plates += 1
            return "entry", f"粤A{self._plates:05d}"
        if (roll < 0.5 or self._want_paid) and self.owing:
            self._want_paid = False
            return "paid_exit", self.owing.pop()
        if roll < 0.65:
            return "plateless", ""
        return "free_exit", self._least_recent(FREE_PLATES)

    def _least_recent(self, plates: tuple[str, ...]) -> str:
        seen = {c.plate: c.t_arrive for c in self.cars}
        return min(plates, key=lambda p: seen.get(p, float("-inf")))

    async def _drive(self, lane: RigLane, kind: str, plate: str) -> None:
        """One car: arrives on the arming loop (the camera reads it, and again every few seconds while it
        waits), drives through as soon as the arm is at its up limit — whoever raised it — or backs away."""
        io = self.rig.io
        assert io is not None
        model = io.barrier(lane.unit)
        car = CarTrace(lane.id, plate, kind, time.monotonic(), arm_up_on_arrival=not model.down_limit,
                       daemon_down_on_arrival=not self.up)
        self.cars.append(car)
        io.set_loop(lane.unit, "arming", True)
        await asyncio.sleep(0.05)
        last_read = time.monotonic()
        if plate:  # the loop triggers the camera: it reads every car, whether the arm is up or down
            car.reads.append(last_read)
            await self.rig.cameras[lane.id].send(plate, "blue")
        last_ask = -1e9
        pay_after = self.rng.uniform(1.0, 3.0)
        operator_after = self.rng.uniform(1.0, 3.0)
        if kind == "paid_exit":
            self.waiting_payment.add(plate)
        try:
            while not model.up_limit:
                now = time.monotonic()
                waited = now - car.t_arrive
                if plate and now - last_read >= REREAD_S:
                    last_read = now
                    car.reads.append(now)
                    await self.rig.cameras[lane.id].send(plate, "blue")
                if kind == "refused" and waited >= REFUSED_WAIT_S:
                    break
                if waited >= GIVE_UP_S:
                    self.gave_up += 1
                    break
                if self.up and now - last_ask >= 1.0:
                    if waited >= STUCK_AFTER_S:
                        last_ask = now
                        if await self._release(lane.id, "stuck"):
                            car.stuck_released = True
                    elif kind == "paid_exit" and not car.paid and waited >= pay_after:
                        last_ask = now
                        car.paid = await self._pay(lane.id, plate)
                    elif kind == "plateless" and waited >= operator_after and not car.stuck_released:
                        last_ask = now
                        await self._release(lane.id, "no plate", only_if_idle=True)
                await asyncio.sleep(0.05)
        finally:
            self.waiting_payment.discard(plate)
        if not model.up_limit:  # backs away
            io.set_loop(lane.unit, "arming", False)
            car.t_gone = time.monotonic()
            if kind == "paid_exit":
                self.owing.append(plate)
            return
        await asyncio.sleep(0.2)
        car.t_pass = time.monotonic()
        io.set_loop(lane.unit, "safety", True)
        io.set_loop(lane.unit, "arming", False)
        await asyncio.sleep(0.6)
        io.set_loop(lane.unit, "safety", False)
        car.t_gone = time.monotonic()

    # --- the booth operator -------------------------------------------------------------------------------
    async def _pay(self, lane: str, plate: str) -> bool:
        """Cash at the booth, only for the car the lane says is waiting to pay."""
        assert self.daemon is not None
        try:
            waiting = (await self.daemon.client.status())["lanes"][lane].get("waiting") or {}
            if waiting.get("plate") != plate:
                return False
            answer = await self.daemon.client.open_barrier(lane=lane, operator=OPERATOR, reason="cash",
                                                           amount_fen=int(waiting.get("due_fen") or 500))
            return bool(answer.get("opened"))
        except (ControlClientError, OSError, KeyError, ValueError, asyncio.TimeoutError):
            return False  # the daemon is down or went down mid-request: the operator tries again

    async def _release(self, lane: str, reason: str, only_if_idle: bool = False) -> bool:
        assert self.daemon is not None
        try:
            if only_if_idle:
                status = (await self.daemon.client.status())["lanes"][lane]
                if status.get("phase") != "idle":
                    return False
            answer = await self.daemon.client.open_barrier(lane=lane, operator=OPERATOR, reason=reason)
            return bool(answer.get("opened"))
        except (ControlClientError, OSError, KeyError, ValueError, asyncio.TimeoutError):
            return False  # the daemon is down or went down mid-request: the operator tries again

    # --- measuring ----------------------------------------------------------------------------------------
    async def _sample_arms(self) -> None:
        io = self.rig.io
        assert io is not None
        last: dict[str, bool] = {}
        while True:
            now = time.monotonic()
            for lane in self.opts.lanes:
                down = io.barrier(lane.unit).down_limit
                if last.get(lane.id) != down:
                    last[lane.id] = down
                    self.arm.append(ArmState(lane.id, now, down))
            await asyncio.sleep(io.tick_s)

    def _measure(self, t_end: float, duration: float) -> Outcome:
        io = self.rig.io
        assert io is not None
        lane_of = {lane.unit: lane.id for lane in self.opts.lanes}
        events: list[BarrierEvent] = list(io.events)
        edges = [Edge(lane_of[e.unit], e.name, e.t) for e in events if e.name in ("open", "close", "stop")]
        downs = [Edge(lane_of[e.unit], e.name, e.t) for e in events if e.name == "down_limit"]
        db = read_database(self.workdir / "lanectl.db", self.offset)
        timeline = Timeline(edges, db["actions"], db["records"], self.cars, self.arm, downs, self.downtimes,
                            self.kill_times,
                            {lane.id: LaneTiming(PASS_TIMEOUT_S, self.opts.physics.fall_s) for lane in self.opts.lanes},
                            t_end)
        figures = analyse(timeline)
        self._dump(timeline, figures)
        log = self.daemon.log() if self.daemon else ""
        excerpt = [line for line in log.splitlines()
                   if any(w in line for w in ("WARNING", "ERROR", "interrupted", "fault", "Traceback"))
                   and "stale control socket" not in line][-40:]  # each restart after a kill says that
        return Outcome(figures, _count(c.kind for c in self.cars), len(self.kill_times), self.kill_modes,
                       self.restarts, self.restart_failures, sum(c.stuck_released for c in self.cars), self.gave_up,
                       sum(c.daemon_down_on_arrival for c in self.cars),
                       sum(m.close_refused for m in io.barriers.values()),
                       sum(m.arm_hits for m in io.barriers.values()),
                       db["integrity"], db["foreign_key_violations"], round(duration, 1), str(self.workdir), excerpt)


    def _dump(self, timeline: Timeline, figures: Figures) -> None:
        """timeline.json in the work directory: everything the figures came from, for a look after the run
        (times on the rig's monotonic clock; `offset` turns them into unix time)."""
        io = self.rig.io
        assert io is not None
        doc = {"offset": self.offset, "units": {lane.id: lane.unit for lane in self.opts.lanes},
               **{k: [asdict(x) for x in getattr(timeline, k)]
                  for k in ("edges", "actions", "records", "cars", "arm", "down_limits")},
               "downtimes": timeline.downtimes, "kills": timeline.kills, "t_end": timeline.t_end,
               "coil_writes": [asdict(w) for w in io.coil_writes],
               "findings": [asdict(f) for f in figures.findings]}
        (self.workdir / "timeline.json").write_text(json.dumps(doc, ensure_ascii=False, indent=0))


def _clear_previous_run(workdir: Path) -> None:
    """A kept directory may hold an earlier run: its database would be counted against this one."""
    for name in ("lanectl.db", "lanectl.db-wal", "lanectl.db-shm", "daemon.log", "timeline.json", "control.sock"):
        (workdir / name).unlink(missing_ok=True)
    for name in ("etc", "dev"):
        shutil.rmtree(workdir / name, ignore_errors=True)


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def _clock_offset() -> float:
    """wall - monotonic, taken as the tightest of a few paired reads."""
    best: Optional[tuple[float, float]] = None
    for _ in range(5):
        m1 = time.monotonic()
        w = time.time()
        m2 = time.monotonic()
        if best is None or m2 - m1 < best[0]:
            best = (m2 - m1, w - (m1 + m2) / 2)
    assert best is not None
    return best[1]


def _mono(stamp: str, offset: float) -> Optional[float]:
    return datetime.fromisoformat(stamp).timestamp() - offset if stamp else None


def read_database(path: Path, offset: float) -> dict[str, Any]:
    """The daemon's barrier_actions and records (read-only), on the rig's monotonic clock; integrity checks."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        actions = [Action(r["action_id"], r["lane_id"], r["command"], r["authority"], r["operator"], r["reason"],
                          r["status"], _mono(r["requested_at"], offset) or 0.0, _mono(r["done_at"], offset))
                   for r in conn.execute("SELECT * FROM barrier_actions ORDER BY requested_at")]
        records = [Record(r["record_id"], r["lane_id"], r["kind"], r["plate"], r["status"], r["ts"] - offset)
                   for r in conn.execute("SELECT record_id, lane_id, kind, plate, status, ts FROM records")]
        integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
        fk = len(conn.execute("PRAGMA foreign_key_check").fetchall())
    finally:
        conn.close()
    return {"actions": actions, "records": records, "integrity": integrity, "foreign_key_violations": fk}


def report(o: Outcome) -> str:
    f = o.figures
    lines = [
        f"cars            {sum(o.cars.values())}  " + "  ".join(f"{k} {v}" for k, v in sorted(o.cars.items())),
        f"                arrived while the daemon was down {o.arrived_while_down}, released as stuck "
        f"{o.stuck_released}, gave up {o.gave_up}",
        f"kills           {o.kills}  " + "  ".join(f"{k} {v}" for k, v in sorted(o.kill_modes.items())),
        f"restarts        {o.restarts}  (failed starts {o.restart_failures})",
        f"commands        decided {f.decided}  acknowledged {f.acknowledged}  confirmed {f.confirmed}  "
        f"(" + ", ".join(f"{k} {v}" for k, v in sorted(f.statuses.items())) + ")",
        f"lost commands             {f.lost_commands}",
        f"double opens              {f.double_opens}",
        f"opens without authority   {f.opens_without_authority}",
        f"cars without own record   {f.cars_without_record}  (passed while the daemon was down, not counted: "
        f"{f.passed_while_down})",
        f"arm up with no car        {f.arm_up_no_car_s:.1f} s beyond the close delay",
        f"opens with no car there   {f.opens_with_no_car}  (informational, not in the exit code)",
        f"CLOSE onto a car          refused {o.close_refused}  arm hits {o.arm_hits}",
        f"database                  integrity {o.integrity}  foreign key violations {o.foreign_key_violations}",
        f"duration                  {o.duration_s:.0f} s   workdir {o.workdir}",
        f"result                    {'FAIL' if o.bad else 'OK'}",
    ]
    if f.findings:
        lines.append("findings (rig monotonic seconds):")
        lines += [f"  {x.t:10.2f} {x.lane:5} {x.what:24} {x.detail}" for x in f.findings[:60]]
        if len(f.findings) > 60:
            lines.append(f"  … {len(f.findings) - 60} more")
    return "\n".join(lines)


def parse_lanes(text: str) -> list[RigLane]:
    lanes = []
    for part in text.split(","):
        lane_id, direction, unit = part.split(":")
        if direction not in ("entry", "exit"):
            raise argparse.ArgumentTypeError(f"lane {lane_id}: direction must be entry or exit")
        lanes.append(RigLane(lane_id, direction, int(unit)))
    if {lane.direction for lane in lanes} != {"entry", "exit"}:
        raise argparse.ArgumentTypeError("the soak needs an entry lane and an exit lane")
    return lanes


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hil.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, required=True, help="how many times to SIGKILL the daemon")
    ap.add_argument("--seed", type=int, required=True, help="seed of the campaign's random choices")
    ap.add_argument("--lanes", type=parse_lanes, default=parse_lanes("in1:entry:1,out1:exit:2"),
                    help="id:direction:unit,... (default in1:entry:1,out1:exit:2)")
    ap.add_argument("--baud", type=int, default=9600, help="line speed emulated on every cable (0: none)")
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it (database, daemon.log, config)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    opts = Options(args.kills, args.seed, args.lanes, baud=args.baud or None, keep=args.keep)
    outcome = asyncio.run(Campaign(opts, say=lambda text: print(text, flush=True)).run())
    print(report(outcome))
    if args.json:
        print(json.dumps(outcome.as_dict(), ensure_ascii=False, indent=1))
    return 1 if outcome.bad else 0


if __name__ == "__main__":
    sys.exit(main())
