"""Benchmark: many lanes in one daemon — 8 barrier IO modules on one 9600-baud RS-485 bus and on Modbus TCP, 16
lanes on Modbus TCP — with the one-lane figure measured in the same run on the same rig as the reference.

Each configuration starts a fresh rig (one IO emulator hosting a unit per lane, a throttled plate-camera line
per lane) and the daemon (its own process). Cars come to every lane at once: each lane has its own stream of
whitelisted cars, started at a random offset and spaced by a random pause, so OPENs, pulse ends, CLOSEs and
input polls of all units meet on the bus as they would in a busy lot. Printed per configuration: plate line
written -> OPEN coil seen (p50 / p99 / max over every car of every lane); each lane's achieved input read period
(the median and the worst gap between two input reads the IO module answered) against the configured one and
against what the line allows; how often a poll or another coil write went on the wire between a plate line's
start and its OPEN; and the daemon's peak RSS. `python -m hil.bench all` also starts it with 2 and 4 lanes (and
4 lanes with /metrics and housekeeping off) for its RSS.

Every lane polls every 50 ms (the shipped default) and, on RS-485, every 200 ms. On RS-485 all units share the
line: at 9600 baud one poll (an 8-byte request, a 6-byte answer, two t3.5 silences) takes ~22 ms, so 8 units
cannot be read more often than every ~175 ms each whatever poll_ms says — `lanectl check-config` warns about
such a bus (lanectl/config/bus_budget.py) — and the period figure is held against that. The 50 ms row is that
misconfigured line: polls ask for 3.5x the line's time, every unit is always overdue, the line is never idle
and each unit is read every ~250 ms anyway; it measures how an OPEN fares on a saturated line (the cars also
come ~25 % faster there: the pause between cars is counted in poll periods). 200 ms is the period the line can
give: polls alone then fill ~88 % of it.

The pace (`--trace` and the "cars a lane an hour" figure): by default each lane's next car arrives as soon as
the previous one has passed and the arm is down, ~1 250 cars a lane an hour on all 8 lanes at once. A real lane
passes far fewer at its peak: the arm alone takes 0.8-5 s to rise (the rig's takes 50 ms), the car then crosses
the loops and the next one pulls up; a staffed toll-style lane passes 300-400 an hour (FHWA, Managing Travel for
Planned Special Events, 9-12 s a vehicle). The default stays the harsher back-to-back pace; `--lane-rate 600`
models a lot at its peak on every lane at once (still above what a lane passes).

Where 8 lanes on one bus cost more than one. Earlier (wave 5, p50 1.38-1.40x before): polls let in front of an
announced OPEN by the starvation guard (it now counts from the line's measured round of polls), other lanes'
CLOSEs and pulse ends (they now rank after an OPEN and keep off the line while a plate line announces one), and
holds that outlived their OPEN. After that p50 was ~1.0x and the tail remained. Wave 6, found with `--trace`
(8 lanes, 200 ms, same sitting, 2-core machine shared with other benches):
(1) a CLOSE's check-and-write: 82 % of the cars over the p95 (240 cars). The CLOSE had queued for the line
    before the plate line began, got it while the line was arriving, and held it for two frames (~40 ms). Now a
    CLOSE or a pulse end that gets the slot while a plate line announces an OPEN hands it back, and a plate line
    that begins during a CLOSE's safety check lets its OPEN go between the check and the write; the CLOSE then
    checks again (a CLOSE write never follows a check another frame followed; a car that came meanwhile is
    seen and the CLOSE refused). Both still within MAX_POLL_HOLD_S in all.
(2) polls the starvation guard let go (units unread 540-740 ms): polls held for a plate line slept until the
    hold would have run out, even when its OPEN had gone ~60 ms before; on a line at 88 % they fell behind and
    came due in front of a later OPEN. Now a hold that ends wakes them (worst unread gap 700 -> 470-590 ms).
(3) another lane's OPEN: two OPENs at once. One line carries one frame at a time, so the second waits for the
    first (~20-25 ms at 9600 baud) whatever the scheduling. After (1) and (2) it is all of the tail.
Figures, same sitting (Dec 2026): `--only rtu --poll-ms 200 --cars 80`: before p99 74.5 vs 34.2 ms for one
lane (2.18x; 15 % of the cars over 1.2x one lane's p99), after 57.0 vs 33.8 and 54.0 vs 34.2 ms (1.69x, 1.58x;
5 % over), p50 0.98-0.99x throughout; 240 cars on 8 lanes: p99 69.7 -> 54.8 ms, max 76.2 -> 58.7, worst unread
gap 700 -> 470-590 ms. 50 ms row (240 cars): p99 71.5 -> 50.3 ms. Modbus TCP (`--only tcp --cars 80`)
unchanged: 8 / 16 lanes p99 1.03x / 0.94x after, 0.90x / 0.92x before (noise at 80 cars); worst unread gap
203 -> 78 ms.
What remains is (3), and how often it happens is the pace. Back to back (~1 250 cars a lane an hour) every car
over the 1.2x line waited behind another lane's OPEN (5 % of the cars, +16-26 ms). At 600 cars a lane an hour
(`--lane-rate 600`, 160 cars) p99 42.2 ms, ~1.24x one lane's p99 of the sitting, 3 cars behind another OPEN over
the line; at 300 p99 36.0 ms (~1.06x), one car in 160 (the max, 56.8 ms). A p99 within 1.2x needs fewer than
1 % of the cars to meet another lane's OPEN: (lanes - 1) x cars a lane a second x ~26 ms < 1 %, i.e. at most
~200-300 cars a lane an hour with all 8 lanes busy at once on one 9600 line — beyond that a faster line (19200
baud halves the window) or fewer units a line. At 50 ms a few polls still went between a plate line and its
OPEN with their unit unread well under the guard (290-380 ms) — probably the plate line's first bytes reaching
the daemon late on the loaded machine; not checked further. p99 over 80 cars is the slowest car, and one
lane's own p99 ranged 33.8-37.7 ms between runs: read it over several runs.

    python -m hil.bench.lanes_scale [--cars 160] [--only rtu|tcp] [--poll-ms 200] [--lanes 1,8] [--lane-rate 600]
                                    [--trace] [--seed 1] [--rss]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from hil.bench.figures import Figure, Figures, percentile, ratio_at_most, value_at_most
from hil.daemon_process import DaemonProcess
from hil.emulators.barrier_io import Physics
from hil.rig import Rig, RigLane
from lanectl.adapters.modbus_barrier import MAX_POLL_HOLD_S

POLL_MS = 50  # the shipped default
FITTING_POLL_MS = 200  # what one 9600 line can give 8 units (~175 ms a round): check-config accepts it
STARTED_AFTER_S = 0.012
POLL_FRAME_MS = 21.875  # one input poll at 9600 8N1 (lanectl.config.bus_budget.poll_ms)


@dataclass(frozen=True, order=True)
class Frame:
    """A request the IO module answered: when it had read it, whose, what (poll, OPEN, OPEN end, CLOSE, ...)."""
    t: float
    unit: int
    what: str


_COIL_NAMES = {0: "OPEN", 1: "CLOSE", 2: "STOP"}  # the rig's point map (the default of lane-hardware.md)
BACK_TO_BACK_S = 0.030  # two frames read this close were queued one behind the other (~19-21 ms apart at 9600)


@dataclass(frozen=True)
class Config:
    transport: str  # rtu | tcp
    lanes: int
    poll_ms: int
    lean: bool = False  # /metrics and housekeeping off (what a lane does not need is then never imported)

    @property
    def achievable_ms(self) -> float:
        """The shortest input read period the bus allows: the configured one, or one round of polls of every
        unit on a serial line, whichever is longer (what `check-config` computes)."""
        return max(float(self.poll_ms), self.lanes * POLL_FRAME_MS if self.transport == "rtu" else 0.0)

    @property
    def label(self) -> str:
        return f"{self.lanes} lane{'s' if self.lanes > 1 else ''} on " + (
            f"one 9600 bus, polled every {self.poll_ms} ms" if self.transport == "rtu" else "Modbus TCP") + (
            ", /metrics + housekeeping off" if self.lean else "")


@dataclass(frozen=True)
class Outcome:
    config: Config
    latencies: list[float]  # seconds, plate line written -> OPEN coil seen, every car of every lane
    poll_gaps: dict[int, list[float]]  # unit -> seconds between two input reads
    rss_kib: int
    in_the_way: tuple[float, float]  # share of cars with an input poll / another coil write answered meanwhile
    cars: list[tuple[int, float, float]] = field(default_factory=list)  # (unit, plate line written, OPEN seen)
    frames: list[Frame] = field(default_factory=list)  # what the IO module answered during the run

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000

    def cars_per_lane_hour(self) -> float:
        """The pace the cars came at: cars per lane per hour over the run (first plate line to last OPEN)."""
        span = max(b for _, _, b in self.cars) - min(a for _, a, _ in self.cars)
        return len(self.cars) / self.config.lanes / span * 3600 if span > 0 else 0.0

    def poll_median_ms(self) -> float:
        """The slowest lane's median gap between two input reads."""
        return max(statistics.median(g) for g in self.poll_gaps.values() if g) * 1000

    def poll_worst_ms(self) -> float:
        return max(max(g) for g in self.poll_gaps.values() if g) * 1000

    def line(self) -> str:
        c = self.config
        return (f"  {c.label:24} {len(self.latencies):4d} cars | plate -> OPEN p50 {self.p(0.5):6.2f} p99 "
                f"{self.p(0.99):6.2f} max {max(self.latencies) * 1000:6.2f} ms | input reads every "
                f"{self.poll_median_ms():6.1f} ms (median of the slowest lane; worst gap {self.poll_worst_ms():6.1f})"
                f" configured {c.poll_ms} ms, bus allows {c.achievable_ms:.0f} | RSS {self.rss_kib / 1024:5.1f} MiB"
                f" | {self.cars_per_lane_hour():.0f} cars a lane an hour\n"
                f"  {'':24} the IO module answered an input poll >= 12 ms after the plate line began and before "
                f"its OPEN for {self.in_the_way[0]:.0%} of the cars, another coil write for {self.in_the_way[1]:.0%}")


def plate(lane: int, i: int) -> str:
    return f"粤D{lane:02d}{i:03d}"


async def _lane_cars(rig: Rig, lane: RigLane, index: int, cars: int, rng: random.Random, workdir: Path,
                     out: list[tuple[int, float, float]], lane_rate: Optional[int] = None) -> None:
    round_s = max(rig.poll_ms, len(rig.lanes) * POLL_FRAME_MS if not rig.barrier_tcp else 0) / 1000
    await asyncio.sleep(rng.uniform(0, 1.0) if lane_rate is None else rng.uniform(0, 3600 / lane_rate))
    for i in range(cars):
        arrived = time.monotonic()
        # the car stays on the safety loop long enough for the input reads to see it on a busy bus (plate lines at
        # other lanes may hold a unit's polls up to MAX_POLL_HOLD_S beyond its period)
        result = await rig.car(lane.id, plate(index, i), wait_open_s=5.0, drive_s=0.05,
                               on_safety_s=5 * round_s + MAX_POLL_HOLD_S)
        if not result.opened:
            raise SystemExit(f"lane {lane.id}: car {plate(index, i)} was not let in: see {workdir / 'daemon.log'}")
        out.append((lane.unit, result.t_plate, result.t_open))
        await rig.wait_down(lane.id, timeout=10.0)
        # the lane must have read the loops empty and the arm down before the next car (a few poll periods: a
        # busy bus polls late)
        await asyncio.sleep(4 * rig.poll_ms / 1000 + rng.uniform(0.3, 0.8))
        if lane_rate is not None:  # a lot's peak: the next car ~3600 / lane_rate s after this one (+-25 %)
            await asyncio.sleep(max(0.0, arrived + rng.uniform(0.75, 1.25) * 3600 / lane_rate - time.monotonic()))


async def run_config(config: Config, cars_per_lane: int, seed: int, lane_rate: Optional[int] = None) -> Outcome:
    workdir = Path(tempfile.mkdtemp(prefix="lanectl-scale-", dir="/tmp"))
    lanes = [RigLane(f"in{i}", "entry", i) for i in range(1, config.lanes + 1)]
    whitelist = {plate(i, n): {} for i in range(1, config.lanes + 1) for n in range(cars_per_lane)}
    rig = Rig(workdir, lanes, baudrate=9600, physics=Physics(rise_s=0.05, fall_s=0.05), poll_ms=config.poll_ms,
              led_boards=False, barrier_tcp=config.transport == "tcp",
              site_overrides={"vehicles": {"whitelist": whitelist},
                              **({"metrics": {"enabled": False}, "housekeeping": {"enabled": False}}
                                 if config.lean else {})})
    await rig.start()
    assert rig.io is not None
    socket = workdir / "control.sock"
    daemon = DaemonProcess(rig.write_config(workdir / "etc", socket), socket, workdir / "daemon.log",
                           log_level="WARNING")
    cars: list[tuple[int, float, float]] = []
    try:
        await daemon.start()
        await asyncio.sleep(0.5)
        rng = random.Random(seed)
        t0 = time.monotonic()
        await asyncio.gather(*(_lane_cars(rig, lane, i, cars_per_lane, random.Random(rng.random()), workdir,
                                          cars, lane_rate) for i, lane in enumerate(lanes, 1)))
        rss = daemon.peak_rss_kib()
        reads = [(u, t) for u, t in rig.io.input_reads if t >= t0]
        writes = [(w.unit, w.coil, w.value, w.t) for w in rig.io.coil_writes if w.t >= t0]
    finally:
        await daemon.stop()
        await rig.stop()
    shutil.rmtree(workdir, ignore_errors=True)  # kept when the run failed: its daemon.log tells why
    gaps: dict[int, list[float]] = {}
    last: dict[int, float] = {}
    for unit, t in reads:
        if unit in last:
            gaps.setdefault(unit, []).append(t - last[unit])
        last[unit] = t
    # frames that began after the plate line did (a request is answered ~8 ms after it starts at 9600 baud)
    polled = sum(1 for _, a, b in cars if any(a + STARTED_AFTER_S <= t < b for _, t in reads))
    written = sum(1 for unit, a, b in cars if any(a + STARTED_AFTER_S <= t < b - 0.001 for _, _, _, t in writes))
    frames = sorted([Frame(t, unit, "poll") for unit, t in reads]
                    + [Frame(t, unit, _COIL_NAMES.get(coil, f"coil {coil}") + ("" if on else " end"))
                       for unit, coil, on, t in writes])
    return Outcome(config, [b - a for _, a, b in cars], gaps, rss, (polled / len(cars), written / len(cars)),
                   cars, frames)


def in_front(o: Outcome, unit: int, t_plate: float, t_open: float) -> list[Frame]:
    """The frames the line carried back to back up to this car's OPEN, from after its plate line began: what the
    OPEN waited behind. Empty: the OPEN found the line idle (its wait was the daemon's own)."""
    before = [f for f in o.frames if f.t < t_open - 0.0005 or (f.unit != unit and f.t < t_open)]
    chain: list[Frame] = []
    edge = t_open
    for f in reversed(before):
        if edge - f.t > BACK_TO_BACK_S or f.t < t_plate:
            break
        chain.insert(0, f)
        edge = f.t
    return chain


def cause(o: Outcome, unit: int, chain: list[Frame]) -> str:
    """What the OPEN waited behind, by the frame that held the line longest in front of it."""
    if not chain:
        return "line idle: the daemon's own time"
    names = []
    for i, f in enumerate(chain):
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        if f.what == "poll" and nxt is not None and nxt.unit == f.unit and nxt.what == "CLOSE":
            names.append("CLOSE's check-and-write")
        elif f.what == "CLOSE" and names[-1:] == ["CLOSE's check-and-write"]:
            continue
        elif f.what == "poll":
            names.append("own poll" if f.unit == unit else "poll")
        elif f.what == "OPEN":
            names.append("own OPEN" if f.unit == unit else "another lane's OPEN")
        elif f.what.endswith(" end"):
            names.append("pulse end")
        else:
            names.append(f.what)
    for kind in ("another lane's OPEN", "CLOSE's check-and-write", "CLOSE", "pulse end", "poll", "own poll"):
        if kind in names:
            return kind if len(names) == 1 else f"{kind} (+{len(names) - 1} more)"
    return names[0]


def _unread_s(o: Outcome, poll: Frame) -> float:
    """How long the unit's inputs had gone unread when this poll came (the starvation guard lets a poll go
    in front of an announced OPEN once it is due)."""
    before = [f.t for f in o.frames if f.unit == poll.unit and f.what == "poll" and f.t < poll.t]
    return poll.t - before[-1] if before else 0.0


def trace(o: Outcome, reference: Optional[Outcome]) -> None:
    """Per car over the goal line (1.2 x one lane's p99 in the same run; without one, over the p95) what was on
    the wire between its plate line and its OPEN, and the causes' share of that tail."""
    limit = 1.2 * reference.p(0.99) / 1000 if reference is not None else percentile(o.latencies, 0.95)
    base = reference.p(0.5) / 1000 if reference is not None else percentile(o.latencies, 0.5)
    slow = sorted(((b - a, u, a, b) for u, a, b in o.cars if b - a > limit), reverse=True)
    print(f"  trace: {len(slow)} of {len(o.cars)} cars ({len(slow) / len(o.cars):.1%}) over {limit * 1000:.1f} ms"
          f" (1.2 x one lane's p99); one lane's p50 {base * 1000:.1f} ms")
    shares: dict[str, int] = {}
    for latency, unit, a, b in slow:
        chain = in_front(o, unit, a, b)
        why = cause(o, unit, chain)
        shares[why.split(" (+")[0]] = shares.get(why.split(" (+")[0], 0) + 1
        plates = [u for u, pa, _ in o.cars if u != unit and abs(pa - a) < 0.060]
        print(f"    unit {unit}: {latency * 1000:6.1f} ms (+{(latency - base) * 1000:5.1f}) {why:34} | "
              + " ".join(f"{f.what}@u{f.unit}+{(f.t - a) * 1000:.0f}" + (
                  f"(unread {_unread_s(o, f) * 1000:.0f})" if f.what == "poll" else "") for f in chain)
              + f" | OPEN +{(b - a) * 1000:.0f}" + (f" | plate lines within 60 ms at units {plates}" if plates else ""))
    for why, n in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"    {why:40} {n:3d} cars ({n / len(slow):.0%} of the tail, {n / len(o.cars):.1%} of all)")
    # Two OPENs at once: one line carries one frame at a time, so the second waits for the first (~20 ms at
    # 9600 baud) whatever the scheduling; how often depends on the pace of the cars.
    behind = [b - a for u, a, b in o.cars
              if any(f.what == "OPEN" and f.unit != u for f in in_front(o, u, a, b))]
    rest = [b - a for u, a, b in o.cars
            if not any(f.what == "OPEN" and f.unit != u for f in in_front(o, u, a, b))]
    if behind:
        print(f"    {len(behind)} of {len(o.cars)} cars ({len(behind) / len(o.cars):.1%}) waited behind another lane's "
              f"OPEN (median {(statistics.median(behind) - base) * 1000:+.1f} ms over one lane's p50); the other "
              f"cars' p99 {percentile(rest, 0.99) * 1000:.1f} ms")


SERIES = (("rtu", POLL_MS), ("rtu", FITTING_POLL_MS), ("tcp", POLL_MS))


async def measure(cars: int, series: tuple[tuple[str, int], ...] = SERIES, seed: int = 1,
                  rss_lanes: tuple[int, ...] = (), poll_ms: int = POLL_MS,
                  show_trace: bool = False, lane_counts: tuple[int, ...] = (),
                  lane_rate: Optional[int] = None) -> dict[str, list[Outcome]]:
    """`cars` per configuration (spread over its lanes); per series (transport, poll period) the 1-lane
    reference first."""
    out: dict[str, list[Outcome]] = {}
    for transport, poll in series:
        for n in lane_counts or ((1, 8) if transport == "rtu" else (1, 8, 16)):
            outcome = await run_config(Config(transport, n, poll), max(2, -(-cars // n)), seed, lane_rate)
            print(outcome.line(), flush=True)
            out.setdefault(f"{transport} {poll}", []).append(outcome)
            if show_trace and n > 1:
                first = out[f"{transport} {poll}"][0]
                trace(outcome, first if first.config.lanes == 1 else None)
    for n, lean in [(n, False) for n in rss_lanes] + [(4, True)] * bool(rss_lanes):
        outcome = await run_config(Config("tcp", n, poll_ms, lean), 3, seed)
        print(outcome.line(), flush=True)
        out.setdefault("rss", []).append(outcome)
    return out


def figures_of(results: dict[str, list[Outcome]]) -> Figures:
    rows: Figures = {}
    for transport, outcomes in results.items():
        if transport == "rss":
            continue
        one = outcomes[0]
        for o in outcomes[1:]:
            rows[f"{o.config.label}: p99 vs 1 lane"] = Figure(o.p(0.99), "ms", one.p(0.99), "ratio <= 1.2",
                                                               ratio_at_most(1.2))
            rows[f"{o.config.label}: p50 vs 1 lane"] = Figure(o.p(0.5), "ms", one.p(0.5))
            # against what the line allows (8 units at 9600 need ~175 ms a round, whatever poll_ms says)
            rows[f"{o.config.label}: input read period (slowest lane, median)"] = Figure(
                o.poll_median_ms(), "ms", o.config.achievable_ms, "ratio <= 1.2", ratio_at_most(1.2))
    every = sorted((o for outcomes in results.values() for o in outcomes),
                   key=lambda o: (o.config.lanes, o.config.lean))
    for o in every:
        name = f"daemon peak RSS, {o.config.lanes} lanes" + (", /metrics + housekeeping off" if o.config.lean else "")
        if name in rows:
            continue
        rows[name] = (Figure(o.rss_kib / 1024, "MiB", None, "<= 60 MiB", value_at_most(60.0))
                      if o.config.lanes == 4 and not o.config.lean else Figure(o.rss_kib / 1024, "MiB"))
    return rows


async def figures(smoke: bool = False) -> dict[str, Figures]:
    """As `python -m hil.bench all` reports them."""
    print("lanes at scale: plate line -> OPEN, input read period, RSS; cars at every lane at once")
    results = await measure(8 if smoke else 160, rss_lanes=(2, 4))
    return {"lanes at scale": figures_of(results)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cars", type=int, default=160, help="cars per configuration, spread over its lanes")
    ap.add_argument("--only", choices=["rtu", "tcp"], help="one transport only")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--poll-ms", type=int, help="every lane's input read period (default: 50 and, on RS-485, 200)")
    ap.add_argument("--rss", action="store_true", help="also start the daemon with 2 and 4 lanes for its RSS")
    ap.add_argument("--lanes", type=lambda v: tuple(int(n) for n in v.split(",")), default=(),
                    help="lane counts to run, e.g. 8 (default: 1,8 on RS-485, 1,8,16 on TCP; without 1 there is no "
                         "reference and no ratio)")
    ap.add_argument("--lane-rate", type=int, metavar="CARS_AN_HOUR",
                    help="cars come to each lane about this often (a lot's peak, e.g. 600) instead of back to back "
                         "(the default: each lane's next car as soon as the arm is down, ~1 200 an hour)")
    ap.add_argument("--trace", action="store_true",
                    help="per car over 1.2 x one lane's p99: what the line carried between its plate line and OPEN")
    args = ap.parse_args()
    series = tuple((t, p) for t, p in SERIES if args.only in (None, t))
    if args.poll_ms is not None:
        series = tuple(dict.fromkeys((t, args.poll_ms) for t, _ in series))
    results = asyncio.run(measure(args.cars, series, args.seed, (2, 4) if args.rss else (), show_trace=args.trace,
                                  lane_counts=args.lanes, lane_rate=args.lane_rate))
    for name, f in figures_of(results).items():
        print(f"{name}: {f.value:.2f} {f.unit}" + (f" (vs {f.baseline:.2f}, ratio {f.ratio:.2f})" if f.baseline
                                                   else ""))


if __name__ == "__main__":
    main()
