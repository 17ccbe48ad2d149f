"""The soak campaign's measurements, as pure functions over timelines (no I/O, no clock): unit-testable on
small synthetic timelines, and fed by hil/soak.py from the rig's emulators and the daemon's database.

Every time here is on the rig's monotonic clock (seconds). The database's wall-clock stamps are converted by
the caller with an offset measured when the run started.

What is measured (hil/README.md explains each figure):

- lost commands: an acknowledged `barrier_actions` row (the module answered the write) with no command edge of
  that coil at the IO module between the request and the answer;
- double opens: two OPEN edges at one lane with neither a car driving onto the safety loop nor the arm reaching
  its down limit in between;
- opens without authority: an OPEN edge that no `barrier_actions` open row explains, or whose row has no
  authority (rules | payment | operator, and an operator row names its operator);
- cars that passed without a record of their own on that lane (plate match, or an operator release record);
- arm up with no car: time the arm stood off its down limit while no car was at the lane, beyond the allowed
  close delay (the lane's pass timeout + the arm's fall time + a little slack) and the daemon's downtime.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional, Sequence

ACKNOWLEDGED = ("sent", "confirmed", "unconfirmed")
AUTHORITIES = ("rules", "payment", "operator")
MATCH_SLACK_S = 0.25  # clock conversion and the module's answer: an edge this far outside a row's window counts
UNFINISHED_WINDOW_S = 10.0  # a row never answered (requested / interrupted / failed) may have acted this long
RECORD_EARLY_S = 1.0  # a car's own record may be stamped a little before the car is on the loop (clock slack)
DOWN_GRACE_S = 1.0  # a restarted daemon answers its socket a moment before its first poll of the lane
RECORD_LATE_S = 30.0  # ... and may come after it has passed (a plate held until the cycle ended)


@dataclass(frozen=True)
class Edge:
    """A coil command edge seen by the IO module (rising edge of OPEN / CLOSE / STOP)."""

    lane: str
    command: str
    t: float


@dataclass(frozen=True)
class Action:
    """One `barrier_actions` row, its times converted to the rig's monotonic clock."""

    action_id: str
    lane: str
    command: str  # open | close
    authority: str
    operator: str
    reason: str
    status: str  # requested | sent | failed | interrupted | confirmed | unconfirmed
    t_requested: float
    t_done: Optional[float] = None


@dataclass(frozen=True)
class Record:
    """One `records` row: the lane's record of a car (entry / exit) or of an operator release."""

    record_id: str
    lane: str
    kind: str  # entry | exit | release
    plate: str
    status: str
    t: float


@dataclass
class CarTrace:
    """One simulated car as the soak drove it."""

    lane: str
    plate: str  # '' for a car the camera cannot read
    kind: str  # entry | refused | free_exit | paid_exit | plateless
    t_arrive: float
    t_pass: Optional[float] = None  # drove onto the safety loop (None: it backed away / gave up)
    t_gone: Optional[float] = None  # left the last loop
    arm_up_on_arrival: bool = False
    daemon_down_on_arrival: bool = False
    stuck_released: bool = False  # the soak's operator released it after it waited too long
    paid: bool = False
    reads: list[float] = field(default_factory=list)  # when the camera sent its plate (arrival, re-reads)


@dataclass(frozen=True)
class ArmState:
    """The arm's state from time t on: at its down limit or not."""

    lane: str
    t: float
    down: bool


@dataclass(frozen=True)
class LaneTiming:
    pass_timeout_s: float
    fall_s: float
    slack_s: float = 1.5  # the daemon's poll, the bus, the close command's own latency


@dataclass
class Timeline:
    edges: list[Edge]
    actions: list[Action]
    records: list[Record]
    cars: list[CarTrace]
    arm: list[ArmState]  # changes only, per lane, in time order
    down_limits: list[Edge]  # arm reached its down limit (command='down_limit')
    downtimes: list[tuple[float, float]]  # (killed, answering again)
    kills: list[float]
    timing: dict[str, LaneTiming]
    t_end: float


@dataclass
class Finding:
    what: str
    lane: str
    t: float
    detail: str


@dataclass
class Figures:
    decided: int = 0
    acknowledged: int = 0
    confirmed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    lost_commands: int = 0
    double_opens: int = 0
    opens_without_authority: int = 0
    cars_without_record: int = 0
    passed_while_down: int = 0  # arrived and drove through an arm left up while the daemon was down (no count)
    arm_up_no_car_s: float = 0.0
    opens_with_no_car: int = 0  # informational: an OPEN edge while no car stood at the lane (its car had gone)
    findings: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _interval_overlap(a: float, b: float, spans: Iterable[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, y) - max(a, x)) for x, y in spans)


def match_edges(edges: Sequence[Edge], actions: Sequence[Action], kills: Sequence[float]
                ) -> tuple[dict[int, Action], set[str]]:
    """Pair command edges with the rows that explain them, one to one, per lane and command.

    A row's window runs from its request to its answer (`done_at`); a row never answered (the process died,
    or the write failed) may have acted until the next kill (at most UNFINISHED_WINDOW_S). Each edge takes
    the row requested most recently before it among those whose window holds it.
    Returns {edge index: row} and the ids of the rows matched."""
    def window_end(a: Action) -> float:
        if a.t_done is not None:
            return a.t_done
        later = [k for k in kills if k >= a.t_requested]
        return min([a.t_requested + UNFINISHED_WINDOW_S, *later])

    matched: dict[int, Action] = {}
    used: set[str] = set()
    order = sorted(range(len(edges)), key=lambda i: edges[i].t)
    for i in order:
        e = edges[i]
        candidates = [a for a in actions if a.action_id not in used and a.lane == e.lane and a.command == e.command
                      and a.t_requested - MATCH_SLACK_S <= e.t <= window_end(a) + MATCH_SLACK_S]
        if candidates:
            row = max(candidates, key=lambda a: a.t_requested)
            matched[i] = row
            used.add(row.action_id)
    return matched, used


def _authorised(a: Action) -> bool:
    return a.authority in AUTHORITIES and (a.authority != "operator" or bool(a.operator.strip()))


def _cars_without_record(tl: Timeline, fig: Figures) -> None:
    """Each car that passed needs a record of its own at that lane: first by plate (a record stamped from just
    before it arrived to a while after it passed: a plate held until a cycle ends is recorded late), then an
    operator release record made while it stood at the lane (a car the lane never identified)."""
    used: set[str] = set()
    records = sorted(tl.records, key=lambda r: r.t)
    passed = sorted((c for c in tl.cars if c.t_pass is not None), key=lambda c: c.t_arrive)
    unmatched: list[CarTrace] = []
    for car in passed:
        gone = car.t_gone if car.t_gone is not None else car.t_pass
        # ... but never as late as the next car with that plate at that lane (a regular comes back)
        later = [c.t_arrive for c in tl.cars if c.lane == car.lane and c.plate == car.plate
                 and c.t_arrive > car.t_arrive]
        until = min([gone + RECORD_LATE_S, *(t - RECORD_EARLY_S for t in later)])
        own = [r for r in records if r.record_id not in used and r.lane == car.lane and r.kind != "release"
               and car.plate and r.plate == car.plate and r.status != "refused"
               and car.t_arrive - RECORD_EARLY_S <= r.t <= until]
        if own:
            used.add(own[0].record_id)
        else:
            unmatched.append(car)
    for car in unmatched:
        own = [r for r in records if r.record_id not in used and r.lane == car.lane and r.kind == "release"
               and car.t_arrive - RECORD_EARLY_S <= r.t <= (car.t_pass or 0.0)]
        if own:
            used.add(own[0].record_id)
            continue
        # arrived while the daemon was down (or just as it came back), passed before it could act, and was
        # never read while it ran
        down = [(k, r) for k, r in tl.downtimes if k <= car.t_arrive <= r + DOWN_GRACE_S]
        read_while_up = any(not any(k <= t <= r for k, r in tl.downtimes) for t in car.reads)
        if down and car.t_pass is not None and car.t_pass <= down[0][1] + DOWN_GRACE_S and not read_while_up:
            fig.passed_while_down += 1  # no daemon could have seen it: not counted against the daemon
            continue
        fig.cars_without_record += 1
        fig.findings.append(Finding("car_without_record", car.lane, car.t_arrive,
                                    f"{car.kind} {car.plate or '(no plate)'} arrived with the arm "
                                    f"{'up' if car.arm_up_on_arrival else 'down'}"
                                    f"{' while the daemon was down' if car.daemon_down_on_arrival else ''}, "
                                    f"passed at {car.t_pass:.1f} with no record of its own"))


def _arm_up_without_car(tl: Timeline, fig: Figures) -> None:
    for lane, timing in tl.timing.items():
        states = [s for s in tl.arm if s.lane == lane]
        up: list[tuple[float, float]] = []
        for i, s in enumerate(states):
            if not s.down:
                end = states[i + 1].t if i + 1 < len(states) else tl.t_end
                up.append((s.t, min(end, tl.t_end)))
        present = sorted((c.t_arrive, c.t_gone if c.t_gone is not None else tl.t_end)
                         for c in tl.cars if c.lane == lane)
        for a, b in up:
            # cut the car-present spans out of this up span: what is left are episodes with no car
            cursor, episodes = a, []
            for x, y in present:
                if y <= cursor or x >= b:
                    continue
                if x > cursor:
                    episodes.append((cursor, x))
                cursor = max(cursor, y)
            if cursor < b:
                episodes.append((cursor, b))
            for x, y in episodes:
                allowed = timing.pass_timeout_s + timing.fall_s + timing.slack_s
                excess = (y - x) - _interval_overlap(x, y, tl.downtimes) - allowed
                if excess > 0:
                    fig.arm_up_no_car_s += excess
                    fig.findings.append(Finding("arm_up_no_car", lane, x,
                                                f"arm up with no car for {y - x:.1f} s ({excess:.1f} s beyond "
                                                f"the {allowed:.1f} s allowed)"))


def analyse(tl: Timeline) -> Figures:
    fig = Figures()
    for a in tl.actions:
        fig.statuses[a.status] = fig.statuses.get(a.status, 0) + 1
    fig.decided = len(tl.actions)
    fig.acknowledged = sum(1 for a in tl.actions if a.status in ACKNOWLEDGED)
    fig.confirmed = sum(1 for a in tl.actions if a.status == "confirmed")

    commands = [e for e in tl.edges if e.command in ("open", "close")]
    matched, used = match_edges(commands, tl.actions, tl.kills)
    for a in sorted(tl.actions, key=lambda a: a.t_requested):
        if a.status in ACKNOWLEDGED and a.action_id not in used:
            fig.lost_commands += 1
            fig.findings.append(Finding("lost_command", a.lane, a.t_requested,
                                        f"{a.command.upper()} {a.action_id} ({a.authority} {a.reason}) was "
                                        f"acknowledged ({a.status}) but the module saw no {a.command} edge"))
    for i, e in enumerate(commands):
        if e.command != "open":
            continue
        row = matched.get(i)
        if row is None or not _authorised(row):
            fig.opens_without_authority += 1
            why = "no barrier_actions row requested it" if row is None else \
                f"its row {row.action_id} has authority {row.authority!r} operator {row.operator!r}"
            fig.findings.append(Finding("open_without_authority", e.lane, e.t, f"OPEN edge: {why}"))

    for lane in sorted({e.lane for e in commands}):
        opens = sorted(e.t for e in commands if e.lane == lane and e.command == "open")
        passes = [c.t_pass for c in tl.cars if c.lane == lane and c.t_pass is not None]
        downs = [d.t for d in tl.down_limits if d.lane == lane]
        for t1, t2 in zip(opens, opens[1:]):
            if not any(t1 < p <= t2 for p in passes) and not any(t1 < d < t2 for d in downs):
                fig.double_opens += 1
                fig.findings.append(Finding("double_open", lane, t2,
                                            f"OPEN at {t2:.2f} follows the OPEN at {t1:.2f} with no car passing "
                                            "and the arm never down in between"))

    for e in commands:
        if e.command == "open" and not any(
                c.lane == e.lane and c.t_arrive <= e.t and (c.t_gone is None or e.t <= c.t_gone) for c in tl.cars):
            fig.opens_with_no_car += 1
            fig.findings.append(Finding("open_with_no_car", e.lane, e.t,
                                        "OPEN edge while no car stood at the lane (informational)"))

    _cars_without_record(tl, fig)
    _arm_up_without_car(tl, fig)
    fig.arm_up_no_car_s = round(fig.arm_up_no_car_s, 2)
    fig.findings.sort(key=lambda f: f.t)
    return fig
