"""The settlement machine: how one exit's money is settled through the lane's payment providers. Pure: time
arrives as `now`, deadlines are kept in the state, and everything that touches a provider, the store or a lane
is an effect the driver (service/settlement.py) carries out and answers with an event.

    precheck (optional, moves no money) ──skip / unknown──▶ next provider
    charge ──paid──▶ PaymentConfirmed to the lane (which alone decides to open)
       │  ──failed / skip──▶ next provider
       └─pending / no answer──▶ poll (and accept callbacks) until the window ends
                                   ──paid──▶ PaymentConfirmed      ──failed──▶ next provider
                                   ──"no such order" (absent), for a charge that was never answered, a few
                                     times over `absent_span_s`──▶ not charged: failed ──▶ next provider
                                   ──window over──▶ PaymentFallback; the attempt is reconciled in the
                                                    background: a late success is still confirmed (the lane
                                                    opens if the car still waits, else records it for refund)

One status vocabulary, `Status`, whose values are what payment_attempts.status stores: `charging` — written
ahead of the call, and kept while the charge has had no answer (timeout, 5xx, garbage); `pending` — the
platform answered and has not decided; `fallback` — the window ended while charging or pending (the detail
says which: UNANSWERED); then `paid`, `failed` or `skipped`. A provider's step ends in one of them too:
paid, failed, skipped (it does not charge this car) or fallback (the window ended). The providers' own words
(ChargeAnswer.status: paid | failed | pending | skip | absent) are mapped onto it in `ANSWERS`.

The machine follows each attempt it knows in one `Mode` (charging through the flow, polling while the car
waits, reconciling after, one late check for an order booked as not charged); `handle` dispatches on
(mode, event type) through `_TABLE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Callable, Literal, Mapping, Optional, Sequence, Union

from lanectl.core import effects as fx
from lanectl.core.events import PaymentConfirmed, PaymentFallback


class Status(str, Enum):
    """An attempt's status; the values are the strings payment_attempts.status stores (no migration)."""

    CHARGING = "charging"
    PENDING = "pending"
    FALLBACK = "fallback"
    PAID = "paid"
    FAILED = "failed"
    SKIPPED = "skipped"


OPEN = (Status.CHARGING, Status.PENDING, Status.FALLBACK)  # may still turn into money: polled and reconciled
# A result can still arrive for these: the driver pays the same order by scanning the exit QR after the
# provider skipped the car (no sign-free wallet) or after a failed charge. A paid result is money for this car.
PAYABLE = OPEN + (Status.SKIPPED, Status.FAILED)
# The detail of a `fallback` attempt whose charge never had an answer (it keeps "never answered" across the
# window's end and a restart without another status).
UNANSWERED = "charge never answered"


@dataclass(frozen=True)
class Attempt:
    """One payment_attempts row."""

    id: int
    record_id: str
    lane_id: str
    provider: str
    order_ref: str
    amount_fen: int
    status: str  # a Status value
    created_ts: float
    trade_no: str = ""
    paid_fen: int = 0
    method: str = ""
    delivered: bool = False
    detail: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Attempt":
        return cls(row["id"], row["record_id"], row["lane_id"], row["provider"], row["order_ref"], row["amount_fen"],
                   row["status"], row["created_ts"], row["trade_no"], row["paid_fen"], row["method"],
                   bool(row["delivered"]), row["detail"])

    @property
    def state(self) -> Status:
        return Status(self.status)

    @property
    def open(self) -> bool:
        return self.state in OPEN


def never_answered(attempt: Attempt) -> bool:
    """The charge went out and the platform never answered it (it may never have arrived)."""
    return attempt.state is Status.CHARGING or (attempt.state is Status.FALLBACK and UNANSWERED in attempt.detail)


@dataclass(frozen=True)
class ChargeAnswer:
    """What a provider made of one call. Only "paid" can ever lead to an OPEN. "absent" (queries only): the
    platform says it has no order under this reference — for now."""

    status: Literal["paid", "failed", "pending", "skip", "absent"]
    trade_no: str = ""
    amount_fen: Optional[int] = None  # what the platform says it took (None: it did not say)
    method: str = ""
    detail: str = ""
    answered: bool = field(default=True, compare=False)  # False: no usable answer (timeout, 5xx) — we know nothing


# The providers' words in the one vocabulary ("absent" is no status: it is counted, see _on_absent).
ANSWERS: Mapping[str, Status] = {"paid": Status.PAID, "failed": Status.FAILED, "pending": Status.PENDING,
                                 "skip": Status.SKIPPED}


@dataclass(frozen=True)
class SettlementTiming:
    charge_timeout_s: float = 5.0  # one provider call; no answer in time = pending, never paid
    poll_interval_s: float = 2.0  # while the car waits (Bolink SDK: every 2 s)
    window_s: float = 120.0  # then fall back to scan-to-pay / the booth (Bolink SDK: stop after 2 min)
    reconcile_interval_s: float = 30.0  # after the window, in the background
    reconcile_for_s: float = 3600.0  # give up reconciling an attempt this long after it started
    storage_retry_s: float = 2.0  # a write the flow needs, refused because storage is down: tried again after this
    absent_checks: int = 3  # "no such order" for a never-answered charge this many times ...
    absent_span_s: float = 10.0  # ... over at least this long: not charged
    absent_late_check_s: float = 60.0  # then one last query this long after, for a payment made regardless


# ----------------------------------------------------------------------------------------------------- state

class Mode(str, Enum):
    """What the machine is doing with one attempt."""

    CHARGING = "charging"  # the flow's precheck or charge (the car waits)
    POLLING = "polling"  # the flow waits for a pending charge (the car waits)
    RECONCILING = "reconciling"  # the car no longer waits on it: asked now and then until it settles
    LATE_CHECK = "late_check"  # booked as not charged: one last query


class Timer(str, Enum):
    CALL = "call"  # the provider call out has had its time
    POLL = "poll"  # the next query while the car waits (or the window's end, whichever comes first)
    RECONCILE = "reconcile"  # the next round of reconciliation
    QUERY = "query"  # an "absent" order's query, spread over absent_span_s
    LATE_CHECK = "late_check"


class Absence(str, Enum):
    """What the platform said about the order's existence."""

    UNKNOWN = "unknown"
    EXISTS = "exists"  # it has the order: "no such order" later means nothing
    COUNTING = "counting"  # it said it has none: counted toward "not charged"


CallKind = Literal["precheck", "charge", "code", "query"]


@dataclass(frozen=True)
class ProviderSpec:
    """One of the lane's providers as the machine needs it (the driver builds it from the adapter)."""

    name: str
    order_ref: str
    precheck: bool = False
    takes_code: bool = False


@dataclass(frozen=True)
class Track:
    """An attempt the machine follows."""

    attempt: Attempt
    mode: Mode
    deadlines: tuple[tuple[Timer, datetime], ...] = ()
    call: int = 0  # the id of the provider call out (0: none)
    call_kind: str = ""
    settling: str = ""  # a Settle is out: "result" | "absent" | "late" (what it was for)
    settle_detail: str = ""  # the detail of the answer being settled (the fallback reason uses it whole)
    absence: Absence = Absence.UNKNOWN
    absent_count: int = 0
    absent_first: Optional[datetime] = None
    absent_last: Optional[datetime] = None
    query_ok: bool = True  # polling: the query is due when the POLL timer fires (not only the window's end)

    def deadline(self, timer: Timer) -> Optional[datetime]:
        return next((t for n, t in self.deadlines if n is timer), None)


@dataclass(frozen=True)
class Flow:
    """The car waits: the lane's providers are tried in order."""

    providers: tuple[ProviderSpec, ...]
    previous: tuple[Attempt, ...] = ()  # this exit's attempts when the flow began
    index: int = 0
    why: tuple[str, ...] = ()  # what each provider said, for the fallback's reason
    code: str = ""  # a scanned payment code: one charge through providers[0]
    current: int = 0  # the attempt id the car waits on (0: none yet)


@dataclass(frozen=True)
class SettlementState:
    """One exit record's settlement: the flow while the car waits, and every attempt still followed."""

    record_id: str
    lane_id: str
    order: Optional[fx.StartSettlement] = None
    flow: Optional[Flow] = None
    tracks: tuple[Track, ...] = ()
    dormant: tuple[Attempt, ...] = ()  # open attempts known but not followed (reconciled when the flow stops)
    calls: int = 0  # call ids handed out

    @property
    def settling(self) -> bool:
        return self.flow is not None

    @property
    def idle(self) -> bool:
        """Nothing left to do: the driver may forget this record."""
        return self.flow is None and not self.tracks

    def track(self, attempt_id: int) -> Optional[Track]:
        return next((t for t in self.tracks if t.attempt.id == attempt_id), None)

    def next_deadline(self) -> Optional[datetime]:
        return min((when for t in self.tracks for _, when in t.deadlines), default=None)

    def count(self, mode: Mode) -> int:
        return sum(1 for t in self.tracks if t.mode is mode)


# ---------------------------------------------------------------------------------------------------- events

@dataclass(frozen=True)
class Begin:
    """The lane asked for a settlement (or a restart resumes it): try the providers from the first."""

    order: fx.StartSettlement
    providers: tuple[ProviderSpec, ...]
    previous: tuple[Attempt, ...] = ()  # this exit's attempts, as stored


@dataclass(frozen=True)
class BeginCode:
    """The driver scanned a payment code: it replaces the flow with one charge through the first provider
    that takes codes."""

    order: Optional[fx.StartSettlement]
    providers: tuple[ProviderSpec, ...]
    code: str


@dataclass(frozen=True)
class Stop:
    """The car stopped waiting on the flow (it left another way, or pays by code): reconcile what is open."""


@dataclass(frozen=True)
class Reconcile:
    """After a restart: attempts still open at a provider for an exit with no flow."""

    order: Optional[fx.StartSettlement]
    attempts: tuple[Attempt, ...]
    known: tuple[str, ...]  # provider names configured now


@dataclass(frozen=True)
class AttemptCreated:
    attempt: Attempt


@dataclass(frozen=True)
class Answered:
    """A provider call came back: `answer` (None from a precheck: go on and charge), or `unavailable`: no
    usable answer (5xx, garbage) with its reason."""

    call: int
    answer: Optional[ChargeAnswer] = None
    unavailable: Optional[str] = None


@dataclass(frozen=True)
class Settled:
    """The store's compare-and-set of a Settle effect: `won` for the call that moved the row; `row` as now."""

    attempt_id: int
    won: bool
    row: Attempt
    # a paid one was confirmed to the lane in the lane's own step, with the compare-and-set (service/claims.py):
    # no confirmation is sent again
    confirmed: bool = False


@dataclass(frozen=True)
class SettledElsewhere:
    """A callback settled one of this exit's attempts (its confirmation was emitted where it won)."""

    row: Attempt


@dataclass(frozen=True)
class Tick:
    """A deadline may be due."""


Input = Union[Begin, BeginCode, Stop, Reconcile, AttemptCreated, Answered, Settled, SettledElsewhere, Tick]


# --------------------------------------------------------------------------------------------------- effects

@dataclass(frozen=True)
class NewAttempt:
    """Write the attempt ahead of the provider call; answered with AttemptCreated."""

    record_id: str
    lane_id: str
    provider: str
    order_ref: str
    amount_fen: int


@dataclass(frozen=True)
class CallProvider:
    """precheck | charge | code (with the scanned code) | query; answered with Answered(call)."""

    call: int
    kind: CallKind
    attempt: Attempt
    code: str = ""


@dataclass(frozen=True)
class CancelCall:
    call: int


@dataclass(frozen=True)
class MarkAttempt:
    attempt_id: int
    status: Status
    detail: str
    only_from: tuple[Status, ...] = OPEN


@dataclass(frozen=True)
class SettleAttempt:
    """Paid or failed, once (compare-and-set in the store); answered with Settled."""

    attempt_id: int
    paid: bool
    trade_no: str
    amount_fen: int
    method: str
    detail: str


@dataclass(frozen=True)
class ToLane:
    lane_id: str
    event: Union[PaymentConfirmed, PaymentFallback]


Effect = Union[NewAttempt, CallProvider, CancelCall, MarkAttempt, SettleAttempt, ToLane, fx.Log]


# ------------------------------------------------------------------------------------------- pure decisions

def amount_of(attempt: Attempt, answer: ChargeAnswer) -> int:
    # A platform that says "paid" without an amount took what we asked it to charge.
    return attempt.amount_fen if answer.amount_fen is None else answer.amount_fen


def confirmation(attempt: Attempt, trade_no: str, amount_fen: int, method: str) -> ToLane:
    # trade_no doubles as the payment's reference; the order ref keeps a sync "paid" without one traceable
    return ToLane(attempt.lane_id, PaymentConfirmed(attempt.record_id, attempt.provider, amount_fen,
                                                    trade_no or attempt.order_ref, method))


def settle_effect(attempt: Attempt, answer: ChargeAnswer) -> SettleAttempt:
    paid = ANSWERS.get(answer.status) is Status.PAID
    return SettleAttempt(attempt.id, paid, answer.trade_no, amount_of(attempt, answer) if paid else 0, answer.method,
                         answer.detail)


def on_won(attempt: Attempt, settle: SettleAttempt) -> list[Effect]:
    """What a won compare-and-set says to the world: a payment is confirmed to the lane (once)."""
    if not settle.paid:
        return []
    return [fx.Log("info", f"settlement {attempt.record_id}: {attempt.provider} paid {settle.amount_fen} fen "
                           f"(trade {settle.trade_no})"),
            confirmation(attempt, settle.trade_no, settle.amount_fen, settle.method)]


def settled_row(attempt: Attempt, settle: SettleAttempt) -> Attempt:
    """The row as a won compare-and-set left it."""
    return replace(attempt, status=(Status.PAID if settle.paid else Status.FAILED).value, trade_no=settle.trade_no,
                   paid_fen=settle.amount_fen, method=settle.method, detail=settle.detail[:500])


def redelivery(attempt: Attempt, settlement_open: bool) -> list[Effect]:
    """After a restart: a confirmed payment the lane never committed (its settlement still open) again."""
    if attempt.state is not Status.PAID or attempt.delivered or not settlement_open:
        return []
    return [fx.Log("info", f"settlement {attempt.record_id}: re-delivering {attempt.provider} payment "
                           f"{attempt.trade_no} after a restart"),
            confirmation(attempt, attempt.trade_no, attempt.paid_fen, attempt.method)]


Outcome = Literal["accepted", "duplicate", "unknown_order", "mismatch"]  # the reply to a platform's callback


@dataclass(frozen=True)
class Verdict:
    """What a callback's result means: `outcome` now, or the compare-and-set to try (`settle`: accepted when
    won, duplicate when lost); `effects` in any case."""

    outcome: Optional[Outcome]
    attempt: Optional[Attempt] = None
    settle: Optional[SettleAttempt] = None
    effects: tuple[Effect, ...] = ()


def judge_result(provider: str, order_ref: str, attempts: Sequence[Attempt], answer: ChargeAnswer,
                 lane_id: Optional[str]) -> Verdict:
    """A verified result from a provider for one of our orders (all attempts under its reference, oldest
    first). A payment is confirmed at most once; a second, different payment is passed on for the books."""
    if not attempts:
        return Verdict("unknown_order", effects=(fx.Log("warning", f"{provider} result for unknown order {order_ref} "
                                                                   f"({answer.status}): ignored"),))
    attempt = next((a for a in reversed(attempts) if a.open),
                   next((a for a in reversed(attempts) if a.state in PAYABLE), attempts[-1]))
    if lane_id is not None and lane_id != attempt.lane_id:
        return Verdict("mismatch", attempt, effects=(fx.Log(
            "error", f"{provider} result for order {order_ref} names lane {lane_id}, but the charge "
                     f"is lane {attempt.lane_id}'s: ignored"),))
    said = ANSWERS.get(answer.status)
    if said not in (Status.PAID, Status.FAILED):
        return Verdict("accepted", attempt)  # pending: nothing to record
    if said is Status.FAILED and not attempt.open:
        return Verdict("duplicate", attempt)  # a failure changes nothing once the attempt has ended
    if attempt.state is Status.PAID:
        if answer.trade_no not in ("", attempt.trade_no):
            # A second, different payment for one charge: real money, kept on the books for a refund.
            return Verdict("accepted", attempt, effects=(
                fx.Log("error", f"{provider}: second payment {answer.trade_no} for order {order_ref} "
                                f"(first {attempt.trade_no}): recorded for refund"),
                confirmation(attempt, answer.trade_no, amount_of(attempt, answer), answer.method)))
        return Verdict("duplicate", attempt)
    return Verdict(None, attempt, settle=settle_effect(attempt, answer))


# ----------------------------------------------------------------------------------------------- the machine

Step = tuple[SettlementState, list[Effect]]


def handle(state: SettlementState, event: Input, now: datetime, timing: SettlementTiming) -> Step:
    """One event in, the new state and the effects out. Events for an attempt the machine no longer follows
    (a stale answer, a callback after the fact) change nothing."""
    out: list[Effect] = []
    if isinstance(event, Tick):
        state = _expire(state, now, timing, out)
    elif type(event) in _RECORD_EVENTS:
        state = _RECORD_EVENTS[type(event)](state, event, now, timing, out)
    else:
        track = _track_for(state, event)
        if track is None and isinstance(event, SettledElsewhere):  # settled: no reason left to reconcile it
            state = replace(state, dormant=tuple(a for a in state.dormant if a.id != event.row.id))
        elif track is not None:
            handler = _TABLE.get((track.mode, type(event)))
            if handler is not None:
                state = handler(state, track, event, now, timing, out)
    return state, out


def _track_for(state: SettlementState, event: Input) -> Optional[Track]:
    if isinstance(event, Answered):
        return next((t for t in state.tracks if t.call == event.call and event.call), None)
    if isinstance(event, Settled):
        return state.track(event.attempt_id)
    if isinstance(event, SettledElsewhere):
        return state.track(event.row.id)
    return None


# --- helpers on the state ---------------------------------------------------------------------------------

def _at(now: datetime, ts: float) -> datetime:
    """A stored unix timestamp as a time on `now`'s clock."""
    return now + timedelta(seconds=ts - now.timestamp())


def _put(state: SettlementState, track: Track) -> SettlementState:
    others = tuple(t for t in state.tracks if t.attempt.id != track.attempt.id)
    return replace(state, tracks=others + (track,))


def _drop(state: SettlementState, track: Track) -> SettlementState:
    return replace(state, tracks=tuple(t for t in state.tracks if t.attempt.id != track.attempt.id))


def _set(track: Track, timer: Timer, when: datetime) -> Track:
    return replace(track, deadlines=tuple((n, t) for n, t in track.deadlines if n is not timer) + ((timer, when),))


def _clear(track: Track, *timers: Timer) -> Track:
    return replace(track, deadlines=tuple((n, t) for n, t in track.deadlines if n not in timers))


def _with_status(track: Track, status: Status, detail: str) -> Track:
    return replace(track, attempt=replace(track.attempt, status=status.value, detail=detail))


def _call(state: SettlementState, track: Track, kind: CallKind, until: datetime, out: list[Effect],
          code: str = "") -> SettlementState:
    call = state.calls + 1
    out.append(CallProvider(call, kind, track.attempt, code))
    track = _set(replace(track, call=call, call_kind=kind), Timer.CALL, until)
    return _put(replace(state, calls=call), track)


def _window_end(track: Track, now: datetime, timing: SettlementTiming) -> datetime:
    return _at(now, track.attempt.created_ts + timing.window_s)


def _absent_spread(timing: SettlementTiming) -> float:
    return timing.absent_span_s / max(timing.absent_checks - 1, 1)


def _absent_wait(track: Track, now: datetime, timing: SettlementTiming) -> float:
    """How long until the next "no such order" query is due (0: now, or not in that phase). Keeps the spread
    across the window's end, where the last poll and the reconciler's first query meet."""
    if track.absence is not Absence.COUNTING or track.absent_last is None:
        return 0.0
    due = track.absent_last + timedelta(seconds=_absent_spread(timing))
    return max(0.0, (due - now).total_seconds())


def _interval(track: Track, interval: float, timing: SettlementTiming) -> float:
    """Queries of an order the platform says it does not have are spread over absent_span_s."""
    if track.absence is not Absence.COUNTING:
        return interval
    return max(interval, _absent_spread(timing))


def _flow_track(state: SettlementState) -> Optional[Track]:
    return state.track(state.flow.current) if state.flow is not None and state.flow.current else None


# --- record events ------------------------------------------------------------------------------------------

def _on_begin(state: SettlementState, ev: Begin, now: datetime, timing: SettlementTiming,
              out: list[Effect]) -> SettlementState:
    if state.flow is not None or not ev.providers:
        return state  # one flow per exit; a lane without providers settles nothing here
    followed = {t.attempt.id for t in state.tracks}
    dormant = tuple(a for a in ev.previous if a.open and a.id not in followed)
    state = replace(state, order=ev.order, flow=Flow(ev.providers, ev.previous), dormant=dormant)
    return _next_provider(state, now, timing, out)


def _on_begin_code(state: SettlementState, ev: BeginCode, now: datetime, timing: SettlementTiming,
                   out: list[Effect]) -> SettlementState:
    # the driver chose to pay by scan: that charge replaces the flow (whose attempts are reconciled)
    state = _on_stop(state, Stop(), now, timing, out)
    spec = next((p for p in ev.providers if p.takes_code), None)
    if ev.order is None or spec is None:
        out.append(ToLane(state.lane_id, PaymentFallback(state.record_id,
                                                         "no provider here takes a scanned payment code")))
        return state
    state = replace(state, order=ev.order, flow=Flow((spec,), code=ev.code))
    return _new_attempt(state, spec, out)


def _on_stop(state: SettlementState, ev: Stop, now: datetime, timing: SettlementTiming,
             out: list[Effect]) -> SettlementState:
    if state.flow is None:
        return state
    current = _flow_track(state)
    state = replace(state, flow=None)
    if current is not None:
        if current.call:
            out.append(CancelCall(current.call))  # the car no longer waits on it; the row says where it stands
        state = _reconcile(state, replace(_clear(current, Timer.CALL, Timer.POLL), call=0, call_kind=""), now,
                           timing, out)
    for attempt in state.dormant:
        if state.track(attempt.id) is None:
            state = _reconcile(state, Track(attempt, Mode.RECONCILING), now, timing, out)
    return replace(state, dormant=())


def _on_reconcile(state: SettlementState, ev: Reconcile, now: datetime, timing: SettlementTiming,
                  out: list[Effect]) -> SettlementState:
    if ev.order is None:
        return state
    state = replace(state, order=ev.order)
    for attempt in ev.attempts:
        if attempt.open and attempt.provider in ev.known and state.track(attempt.id) is None:
            state = _reconcile(state, Track(attempt, Mode.RECONCILING), now, timing, out)
    return state


def _on_created(state: SettlementState, ev: AttemptCreated, now: datetime, timing: SettlementTiming,
                out: list[Effect]) -> SettlementState:
    if state.flow is None:
        return state
    flow = replace(state.flow, current=ev.attempt.id)
    state = replace(state, flow=flow)
    track = Track(ev.attempt, Mode.CHARGING)
    spec = flow.providers[flow.index]
    if flow.code:
        return _call(state, track, "code", now + timedelta(seconds=timing.charge_timeout_s), out, flow.code)
    if spec.precheck:
        # bounded by what is left of the window only: a slow precheck is never booked as a charge in doubt
        return _call(state, track, "precheck", max(_window_end(track, now, timing), now), out)
    return _call(state, track, "charge", now + timedelta(seconds=timing.charge_timeout_s), out)


# --- the flow: providers in order ---------------------------------------------------------------------------

def _new_attempt(state: SettlementState, spec: ProviderSpec, out: list[Effect]) -> SettlementState:
    assert state.order is not None
    # written ahead of the charge: while storage is down no charge is made, the flow waits
    out.append(NewAttempt(state.record_id, state.lane_id, spec.name, spec.order_ref, state.order.due_fen))
    return state


def _next_provider(state: SettlementState, now: datetime, timing: SettlementTiming,
                   out: list[Effect]) -> SettlementState:
    flow = state.flow
    assert flow is not None
    while flow.index < len(flow.providers):
        spec = flow.providers[flow.index]
        stored = [a for a in flow.previous if (a.provider, a.order_ref) == (spec.name, spec.order_ref)]
        attempt = stored[-1] if stored else None
        followed = state.track(attempt.id) if attempt is not None else None
        if followed is not None:
            attempt = followed.attempt  # fresher than the row read when the flow began
        if attempt is not None and attempt.state in (Status.FAILED, Status.SKIPPED):
            why = f"{spec.name}: {attempt.detail or attempt.status}"
            flow = replace(flow, index=flow.index + 1, why=flow.why + (why,))
            continue
        if attempt is not None and attempt.state is Status.PAID:
            return replace(state, flow=None)  # confirmed already (re-delivered after a restart if uncommitted)
        state = replace(state, flow=flow)
        if attempt is None:
            return _new_attempt(state, spec, out)
        # resumed after a restart: the charge may have reached the platform, only wait for it
        track = state.track(attempt.id) or Track(attempt, Mode.POLLING)
        track = replace(_clear(track, Timer.RECONCILE, Timer.QUERY), mode=Mode.POLLING)
        state = replace(state, flow=replace(flow, current=attempt.id),
                        dormant=tuple(a for a in state.dormant if a.id != attempt.id))
        if track.call:  # a reconciling query is out: its answer is taken as the poll's
            return _put(state, track)
        return _poll(state, track, now, timing, out)
    out.append(ToLane(state.lane_id, PaymentFallback(state.record_id,
                                                     "; ".join(flow.why) or "no provider could charge this car")))
    return replace(state, flow=None)


def _provider_done(state: SettlementState, track: Track, status: Status, detail: str, now: datetime,
                   timing: SettlementTiming, out: list[Effect]) -> SettlementState:
    """The provider the car waited on came to `status` (paid, failed, skipped, fallback)."""
    flow = state.flow
    if flow is None or flow.current != track.attempt.id:
        return state
    name = track.attempt.provider
    if status is Status.PAID:
        return replace(state, flow=None)
    if status is Status.FALLBACK:
        reason = (f"{name}: scanned code payment not settled" if flow.code
                  else f"{name} did not settle within {timing.window_s:g} s")
        out.append(ToLane(state.lane_id, PaymentFallback(state.record_id, reason)))
        return replace(state, flow=None)
    if flow.code:
        out.append(ToLane(state.lane_id, PaymentFallback(state.record_id, f"{name}: scanned code refused: "
                                                                          f"{detail or 'no reason given'}")))
        return replace(state, flow=None)
    skipped = status is Status.SKIPPED
    out.append(fx.Log("info", f"settlement {state.record_id}: {name} "
                              f"{'does not charge this car' if skipped else 'failed'}: {detail}"))
    why = (f"{name}: {detail or 'does not charge this car'}" if skipped
           else f"{name} failed" + (f": {detail}" if detail else ""))
    state = replace(state, flow=replace(flow, index=flow.index + 1, why=flow.why + (why,), current=0))
    return _next_provider(state, now, timing, out)


def _finish(state: SettlementState, track: Track, now: datetime, timing: SettlementTiming,
            out: list[Effect]) -> SettlementState:
    """The attempt is settled (paid, failed or skipped): tell the flow if the car waited on it, and stop
    following it unless a late check is due."""
    status, detail = track.attempt.state, (track.settle_detail or track.attempt.detail)
    keep = track.mode is Mode.LATE_CHECK and track.deadline(Timer.LATE_CHECK) is not None
    state = _put(state, replace(track, settle_detail="")) if keep else _drop(state, track)
    return _provider_done(state, track, status, detail, now, timing, out)


# --- charging -----------------------------------------------------------------------------------------------

def _on_charging_answer(state: SettlementState, track: Track, ev: Answered, now: datetime,
                        timing: SettlementTiming, out: list[Effect]) -> SettlementState:
    kind = track.call_kind
    track = replace(_clear(track, Timer.CALL), call=0, call_kind="")
    if kind == "precheck":
        return _precheck_answer(state, track, ev, now, timing, out)
    answer = ev.answer if ev.unavailable is None else ChargeAnswer("pending", detail=ev.unavailable, answered=False)
    assert answer is not None
    return _charge_answer(state, track, answer, now, timing, out)


def _precheck_answer(state: SettlementState, track: Track, ev: Answered, now: datetime,
                     timing: SettlementTiming, out: list[Effect]) -> SettlementState:
    if ev.unavailable is not None:
        return _skip(state, track, f"precheck unanswered: {ev.unavailable}", now, timing, out)
    if ev.answer is None:
        return _call(state, track, "charge", now + timedelta(seconds=timing.charge_timeout_s), out)
    if ev.answer.status != "skip":  # a precheck never pays, fails or leaves anything pending
        out.append(fx.Log("error", f"settlement {state.record_id}: {track.attempt.provider} precheck answered "
                                   f"{ev.answer.status}: taken as a skip"))
    return _skip(state, track, ev.answer.detail, now, timing, out)


def _skip(state: SettlementState, track: Track, detail: str, now: datetime, timing: SettlementTiming,
          out: list[Effect]) -> SettlementState:
    out.append(MarkAttempt(track.attempt.id, Status.SKIPPED, detail))
    return _finish(state, _with_status(track, Status.SKIPPED, detail), now, timing, out)


def _charge_answer(state: SettlementState, track: Track, answer: ChargeAnswer, now: datetime,
                   timing: SettlementTiming, out: list[Effect]) -> SettlementState:
    said = ANSWERS.get(answer.status)
    if said is Status.SKIPPED:
        return _skip(state, track, answer.detail, now, timing, out)
    if said in (Status.PAID, Status.FAILED):
        return _settle(state, track, answer, "result", out)
    # an answer (INIT, "paying") makes it pending; no answer leaves it charging: it may never have arrived
    status = Status.PENDING if answer.answered else Status.CHARGING
    out.append(MarkAttempt(track.attempt.id, status, answer.detail, only_from=(Status.CHARGING,)))
    if track.attempt.state is Status.CHARGING:
        track = _with_status(track, status, answer.detail)
    return _poll(state, replace(track, mode=Mode.POLLING), now, timing, out)


def _on_call_timeout(state: SettlementState, track: Track, now: datetime, timing: SettlementTiming,
                     out: list[Effect]) -> SettlementState:
    kind = track.call_kind
    out.append(CancelCall(track.call))
    track = replace(_clear(track, Timer.CALL), call=0, call_kind="")
    if kind == "precheck":
        return _skip(state, track, f"precheck not answered within the {timing.window_s:g} s window", now, timing, out)
    answer = ChargeAnswer("pending", detail=f"no answer within {timing.charge_timeout_s:g} s", answered=False)
    if kind == "query":
        return _query_answer(state, track, answer, now, timing, out)
    return _charge_answer(state, track, answer, now, timing, out)


# --- polling while the car waits ------------------------------------------------------------------------------

def _poll(state: SettlementState, track: Track, now: datetime, timing: SettlementTiming,
          out: list[Effect]) -> SettlementState:
    """Wait for the next query (or the window's end): a callback settling the attempt ends it at once."""
    end = _window_end(track, now, timing)
    left = (end - now).total_seconds()
    if left <= 0:
        return _window_over(state, track, now, timing, out)
    # an order the platform says it does not have is asked again only when its spread is due; the window's
    # end is then no reason to ask early (the reconciler goes on at the same spread)
    due = max(_absent_wait(track, now, timing), timing.poll_interval_s)
    query_ok = track.absence is not Absence.COUNTING or due <= left
    track = _set(replace(track, query_ok=query_ok), Timer.POLL, min(now + timedelta(seconds=due), end))
    return _put(state, track)


def _on_poll_due(state: SettlementState, track: Track, now: datetime, timing: SettlementTiming,
                 out: list[Effect]) -> SettlementState:
    if track.query_ok:
        return _call(state, track, "query", now + timedelta(seconds=timing.charge_timeout_s), out)
    return _poll(state, track, now, timing, out)


def _window_over(state: SettlementState, track: Track, now: datetime, timing: SettlementTiming,
                 out: list[Effect]) -> SettlementState:
    out.append(MarkAttempt(track.attempt.id, Status.FALLBACK, f"settlement window ended; {UNANSWERED}",
                           only_from=(Status.CHARGING,)))
    out.append(MarkAttempt(track.attempt.id, Status.FALLBACK, "settlement window ended",
                           only_from=(Status.PENDING,)))
    if track.attempt.state is Status.CHARGING:
        track = _with_status(track, Status.FALLBACK, f"settlement window ended; {UNANSWERED}")
    elif track.attempt.state is Status.PENDING:
        track = _with_status(track, Status.FALLBACK, "settlement window ended")
    state = _reconcile(state, replace(_clear(track, Timer.POLL), mode=Mode.RECONCILING), now, timing, out)
    return _provider_done(state, track, Status.FALLBACK, "", now, timing, out)


# --- reconciling after the car stopped waiting ----------------------------------------------------------------

def _reconcile(state: SettlementState, track: Track, now: datetime, timing: SettlementTiming,
               out: list[Effect]) -> SettlementState:
    """One round: give up past the horizon, else query (once an "absent" order's spread is due)."""
    track = replace(track, mode=Mode.RECONCILING)
    horizon = _at(now, track.attempt.created_ts + timing.reconcile_for_s)
    if now >= horizon:
        out.append(MarkAttempt(track.attempt.id, Status.FAILED, "not settled: reconciliation gave up"))
        out.append(fx.Log("warning", f"settlement {track.attempt.record_id}: {track.attempt.provider} charge "
                                     f"{track.attempt.order_ref} never settled; reconciliation gave up"))
        return _drop(state, track)
    wait = _absent_wait(track, now, timing)
    if wait > 0:
        return _put(state, _set(track, Timer.QUERY, now + timedelta(seconds=wait)))
    return _call(state, track, "query", now + timedelta(seconds=timing.charge_timeout_s), out)


def _on_query_due(state: SettlementState, track: Track, now: datetime, timing: SettlementTiming,
                  out: list[Effect]) -> SettlementState:
    """A query whose time has come (a reconcile round, the late check): asked now, bounded by the call timeout."""
    return _call(state, track, "query", now + timedelta(seconds=timing.charge_timeout_s), out)


def _on_query_answer(state: SettlementState, track: Track, ev: Answered, now: datetime,
                     timing: SettlementTiming, out: list[Effect]) -> SettlementState:
    track = replace(_clear(track, Timer.CALL), call=0, call_kind="")
    answer = ev.answer if ev.unavailable is None else ChargeAnswer("pending", detail=ev.unavailable, answered=False)
    assert answer is not None
    return _query_answer(state, track, answer, now, timing, out)


def _query_answer(state: SettlementState, track: Track, answer: ChargeAnswer, now: datetime,
                  timing: SettlementTiming, out: list[Effect]) -> SettlementState:
    said = ANSWERS.get(answer.status)
    if said in (Status.PAID, Status.FAILED):
        return _settle(state, track, answer, "result", out)
    if answer.status == "absent":
        return _on_absent(state, track, answer, now, timing, out)
    if answer.answered:
        track = replace(track, absence=Absence.EXISTS)  # the platform has the order
    return _go_on(state, track, now, timing, out)


def _go_on(state: SettlementState, track: Track, now: datetime, timing: SettlementTiming,
           out: list[Effect]) -> SettlementState:
    """Not settled by that answer: the next poll, or the next round of reconciliation."""
    if track.mode is Mode.POLLING:
        return _poll(state, track, now, timing, out)
    if not track.attempt.open:
        return _drop(state, track)
    wait = _interval(track, timing.reconcile_interval_s, timing)
    return _put(state, _set(track, Timer.RECONCILE, now + timedelta(seconds=wait)))


def _on_absent(state: SettlementState, track: Track, answer: ChargeAnswer, now: datetime,
               timing: SettlementTiming, out: list[Effect]) -> SettlementState:
    """ "No such order" means something only for a charge that never got an answer: asked `absent_checks`
    times over at least `absent_span_s`, it is booked as not charged."""
    if track.absence is Absence.EXISTS:
        return _go_on(state, track, now, timing, out)
    if not never_answered(track.attempt):
        return _go_on(state, replace(track, absence=Absence.EXISTS), now, timing, out)
    count = track.absent_count + 1
    first = track.absent_first if track.absence is Absence.COUNTING and track.absent_first else now
    track = replace(track, absence=Absence.COUNTING, absent_count=count, absent_first=first, absent_last=now)
    spread = (now - first).total_seconds()
    # (a timer may wake a hair early against the wall clock: 10 ms are not worth another spread of waiting)
    if count < timing.absent_checks or spread < timing.absent_span_s - 0.01:
        return _go_on(state, track, now, timing, out)
    detail = (f"not charged: {track.attempt.provider} has no order {track.attempt.order_ref} ({count} answers over "
              f"{spread:.0f} s; the charge was never answered)" + (f": {answer.detail}" if answer.detail else ""))
    return _settle(state, track, ChargeAnswer("failed", detail=detail), "absent", out)


# --- settling (the store's compare-and-set decides) -----------------------------------------------------------

def _settle(state: SettlementState, track: Track, answer: ChargeAnswer, purpose: str,
            out: list[Effect]) -> SettlementState:
    out.append(settle_effect(track.attempt, answer))
    return _put(state, replace(track, settling=purpose, settle_detail=answer.detail))


def _on_settled(state: SettlementState, track: Track, ev: Settled, now: datetime, timing: SettlementTiming,
                out: list[Effect]) -> SettlementState:
    purpose, detail = track.settling, track.settle_detail
    track = replace(track, attempt=ev.row, settling="", settle_detail=detail if ev.won else "")
    if ev.won:
        track = replace(track, absence=Absence.UNKNOWN, absent_count=0, absent_first=None, absent_last=None)
        if ev.row.state is Status.PAID:
            said = on_won(ev.row, SettleAttempt(ev.row.id, True, ev.row.trade_no, ev.row.paid_fen, ev.row.method,
                                                ev.row.detail))
            out.extend(e for e in said if not (ev.confirmed and isinstance(e, ToLane)))
        if purpose == "absent":
            out.append(fx.Log("warning", f"settlement {state.record_id}: {detail}"))
            if timing.absent_late_check_s > 0:
                track = _set(replace(track, mode=Mode.LATE_CHECK), Timer.LATE_CHECK,
                             now + timedelta(seconds=timing.absent_late_check_s))
    if ev.row.open:  # (cannot be after a compare-and-set; kept for a store that says otherwise)
        return _go_on(state, track, now, timing, out)
    return _finish(state, track, now, timing, out)


def _on_settled_elsewhere(state: SettlementState, track: Track, ev: SettledElsewhere, now: datetime,
                          timing: SettlementTiming, out: list[Effect]) -> SettlementState:
    """A callback won: its word stands (an answer still out for this attempt is ignored when it lands)."""
    if track.settling:
        return state  # our own compare-and-set is out: its Settled (lost) brings the same row
    track = replace(track, attempt=ev.row, deadlines=(), call=0, call_kind="", mode=Mode.RECONCILING)
    if ev.row.open:
        return state
    return _finish(state, track, now, timing, out)


# --- the late check ---------------------------------------------------------------------------------------------

def _on_late_answer(state: SettlementState, track: Track, ev: Answered, now: datetime,
                    timing: SettlementTiming, out: list[Effect]) -> SettlementState:
    track = replace(_clear(track, Timer.CALL), call=0, call_kind="")
    if ev.answer is not None and ev.answer.status == "paid":
        out.append(fx.Log("error", f"settlement {state.record_id}: {track.attempt.provider} order "
                                   f"{track.attempt.order_ref} booked as not charged was paid after all: recorded"))
        return _settle(state, track, ev.answer, "late", out)
    return _drop(state, track)


# --- deadlines --------------------------------------------------------------------------------------------------

def _expire(state: SettlementState, now: datetime, timing: SettlementTiming, out: list[Effect]) -> SettlementState:
    for track in state.tracks:
        current = state.track(track.attempt.id)
        if current is None:
            continue
        for timer, when in current.deadlines:
            if when <= now:
                handler = _TIMERS.get((current.mode, timer))
                current = _clear(current, timer)
                state = _put(state, current)
                if handler is not None:
                    state = handler(state, current, now, timing, out)
                break  # one timer per attempt per tick: the next tick sees the new deadlines
    return state


TrackHandler = Callable[..., SettlementState]

_RECORD_EVENTS: Mapping[type, Callable[..., SettlementState]] = {
    Begin: _on_begin, BeginCode: _on_begin_code, Stop: _on_stop, Reconcile: _on_reconcile,
    AttemptCreated: _on_created,
}

# (mode, event type) -> handler; a pair not listed changes nothing (e.g. a stale answer)
_TABLE: Mapping[tuple[Mode, type], TrackHandler] = {
    (Mode.CHARGING, Answered): _on_charging_answer,
    (Mode.POLLING, Answered): _on_query_answer,
    (Mode.RECONCILING, Answered): _on_query_answer,
    (Mode.LATE_CHECK, Answered): _on_late_answer,
    **{(mode, Settled): _on_settled for mode in Mode},
    **{(mode, SettledElsewhere): _on_settled_elsewhere for mode in Mode},
}

# (mode, timer) -> handler when that deadline passes
_TIMERS: Mapping[tuple[Mode, Timer], TrackHandler] = {
    **{(mode, Timer.CALL): _on_call_timeout for mode in Mode},
    (Mode.POLLING, Timer.POLL): _on_poll_due,
    (Mode.RECONCILING, Timer.RECONCILE): _reconcile,
    (Mode.RECONCILING, Timer.QUERY): _on_query_due,
    (Mode.LATE_CHECK, Timer.LATE_CHECK): _on_query_due,
}
