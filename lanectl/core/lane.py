"""The lane state machine: handle(state, event, now, ctx) -> (state, effects).

Pure: no I/O, no clock, no randomness. Time arrives as `now`; timers are deadlines kept in the state, so a
state restored after a crash carries its timers with it. One car, one barrier cycle: a plate read while the
barrier is busy with another car is held and handled when the cycle ends.

Phases (every phase and its exits: docs/lane-phases.md)
    idle ──plate (allowed / free)──▶ opening ──up limit──▶ open ──car passed (safety loop cleared)──▶ closing
      ▲   └─plate (fee due, exit)──▶ awaiting_payment ──operator release (name + reason)──▶ opening       │
      └──────────────────────────────────────── down limit ◀──────────────────────────────────────────────┘
    opening ──OPEN not delivered / not confirmed / interrupted by a restart──▶ blocked (the car keeps its
    decision: the operator's release, the same car read again at the closed arm, or the next car ends it)

After a restart in the middle of a cycle the lane is `resuming`: the first IoSnapshot decides from what the
inputs say (arm up and no car: close; a car on a loop: let it pass; arm still down: blocked), never from the
saved phase alone, and a command decided before the stop is never re-sent blindly.

`handle` expires the timers that are due (_TIMERS: (phase, timer) -> what its expiry does), then hands the
event to the handler _TABLE names for (phase, event type); each phase guard is written there once, and a pair
not listed changes nothing. A lane still `resuming` hands its inputs and plates to _RESUMING first.

The board gets Display(key, fields) with facts only (plate, fen, minutes, the rules' message); the words are
the display adapter's (lanectl/adapters/board_wording.py and the lot's templates).

The safety invariant lives here and in the barrier adapter alike: OpenBarrier only for an allowed/free
decision of the rules, a payment confirmed for the record the car waits on and covering what it owes (a
stored-value debit or a provider's PaymentConfirmed), or an operator release with a name and a reason;
CloseBarrier never while the last known safety loop or anti-smash input is active.

An exit lane with payment providers asks for a settlement (StartSettlement) when a car owes money; the
service/settlement.py flow charges, polls and reconciles, and answers with PaymentConfirmed or
PaymentFallback. The lane alone decides what a result means for the barrier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any, Callable, Iterator, Literal, Mapping, Optional

from lanectl.core import effects as fx
from lanectl.core.effects import Audit, RecordStatus, StopReason
from lanectl.core.events import (
    CodeScanned,
    CommandDone,
    DeviceFault,
    DeviceRecovered,
    Event,
    IdentifyCar,
    IoSnapshot,
    OperatorAdmit,
    OperatorCorrect,
    OperatorOpen,
    OperatorRefuse,
    PaymentConfirmed,
    PaymentFallback,
    PlateRead,
    PlatformEntry,
    QuoteRequest,
)
from lanectl.core.money import yuan_words
from lanectl.core.plates import DEFAULT_SPECIAL_PREFIXES, PlateMatch, classify_plate, match_entry, normalize_plate
from lanectl.core.policy import EntryDecision, Policy
from lanectl.core.quotes import StayPrice, stay_minutes

Direction = Literal["entry", "exit"]
CLOSE_RETRY_S = 2.0  # a CLOSE that was refused or lost is tried again after this (if the loops are clear)


class Phase(str, Enum):
    IDLE = "idle"
    OPENING = "opening"  # OPEN sent, waiting for the up limit
    OPEN = "open"  # arm up, waiting for the car to pass
    CLOSING = "closing"  # CLOSE sent (or auto-close), waiting for the down limit
    AWAITING_PAYMENT = "awaiting_payment"  # exit lane: fee due, barrier stays down
    BLOCKED = "blocked"  # the car's OPEN was decided but the arm did not move (not delivered / confirmed / cut)


CYCLE_PHASES = (Phase.OPENING, Phase.OPEN, Phase.CLOSING, Phase.BLOCKED)


class Timer(StrEnum):
    """The lane's deadlines, kept in its state by these names (a restored state carries them)."""

    OPEN_CONFIRM = "open_confirm"  # the up limit must follow OPEN by then
    CLOSE_CONFIRM = "close_confirm"  # the down limit must follow CLOSE (or the auto-close) by then
    PASS_TIMEOUT = "pass_timeout"  # arm up and no car came through: lower it when the loops are clear
    CLOSE_RETRY = "close_retry"  # a refused or lost CLOSE is tried again


class Passage(StrEnum):
    """Where the car being let through is, as the safety loop saw it."""

    WAITING = "waiting"
    ON_SAFETY = "on_safety"


class CloseReason(StrEnum):
    """Why the lane lowers the arm (the CloseBarrier's reason, written in the barrier-action audit)."""

    CAR_PASSED = "car_passed"
    RETRY = "retry"
    NOT_PASSED = "not_passed"
    RESTART_NO_CAR = "restart_no_car"


class Reason(StrEnum):
    """Record reasons the lane decides itself (the rest come from the policy)."""

    UNREADABLE_PLATE = "unreadable_plate"  # a reading that is no plate (core.plates.classify_plate)
    AMBIGUOUS_ENTRY = "ambiguous_entry"  # several entries match the exit's plate: the booth decides
    STORED_VALUE = "stored_value"  # the fee was taken from the car's stored-value balance
    OPERATOR_REFUSED = "operator_refused"  # the booth turned the car away (record reason operator_refused:<why>)


@dataclass(frozen=True)
class LaneRules:
    duplicate_window_s: float = 10.0  # the same plate again within this window is the same car
    min_confidence: int = 0
    open_confirm_s: float = 6.0  # up limit must follow OPEN within this, else the barrier is faulted
    close_confirm_s: float = 10.0
    pass_timeout_s: float = 120.0  # arm up but the car never came through: lower it when the loops are clear
    auto_close: bool = False  # the barrier lowers itself after the car; we only watch the down limit
    stale_plate_s: float = 30.0  # a plate held before a restart and older than this is logged, not acted upon
    # the barrier reports real loops (a Modbus IO module); false for a camera relay, whose inputs are made up
    loops: bool = True
    # plates that start with no province but are real (site `vehicles: special_prefixes`); any other reading
    # with a non-province first character is unreadable: the booth decides, never the rules
    special_prefixes: tuple[str, ...] = DEFAULT_SPECIAL_PREFIXES


@dataclass(frozen=True, slots=True)
class InsideCar:
    record_id: str
    entered_at: datetime
    lane_id: str = ""
    reason: str = ""  # the entry decision (e.g. monthly_spaces_full), which the exit decision honours
    color: str = ""
    paid_fen: int = 0  # paid ahead inside the lot (platform prepay notices)
    paid_at: Optional[datetime] = None  # the last of those payments: the exit grace runs from it
    image: str = ""  # the entry camera's picture (platforms that take one get a link to it at the exit)


class EnteredAt(Mapping[str, datetime]):
    """The policy's `present` (plate -> entry time) read through the cars inside: no copy of the whole lot for
    each decision (the rules look up a card's few plates)."""

    __slots__ = ("_inside",)

    def __init__(self, inside: Mapping[str, InsideCar]) -> None:
        self._inside = inside

    def __getitem__(self, plate: str) -> datetime:
        return self._inside[plate].entered_at

    def __contains__(self, plate: object) -> bool:
        return plate in self._inside

    def __iter__(self) -> Iterator[str]:
        return iter(self._inside)

    def __len__(self) -> int:
        return len(self._inside)


def match_inside(plate: str, inside: Mapping[str, InsideCar]) -> PlateMatch:
    """match_entry over the cars inside, the common case first: plates are stored normalized, so a normalized
    reading that is a key is its own exact match — found without normalizing every plate in the lot."""
    if plate and plate in inside and normalize_plate(plate) == plate:
        return PlateMatch("exact", plate, (plate,))
    return match_entry(plate, inside.keys())


@dataclass(frozen=True)
class LaneContext:
    lane_id: str
    direction: Direction
    policy: Policy
    rules: LaneRules = LaneRules()
    # cars inside the lot by plate (open entry records) — the store's read-only view (core/inside.py)
    inside: Mapping[str, InsideCar] = field(default_factory=dict)
    # stored-value balances by plate (fen) — the ledger's current figures, read-only like `inside`
    balances: Mapping[str, int] = field(default_factory=dict)
    settle: bool = False  # this exit lane charges through payment providers (else the booth takes the money)


@dataclass(frozen=True)
class Visit:
    """The car the lane is handling now."""

    plate: str
    color: str
    record_id: str
    vehicle_class: str = ""
    reason: str = ""
    entry_record_id: str = ""
    due_fen: int = 0
    passage: Passage = Passage.WAITING
    paid_fen: int = 0  # paid before this exit (ahead, inside the lot)
    # the decision that opened (or should open) the barrier for this car, kept so that a blocked car read again
    # at the closed arm gets the same decision re-issued (same record, same authority), never a new one
    authority: str = ""
    open_reason: str = ""
    operator: str = ""
    trade_no: str = ""
    operator_uid: Optional[int] = None
    image: str = ""  # the camera's picture of this read (an entry the booth admits keeps it)
    read_plate: str = ""  # what the camera read when the operator corrected `plate` (its re-reads are this car)


@dataclass(frozen=True)
class LaneState:
    phase: Phase = Phase.IDLE
    seq: int = 0  # per-lane counter behind record and action ids (persisted: ids never repeat)
    visit: Optional[Visit] = None
    io: Optional[IoSnapshot] = None
    barrier_fault: str = ""
    last_plate: str = ""
    last_plate_at: Optional[datetime] = None
    held: Optional[PlateRead] = None  # a plate read while the barrier was busy with another car
    held_at: Optional[datetime] = None
    deadlines: tuple[tuple[Timer, datetime], ...] = ()  # (timer, when)
    pending_action: str = ""  # the barrier command not yet acknowledged by the adapter
    command: str = ""  # the last OPEN / CLOSE whose limit input has not yet agreed (audit: confirmed/unconfirmed)
    resuming: bool = False  # restored mid-cycle: the first IoSnapshot decides what happens
    # an entry lane's car turned away (unreadable plate, refused by the rules) that the booth may still admit or
    # refuse; the lane stays idle meanwhile and the next car read replaces it
    booth: Optional[Visit] = None
    # the last car an operator's action or a payment ended here: (record_id, what became of it, by whom), so
    # that a second operator acting on it is told why nothing happened
    ended: tuple[str, ...] = ()

    # --- persistence (JSON-friendly dicts) -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        # What dataclasses.asdict gave, without its deep copy of every value (a lane step stores its state
        # whole, before the OPEN): the values are immutable, and the dataclasses inside hold no dataclass.
        d = {name: getattr(self, name) for name in _names(LaneState)}
        for name in ("visit", "io", "held", "booth"):
            d[name] = _flat(d[name])
        d["phase"] = self.phase.value
        d["last_plate_at"] = self.last_plate_at.isoformat() if self.last_plate_at else None
        d["held_at"] = self.held_at.isoformat() if self.held_at else None
        d["deadlines"] = [[n.value, t.isoformat()] for n, t in self.deadlines]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LaneState":
        return cls(
            phase=Phase(d["phase"]),
            seq=int(d["seq"]),
            visit=_visit_from_dict(d["visit"]) if d.get("visit") else None,
            io=IoSnapshot(**d["io"]) if d.get("io") else None,
            barrier_fault=d.get("barrier_fault", ""),
            last_plate=d.get("last_plate", ""),
            last_plate_at=datetime.fromisoformat(d["last_plate_at"]) if d.get("last_plate_at") else None,
            held=PlateRead(**d["held"]) if d.get("held") else None,
            held_at=datetime.fromisoformat(d["held_at"]) if d.get("held_at") else None,
            deadlines=tuple((Timer(n), datetime.fromisoformat(t)) for n, t in d.get("deadlines", ())),
            pending_action=d.get("pending_action", ""),
            command=d.get("command", ""),
            resuming=bool(d.get("resuming", False)),
            booth=_visit_from_dict(d["booth"]) if d.get("booth") else None,
            ended=tuple(d.get("ended", ())),
        )

    def deadline(self, name: Timer) -> Optional[datetime]:
        return next((t for n, t in self.deadlines if n == name), None)

    def next_deadline(self) -> Optional[datetime]:
        return min((t for _, t in self.deadlines), default=None)


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def _flat(value: Any) -> Optional[dict[str, Any]]:
    """A dataclass whose fields hold no dataclass (Visit, IoSnapshot, PlateRead) as a dict, or None."""
    return None if value is None else {name: getattr(value, name) for name in _names(type(value))}


def _visit_from_dict(d: Mapping[str, Any]) -> Visit:
    return Visit(**{**d, "passage": Passage(d.get("passage", Passage.WAITING))})


_ID_SAFE = re.compile(r"[^0-9A-Za-z_]")


def make_id(lane_id: str, now: datetime, seq: int) -> str:
    """Site-unique id `<lane>_<yyyymmddHHMMSS>_<seq>`, only [0-9A-Za-z_], at most 48 characters (Bolink)."""
    tail = f"_{now.strftime('%Y%m%d%H%M%S')}_{seq}"
    return _ID_SAFE.sub("_", lane_id)[: 48 - len(tail)] + tail


def restored(state: LaneState) -> LaneState:
    """A state read back after a restart. The barrier command in flight when we died is not repeated: its
    outcome is learned from the barrier's inputs (the first IoSnapshot, see _resume), not guessed. The saved
    timers belong to the dead process: a lane in a cycle waits for the inputs instead."""
    if state.phase in CYCLE_PHASES:
        return replace(state, pending_action="", resuming=True, deadlines=())
    return replace(state, pending_action="")


# ----------------------------------------------------------------------------------------------------------
Handler = Callable[[LaneState, Any, datetime, LaneContext, list[fx.Effect]], LaneState]


def handle(state: LaneState, event: Event, now: datetime, ctx: LaneContext) -> tuple[LaneState, list[fx.Effect]]:
    out: list[fx.Effect] = []
    if isinstance(event, IoSnapshot):
        # The newest inputs first: a deadline expiring now (e.g. "lower the arm") must see them.
        state = replace(state, io=event)
    state = _expire_deadlines(state, now, ctx, out)
    return handler_for(state, event)(state, event, now, ctx, out), out


def handler_for(state: LaneState, event: Event) -> Handler:
    """What the lane does with `event` in its phase (_TABLE); a lane restored mid-cycle lets its first inputs
    decide first (_RESUMING). A pair in neither changes nothing (_unchanged)."""
    if state.resuming and type(event) in _RESUMING:
        return _RESUMING[type(event)]
    return _TABLE.get((state.phase, type(event)), _unchanged)


def _unchanged(state: LaneState, ev: Event, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    return state


def _on_device_fault(state: LaneState, ev: DeviceFault, now: datetime, ctx: LaneContext,
                     out: list[fx.Effect]) -> LaneState:
    if ev.device != "barrier":
        return state
    if not state.barrier_fault:
        out.append(_log(ctx, "warning", "barrier faulted", reason=ev.reason))
    return replace(state, barrier_fault=ev.reason)


def _on_device_recovered(state: LaneState, ev: DeviceRecovered, now: datetime, ctx: LaneContext,
                         out: list[fx.Effect]) -> LaneState:
    if ev.device == "barrier" and state.barrier_fault:
        out.append(_log(ctx, "info", "barrier recovered"))
        return replace(state, barrier_fault="")
    return state


# --- helpers ------------------------------------------------------------------------------------------------
def _log(ctx: LaneContext, level: Literal["info", "warning", "error"], message: str, **fields: Any) -> fx.Log:
    return fx.Log(level, message, (("lane", ctx.lane_id),) + tuple(fields.items()))


def _set_deadline(state: LaneState, name: Timer, when: datetime) -> LaneState:
    return replace(state, deadlines=tuple((n, t) for n, t in state.deadlines if n != name) + ((name, when),))


def _clear_deadline(state: LaneState, *names: Timer) -> LaneState:
    return replace(state, deadlines=tuple((n, t) for n, t in state.deadlines if n not in names))


def _next_id(state: LaneState, ctx: LaneContext, now: datetime) -> tuple[LaneState, str]:
    seq = state.seq + 1
    return replace(state, seq=seq), make_id(ctx.lane_id, now, seq)


def _unsafe_to_close(state: LaneState) -> bool:
    io = state.io
    # Unknown inputs count as occupied: never lower an arm blind.
    return io is None or io.safety or io.anti_smash


def _open(state: LaneState, now: datetime, ctx: LaneContext, out: list[fx.Effect], *, record_id: str,
          authority: fx.Authority, reason: str, operator: str = "", trade_no: str = "",
          operator_uid: Optional[int] = None, visit: Optional[Visit] = None) -> LaneState:
    """OPEN for the lane's car (`visit`: the car this decision starts handling; default the state's own)."""
    seq = state.seq + 1
    action_id = make_id(ctx.lane_id, now, seq)
    out.append(fx.OpenBarrier(action_id, record_id, authority, reason, operator=operator, trade_no=trade_no,
                              operator_uid=operator_uid))
    visit = visit if visit is not None else state.visit
    if visit is not None:
        visit = replace(visit, authority=authority, open_reason=reason, operator=operator, trade_no=trade_no,
                        operator_uid=operator_uid)
    # One new state, not one per change: this runs before every OPEN, and each dataclasses.replace of the lane's
    # state costs as much as the rest of the decision. The timers as _clear_deadline(CLOSE_CONFIRM, PASS_TIMEOUT)
    # then _set_deadline(OPEN_CONFIRM) leave them.
    gone = (Timer.CLOSE_CONFIRM, Timer.PASS_TIMEOUT, Timer.OPEN_CONFIRM)
    deadlines = tuple((n, t) for n, t in state.deadlines if n not in gone) + (
        (Timer.OPEN_CONFIRM, now + timedelta(seconds=ctx.rules.open_confirm_s)),)
    return replace(state, seq=seq, phase=Phase.OPENING, pending_action=action_id, command=action_id, visit=visit,
                   deadlines=deadlines)


def _close(state: LaneState, now: datetime, ctx: LaneContext, out: list[fx.Effect], reason: CloseReason) -> LaneState:
    record_id = state.visit.record_id if state.visit else ""
    state = _clear_deadline(state, Timer.PASS_TIMEOUT, Timer.CLOSE_RETRY)
    if ctx.rules.auto_close:
        state = replace(state, phase=Phase.CLOSING)
    else:
        if _unsafe_to_close(state):
            return state  # stay open; the snapshot that shows the loops clear retries
        state, action_id = _next_id(state, ctx, now)
        out.append(fx.CloseBarrier(action_id, record_id, reason))
        state = replace(state, phase=Phase.CLOSING, pending_action=action_id, command=action_id)
    return _set_deadline(state, Timer.CLOSE_CONFIRM, now + timedelta(seconds=ctx.rules.close_confirm_s))


def _finish_cycle(state: LaneState, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    """Back to idle; a plate held during the cycle is handled now."""
    state = replace(state, phase=Phase.IDLE, visit=None, pending_action="", command="")
    state = _clear_deadline(state, Timer.OPEN_CONFIRM, Timer.CLOSE_CONFIRM, Timer.PASS_TIMEOUT, Timer.CLOSE_RETRY)
    return _take_held(state, now, ctx, out)


def _take_held(state: LaneState, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    """A plate held while the barrier was busy is handled now."""
    held = state.held
    if held is None:
        return state
    # The held car was read while the cycle ran; it is not a duplicate of itself.
    state = replace(state, held=None, held_at=None, last_plate="", last_plate_at=None)
    if ctx.rules.loops and state.io is not None and not state.io.arming:
        # Nobody stands at the arm any more: that car backed away, or slipped through behind the last one. A
        # decision now would record an entry and raise the arm for nobody (the next car would tailgate on it).
        out.append(_log(ctx, "warning", "held plate dropped: no car at the arming loop any more", plate=held.plate))
        return state
    return _on_plate(state, held, now, ctx, out)


def _audit(state: LaneState, out: list[fx.Effect], status: Audit,
           note: str = "") -> LaneState:
    """The limit input agreed with the last command (or has not, so far): its audit row says so. An unconfirmed
    command stays the one watched: a limit reached late still confirms it."""
    if state.command:
        out.append(fx.AuditAction(state.command, status, note))
    return replace(state, command="") if status == Audit.CONFIRMED else state


def _block(state: LaneState, ctx: LaneContext, out: list[fx.Effect], reason: str) -> LaneState:
    """The car's OPEN did not move the arm. The decision stands (the record, its authority); the operator's
    release, the same car read again at the closed arm, the arm going up after all, or the next car end it."""
    out.append(_log(ctx, "error", "barrier did not open", reason=reason,
                    record=state.visit.record_id if state.visit else ""))
    out.append(fx.Display("fault"))
    state = replace(state, phase=Phase.BLOCKED, barrier_fault=reason, pending_action="")
    return _clear_deadline(state, Timer.OPEN_CONFIRM)


_OPEN_FAULTS = ("OPEN not confirmed", "OPEN not delivered", "OPEN interrupted")


def _expire_deadlines(state: LaneState, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    for name, when in state.deadlines:
        if when > now:
            continue
        state = _clear_deadline(state, name)
        on_expiry = _TIMERS.get((state.phase, name))
        if on_expiry is not None:  # a timer of another phase is over with it
            state = on_expiry(state, now, ctx, out)
    return state


def _open_unconfirmed(state: LaneState, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    reason = f"OPEN not confirmed by the up limit within {ctx.rules.open_confirm_s:g} s"
    return _block(_audit(state, out, Audit.UNCONFIRMED, reason), ctx, out, reason)


def _close_unconfirmed(state: LaneState, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    reason = f"CLOSE not confirmed by the down limit within {ctx.rules.close_confirm_s:g} s"
    out.append(_log(ctx, "error", "barrier fault", reason=reason))
    state = _audit(state, out, Audit.UNCONFIRMED, reason)
    return _finish_cycle(replace(state, barrier_fault=reason), now, ctx, out)


def _retry_close(state: LaneState, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    if state.pending_action:
        return state
    return _close(state, now, ctx, out, CloseReason.RETRY)


def _pass_timed_out(state: LaneState, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    io = state.io
    if io is not None and not (io.arming or io.safety or io.anti_smash):
        out.append(_log(ctx, "warning", "car did not pass; lowering",
                        record=state.visit.record_id if state.visit else ""))
        return _close(state, now, ctx, out, CloseReason.NOT_PASSED)
    return _set_deadline(state, Timer.PASS_TIMEOUT, now + timedelta(seconds=ctx.rules.pass_timeout_s))


# --- plate reads ---------------------------------------------------------------------------------------------
def _on_plate(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    """A plate read, handled as the lane's phase says (a held plate comes back through here)."""
    return handler_for(state, ev)(state, ev, now, ctx, out)


def _confident(ev: PlateRead, ctx: LaneContext, out: list[fx.Effect]) -> bool:
    if ev.confidence < ctx.rules.min_confidence:
        out.append(_log(ctx, "info", "plate ignored: low confidence", plate=ev.plate, confidence=ev.confidence))
        return False
    return True


def _unreadable_read(ev: PlateRead, ctx: LaneContext) -> bool:
    return classify_plate(ev.plate, ctx.rules.special_prefixes) == "unreadable"


def _repeated(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext) -> bool:
    """A camera repeats itself: the same plate within the window, or the car the lane is handling already."""
    recent = (state.last_plate_at is not None and ev.plate == state.last_plate
              and now - state.last_plate_at < timedelta(seconds=ctx.rules.duplicate_window_s))
    return recent or bool(state.visit is not None and ev.plate and ev.plate in (state.visit.plate,
                                                                                state.visit.read_plate))


def _plate_while_resuming(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext,
                          out: list[fx.Effect]) -> LaneState:
    if not _confident(ev, ctx, out):
        return state
    # The inputs at start decide first; this read is kept (with its time) for after that.
    out.append(_log(ctx, "info", "plate held until the barrier's inputs are known", plate=ev.plate))
    return replace(state, held=ev, held_at=now)


def _plate_at_idle(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext,
                   out: list[fx.Effect]) -> LaneState:
    if not _confident(ev, ctx, out):
        return state
    return _new_car(state, ev, now, ctx, out)


def _new_car(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    if _repeated(state, ev, now, ctx):
        return state
    # a new car: a car held for the booth before it has gone (its refused record stays as it is)
    return _decide(replace(state, last_plate=ev.plate, last_plate_at=now, booth=None), ev, now, ctx, out)


def _plate_in_cycle(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext,
                    out: list[fx.Effect]) -> LaneState:
    if not _confident(ev, ctx, out) or _repeated(state, ev, now, ctx):
        return state
    out.append(_log(ctx, "info", "plate held until the barrier cycle ends", plate=ev.plate))
    return replace(state, last_plate=ev.plate, last_plate_at=now, held=ev, held_at=now)


def _unreadable_beside_car(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext,
                           out: list[fx.Effect]) -> LaneState:
    """A garbled read is no sign that the car the lane is dealing with has gone: that car stays."""
    assert state.visit is not None
    if not (ev.plate == state.last_plate and state.last_plate_at is not None
            and now - state.last_plate_at < timedelta(seconds=ctx.rules.duplicate_window_s)):
        out.append(_log(ctx, "warning", "plate unreadable: ignored while a car is at the lane", plate=ev.plate,
                        source=ev.source, record=state.visit.record_id))
    return replace(state, last_plate=ev.plate, last_plate_at=now)


def _plate_while_blocked(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext,
                         out: list[fx.Effect]) -> LaneState:
    if not _confident(ev, ctx, out):
        return state
    if state.visit is None:
        return _new_car(state, ev, now, ctx, out)
    if _unreadable_read(ev, ctx):
        return _unreadable_beside_car(state, ev, now, ctx, out)
    blocked = _on_plate_blocked(state, ev, now, ctx, out)
    if blocked is not None:
        return blocked
    return _new_car(replace(state, phase=Phase.IDLE, visit=None, command=""), ev, now, ctx, out)


def _plate_while_waiting(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext,
                         out: list[fx.Effect]) -> LaneState:
    if not _confident(ev, ctx, out):
        return state
    visit = state.visit
    if visit is None:
        return _new_car(state, ev, now, ctx, out)
    if _unreadable_read(ev, ctx):
        return _unreadable_beside_car(state, ev, now, ctx, out)
    if _repeated(state, ev, now, ctx):
        return state
    # Another car at the exit: the waiting one backed away. Its record stays for the reconciliation.
    out.append(fx.PatchRecord(visit.record_id, (("status", RecordStatus.ABANDONED),)))
    if ctx.settle:
        out.append(fx.StopSettlement(visit.record_id, StopReason.ABANDONED))
    out.append(_log(ctx, "info", "waiting car replaced", plate=visit.plate, record=visit.record_id))
    state = replace(state, phase=Phase.IDLE, visit=None, last_plate=ev.plate, last_plate_at=now,
                    ended=(visit.record_id, "abandoned", ""))
    return _decide(state, ev, now, ctx, out)


def _decide(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    """A new car at the lane: a reading that is no plate goes to the booth, the rest to the rules."""
    if _unreadable_read(ev, ctx):
        return _unreadable(state, ev, now, ctx, out)
    if ctx.direction == "entry":
        return _entry(state, ev, now, ctx, out)
    return _exit(state, ev, now, ctx, out)


UNREADABLE = Reason.UNREADABLE_PLATE


def _unreadable(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext,
                out: list[fx.Effect]) -> LaneState:
    """A reading that is no plate (e.g. 竑B55502, a Big5 line read as GBK): the rules never see it and the barrier
    stays down; the booth decides (an operator release opens as for any car). The record keeps the text as read.
    At an exit the car waits at the lane like one whose entry is ambiguous; an entry lane records it refused."""
    state, record_id = _next_id(state, ctx, now)
    entry = ctx.direction == "entry"
    out.append(fx.NewRecord(record_id, ctx.lane_id, "entry" if entry else "exit", ev.plate, ev.color,
                            now.isoformat(), RecordStatus.REFUSED if entry else RecordStatus.AWAITING_PAYMENT,
                            reason=UNREADABLE,
                            image=ev.image))
    out.append(_log(ctx, "warning", "plate unreadable: to the booth", plate=ev.plate, source=ev.source,
                    record=record_id))
    out.append(fx.Display("booth", (("plate", ""), ("reason", UNREADABLE))))
    if entry:  # held for the booth: the operator may admit it (with a reason, or a corrected plate) or refuse it
        return replace(state, booth=Visit(ev.plate, ev.color, record_id, reason=UNREADABLE, image=ev.image))
    visit = Visit(ev.plate, ev.color, record_id, reason=UNREADABLE)
    return replace(state, phase=Phase.AWAITING_PAYMENT, visit=visit)


def _on_plate_blocked(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext,
                      out: list[fx.Effect]) -> Optional[LaneState]:
    """A plate read while the lane's car is blocked at a closed arm. The same car read again, standing at the
    arm that the inputs show fully down, gets its own decision re-issued (same record, same authority: a fresh
    read and the inputs, not a blind repeat). Another car means the blocked one has gone: None, and the new car
    is handled as at an idle lane."""
    visit = state.visit
    assert visit is not None
    if ev.plate and ev.plate == visit.plate:
        io = state.io
        if visit.authority and io is not None and io.down_limit and not io.up_limit and io.arming:
            out.append(_log(ctx, "warning", "blocked car read again at the closed arm: its OPEN is re-issued",
                            plate=ev.plate, record=visit.record_id, authority=visit.authority))
            state = replace(state, last_plate=ev.plate, last_plate_at=now)
            return _open(state, now, ctx, out, record_id=visit.record_id,
                         authority=visit.authority,  # type: ignore[arg-type]
                         reason=visit.open_reason, operator=visit.operator, trade_no=visit.trade_no,
                         operator_uid=visit.operator_uid)
        return state  # the arm is not known to be down with the car before it: the operator decides
    out.append(_log(ctx, "warning", "blocked car gone: another car at the lane; its record stays as it is",
                    plate=visit.plate, record=visit.record_id, next_plate=ev.plate))
    return None


@dataclass(frozen=True)
class _Arrival:
    """A car at an entry lane: a camera's read, or a plate-less car a platform admitted (Bolink 5.7), whose
    platform id stands in for the plate on its record so the exit finds the stay by it."""

    plate: str  # what the rules and the board see ("" for the platform's car)
    color: str = ""
    image: str = ""
    car_id: str = ""  # the platform's id for a plate-less car it admitted ("" for a camera's read)
    provider: str = ""
    request_id: str = ""  # the platform's entry request, answered with a PlatformEntryResult
    read_plate: str = ""  # an operator's correction: what the camera read, and who corrected it
    corrected_by: str = ""


def _entry(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    return _admit(state, _Arrival(ev.plate, ev.color, ev.image), now, ctx, out)


def _admit(state: LaneState, car: _Arrival, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    """The rules decide whether the car comes in; the record is written ahead of the OPEN."""
    decision = ctx.policy.entry(car.plate, car.color, now, EnteredAt(ctx.inside))
    state, record_id = _next_id(state, ctx, now)
    reason = f"{car.provider}_plateless" if car.car_id and decision.allow else decision.reason
    status = RecordStatus.INSIDE if decision.allow else RecordStatus.REFUSED
    out.append(fx.NewRecord(record_id, ctx.lane_id, "entry", car.car_id or car.plate, car.color, now.isoformat(),
                            status, vehicle_class=decision.vehicle_class, reason=reason, image=car.image,
                            read_plate=car.read_plate, corrected_by=car.corrected_by))
    if car.car_id:
        who: dict[str, Any] = {"car": car.car_id, "record": record_id, "reason": reason, "provider": car.provider}
    else:
        who = {"plate": car.plate, "record": record_id, "reason": reason, "vehicle_class": decision.vehicle_class}
    out.append(_log(ctx, "info", "entry " + ("allowed" if decision.allow else "refused"), **who))
    if not decision.allow:
        out.append(fx.Display("refused", (("plate", car.plate), ("message", decision.message))))
        if car.car_id:
            out.append(fx.PlatformEntryResult(car.request_id, False, "entry refused", record_id))
            return state
        # held for the booth: the operator may still admit it (with a reason) or refuse it for good
        return replace(state, booth=Visit(car.plate, car.color, record_id, decision.vehicle_class, reason,
                                          image=car.image, read_plate=car.read_plate))
    stale = ctx.inside.get(car.plate) if car.plate else None
    if stale is not None:
        # Inside already by our books: its exit was missed. Close that record so one car has one stay.
        out.append(fx.PatchRecord(stale.record_id, (("status", RecordStatus.SUPERSEDED),)))
    out.append(fx.Publish(record_id, "entry"))
    out.append(_welcome(decision, car, ctx))
    if car.car_id:
        out.append(fx.PlatformEntryResult(car.request_id, True, "", record_id))
    return _open(state, now, ctx, out, record_id=record_id, authority="rules", reason=reason,
                 visit=Visit(car.plate, car.color, record_id, decision.vehicle_class, reason))


def _welcome(decision: EntryDecision, car: _Arrival, ctx: LaneContext) -> fx.Display:
    if car.car_id:  # a platform's plate-less car is greeted plainly
        return fx.Display("welcome", (("plate", ""),))
    fields: tuple[tuple[str, str | int], ...] = (("plate", car.plate), ("message", decision.message),
                                                  ("vehicle_class", decision.vehicle_class))
    if decision.vehicle_class == "stored_value" and car.plate in ctx.balances:
        fields += (("balance_fen", ctx.balances[car.plate]),)
    return fx.Display("welcome", fields)


def _exit(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    match = match_inside(ev.plate, ctx.inside)
    entry = ctx.inside.get(match.plate) if match.plate else None
    quote = ctx.policy.exit(ev.plate, ev.color, entry.entered_at if entry else None, now, EnteredAt(ctx.inside),
                            paid_fen=entry.paid_fen if entry else 0, paid_at=entry.paid_at if entry else None,
                            entry_reason=entry.reason if entry else "")
    needs_operator = quote.needs_operator or match.kind == "ambiguous"
    state, record_id = _next_id(state, ctx, now)
    free = quote.free and not needs_operator
    balance = ctx.balances.get(ev.plate) if quote.vehicle_class == "stored_value" and ev.plate else None
    debit = (not free and not needs_operator and balance is not None and balance >= quote.due_fen > 0)
    reason = Reason.AMBIGUOUS_ENTRY if match.kind == "ambiguous" else (Reason.STORED_VALUE if debit else quote.reason)
    detail = (f"match:{match.kind}",) + quote.breakdown + tuple(f"flag:{f}" for f in quote.flags)
    if balance is not None and not free:
        after = f"debit {yuan_words(quote.due_fen)}" if debit else f"short of {yuan_words(quote.due_fen)}"
        detail += (f"stored value: balance {yuan_words(balance)}, {after}",)
    leaving = free or debit
    out.append(fx.NewRecord(
        record_id, ctx.lane_id, "exit", ev.plate, ev.color, now.isoformat(),
        RecordStatus.LEAVING if leaving else RecordStatus.AWAITING_PAYMENT, vehicle_class=quote.vehicle_class,
        reason=reason,
        entry_record_id=entry.record_id if entry else "",
        entered_at=entry.entered_at.isoformat() if entry else "", total_fen=quote.total_fen,
        due_fen=0 if leaving else quote.due_fen, paid_fen=quote.paid_fen + (quote.due_fen if debit else 0),
        detail=detail, image=ev.image))
    out.append(_log(ctx, "info", "exit " + ("free" if free else "stored value debited" if debit
                                            else "waiting for payment"),
                    plate=ev.plate, record=record_id, reason=reason, due_fen=quote.due_fen, match=match.kind))
    visit = Visit(ev.plate, ev.color, record_id, quote.vehicle_class, reason,
                  entry.record_id if entry else "", quote.due_fen, paid_fen=quote.paid_fen)
    if free:
        out.extend(_leave(visit))
        out.append(fx.Display("goodbye", (("plate", ev.plate),)))
        return _open(state, now, ctx, out, record_id=record_id, authority="rules", reason=quote.reason, visit=visit)
    if debit:
        assert balance is not None
        # The debit, its payment row and the OPEN commit in one transaction: a crash leaves all or none.
        out.append(fx.DebitBalance(ev.plate, quote.due_fen, record_id, now.isoformat()))
        out.append(fx.RecordPayment(record_id, ctx.lane_id, quote.due_fen, "stored_value", "balance",
                                    now.isoformat()))
        out.extend(_leave(visit))
        out.append(fx.Display("stored_value_paid", (("plate", ev.plate), ("amount_fen", quote.due_fen),
                                                    ("balance_fen", balance - quote.due_fen))))
        return _open(state, now, ctx, out, record_id=record_id, authority="payment", reason="stored_value",
                     visit=visit)
    fields = _owed(ev.plate, quote.due_fen, entry.entered_at if entry else None, now)
    out.append(fx.Display("booth" if needs_operator else "balance_short" if balance is not None else "pay", fields))
    if ctx.settle and not needs_operator:
        out.append(fx.StartSettlement(
            record_id, ctx.lane_id, ev.plate, ev.color, quote.due_fen, quote.total_fen, now.isoformat(),
            entered_at=entry.entered_at.isoformat() if entry else "", entry_record_id=entry.record_id if entry else "",
            vehicle_class=quote.vehicle_class, entry_lane_id=entry.lane_id if entry else "", image=ev.image,
            entry_image=entry.image if entry else ""))
    return replace(state, phase=Phase.AWAITING_PAYMENT, visit=visit)


def _owed(plate: str, due_fen: int, entered_at: Optional[datetime], now: datetime) -> tuple[tuple[str, str | int], ...]:
    """A waiting car's message fields: what it owes and, when its entry is known, how long it stayed."""
    fields: tuple[tuple[str, str | int], ...] = (("plate", plate), ("amount_fen", due_fen))
    if entered_at is not None:
        fields += (("stay_min", max(0, int((now - entered_at).total_seconds() // 60))),)
    return fields


def _leave(visit: Visit) -> list[fx.Effect]:
    out: list[fx.Effect] = [fx.Publish(visit.record_id, "exit")]
    if visit.entry_record_id:
        out.append(fx.PatchRecord(visit.entry_record_id, (("status", RecordStatus.EXITED),)))
    return out


# --- operator ------------------------------------------------------------------------------------------------
def operator_name(ev: OperatorOpen) -> str:
    """Who a release is recorded under: the name given, else `uid:<n>` from the kernel's word; "" if neither."""
    name = ev.operator.strip()
    if not name and ev.operator_uid is not None:
        name = f"uid:{ev.operator_uid}"
    return name


def cash_difference(due_fen: int, taken_fen: Optional[int]) -> tuple[int, int]:
    """(short, over) of the booth's takings against what the car owed: what it owed and was not taken, and
    what was taken beyond it. A release without an amount took nothing."""
    taken = taken_fen or 0
    return max(0, due_fen - taken), max(0, taken - due_fen)


def _operator_checked(then: Handler) -> Handler:
    """An operator release names who and why (and takes no negative cash) before any phase looks at it."""
    def checked(state: LaneState, ev: OperatorOpen, now: datetime, ctx: LaneContext,
                out: list[fx.Effect]) -> LaneState:
        operator, reason, uid = operator_name(ev), ev.reason.strip(), ev.operator_uid
        if not operator or not reason or (ev.amount_fen is not None and ev.amount_fen < 0):
            message = "operator release refused: name and reason are required"
            out.append(_log(ctx, "warning", message, operator=operator, reason=reason, operator_uid=uid))
            out.append(fx.OperatorResult(ev.request_id, "refused", message, operator=operator))
            return state
        if _gone(state, ev.record_id):
            message = _gone_message(state, ev.record_id)
            out.append(_log(ctx, "info", "operator release not applied: " + message, operator=operator,
                            record=ev.record_id))
            out.append(fx.OperatorResult(ev.request_id, "car_gone", message, ev.record_id, operator=operator))
            return state
        return then(state, ev, now, ctx, out)
    return checked


def _operator_while_open(state: LaneState, ev: OperatorOpen, now: datetime, ctx: LaneContext,
                         out: list[fx.Effect]) -> LaneState:
    message = "operator release: barrier already opening"
    out.append(_log(ctx, "info", message, operator=operator_name(ev), operator_uid=ev.operator_uid))
    out.append(fx.OperatorResult(ev.request_id, "already_opening", message, operator=operator_name(ev)))
    return state


def _operator_while_opening(state: LaneState, ev: OperatorOpen, now: datetime, ctx: LaneContext,
                            out: list[fx.Effect]) -> LaneState:
    if state.barrier_fault:  # the OPEN faulted: the operator's release sends it again
        return _operator_release(state, ev, now, ctx, out)
    return _operator_while_open(state, ev, now, ctx, out)


def _operator_release_waiting(state: LaneState, ev: OperatorOpen, now: datetime, ctx: LaneContext,
                              out: list[fx.Effect]) -> LaneState:
    return _operator_release(state, ev, now, ctx, out, waiting=True)


def _operator_release(state: LaneState, ev: OperatorOpen, now: datetime, ctx: LaneContext,
                      out: list[fx.Effect], waiting: bool = False) -> LaneState:
    """`waiting`: the lane's car waits for its payment (its record says released, with the booth's cash)."""
    operator, reason, uid = operator_name(ev), ev.reason.strip(), ev.operator_uid
    method = "cash" if reason == "cash" else "operator"
    visit = state.visit
    figures: dict[str, Any] = {}
    money: dict[str, int] = {}  # what the release's record says of its money (the operator's answer, `status`)
    waited = waiting and visit is not None
    if waiting and visit is not None:
        record_id = visit.record_id
        short, over = cash_difference(visit.due_fen, ev.amount_fen)
        figures = {"due_fen": visit.due_fen, "short_fen": short, "over_fen": over}
        money = ({"paid_fen": visit.paid_fen + ev.amount_fen} if ev.amount_fen else {}) | {"short_fen": short,
                                                                                            "over_fen": over}
        changes: list[tuple[str, Any]] = [("status", RecordStatus.RELEASED), ("operator", operator),
                                          ("operator_uid", uid),
                                          ("reason", f"operator:{reason}"), ("short_fen", short),
                                          ("over_fen", over)]
        if ev.amount_fen:
            out.append(fx.RecordPayment(record_id, ctx.lane_id, ev.amount_fen, method, operator, now.isoformat()))
            # what was paid ahead inside the lot stays counted (as for a platform's payment)
            changes.append(("paid_fen", visit.paid_fen + ev.amount_fen))
        out.append(fx.PatchRecord(record_id, tuple(changes)))
        out.extend(_leave(visit))
        if ctx.settle:
            out.append(fx.StopSettlement(record_id, StopReason.RELEASED))
        state = replace(state, ended=(record_id, "released", operator))
    elif visit is not None:
        record_id = visit.record_id  # re-open for the same car (closing, or an OPEN that faulted)
    else:
        state, record_id = _next_id(state, ctx, now)
        out.append(fx.NewRecord(record_id, ctx.lane_id, "release", "", "", now.isoformat(), RecordStatus.RELEASED,
                                reason=f"operator:{reason}", paid_fen=ev.amount_fen or 0, operator=operator,
                                operator_uid=uid))
        if ev.amount_fen:
            out.append(fx.RecordPayment(record_id, ctx.lane_id, ev.amount_fen, method, operator, now.isoformat()))
        out.append(fx.Publish(record_id, "release"))
        money = {"paid_fen": ev.amount_fen or 0}
        # a car held for the booth at an entry goes through on this release: it no longer waits
        state = replace(state, visit=Visit("", "", record_id, reason=f"operator:{reason}"), booth=None)
    short = bool(figures.get("short_fen"))
    message = "operator release short of the amount due" if short else "operator release"
    out.append(_log(ctx, "warning" if short else "info", message, operator=operator, operator_uid=uid,
                    reason=reason, record=record_id, amount_fen=ev.amount_fen, **figures))
    out.append(fx.Display("goodbye", (("plate", visit.plate if visit else ""),)))
    state = _open(state, now, ctx, out, record_id=record_id, authority="operator", reason=reason, operator=operator,
                  operator_uid=uid)
    out.append(fx.OperatorResult(ev.request_id, "released", message, record_id, state.pending_action, operator,
                                 tuple(money.items()), car_waited=waited))
    return state


# --- the booth's other actions: refuse, correct a misread plate, admit at an entry ----------------------------
def _gone(state: LaneState, record_id: str) -> bool:
    """The operator acted on a car (its record) that is no longer the one at the lane."""
    here = {v.record_id for v in (state.visit, state.booth) if v is not None}
    return bool(record_id) and record_id not in here


def _gone_message(state: LaneState, record_id: str) -> str:
    if len(state.ended) == 3 and state.ended[0] == record_id:
        what, who = state.ended[1], state.ended[2]
        return f"that car was already {what}" + (f" by {who}" if who else "")
    return "that car is no longer waiting at this lane"


def _booth_reply(ev: Any, out: list[fx.Effect], outcome: fx.BoothOutcome, message: str, **more: Any) -> None:
    out.append(fx.BoothResult(ev.request_id, outcome, message, operator=_booth_operator(ev), **more))


def _booth_operator(ev: Any) -> str:
    name = ev.operator.strip()
    return name or (f"uid:{ev.operator_uid}" if ev.operator_uid is not None else "")


def _typed_plate(text: str, ctx: LaneContext) -> str:
    """A plate the operator typed, normalized; "" when it cannot be a plate (a correction must be one)."""
    plate = normalize_plate(text)
    return plate if classify_plate(plate, ctx.rules.special_prefixes) in ("plate", "special") else ""


def _booth_checked(then: Handler) -> Handler:
    """A booth action names who (and why, or which plate) before any phase looks at it; one meant for a car
    that has gone since is answered car_gone (two operators on one car: the second learns why)."""
    def checked(state: LaneState, ev: Any, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
        operator = _booth_operator(ev)
        missing = ("name" if not operator else
                   "reason" if isinstance(ev, (OperatorRefuse, OperatorAdmit)) and not ev.reason.strip() else "")
        typed = getattr(ev, "plate", "").strip()
        if missing or (typed and not _typed_plate(typed, ctx)) or (isinstance(ev, OperatorCorrect) and not typed):
            message = (f"{type(ev).__name__}: the operator's {missing} is required" if missing else
                       f"not a plate: {typed!r}" if typed else "the corrected plate is required")
            out.append(_log(ctx, "warning", "booth action refused: " + message, operator=operator))
            _booth_reply(ev, out, "invalid", message)
            return state
        if isinstance(ev, OperatorAdmit) and ctx.direction != "entry":
            _booth_reply(ev, out, "invalid", "admit is for an entry lane: at an exit, release with a reason")
            return state
        if _gone(state, ev.record_id):
            message = _gone_message(state, ev.record_id)
            out.append(_log(ctx, "info", "booth action not applied: " + message, operator=operator,
                            record=ev.record_id, action=type(ev).__name__))
            _booth_reply(ev, out, "car_gone", message, record_id=ev.record_id)
            return state
        return then(state, ev, now, ctx, out)
    return checked


def _booth_nothing(state: LaneState, ev: Any, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    message = "no car waiting at this lane"
    if len(state.ended) == 3:
        what, who = state.ended[1], state.ended[2]
        message += f" (the last one was {what}" + (f" by {who})" if who else ")")
    _booth_reply(ev, out, "nothing_waiting", message)
    return state


def _booth_opening(state: LaneState, ev: Any, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    visit = state.visit
    _booth_reply(ev, out, "already_opening", "the barrier is already opening for this car",
                 record_id=visit.record_id if visit else "")
    return state


def _booth_at_idle(then: Handler) -> Handler:
    """An idle lane has a car for the booth only when an entry turned one away (state.booth). A held car that is
    no longer at the arm (real loops, the arming loop clear) has gone: admitting or correcting it would raise the
    arm for nobody, so it is dropped and the operator told (refusing it only writes who refused it)."""
    def at_idle(state: LaneState, ev: Any, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
        if state.booth is None:
            return _booth_nothing(state, ev, now, ctx, out)
        io = state.io
        if not isinstance(ev, OperatorRefuse) and ctx.rules.loops and io is not None and not io.arming:
            out.append(_log(ctx, "warning", "held car gone: no car at the arming loop any more",
                            plate=state.booth.plate, record=state.booth.record_id, action=type(ev).__name__))
            _booth_reply(ev, out, "car_gone", "that car is no longer at the barrier (the arming loop is clear)",
                         record_id=state.booth.record_id)
            return replace(state, booth=None)
        return then(state, ev, now, ctx, out)
    return at_idle


def _refuse_waiting(state: LaneState, ev: OperatorRefuse, now: datetime, ctx: LaneContext,
                    out: list[fx.Effect]) -> LaneState:
    """The exit car waiting to pay is turned away: its record says refused (who, why), its settlement stops
    (a payment arriving later is reconciled and flagged late, never lost), the arm stays down."""
    visit = state.visit
    assert visit is not None
    operator, reason = _booth_operator(ev), ev.reason.strip()
    out.append(fx.PatchRecord(visit.record_id, (("status", RecordStatus.REFUSED), ("operator", operator),
                                                ("operator_uid", ev.operator_uid),
                                                ("reason", f"{Reason.OPERATOR_REFUSED}:{reason}"))))
    if ctx.settle:
        out.append(fx.StopSettlement(visit.record_id, StopReason.REFUSED))
    out.append(_log(ctx, "info", "operator refused the car", plate=visit.plate, record=visit.record_id,
                    operator=operator, operator_uid=ev.operator_uid, reason=reason))
    out.append(fx.Display("refused", (("plate", visit.plate), ("reason", Reason.OPERATOR_REFUSED))))
    _booth_reply(ev, out, "refused", "car refused: the barrier stays down", record_id=visit.record_id)
    return replace(state, phase=Phase.IDLE, visit=None, ended=(visit.record_id, "refused", operator))


def _refuse_held(state: LaneState, ev: OperatorRefuse, now: datetime, ctx: LaneContext,
                 out: list[fx.Effect]) -> LaneState:
    """The entry car held for the booth is turned away for good: its refused record names the operator."""
    held = state.booth
    assert held is not None
    operator, reason = _booth_operator(ev), ev.reason.strip()
    out.append(fx.PatchRecord(held.record_id, (("operator", operator), ("operator_uid", ev.operator_uid),
                                               ("reason", f"{Reason.OPERATOR_REFUSED}:{reason}"))))
    out.append(_log(ctx, "info", "operator refused the car", plate=held.plate, record=held.record_id,
                    operator=operator, operator_uid=ev.operator_uid, reason=reason))
    out.append(fx.Display("refused", (("plate", held.plate if held.reason != UNREADABLE else ""),
                                      ("reason", Reason.OPERATOR_REFUSED))))
    _booth_reply(ev, out, "refused", "car refused: the barrier stays down", record_id=held.record_id)
    return replace(state, booth=None, ended=(held.record_id, "refused", operator))


def _candidates(plates: tuple[str, ...], ctx: LaneContext) -> tuple[fx.Candidate, ...]:
    cars = [(p, ctx.inside.get(p)) for p in plates]
    return tuple(fx.Candidate(p, c.entered_at.isoformat(), c.lane_id) for p, c in cars if c is not None)


def _correct_waiting(state: LaneState, ev: OperatorCorrect, now: datetime, ctx: LaneContext,
                     out: list[fx.Effect]) -> LaneState:
    """The exit car's plate as the operator typed it, re-matched against the cars inside. Only an exact match
    changes anything: that stay is priced (as a platform's identification is), the records linked and the
    settlement restarted under the corrected plate; the barrier opens only if the rules let the car out free.
    A fuzzy match answers its candidates, none says so; both leave the car as it was."""
    visit = state.visit
    assert visit is not None
    plate, operator = _typed_plate(ev.plate, ctx), _booth_operator(ev)
    match = match_inside(plate, ctx.inside)
    if match.kind != "exact":
        found = _candidates(match.candidates, ctx)
        if found:
            _booth_reply(ev, out, "candidates", f"no car inside under {plate}: did you mean one of these?",
                         record_id=visit.record_id, plate=plate, candidates=found)
        else:
            _booth_reply(ev, out, "no_match", f"no car inside under {plate}: refuse the car, or release it with "
                         "a reason", record_id=visit.record_id, plate=plate)
        return state
    assert match.plate is not None
    entry = ctx.inside[match.plate]
    if plate == visit.plate and entry.record_id == visit.entry_record_id:
        _booth_reply(ev, out, "corrected", f"{plate} is this car's plate already: nothing changed",
                     record_id=visit.record_id, plate=plate, due_fen=visit.due_fen)
        return state
    quote = ctx.policy.exit(plate, visit.color, entry.entered_at, now, EnteredAt(ctx.inside), paid_fen=entry.paid_fen,
                            paid_at=entry.paid_at, entry_reason=entry.reason)
    free = quote.free and not quote.needs_operator
    # a stored-value car whose balance covers the fee pays from it, as at a plain exit
    balance = ctx.balances.get(plate) if quote.vehicle_class == "stored_value" and not free else None
    debit = not quote.needs_operator and balance is not None and balance >= quote.due_fen > 0
    leaving = free or debit
    read = visit.read_plate or visit.plate
    out.append(fx.PatchRecord(visit.record_id, (
        ("plate", plate), ("read_plate", read), ("corrected_by", operator),
        ("entry_record_id", entry.record_id), ("entered_at", entry.entered_at.isoformat()),
        ("vehicle_class", quote.vehicle_class), ("reason", Reason.STORED_VALUE if debit else quote.reason),
        ("total_fen", quote.total_fen), ("due_fen", 0 if leaving else quote.due_fen),
        ("paid_fen", quote.paid_fen + (quote.due_fen if debit else 0)),
        ("detail", ("match:corrected",) + quote.breakdown + tuple(f"flag:{f}" for f in quote.flags)),
        ("status", RecordStatus.LEAVING if leaving else RecordStatus.AWAITING_PAYMENT))))
    out.append(_log(ctx, "info", "plate corrected by the operator", record=visit.record_id, read=read, plate=plate,
                    operator=operator, operator_uid=ev.operator_uid, entry=entry.record_id, due_fen=quote.due_fen))
    visit = replace(visit, plate=plate, read_plate=read, entry_record_id=entry.record_id, due_fen=quote.due_fen,
                    paid_fen=quote.paid_fen, reason=Reason.STORED_VALUE if debit else quote.reason,
                    vehicle_class=quote.vehicle_class)
    state = replace(state, visit=visit)
    if ctx.settle:  # what was asked under the misread plate (if anything) stops; a late payment is still kept
        out.append(fx.StopSettlement(visit.record_id, StopReason.PAID if leaving else StopReason.REIDENTIFIED))
    if leaving:
        if debit:
            out.append(fx.DebitBalance(plate, quote.due_fen, visit.record_id, now.isoformat()))
            out.append(fx.RecordPayment(visit.record_id, ctx.lane_id, quote.due_fen, "stored_value", "balance",
                                        now.isoformat()))
        out.extend(_leave(visit))
        if debit and balance is not None:
            out.append(fx.Display("stored_value_paid", (("plate", plate), ("amount_fen", quote.due_fen),
                                                        ("balance_fen", balance - quote.due_fen))))
        else:
            out.append(fx.Display("goodbye", (("plate", plate),)))
        state = _open(state, now, ctx, out, record_id=visit.record_id, authority="payment" if debit else "rules",
                      reason="stored_value" if debit else quote.reason)
        how = "paid from its stored-value balance" if debit else "free to leave"
        _booth_reply(ev, out, "corrected", f"plate corrected: {how}, the barrier opens", record_id=visit.record_id,
                     action_id=state.pending_action, plate=plate, due_fen=0)
        return state
    if ctx.settle and not quote.needs_operator:
        out.append(fx.StartSettlement(visit.record_id, ctx.lane_id, plate, visit.color, quote.due_fen,
                                      quote.total_fen, now.isoformat(), entered_at=entry.entered_at.isoformat(),
                                      entry_record_id=entry.record_id, vehicle_class=quote.vehicle_class,
                                      entry_lane_id=entry.lane_id, image=visit.image, entry_image=entry.image))
    out.append(fx.Display("booth" if quote.needs_operator else "balance_short" if balance is not None else "pay",
                          _owed(plate, quote.due_fen, entry.entered_at, now)))
    _booth_reply(ev, out, "corrected", f"plate corrected: {plate} owes {yuan_words(quote.due_fen)}",
                 record_id=visit.record_id, plate=plate, due_fen=quote.due_fen)
    return state


def _correct_held(state: LaneState, ev: OperatorCorrect, now: datetime, ctx: LaneContext,
                  out: list[fx.Effect]) -> LaneState:
    """The entry car held for the booth, under the plate the operator typed: the rules decide as for a read
    (a new entry record keeps the camera's reading and who corrected it; the turned-away record stays)."""
    held = state.booth
    assert held is not None
    plate, operator = _typed_plate(ev.plate, ctx), _booth_operator(ev)
    out.append(_log(ctx, "info", "plate corrected by the operator", record=held.record_id, read=held.plate,
                    plate=plate, operator=operator, operator_uid=ev.operator_uid))
    state = replace(state, booth=None, last_plate=plate, last_plate_at=now)
    state = _admit(state, _Arrival(plate, held.color, held.image, read_plate=held.read_plate or held.plate,
                                   corrected_by=operator), now, ctx, out)
    record_id = state.visit.record_id if state.visit is not None else state.booth.record_id if state.booth else ""
    if state.phase == Phase.OPENING:
        _booth_reply(ev, out, "corrected", f"plate corrected: {plate} admitted by the rules", record_id=record_id,
                     action_id=state.pending_action, plate=plate)
    else:
        _booth_reply(ev, out, "corrected", f"plate corrected: the rules refuse {plate}; admit it with a reason or "
                     "refuse it", record_id=record_id, plate=plate)
    return state


def _admit_held(state: LaneState, ev: OperatorAdmit, now: datetime, ctx: LaneContext,
                out: list[fx.Effect]) -> LaneState:
    """The operator lets the held entry car in: an entry record (the plate typed, else "" for a plate-less or
    unreadable car) with the operator's reason, and the barrier opens as an operator release."""
    held = state.booth
    assert held is not None
    operator, reason, uid = _booth_operator(ev), ev.reason.strip(), ev.operator_uid
    typed = _typed_plate(ev.plate, ctx) if ev.plate.strip() else ""
    plate = typed or ("" if held.reason == UNREADABLE else held.plate)
    read = (held.read_plate or held.plate) if typed and typed != held.plate else held.read_plate
    state, record_id = _next_id(state, ctx, now)
    out.append(fx.NewRecord(record_id, ctx.lane_id, "entry", plate, held.color, now.isoformat(), RecordStatus.INSIDE,
                            vehicle_class=held.vehicle_class if plate == held.plate else "",
                            reason=f"operator:{reason}", image=held.image, operator=operator, operator_uid=uid,
                            read_plate=read, corrected_by=operator if read else ""))
    stale = ctx.inside.get(plate) if plate else None
    if stale is not None:  # inside already by our books: its exit was missed (as for any entry)
        out.append(fx.PatchRecord(stale.record_id, (("status", RecordStatus.SUPERSEDED),)))
    out.append(fx.Publish(record_id, "entry"))
    out.append(_log(ctx, "info", "operator admitted the car", plate=plate, read=held.plate, record=record_id,
                    turned_away=held.record_id, operator=operator, operator_uid=uid, reason=reason))
    out.append(fx.Display("welcome", (("plate", plate),)))
    state = replace(state, booth=None, ended=(held.record_id, "admitted", operator),
                    visit=Visit(plate, held.color, record_id, reason=f"operator:{reason}", image=held.image))
    state = _open(state, now, ctx, out, record_id=record_id, authority="operator", reason=reason, operator=operator,
                  operator_uid=uid)
    _booth_reply(ev, out, "admitted", "car admitted: the barrier opens", record_id=record_id,
                 action_id=state.pending_action, plate=plate)
    return state


def _booth_table() -> dict[tuple[Phase, type], Handler]:
    """Each booth action in each phase: idle has a car only when an entry holds one for the booth; a car
    waiting to pay can be refused or corrected (not admitted: it is inside already); a car whose barrier is
    going up is past refusing; a closing lane has no car left."""
    table: dict[tuple[Phase, type], Handler] = {}
    for action in (OperatorRefuse, OperatorCorrect, OperatorAdmit):
        for phase in (Phase.OPENING, Phase.OPEN, Phase.BLOCKED):
            table[(phase, action)] = _booth_checked(_booth_opening)
        table[(Phase.CLOSING, action)] = _booth_checked(_booth_nothing)
    table[(Phase.IDLE, OperatorRefuse)] = _booth_checked(_booth_at_idle(_refuse_held))
    table[(Phase.IDLE, OperatorCorrect)] = _booth_checked(_booth_at_idle(_correct_held))
    table[(Phase.IDLE, OperatorAdmit)] = _booth_checked(_booth_at_idle(_admit_held))
    table[(Phase.AWAITING_PAYMENT, OperatorRefuse)] = _booth_checked(_refuse_waiting)
    table[(Phase.AWAITING_PAYMENT, OperatorCorrect)] = _booth_checked(_correct_waiting)
    table[(Phase.AWAITING_PAYMENT, OperatorAdmit)] = _booth_checked(_booth_nothing)
    return table


# --- payments ------------------------------------------------------------------------------------------------
def _payment_method(ev: PaymentConfirmed) -> str:
    return f"{ev.provider}:{ev.method}" if ev.method else ev.provider


def _payment_late(state: LaneState, ev: PaymentConfirmed, now: datetime, ctx: LaneContext,
                  out: list[fx.Effect]) -> LaneState:
    """The car left another way (cash, operator) or this is not our car: the money is kept on the books and
    flagged; the barrier does not move for it."""
    out.append(fx.RecordPayment(ev.record_id, ctx.lane_id, ev.amount_fen, _payment_method(ev), ev.trade_no,
                                now.isoformat(), flag="late"))
    out.append(_log(ctx, "warning", "payment for a car no longer waiting: recorded, flagged for refund review",
                    record=ev.record_id, provider=ev.provider, trade_no=ev.trade_no, amount_fen=ev.amount_fen))
    return state


def _on_payment(state: LaneState, ev: PaymentConfirmed, now: datetime, ctx: LaneContext,
                out: list[fx.Effect]) -> LaneState:
    visit = state.visit
    method = _payment_method(ev)
    # nothing was asked of a reading that is no plate: the booth decides
    if visit is None or visit.record_id != ev.record_id or visit.reason == UNREADABLE:
        return _payment_late(state, ev, now, ctx, out)
    if ev.amount_fen < visit.due_fen:
        out.append(fx.RecordPayment(ev.record_id, ctx.lane_id, ev.amount_fen, method, ev.trade_no, now.isoformat(),
                                    flag="short"))
        out.append(_log(ctx, "warning", "payment short of the amount due: barrier stays down", record=ev.record_id,
                        provider=ev.provider, trade_no=ev.trade_no, amount_fen=ev.amount_fen, due_fen=visit.due_fen))
        return state
    out.append(fx.RecordPayment(ev.record_id, ctx.lane_id, ev.amount_fen, method, ev.trade_no, now.isoformat()))
    out.append(fx.PatchRecord(ev.record_id, (("status", RecordStatus.PAID),
                                             ("paid_fen", visit.paid_fen + ev.amount_fen),
                                             ("due_fen", 0))))
    out.extend(_leave(visit))
    out.append(fx.StopSettlement(ev.record_id, StopReason.PAID))
    out.append(_log(ctx, "info", "exit paid", plate=visit.plate, record=ev.record_id, provider=ev.provider,
                    trade_no=ev.trade_no, amount_fen=ev.amount_fen))
    out.append(fx.Display("paid", (("plate", visit.plate), ("amount_fen", ev.amount_fen))))
    state = replace(state, ended=(ev.record_id, "paid", ev.provider))
    return _open(state, now, ctx, out, record_id=ev.record_id, authority="payment", reason=ev.provider,
                 trade_no=ev.trade_no)


def _platform_entry_refused(state: LaneState, ev: PlatformEntry, now: datetime, ctx: LaneContext,
                            out: list[fx.Effect]) -> LaneState:
    message = "platform entry refused: lane busy or not an entry lane"
    out.append(_log(ctx, "warning", message, car=ev.car_id, provider=ev.provider, phase=state.phase.value))
    out.append(fx.PlatformEntryResult(ev.request_id, False, message))
    return state


def _on_platform_entry(state: LaneState, ev: PlatformEntry, now: datetime, ctx: LaneContext,
                       out: list[fx.Effect]) -> LaneState:
    """A plate-less car admitted by a platform: the rules decide as for any plate-less car; the record keeps
    the platform's id as its plate so the exit (and the platform's price queries) find the stay by it."""
    if ctx.direction != "entry" or not ev.car_id:
        return _platform_entry_refused(state, ev, now, ctx, out)
    return _admit(state, _Arrival("", car_id=ev.car_id, provider=ev.provider, request_id=ev.request_id), now, ctx,
                  out)


def _identify_ignored(state: LaneState, ev: IdentifyCar, now: datetime, ctx: LaneContext,
                      out: list[fx.Effect]) -> LaneState:
    out.append(_log(ctx, "warning", "car identification ignored", record=ev.record_id, car=ev.car_id,
                    provider=ev.provider))
    return state


def _on_identify(state: LaneState, ev: IdentifyCar, now: datetime, ctx: LaneContext,
                 out: list[fx.Effect]) -> LaneState:
    """The plate-less car waiting here is the stay recorded under `car_id` (a platform's id): price that stay,
    link the records, and settle again under the stay's order. Nothing opens unless the stay is free."""
    visit = state.visit
    entry = ctx.inside.get(ev.car_id) if ev.car_id else None
    if visit is None or visit.record_id != ev.record_id or visit.plate or visit.entry_record_id or entry is None:
        return _identify_ignored(state, ev, now, ctx, out)
    quote = ctx.policy.exit("", "", entry.entered_at, now, EnteredAt(ctx.inside), paid_fen=entry.paid_fen,
                            paid_at=entry.paid_at, entry_reason=entry.reason)
    free = quote.free
    out.append(fx.PatchRecord(visit.record_id, (
        ("entry_record_id", entry.record_id), ("entered_at", entry.entered_at.isoformat()),
        ("total_fen", quote.total_fen), ("due_fen", 0 if free else quote.due_fen), ("paid_fen", quote.paid_fen),
        ("reason", quote.reason), ("status", RecordStatus.LEAVING if free else RecordStatus.AWAITING_PAYMENT))))
    out.append(_log(ctx, "info", "plate-less car identified", record=visit.record_id, car=ev.car_id,
                    entry=entry.record_id, due_fen=quote.due_fen, provider=ev.provider))
    visit = replace(visit, entry_record_id=entry.record_id, due_fen=quote.due_fen, paid_fen=quote.paid_fen,
                    reason=quote.reason, vehicle_class=quote.vehicle_class)
    state = replace(state, visit=visit)
    if free:
        if ctx.settle:
            out.append(fx.StopSettlement(visit.record_id, StopReason.PAID))
        out.extend(_leave(visit))
        out.append(fx.Display("goodbye", (("plate", ""),)))
        return _open(state, now, ctx, out, record_id=visit.record_id, authority="rules", reason=quote.reason)
    if ctx.settle:
        out.append(fx.StopSettlement(visit.record_id, StopReason.REIDENTIFIED))
        out.append(fx.StartSettlement(visit.record_id, ctx.lane_id, "", "", quote.due_fen, quote.total_fen,
                                      now.isoformat(), entered_at=entry.entered_at.isoformat(),
                                      entry_record_id=entry.record_id, vehicle_class=quote.vehicle_class,
                                      entry_lane_id=entry.lane_id, entry_image=entry.image))
    out.append(fx.Display("pay", _owed("", quote.due_fen, entry.entered_at, now)))
    return state


def _quote_not_here(state: LaneState, ev: QuoteRequest, now: datetime, ctx: LaneContext,
                    out: list[fx.Effect]) -> LaneState:
    out.append(fx.QuoteResult(ev.request_id, "not_here"))
    return state


def _on_quote(state: LaneState, ev: QuoteRequest, now: datetime, ctx: LaneContext,
              out: list[fx.Effect]) -> LaneState:
    """A platform asks what a car owes: answered for the car waiting here, if it is the one asked about (its
    plate, its order, or this exit named). A plate-less car waiting at the exit the platform names is the stay
    it knows under `plate`: that stay is linked and priced first (as IdentifyCar), and let out if it is free."""
    visit = state.visit
    if visit is None:
        return _quote_not_here(state, ev, now, ctx, out)
    if ev.at_this_exit and not visit.plate and not visit.entry_record_id and ev.plate in ctx.inside:
        state = _on_identify(state, IdentifyCar(visit.record_id, ev.plate, ev.provider), now, ctx, out)
        visit = state.visit
        if visit is None or state.phase != Phase.AWAITING_PAYMENT:
            out.append(fx.QuoteResult(ev.request_id, "let_out"))
            return state
    if not (ev.at_this_exit or (ev.plate and visit.plate == ev.plate)
            or (ev.order_id and ev.order_id in (visit.record_id, visit.entry_record_id))):
        return _quote_not_here(state, ev, now, ctx, out)
    stay = next((c for c in ctx.inside.values() if c.record_id == visit.entry_record_id), None)
    entered = stay.entered_at if stay else None
    price = StayPrice(visit.entry_record_id or visit.record_id, visit.due_fen, visit.due_fen + visit.paid_fen,
                      entered, stay_minutes(entered, now))
    out.append(fx.QuoteResult(ev.request_id, "quoted", price))
    return state


def _code_ignored(state: LaneState, ev: CodeScanned, now: datetime, ctx: LaneContext,
                  out: list[fx.Effect]) -> LaneState:
    out.append(_log(ctx, "info", "payment code scanned with no car waiting for a payment: ignored"))
    return state


def _on_code(state: LaneState, ev: CodeScanned, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    """A payment code at the booth scanner: charge the car waiting here with it (the result still has to come
    back confirmed before anything opens)."""
    visit = state.visit
    if visit is None or not ctx.settle or visit.reason == UNREADABLE:
        return _code_ignored(state, ev, now, ctx, out)
    out.append(fx.ChargeByCode(visit.record_id, ev.code))
    out.append(_log(ctx, "info", "payment code scanned", record=visit.record_id, plate=visit.plate))
    out.append(fx.Display("paying", (("plate", visit.plate),)))
    return state


def _on_fallback(state: LaneState, ev: PaymentFallback, now: datetime, ctx: LaneContext,
                 out: list[fx.Effect]) -> LaneState:
    visit = state.visit
    if visit is None or visit.record_id != ev.record_id:
        return state
    out.append(_log(ctx, "info", "payment fallback: pay at the booth or by scan", record=ev.record_id,
                    reason=ev.reason))
    out.append(fx.Display("pay_fallback", (("plate", visit.plate), ("amount_fen", visit.due_fen))))
    return state


# --- barrier inputs and command results ------------------------------------------------------------------------
def _io_arm_rising(state: LaneState, io: IoSnapshot, now: datetime, ctx: LaneContext,
                   out: list[fx.Effect]) -> LaneState:
    """OPEN sent (or blocked): the up limit says the arm is up, even late."""
    if not io.up_limit:
        return state
    if state.barrier_fault.startswith(_OPEN_FAULTS):
        out.append(_log(ctx, "info", "barrier recovered: up limit reached late"))
        state = replace(state, barrier_fault="")
    state = _audit(state, out, Audit.CONFIRMED)
    state = _clear_deadline(replace(state, phase=Phase.OPEN), Timer.OPEN_CONFIRM)
    state = _set_deadline(state, Timer.PASS_TIMEOUT, now + timedelta(seconds=ctx.rules.pass_timeout_s))
    return _io_open(state, io, now, ctx, out)


def _io_open(state: LaneState, io: IoSnapshot, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    """Arm up: follow the car over the safety loop and lower the arm behind it."""
    if ctx.rules.auto_close and io.down_limit and not io.up_limit:
        # An auto-closing barrier lowered itself after the car (its own loop saw it pass), unseen by us.
        out.append(_log(ctx, "info", "barrier closed by itself", record=state.visit.record_id if state.visit else ""))
        return _finish_cycle(state, now, ctx, out)
    visit = state.visit
    if visit is None:
        return state
    if io.safety and visit.passage == Passage.WAITING:
        return replace(state, visit=replace(visit, passage=Passage.ON_SAFETY))
    if not io.safety and visit.passage == Passage.ON_SAFETY:
        out.append(_log(ctx, "info", "car passed", plate=visit.plate, record=visit.record_id))
        return _close(state, now, ctx, out, CloseReason.CAR_PASSED)
    if state.deadline(Timer.PASS_TIMEOUT) is None and not state.pending_action and not ctx.rules.auto_close:
        return _close(state, now, ctx, out, CloseReason.CAR_PASSED)  # an earlier close waited for clear loops
    return state


def _io_closing(state: LaneState, io: IoSnapshot, now: datetime, ctx: LaneContext,
                out: list[fx.Effect]) -> LaneState:
    if io.down_limit:
        return _finish_cycle(_audit(state, out, Audit.CONFIRMED), now, ctx, out)
    if io.safety or io.anti_smash:
        # Something is under the arm while it lowers: the barrier reverses on its own; we wait for the
        # loops to clear and lower again (never command CLOSE onto it).
        out.append(_log(ctx, "warning", "obstacle under the arm while closing"))
        state = _audit(state, out, Audit.UNCONFIRMED, "obstacle under the arm: the barrier reversed")
        visit = state.visit
        state = replace(state, phase=Phase.OPEN, pending_action="",
                        visit=replace(visit, passage=Passage.ON_SAFETY) if visit else None)
        return _clear_deadline(state, Timer.CLOSE_CONFIRM)
    return state


def _resume(state: LaneState, io: IoSnapshot, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    """The first inputs after a restart in the middle of a cycle decide what happens, not the saved phase alone:
    the arm up (or on its way) with no car on the loops is lowered; a car on a loop passes first; an arm still
    down after an OPEN means that OPEN never moved it: the lane is blocked (nothing is re-sent blindly)."""
    state = replace(state, resuming=False)
    held, age = state.held, (now - state.held_at).total_seconds() if state.held_at else None
    if held is not None and (age is None or age > ctx.rules.stale_plate_s):
        out.append(_log(ctx, "warning", "plate read before the restart is stale: not acted upon", plate=held.plate,
                        age_s=round(age) if age is not None else "unknown"))
        state = replace(state, held=None, held_at=None)
    car = io.arming or io.safety or io.anti_smash
    down = io.down_limit and not io.up_limit
    phase = state.phase
    out.append(_log(ctx, "info", "resuming after a restart", phase=phase.value, arm="down" if down else
                    "up" if io.up_limit else "between", car="yes" if car else "no",
                    record=state.visit.record_id if state.visit else ""))
    if down:
        if phase == Phase.CLOSING or phase == Phase.OPEN:
            # lowered (our CLOSE, or an auto-closing barrier) while we were away: the cycle is over
            return _finish_cycle(_audit(state, out, Audit.CONFIRMED), now, ctx, out)
        if phase == Phase.OPENING:
            state = _audit(state, out, Audit.UNCONFIRMED, "arm still down after a restart")
            state = _block(state, ctx, out, "OPEN interrupted by a restart: the arm did not move; not repeated")
        return _take_held(state, now, ctx, out)  # blocked: the same car read again, or another one
    if phase in (Phase.OPENING, Phase.BLOCKED) and io.up_limit:
        state = _audit(state, out, Audit.CONFIRMED)
    if car:
        # let it pass, then close: the open phase's passage logic lowers the arm once the loops are clear
        visit = state.visit
        if visit is not None:
            visit = replace(visit, passage=Passage.ON_SAFETY if io.safety else Passage.WAITING)
        state = replace(state, phase=Phase.OPEN, visit=visit, pending_action="")
        return _set_deadline(state, Timer.PASS_TIMEOUT, now + timedelta(seconds=ctx.rules.pass_timeout_s))
    out.append(_log(ctx, "warning", "arm up with no car after a restart: lowering",
                    record=state.visit.record_id if state.visit else ""))
    return _close(replace(state, phase=Phase.OPEN, pending_action=""), now, ctx, out, CloseReason.RESTART_NO_CAR)


def _command_answered(then: Optional[Handler] = None) -> Handler:
    """The barrier adapter's answer to the command the lane waits on; a failed one is logged, then `then` (the
    phase's own consequence) runs. An answer for a command no longer waited on changes nothing."""
    def answered(state: LaneState, ev: CommandDone, now: datetime, ctx: LaneContext,
                 out: list[fx.Effect]) -> LaneState:
        if ev.action_id != state.pending_action:
            return state
        state = replace(state, pending_action="")
        if ev.ok:
            return state
        out.append(_log(ctx, "error", "barrier command failed", action=ev.action_id, error=ev.error))
        if state.command == ev.action_id:
            state = replace(state, command="")  # its audit row says failed already
        return then(state, ev, now, ctx, out) if then is not None else state
    return answered


def _open_failed(state: LaneState, ev: CommandDone, now: datetime, ctx: LaneContext,
                 out: list[fx.Effect]) -> LaneState:
    return _block(state, ctx, out, f"OPEN not delivered: {ev.error or 'no answer'}")


def _close_failed(state: LaneState, ev: CommandDone, now: datetime, ctx: LaneContext,
                  out: list[fx.Effect]) -> LaneState:
    if ctx.rules.auto_close:
        return state
    # CLOSE refused (something under the arm) or lost: stay open, retry when the loops are clear.
    state = _clear_deadline(replace(state, phase=Phase.OPEN), Timer.CLOSE_CONFIRM)
    return _set_deadline(state, Timer.CLOSE_RETRY, now + timedelta(seconds=CLOSE_RETRY_S))


# --- the dispatch tables ---------------------------------------------------------------------------------------
_ALL = tuple(Phase)
_CYCLE = (Phase.OPENING, Phase.OPEN, Phase.CLOSING)

# (phase, event type) -> handler. Each phase guard lives here, once; a pair not listed changes nothing
# (tests/unit/test_lane_table.py walks every pair).
_TABLE: Mapping[tuple[Phase, type], Handler] = {
    (Phase.IDLE, PlateRead): _plate_at_idle,
    **{(phase, PlateRead): _plate_in_cycle for phase in _CYCLE},
    (Phase.BLOCKED, PlateRead): _plate_while_blocked,
    (Phase.AWAITING_PAYMENT, PlateRead): _plate_while_waiting,

    (Phase.OPENING, IoSnapshot): _io_arm_rising,
    (Phase.BLOCKED, IoSnapshot): _io_arm_rising,
    (Phase.OPEN, IoSnapshot): _io_open,
    (Phase.CLOSING, IoSnapshot): _io_closing,

    **{(phase, CommandDone): _command_answered() for phase in _ALL},
    (Phase.OPENING, CommandDone): _command_answered(_open_failed),
    (Phase.CLOSING, CommandDone): _command_answered(_close_failed),

    **{(phase, OperatorOpen): _operator_checked(_operator_release) for phase in _ALL},
    (Phase.OPENING, OperatorOpen): _operator_checked(_operator_while_opening),
    (Phase.OPEN, OperatorOpen): _operator_checked(_operator_while_open),
    (Phase.AWAITING_PAYMENT, OperatorOpen): _operator_checked(_operator_release_waiting),

    **{(phase, PaymentConfirmed): _payment_late for phase in _ALL},
    (Phase.AWAITING_PAYMENT, PaymentConfirmed): _on_payment,
    (Phase.AWAITING_PAYMENT, PaymentFallback): _on_fallback,
    (Phase.AWAITING_PAYMENT, CodeScanned): _on_code,
    **{(phase, CodeScanned): _code_ignored for phase in _ALL if phase != Phase.AWAITING_PAYMENT},
    (Phase.AWAITING_PAYMENT, IdentifyCar): _on_identify,
    **{(phase, IdentifyCar): _identify_ignored for phase in _ALL if phase != Phase.AWAITING_PAYMENT},
    (Phase.AWAITING_PAYMENT, QuoteRequest): _on_quote,
    **{(phase, QuoteRequest): _quote_not_here for phase in _ALL if phase != Phase.AWAITING_PAYMENT},
    (Phase.IDLE, PlatformEntry): _on_platform_entry,
    **{(phase, PlatformEntry): _platform_entry_refused for phase in _ALL if phase != Phase.IDLE},

    **_booth_table(),

    **{(phase, DeviceFault): _on_device_fault for phase in _ALL},
    **{(phase, DeviceRecovered): _on_device_recovered for phase in _ALL},
}

# A lane restored mid-cycle: its first inputs decide (see _resume); plates read before them wait.
_RESUMING: Mapping[type, Handler] = {IoSnapshot: _resume, PlateRead: _plate_while_resuming}

# (phase, timer) -> what its expiry does; a timer expiring in another phase is simply gone
_TIMERS: Mapping[tuple[Phase, Timer], Callable[[LaneState, datetime, LaneContext, list[fx.Effect]], LaneState]] = {
    (Phase.OPENING, Timer.OPEN_CONFIRM): _open_unconfirmed,
    (Phase.CLOSING, Timer.CLOSE_CONFIRM): _close_unconfirmed,
    (Phase.OPEN, Timer.CLOSE_RETRY): _retry_close,
    (Phase.OPEN, Timer.PASS_TIMEOUT): _pass_timed_out,
}
