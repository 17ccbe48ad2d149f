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
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Literal, Mapping, Optional

from lanectl.core import effects as fx
from lanectl.core.events import (
    CodeScanned,
    CommandDone,
    DeviceFault,
    DeviceRecovered,
    Event,
    IdentifyCar,
    IoSnapshot,
    OperatorOpen,
    PaymentConfirmed,
    PaymentFallback,
    PlateRead,
    PlatformEntry,
    Tick,
)
from lanectl.core.plates import DEFAULT_SPECIAL_PREFIXES, classify_plate, match_entry
from lanectl.core.policy import Policy

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
    passage: Literal["waiting", "on_safety"] = "waiting"
    paid_fen: int = 0  # paid before this exit (ahead, inside the lot)
    # the decision that opened (or should open) the barrier for this car, kept so that a blocked car read again
    # at the closed arm gets the same decision re-issued (same record, same authority), never a new one
    authority: str = ""
    open_reason: str = ""
    operator: str = ""
    trade_no: str = ""
    operator_uid: Optional[int] = None


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
    deadlines: tuple[tuple[str, datetime], ...] = ()  # (name, when)
    pending_action: str = ""  # the barrier command not yet acknowledged by the adapter
    command: str = ""  # the last OPEN / CLOSE whose limit input has not yet agreed (audit: confirmed/unconfirmed)
    resuming: bool = False  # restored mid-cycle: the first IoSnapshot decides what happens

    # --- persistence (JSON-friendly dicts) -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["phase"] = self.phase.value
        d["last_plate_at"] = self.last_plate_at.isoformat() if self.last_plate_at else None
        d["held_at"] = self.held_at.isoformat() if self.held_at else None
        d["deadlines"] = [[n, t.isoformat()] for n, t in self.deadlines]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LaneState":
        return cls(
            phase=Phase(d["phase"]),
            seq=int(d["seq"]),
            visit=Visit(**d["visit"]) if d.get("visit") else None,
            io=IoSnapshot(**d["io"]) if d.get("io") else None,
            barrier_fault=d.get("barrier_fault", ""),
            last_plate=d.get("last_plate", ""),
            last_plate_at=datetime.fromisoformat(d["last_plate_at"]) if d.get("last_plate_at") else None,
            held=PlateRead(**d["held"]) if d.get("held") else None,
            held_at=datetime.fromisoformat(d["held_at"]) if d.get("held_at") else None,
            deadlines=tuple((n, datetime.fromisoformat(t)) for n, t in d.get("deadlines", ())),
            pending_action=d.get("pending_action", ""),
            command=d.get("command", ""),
            resuming=bool(d.get("resuming", False)),
        )

    def deadline(self, name: str) -> Optional[datetime]:
        return next((t for n, t in self.deadlines if n == name), None)

    def next_deadline(self) -> Optional[datetime]:
        return min((t for _, t in self.deadlines), default=None)


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
def handle(state: LaneState, event: Event, now: datetime, ctx: LaneContext) -> tuple[LaneState, list[fx.Effect]]:
    out: list[fx.Effect] = []
    if isinstance(event, IoSnapshot):
        # The newest inputs first: a deadline expiring now (e.g. "lower the arm") must see them.
        state = replace(state, io=event)
    state = _expire_deadlines(state, now, ctx, out)
    if isinstance(event, PlateRead):
        state = _on_plate(state, event, now, ctx, out)
    elif isinstance(event, IoSnapshot):
        state = _on_io(state, event, now, ctx, out)
    elif isinstance(event, OperatorOpen):
        state = _on_operator(state, event, now, ctx, out)
    elif isinstance(event, CommandDone):
        state = _on_command_done(state, event, now, ctx, out)
    elif isinstance(event, PaymentConfirmed):
        state = _on_payment(state, event, now, ctx, out)
    elif isinstance(event, PaymentFallback):
        state = _on_fallback(state, event, ctx, out)
    elif isinstance(event, PlatformEntry):
        state = _on_platform_entry(state, event, now, ctx, out)
    elif isinstance(event, IdentifyCar):
        state = _on_identify(state, event, now, ctx, out)
    elif isinstance(event, CodeScanned):
        state = _on_code(state, event, ctx, out)
    elif isinstance(event, DeviceFault):
        if event.device == "barrier":
            if not state.barrier_fault:
                out.append(_log(ctx, "warning", "barrier faulted", reason=event.reason))
            state = replace(state, barrier_fault=event.reason)
    elif isinstance(event, DeviceRecovered):
        if event.device == "barrier" and state.barrier_fault:
            out.append(_log(ctx, "info", "barrier recovered"))
            state = replace(state, barrier_fault="")
    elif isinstance(event, Tick):
        pass
    return state, out


# --- helpers ------------------------------------------------------------------------------------------------
def _log(ctx: LaneContext, level: Literal["info", "warning", "error"], message: str, **fields: Any) -> fx.Log:
    return fx.Log(level, message, (("lane", ctx.lane_id),) + tuple(fields.items()))


def _set_deadline(state: LaneState, name: str, when: datetime) -> LaneState:
    return replace(state, deadlines=tuple((n, t) for n, t in state.deadlines if n != name) + ((name, when),))


def _clear_deadline(state: LaneState, *names: str) -> LaneState:
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
          operator_uid: Optional[int] = None) -> LaneState:
    state, action_id = _next_id(state, ctx, now)
    out.append(fx.OpenBarrier(action_id, record_id, authority, reason, operator=operator, trade_no=trade_no,
                              operator_uid=operator_uid))
    visit = state.visit
    if visit is not None:
        visit = replace(visit, authority=authority, open_reason=reason, operator=operator, trade_no=trade_no,
                        operator_uid=operator_uid)
    state = replace(state, phase=Phase.OPENING, pending_action=action_id, command=action_id, visit=visit)
    state = _clear_deadline(state, "close_confirm", "pass_timeout")
    return _set_deadline(state, "open_confirm", now + timedelta(seconds=ctx.rules.open_confirm_s))


def _close(state: LaneState, now: datetime, ctx: LaneContext, out: list[fx.Effect], reason: str) -> LaneState:
    record_id = state.visit.record_id if state.visit else ""
    state = _clear_deadline(state, "pass_timeout", "close_retry")
    if ctx.rules.auto_close:
        state = replace(state, phase=Phase.CLOSING)
    else:
        if _unsafe_to_close(state):
            return state  # stay open; the snapshot that shows the loops clear retries
        state, action_id = _next_id(state, ctx, now)
        out.append(fx.CloseBarrier(action_id, record_id, reason))
        state = replace(state, phase=Phase.CLOSING, pending_action=action_id, command=action_id)
    return _set_deadline(state, "close_confirm", now + timedelta(seconds=ctx.rules.close_confirm_s))


def _finish_cycle(state: LaneState, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    """Back to idle; a plate held during the cycle is handled now."""
    state = replace(state, phase=Phase.IDLE, visit=None, pending_action="", command="")
    state = _clear_deadline(state, "open_confirm", "close_confirm", "pass_timeout", "close_retry")
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


def _audit(state: LaneState, out: list[fx.Effect], status: Literal["confirmed", "unconfirmed"],
           note: str = "") -> LaneState:
    """The limit input agreed with the last command (or has not, so far): its audit row says so. An unconfirmed
    command stays the one watched: a limit reached late still confirms it."""
    if state.command:
        out.append(fx.AuditAction(state.command, status, note))
    return replace(state, command="") if status == "confirmed" else state


def _block(state: LaneState, ctx: LaneContext, out: list[fx.Effect], reason: str) -> LaneState:
    """The car's OPEN did not move the arm. The decision stands (the record, its authority); the operator's
    release, the same car read again at the closed arm, the arm going up after all, or the next car end it."""
    out.append(_log(ctx, "error", "barrier did not open", reason=reason,
                    record=state.visit.record_id if state.visit else ""))
    out.append(fx.Display("道闸故障 请联系管理员", key="fault"))
    state = replace(state, phase=Phase.BLOCKED, barrier_fault=reason, pending_action="")
    return _clear_deadline(state, "open_confirm")


_OPEN_FAULTS = ("OPEN not confirmed", "OPEN not delivered", "OPEN interrupted")


def _expire_deadlines(state: LaneState, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    for name, when in state.deadlines:
        if when > now:
            continue
        state = _clear_deadline(state, name)
        if name == "open_confirm" and state.phase == Phase.OPENING:
            reason = f"OPEN not confirmed by the up limit within {ctx.rules.open_confirm_s:g} s"
            state = _block(_audit(state, out, "unconfirmed", reason), ctx, out, reason)
        elif name == "close_confirm" and state.phase == Phase.CLOSING:
            reason = f"CLOSE not confirmed by the down limit within {ctx.rules.close_confirm_s:g} s"
            out.append(_log(ctx, "error", "barrier fault", reason=reason))
            state = _audit(state, out, "unconfirmed", reason)
            state = _finish_cycle(replace(state, barrier_fault=reason), now, ctx, out)
        elif name == "close_retry" and state.phase == Phase.OPEN and not state.pending_action:
            state = _close(state, now, ctx, out, "retry")
        elif name == "pass_timeout" and state.phase == Phase.OPEN:
            io = state.io
            if io is not None and not (io.arming or io.safety or io.anti_smash):
                out.append(_log(ctx, "warning", "car did not pass; lowering",
                                record=state.visit.record_id if state.visit else ""))
                state = _close(state, now, ctx, out, "not_passed")
            else:
                state = _set_deadline(state, "pass_timeout", now + timedelta(seconds=ctx.rules.pass_timeout_s))
    return state


# --- plate reads ---------------------------------------------------------------------------------------------
def _on_plate(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    if ev.confidence < ctx.rules.min_confidence:
        out.append(_log(ctx, "info", "plate ignored: low confidence", plate=ev.plate, confidence=ev.confidence))
        return state
    if state.resuming:
        # The inputs at start decide first; this read is kept (with its time) for after that.
        out.append(_log(ctx, "info", "plate held until the barrier's inputs are known", plate=ev.plate))
        return replace(state, held=ev, held_at=now)
    unreadable = classify_plate(ev.plate, ctx.rules.special_prefixes) == "unreadable"
    if unreadable and state.phase in (Phase.BLOCKED, Phase.AWAITING_PAYMENT) and state.visit is not None:
        # A garbled read is no sign that the car the lane is dealing with has gone: that car stays.
        if not (ev.plate == state.last_plate and state.last_plate_at is not None
                and now - state.last_plate_at < timedelta(seconds=ctx.rules.duplicate_window_s)):
            out.append(_log(ctx, "warning", "plate unreadable: ignored while a car is at the lane", plate=ev.plate,
                            source=ev.source, record=state.visit.record_id))
        return replace(state, last_plate=ev.plate, last_plate_at=now)
    if state.phase == Phase.BLOCKED and state.visit is not None:
        blocked = _on_plate_blocked(state, ev, now, ctx, out)
        if blocked is not None:
            return blocked
        state = replace(state, phase=Phase.IDLE, visit=None, command="")
    recent = (state.last_plate_at is not None and ev.plate == state.last_plate
              and now - state.last_plate_at < timedelta(seconds=ctx.rules.duplicate_window_s))
    if recent or (state.visit is not None and ev.plate == state.visit.plate and ev.plate):
        return state  # a camera repeats itself; the same car is already being handled
    state = replace(state, last_plate=ev.plate, last_plate_at=now)

    if state.phase in (Phase.OPENING, Phase.OPEN, Phase.CLOSING):
        out.append(_log(ctx, "info", "plate held until the barrier cycle ends", plate=ev.plate))
        return replace(state, held=ev, held_at=now)
    if state.phase == Phase.AWAITING_PAYMENT and state.visit is not None:
        # Another car at the exit: the waiting one backed away. Its record stays for the reconciliation.
        out.append(fx.PatchRecord(state.visit.record_id, (("status", "abandoned"),)))
        if ctx.settle:
            out.append(fx.StopSettlement(state.visit.record_id, "abandoned"))
        out.append(_log(ctx, "info", "waiting car replaced", plate=state.visit.plate, record=state.visit.record_id))
        state = replace(state, phase=Phase.IDLE, visit=None)
    if unreadable:
        return _unreadable(state, ev, now, ctx, out)
    if ctx.direction == "entry":
        return _entry(state, ev, now, ctx, out)
    return _exit(state, ev, now, ctx, out)


UNREADABLE = "unreadable_plate"  # the record reason of a reading that is no plate (core.plates.classify_plate)


def _unreadable(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext,
                out: list[fx.Effect]) -> LaneState:
    """A reading that is no plate (e.g. 竑B55502, a Big5 line read as GBK): the rules never see it and the barrier
    stays down; the booth decides (an operator release opens as for any car). The record keeps the text as read.
    At an exit the car waits at the lane like one whose entry is ambiguous; an entry lane records it refused."""
    state, record_id = _next_id(state, ctx, now)
    entry = ctx.direction == "entry"
    out.append(fx.NewRecord(record_id, ctx.lane_id, "entry" if entry else "exit", ev.plate, ev.color,
                            now.isoformat(), "refused" if entry else "awaiting_payment", reason=UNREADABLE,
                            image=ev.image))
    out.append(_log(ctx, "warning", "plate unreadable: to the booth", plate=ev.plate, source=ev.source,
                    record=record_id))
    text = "车牌无法识别 请到岗亭处理"
    out.append(fx.Display(text, text, "booth", (("plate", ""), ("message", text))))
    if entry:
        return state
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


def _entry(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    present = {p: c.entered_at for p, c in ctx.inside.items()}
    decision = ctx.policy.entry(ev.plate, ev.color, now, present)
    state, record_id = _next_id(state, ctx, now)
    status = "inside" if decision.allow else "refused"
    out.append(fx.NewRecord(record_id, ctx.lane_id, "entry", ev.plate, ev.color, now.isoformat(), status,
                            vehicle_class=decision.vehicle_class, reason=decision.reason, image=ev.image))
    out.append(_log(ctx, "info", "entry " + ("allowed" if decision.allow else "refused"), plate=ev.plate,
                    record=record_id, reason=decision.reason, vehicle_class=decision.vehicle_class))
    if not decision.allow:
        out.append(fx.Display(f"{ev.plate} {decision.message}".strip(), decision.message, "refused",
                              (("plate", ev.plate), ("message", decision.message))))
        return state
    stale = ctx.inside.get(ev.plate) if ev.plate else None
    if stale is not None:
        # Inside already by our books: its exit was missed. Close that record so one car has one stay.
        out.append(fx.PatchRecord(stale.record_id, (("status", "superseded"),)))
    out.append(fx.Publish(record_id, "entry"))
    message = decision.message or "欢迎光临"
    if decision.vehicle_class == "stored_value" and ev.plate in ctx.balances:
        message += f" 余额{_yuan_text(ctx.balances[ev.plate])}"
    out.append(fx.Display(f"{message} {ev.plate}".strip(), f"{message} {ev.plate}".strip(), "welcome",
                          (("plate", ev.plate), ("message", message), ("vehicle_class", decision.vehicle_class))))
    state = replace(state, visit=Visit(ev.plate, ev.color, record_id, decision.vehicle_class, decision.reason))
    return _open(state, now, ctx, out, record_id=record_id, authority="rules", reason=decision.reason)


def _exit(state: LaneState, ev: PlateRead, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    match = match_entry(ev.plate, ctx.inside.keys())
    entry = ctx.inside.get(match.plate) if match.plate else None
    present = {p: c.entered_at for p, c in ctx.inside.items()}
    quote = ctx.policy.exit(ev.plate, ev.color, entry.entered_at if entry else None, now, present,
                            paid_fen=entry.paid_fen if entry else 0, paid_at=entry.paid_at if entry else None,
                            entry_reason=entry.reason if entry else "")
    needs_operator = quote.needs_operator or match.kind == "ambiguous"
    state, record_id = _next_id(state, ctx, now)
    free = quote.free and not needs_operator
    balance = ctx.balances.get(ev.plate) if quote.vehicle_class == "stored_value" and ev.plate else None
    debit = (not free and not needs_operator and balance is not None and balance >= quote.due_fen > 0)
    reason = "ambiguous_entry" if match.kind == "ambiguous" else ("stored_value" if debit else quote.reason)
    detail = (f"match:{match.kind}",) + quote.breakdown + tuple(f"flag:{f}" for f in quote.flags)
    if balance is not None and not free:
        after = f"debit {_yuan_text(quote.due_fen)}" if debit else f"short of {_yuan_text(quote.due_fen)}"
        detail += (f"stored value: balance {_yuan_text(balance)}, {after}",)
    leaving = free or debit
    out.append(fx.NewRecord(
        record_id, ctx.lane_id, "exit", ev.plate, ev.color, now.isoformat(),
        "leaving" if leaving else "awaiting_payment", vehicle_class=quote.vehicle_class, reason=reason,
        entry_record_id=entry.record_id if entry else "",
        entered_at=entry.entered_at.isoformat() if entry else "", total_fen=quote.total_fen,
        due_fen=0 if leaving else quote.due_fen, paid_fen=quote.paid_fen + (quote.due_fen if debit else 0),
        detail=detail, image=ev.image))
    out.append(_log(ctx, "info", "exit " + ("free" if free else "stored value debited" if debit
                                            else "waiting for payment"),
                    plate=ev.plate, record=record_id, reason=reason, due_fen=quote.due_fen, match=match.kind))
    visit = Visit(ev.plate, ev.color, record_id, quote.vehicle_class, reason,
                  entry.record_id if entry else "", quote.due_fen, paid_fen=quote.paid_fen)
    state = replace(state, visit=visit)
    if free:
        out.extend(_leave(visit))
        out.append(fx.Display(f"{ev.plate} 一路顺风", "一路顺风", "goodbye", (("plate", ev.plate),)))
        return _open(state, now, ctx, out, record_id=record_id, authority="rules", reason=quote.reason)
    if debit:
        assert balance is not None
        # The debit, its payment row and the OPEN commit in one transaction: a crash leaves all or none.
        out.append(fx.DebitBalance(ev.plate, quote.due_fen, record_id, now.isoformat()))
        out.append(fx.RecordPayment(record_id, ctx.lane_id, quote.due_fen, "stored_value", "balance",
                                    now.isoformat()))
        out.extend(_leave(visit))
        left = _yuan_text(balance - quote.due_fen)
        out.append(fx.Display(f"{ev.plate} 扣费{_yuan_text(quote.due_fen)} 余额{left}",
                              f"扣费{_yuan_text(quote.due_fen)} 余额{left} 一路顺风", "stored_value_paid",
                              (("plate", ev.plate), ("amount", _yuan_text(quote.due_fen)), ("balance", left))))
        return _open(state, now, ctx, out, record_id=record_id, authority="payment", reason="stored_value")
    shown, amount = ev.plate or "无牌车", _yuan_text(quote.due_fen)
    stay = _stay_text(entry.entered_at, now) if entry else ""
    fields = (("plate", shown), ("amount", amount), ("stay", stay))
    if needs_operator:
        out.append(fx.Display(f"{shown} 请到岗亭处理", f"{shown} 请到岗亭处理", "booth", fields))
    elif balance is not None:
        text = f"{shown} 余额不足 请缴费{amount}"
        out.append(fx.Display(text, text, "balance_short", fields))
    else:
        text = f"{shown} {'停车' + stay + ' ' if stay else ''}请缴费{amount}"
        out.append(fx.Display(text, text, "pay", fields))
    if ctx.settle and not needs_operator:
        out.append(fx.StartSettlement(
            record_id, ctx.lane_id, ev.plate, ev.color, quote.due_fen, quote.total_fen, now.isoformat(),
            entered_at=entry.entered_at.isoformat() if entry else "", entry_record_id=entry.record_id if entry else "",
            vehicle_class=quote.vehicle_class, entry_lane_id=entry.lane_id if entry else "", image=ev.image,
            entry_image=entry.image if entry else ""))
    return replace(state, phase=Phase.AWAITING_PAYMENT)


def _stay_text(entered_at: datetime, now: datetime) -> str:
    """A stay as a board says it: "3小时5分", "45分钟"."""
    minutes = max(0, int((now - entered_at).total_seconds() // 60))
    hours, rest = divmod(minutes, 60)
    return f"{hours}小时{rest}分" if hours and rest else f"{hours}小时" if hours else f"{rest}分钟"


def _yuan_text(fen: int) -> str:
    """Money as a board says it: 700 -> "7元", 750 -> "7元50分", 5 -> "0元05分"."""
    return f"{fen // 100}元{fen % 100:02d}分".replace("元00分", "元")


def _leave(visit: Visit) -> list[fx.Effect]:
    out: list[fx.Effect] = [fx.Publish(visit.record_id, "exit")]
    if visit.entry_record_id:
        out.append(fx.PatchRecord(visit.entry_record_id, (("status", "exited"),)))
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


def _on_operator(state: LaneState, ev: OperatorOpen, now: datetime, ctx: LaneContext,
                 out: list[fx.Effect]) -> LaneState:
    operator, reason, uid = operator_name(ev), ev.reason.strip(), ev.operator_uid
    if not operator or not reason or (ev.amount_fen is not None and ev.amount_fen < 0):
        out.append(_log(ctx, "warning", "operator release refused: name and reason are required",
                        operator=operator, reason=reason, operator_uid=uid))
        return state
    if state.phase in (Phase.OPEN,) or (state.phase == Phase.OPENING and not state.barrier_fault):
        out.append(_log(ctx, "info", "operator release: barrier already opening", operator=operator,
                        operator_uid=uid))
        return state
    method = "cash" if reason == "cash" else "operator"
    visit = state.visit
    figures: dict[str, Any] = {}
    if state.phase == Phase.AWAITING_PAYMENT and visit is not None:
        record_id = visit.record_id
        short, over = cash_difference(visit.due_fen, ev.amount_fen)
        figures = {"due_fen": visit.due_fen, "short_fen": short, "over_fen": over}
        changes: list[tuple[str, Any]] = [("status", "released"), ("operator", operator), ("operator_uid", uid),
                                          ("reason", f"operator:{reason}"), ("short_fen", short),
                                          ("over_fen", over)]
        if ev.amount_fen:
            out.append(fx.RecordPayment(record_id, ctx.lane_id, ev.amount_fen, method, operator, now.isoformat()))
            # what was paid ahead inside the lot stays counted (as for a platform's payment)
            changes.append(("paid_fen", visit.paid_fen + ev.amount_fen))
        out.append(fx.PatchRecord(record_id, tuple(changes)))
        out.extend(_leave(visit))
        if ctx.settle:
            out.append(fx.StopSettlement(record_id, "released"))
    elif visit is not None:
        record_id = visit.record_id  # re-open for the same car (closing, or an OPEN that faulted)
    else:
        state, record_id = _next_id(state, ctx, now)
        out.append(fx.NewRecord(record_id, ctx.lane_id, "release", "", "", now.isoformat(), "released",
                                reason=f"operator:{reason}", paid_fen=ev.amount_fen or 0, operator=operator,
                                operator_uid=uid))
        if ev.amount_fen:
            out.append(fx.RecordPayment(record_id, ctx.lane_id, ev.amount_fen, method, operator, now.isoformat()))
        out.append(fx.Publish(record_id, "release"))
        state = replace(state, visit=Visit("", "", record_id, reason=f"operator:{reason}"))
    if figures.get("short_fen"):
        out.append(_log(ctx, "warning", "operator release short of the amount due", operator=operator,
                        operator_uid=uid, reason=reason, record=record_id, amount_fen=ev.amount_fen, **figures))
    else:
        out.append(_log(ctx, "info", "operator release", operator=operator, operator_uid=uid, reason=reason,
                        record=record_id, amount_fen=ev.amount_fen, **figures))
    out.append(fx.Display("一路顺风", "一路顺风", "goodbye", (("plate", visit.plate if visit else ""),)))
    return _open(state, now, ctx, out, record_id=record_id, authority="operator", reason=reason, operator=operator,
                 operator_uid=uid)


# --- payments ------------------------------------------------------------------------------------------------
def _on_payment(state: LaneState, ev: PaymentConfirmed, now: datetime, ctx: LaneContext,
                out: list[fx.Effect]) -> LaneState:
    visit = state.visit
    method = f"{ev.provider}:{ev.method}" if ev.method else ev.provider
    waiting = (state.phase == Phase.AWAITING_PAYMENT and visit is not None and visit.record_id == ev.record_id
               and visit.reason != UNREADABLE)  # nothing was asked of a reading that is no plate: the booth decides
    if not waiting:
        # The car left another way (cash, operator) or this is not our car: the money is kept on the books and
        # flagged; the barrier does not move for it.
        out.append(fx.RecordPayment(ev.record_id, ctx.lane_id, ev.amount_fen, method, ev.trade_no, now.isoformat(),
                                    flag="late"))
        out.append(_log(ctx, "warning", "payment for a car no longer waiting: recorded, flagged for refund review",
                        record=ev.record_id, provider=ev.provider, trade_no=ev.trade_no, amount_fen=ev.amount_fen))
        return state
    assert visit is not None
    if ev.amount_fen < visit.due_fen:
        out.append(fx.RecordPayment(ev.record_id, ctx.lane_id, ev.amount_fen, method, ev.trade_no, now.isoformat(),
                                    flag="short"))
        out.append(_log(ctx, "warning", "payment short of the amount due: barrier stays down", record=ev.record_id,
                        provider=ev.provider, trade_no=ev.trade_no, amount_fen=ev.amount_fen, due_fen=visit.due_fen))
        return state
    out.append(fx.RecordPayment(ev.record_id, ctx.lane_id, ev.amount_fen, method, ev.trade_no, now.isoformat()))
    out.append(fx.PatchRecord(ev.record_id, (("status", "paid"), ("paid_fen", visit.paid_fen + ev.amount_fen),
                                             ("due_fen", 0))))
    out.extend(_leave(visit))
    out.append(fx.StopSettlement(ev.record_id, "paid"))
    out.append(_log(ctx, "info", "exit paid", plate=visit.plate, record=ev.record_id, provider=ev.provider,
                    trade_no=ev.trade_no, amount_fen=ev.amount_fen))
    out.append(fx.Display(f"{visit.plate or '无牌车'} 支付成功 一路顺风", "支付成功 一路顺风", "paid",
                          (("plate", visit.plate or "无牌车"), ("amount", _yuan_text(ev.amount_fen)))))
    return _open(state, now, ctx, out, record_id=ev.record_id, authority="payment", reason=ev.provider,
                 trade_no=ev.trade_no)


def _on_platform_entry(state: LaneState, ev: PlatformEntry, now: datetime, ctx: LaneContext,
                       out: list[fx.Effect]) -> LaneState:
    """A plate-less car admitted by a platform: the rules decide as for any plate-less car; the record keeps
    the platform's id as its plate so the exit (and the platform's price queries) find the stay by it."""
    if ctx.direction != "entry" or state.phase != Phase.IDLE or not ev.car_id:
        out.append(_log(ctx, "warning", "platform entry refused: lane busy or not an entry lane",
                        car=ev.car_id, provider=ev.provider, phase=state.phase.value))
        return state
    present = {p: c.entered_at for p, c in ctx.inside.items()}
    decision = ctx.policy.entry("", "", now, present)
    state, record_id = _next_id(state, ctx, now)
    reason = f"{ev.provider}_plateless" if decision.allow else decision.reason
    out.append(fx.NewRecord(record_id, ctx.lane_id, "entry", ev.car_id, "", now.isoformat(),
                            "inside" if decision.allow else "refused", vehicle_class=decision.vehicle_class,
                            reason=reason))
    out.append(_log(ctx, "info", "entry " + ("allowed" if decision.allow else "refused"), car=ev.car_id,
                    record=record_id, reason=reason, provider=ev.provider))
    if not decision.allow:
        out.append(fx.Display(decision.message, decision.message, "refused", (("plate", ""),
                                                                               ("message", decision.message))))
        return state
    out.append(fx.Publish(record_id, "entry"))
    out.append(fx.Display("欢迎光临", "欢迎光临", "welcome", (("plate", ""), ("message", "欢迎光临"))))
    state = replace(state, visit=Visit("", "", record_id, decision.vehicle_class, reason))
    return _open(state, now, ctx, out, record_id=record_id, authority="rules", reason=reason)


def _on_identify(state: LaneState, ev: IdentifyCar, now: datetime, ctx: LaneContext,
                 out: list[fx.Effect]) -> LaneState:
    """The plate-less car waiting here is the stay recorded under `car_id` (a platform's id): price that stay,
    link the records, and settle again under the stay's order. Nothing opens unless the stay is free."""
    visit = state.visit
    entry = ctx.inside.get(ev.car_id) if ev.car_id else None
    if (state.phase != Phase.AWAITING_PAYMENT or visit is None or visit.record_id != ev.record_id or visit.plate
            or visit.entry_record_id or entry is None):
        out.append(_log(ctx, "warning", "car identification ignored", record=ev.record_id, car=ev.car_id,
                        provider=ev.provider))
        return state
    present = {p: c.entered_at for p, c in ctx.inside.items()}
    quote = ctx.policy.exit("", "", entry.entered_at, now, present, paid_fen=entry.paid_fen, paid_at=entry.paid_at,
                            entry_reason=entry.reason)
    free = quote.free
    out.append(fx.PatchRecord(visit.record_id, (
        ("entry_record_id", entry.record_id), ("entered_at", entry.entered_at.isoformat()),
        ("total_fen", quote.total_fen), ("due_fen", 0 if free else quote.due_fen), ("paid_fen", quote.paid_fen),
        ("reason", quote.reason), ("status", "leaving" if free else "awaiting_payment"))))
    out.append(_log(ctx, "info", "plate-less car identified", record=visit.record_id, car=ev.car_id,
                    entry=entry.record_id, due_fen=quote.due_fen, provider=ev.provider))
    visit = replace(visit, entry_record_id=entry.record_id, due_fen=quote.due_fen, paid_fen=quote.paid_fen,
                    reason=quote.reason, vehicle_class=quote.vehicle_class)
    state = replace(state, visit=visit)
    if free:
        if ctx.settle:
            out.append(fx.StopSettlement(visit.record_id, "paid"))
        out.extend(_leave(visit))
        out.append(fx.Display("一路顺风", "一路顺风", "goodbye", (("plate", ""),)))
        return _open(state, now, ctx, out, record_id=visit.record_id, authority="rules", reason=quote.reason)
    if ctx.settle:
        out.append(fx.StopSettlement(visit.record_id, "reidentified"))
        out.append(fx.StartSettlement(visit.record_id, ctx.lane_id, "", "", quote.due_fen, quote.total_fen,
                                      now.isoformat(), entered_at=entry.entered_at.isoformat(),
                                      entry_record_id=entry.record_id, vehicle_class=quote.vehicle_class,
                                      entry_lane_id=entry.lane_id, entry_image=entry.image))
    amount = _yuan_text(quote.due_fen)
    out.append(fx.Display(f"无牌车 请缴费{amount}", f"无牌车 请缴费{amount}", "pay",
                          (("plate", "无牌车"), ("amount", amount), ("stay", _stay_text(entry.entered_at, now)))))
    return state


def _on_code(state: LaneState, ev: CodeScanned, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    """A payment code at the booth scanner: charge the car waiting here with it (the result still has to come
    back confirmed before anything opens)."""
    visit = state.visit
    if state.phase != Phase.AWAITING_PAYMENT or visit is None or not ctx.settle or visit.reason == UNREADABLE:
        out.append(_log(ctx, "info", "payment code scanned with no car waiting for a payment: ignored"))
        return state
    out.append(fx.ChargeByCode(visit.record_id, ev.code))
    out.append(_log(ctx, "info", "payment code scanned", record=visit.record_id, plate=visit.plate))
    out.append(fx.Display("正在支付 请稍候", "正在支付 请稍候", "paying", (("plate", visit.plate or "无牌车"),)))
    return state


def _on_fallback(state: LaneState, ev: PaymentFallback, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    visit = state.visit
    if state.phase != Phase.AWAITING_PAYMENT or visit is None or visit.record_id != ev.record_id:
        return state
    out.append(_log(ctx, "info", "payment fallback: pay at the booth or by scan", record=ev.record_id,
                    reason=ev.reason))
    shown, amount = visit.plate or "无牌车", _yuan_text(visit.due_fen)
    text = f"{shown} 请扫码或到岗亭缴费{amount}"
    out.append(fx.Display(text, text, "pay_fallback", (("plate", shown), ("amount", amount))))
    return state


# --- barrier inputs and command results ------------------------------------------------------------------------
def _on_io(state: LaneState, io: IoSnapshot, now: datetime, ctx: LaneContext, out: list[fx.Effect]) -> LaneState:
    state = replace(state, io=io)
    if state.resuming:
        return _resume(state, io, now, ctx, out)
    phase = state.phase
    if phase in (Phase.OPENING, Phase.BLOCKED) and io.up_limit:
        if state.barrier_fault.startswith(_OPEN_FAULTS):
            out.append(_log(ctx, "info", "barrier recovered: up limit reached late"))
            state = replace(state, barrier_fault="")
        state = _audit(state, out, "confirmed")
        state = _clear_deadline(replace(state, phase=Phase.OPEN), "open_confirm")
        state = _set_deadline(state, "pass_timeout", now + timedelta(seconds=ctx.rules.pass_timeout_s))
        phase = Phase.OPEN
    if phase == Phase.OPEN and ctx.rules.auto_close and io.down_limit and not io.up_limit:
        # An auto-closing barrier lowered itself after the car (its own loop saw it pass), unseen by us.
        out.append(_log(ctx, "info", "barrier closed by itself", record=state.visit.record_id if state.visit else ""))
        return _finish_cycle(state, now, ctx, out)
    if phase == Phase.OPEN and state.visit is not None:
        visit = state.visit
        if io.safety and visit.passage == "waiting":
            state = replace(state, visit=replace(visit, passage="on_safety"))
        elif not io.safety and visit.passage == "on_safety":
            out.append(_log(ctx, "info", "car passed", plate=visit.plate, record=visit.record_id))
            state = _close(state, now, ctx, out, "car_passed")
        elif state.deadline("pass_timeout") is None and not state.pending_action and not ctx.rules.auto_close:
            state = _close(state, now, ctx, out, "car_passed")  # an earlier close waited for clear loops
    elif phase == Phase.CLOSING:
        if io.down_limit:
            state = _finish_cycle(_audit(state, out, "confirmed"), now, ctx, out)
        elif io.safety or io.anti_smash:
            # Something is under the arm while it lowers: the barrier reverses on its own; we wait for the
            # loops to clear and lower again (never command CLOSE onto it).
            out.append(_log(ctx, "warning", "obstacle under the arm while closing"))
            state = _audit(state, out, "unconfirmed", "obstacle under the arm: the barrier reversed")
            visit = state.visit
            state = replace(state, phase=Phase.OPEN, pending_action="",
                            visit=replace(visit, passage="on_safety") if visit else None)
            state = _clear_deadline(state, "close_confirm")
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
            return _finish_cycle(_audit(state, out, "confirmed"), now, ctx, out)
        if phase == Phase.OPENING:
            state = _audit(state, out, "unconfirmed", "arm still down after a restart")
            state = _block(state, ctx, out, "OPEN interrupted by a restart: the arm did not move; not repeated")
        return _take_held(state, now, ctx, out)  # blocked: the same car read again, or another one
    if phase in (Phase.OPENING, Phase.BLOCKED) and io.up_limit:
        state = _audit(state, out, "confirmed")
    if car:
        # let it pass, then close: the open phase's passage logic lowers the arm once the loops are clear
        visit = state.visit
        if visit is not None:
            visit = replace(visit, passage="on_safety" if io.safety else "waiting")
        state = replace(state, phase=Phase.OPEN, visit=visit, pending_action="")
        return _set_deadline(state, "pass_timeout", now + timedelta(seconds=ctx.rules.pass_timeout_s))
    out.append(_log(ctx, "warning", "arm up with no car after a restart: lowering",
                    record=state.visit.record_id if state.visit else ""))
    return _close(replace(state, phase=Phase.OPEN, pending_action=""), now, ctx, out, "restart_no_car")


def _on_command_done(state: LaneState, ev: CommandDone, now: datetime, ctx: LaneContext,
                     out: list[fx.Effect]) -> LaneState:
    if ev.action_id != state.pending_action:
        return state  # an answer for a command we no longer wait on
    state = replace(state, pending_action="")
    if ev.ok:
        return state
    out.append(_log(ctx, "error", "barrier command failed", action=ev.action_id, error=ev.error))
    if state.command == ev.action_id:
        state = replace(state, command="")  # its audit row says failed already
    if state.phase == Phase.OPENING:
        return _block(state, ctx, out, f"OPEN not delivered: {ev.error or 'no answer'}")
    if state.phase == Phase.CLOSING and not ctx.rules.auto_close:
        # CLOSE refused (something under the arm) or lost: stay open, retry when the loops are clear.
        state = _clear_deadline(replace(state, phase=Phase.OPEN), "close_confirm")
        return _set_deadline(state, "close_retry", now + timedelta(seconds=CLOSE_RETRY_S))
    return state
