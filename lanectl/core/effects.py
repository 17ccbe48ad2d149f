"""Effects the lane state machine asks for. The runner executes them: records first (one transaction), then
the wire. Plain immutable values."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Optional, Union

from lanectl.core.quotes import StayPrice

Authority = Literal["rules", "payment", "operator"]


class RecordStatus(StrEnum):
    """A lane record's status (stored as these words; uploads and the store's queries read them)."""

    INSIDE = "inside"  # entry: the car is in the lot
    REFUSED = "refused"  # entry: not let in; exit: the operator turned the car away (reason operator_refused:...)
    EXITED = "exited"  # entry: the car has left (its exit record let it out)
    SUPERSEDED = "superseded"  # entry: the same plate came in again, its exit was missed
    LEAVING = "leaving"  # exit: free or paid on the spot, the barrier opens
    AWAITING_PAYMENT = "awaiting_payment"  # exit: the car owes money, the barrier stays down
    PAID = "paid"  # exit: a provider's payment covered it
    RELEASED = "released"  # exit / release: an operator let the car out
    ABANDONED = "abandoned"  # exit: another car came to the lane, this one backed away


class StopReason(StrEnum):
    """Why the car no longer waits for a settlement (StopSettlement.outcome)."""

    PAID = "paid"
    RELEASED = "released"
    ABANDONED = "abandoned"
    REIDENTIFIED = "reidentified"  # a platform (or the operator's correction) named the stay: settled again
    REFUSED = "refused"  # the operator turned the car away: a payment arriving later is reconciled, flagged late


class Audit(StrEnum):
    """What the limit input said of an acknowledged barrier command (AuditAction.status)."""

    CONFIRMED = "confirmed"
    UNCONFIRMED = "unconfirmed"


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A lane record: an entry, an exit, a refused attempt or an operator release."""

    record_id: str
    lane_id: str
    kind: Literal["entry", "exit", "release"]
    plate: str
    color: str
    at: str  # ISO 8601 with offset
    status: str  # a RecordStatus
    vehicle_class: str = ""
    reason: str = ""
    entry_record_id: str = ""
    entered_at: str = ""
    total_fen: int = 0
    due_fen: int = 0
    paid_fen: int = 0
    detail: tuple[str, ...] = ()  # fee breakdown, match kind, flags
    image: str = ""  # the camera's picture of the car at this lane
    operator: str = ""  # an operator's release record: who (name) and their unix uid when known
    operator_uid: Optional[int] = None
    read_plate: str = ""  # the camera's reading when an operator corrected it (`plate` is then the corrected one)
    corrected_by: str = ""  # the operator who corrected it


@dataclass(frozen=True, slots=True)
class PatchRecord:
    record_id: str
    changes: tuple[tuple[str, Any], ...]  # (column, value) pairs, e.g. (("status", "exited"),)


@dataclass(frozen=True, slots=True)
class RecordPayment:
    record_id: str
    lane_id: str
    amount_fen: int
    method: str  # cash, operator, stored_value, or <provider>:<kind> (bolink:wallet, xft:signfree ...)
    reference: str  # operator name or trade_no
    at: str
    # "" a payment for the car it let out; "late": settled after the car had left another way (refund review);
    # "short": less than the car owed (kept, the car still owes the rest)
    flag: str = ""


@dataclass(frozen=True, slots=True)
class DebitBalance:
    """Take a stored-value car's fee from its balance (a ledger move, same transaction as the record)."""

    plate: str
    amount_fen: int
    record_id: str
    at: str


@dataclass(frozen=True, slots=True)
class StartSettlement:
    """Charge this exit through the lane's payment providers. Persistent: the order is written ahead (same
    transaction as the exit record) so a restarted daemon resumes it instead of forgetting or repeating it."""

    record_id: str
    lane_id: str
    plate: str
    color: str
    due_fen: int
    total_fen: int
    left_at: str  # ISO 8601, when the car reached the exit
    entered_at: str = ""
    entry_record_id: str = ""
    vehicle_class: str = ""
    entry_lane_id: str = ""
    image: str = ""  # the exit camera's picture of the car, and the entry camera's (paths; "" when none)
    entry_image: str = ""


@dataclass(frozen=True, slots=True)
class StopSettlement:
    """The car is no longer waiting for this record's payment (paid, released by the operator, backed away).
    Attempts still pending at a provider keep being reconciled in the background."""

    record_id: str
    outcome: str  # a StopReason


@dataclass(frozen=True, slots=True)
class ChargeByCode:
    """Charge the waiting car with the payment code the driver showed the booth scanner (Bolink sweepcode).
    Not written: a code is single-use and short-lived; after a crash the driver scans again."""

    record_id: str
    code: str


@dataclass(frozen=True, slots=True)
class OpenBarrier:
    """Written ahead into the barrier-action audit (same transaction as the state change), then sent."""

    action_id: str
    record_id: str
    authority: Authority
    reason: str
    operator: str = ""
    trade_no: str = ""
    operator_uid: Optional[int] = None  # the operator's unix uid (control socket), None for other authorities


@dataclass(frozen=True, slots=True)
class CloseBarrier:
    action_id: str
    record_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class AuditAction:
    """What the barrier's limit input said of a command the module acknowledged: `confirmed` (the up / down
    limit agreed) or `unconfirmed` (it never did, or the barrier reversed). Written with the state change."""

    action_id: str
    status: Audit
    note: str = ""


@dataclass(frozen=True, slots=True)
class Publish:
    """Upload this record to every configured destination (outbox rows, same transaction)."""

    record_id: str
    kind: Literal["entry", "exit", "release"]


@dataclass(frozen=True, slots=True)
class Display:
    """What the lane's board shows and says: which message (`key`) and its facts (`fields`: the plate, "" for a
    car without one; amounts in fen; the stay in minutes; the rules' own message). No words: the wording — the
    lot's templates and the lane's own sentences — lives with the display adapter
    (lanectl/adapters/board_wording.py)."""

    key: str  # welcome refused goodbye pay booth balance_short paid stored_value_paid pay_fallback paying fault
    fields: tuple[tuple[str, str | int], ...] = ()


@dataclass(frozen=True, slots=True)
class Log:
    """One structured line per decision (lane, plate, record, reason) or notable happening."""

    level: Literal["info", "warning", "error"]
    message: str
    fields: tuple[tuple[str, Any], ...] = field(default=())


# --- answers to requests (core/events.py REQUESTS): not written, the records say what happened --------------
@dataclass(frozen=True, slots=True)
class OperatorResult:
    """What the lane decided of an operator's release (OperatorOpen).

    outcome: released (an OPEN was decided for `record_id`, sent as `action_id`), already_opening (the arm is
    going up or up: nothing done), refused (no name or reason, a negative amount), not_handled (its records
    could not be written: nothing done — set by the runner, never by the lane). `money`: what the release's
    record says of its money (paid_fen when cash was taken, short_fen / over_fen against what a waiting car
    owed); `car_waited`: a car was waiting to pay (its record carries short / over)."""

    request_id: str
    outcome: Literal["released", "already_opening", "refused", "car_gone", "not_handled"]
    message: str
    record_id: str = ""
    action_id: str = ""
    operator: str = ""
    money: tuple[tuple[str, int], ...] = ()
    car_waited: bool = False


@dataclass(frozen=True, slots=True)
class QuoteResult:
    """What the lane answers to a price query (QuoteRequest). outcome: quoted (the car waiting here: `price`),
    let_out (the car asked about was just identified here and its stay is free: let out, nothing to pay),
    not_here (no car waiting here is the one asked about), not_handled (its records could not be written —
    set by the runner)."""

    request_id: str
    outcome: Literal["quoted", "let_out", "not_here", "not_handled"]
    price: Optional[StayPrice] = None


@dataclass(frozen=True, slots=True)
class PlatformEntryResult:
    """What the lane decided of a platform's plate-less entry (PlatformEntry): admitted (an OPEN was decided),
    or why not."""

    request_id: str
    admitted: bool
    message: str = ""
    record_id: str = ""


BoothOutcome = Literal["refused", "corrected", "admitted", "candidates", "no_match", "nothing_waiting",
                       "already_opening", "car_gone", "invalid", "not_handled"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A car inside that a corrected plate may mean (core.plates.match_entry's fuzzy candidates)."""

    plate: str
    entered_at: str  # ISO 8601
    lane_id: str


@dataclass(frozen=True, slots=True)
class BoothResult:
    """What the lane decided of a booth action (OperatorRefuse / OperatorCorrect / OperatorAdmit).

    outcome: refused (the car turned away), corrected (re-matched and re-priced: `due_fen`, opened when the
    rules let it out: `action_id`), admitted (an entry made, the barrier opening), candidates (the plate typed
    is no exact match: `candidates` lists what it may mean; nothing changed), no_match (no car inside under
    it; nothing changed), nothing_waiting (no car at the lane for this action), already_opening (the barrier
    is already up or going up for the car), car_gone (the car the operator acted on is no longer the one
    waiting: `message` says what became of it when the lane knows), invalid (no name, reason or plate; a
    plate that is no plate; an action this lane does not do), not_handled (set by the runner)."""

    request_id: str
    outcome: BoothOutcome
    message: str
    record_id: str = ""
    action_id: str = ""
    operator: str = ""
    plate: str = ""
    due_fen: Optional[int] = None
    candidates: tuple[Candidate, ...] = ()


Result = Union[OperatorResult, QuoteResult, PlatformEntryResult, BoothResult]
RESULTS = (OperatorResult, QuoteResult, PlatformEntryResult, BoothResult)

Effect = Union[NewRecord, PatchRecord, RecordPayment, DebitBalance, StartSettlement, StopSettlement, ChargeByCode,
               OpenBarrier, CloseBarrier, AuditAction, Publish, Display, Log, OperatorResult, QuoteResult,
               PlatformEntryResult, BoothResult]

PERSISTENT = (NewRecord, PatchRecord, RecordPayment, DebitBalance, StartSettlement, StopSettlement, OpenBarrier,
              CloseBarrier, AuditAction, Publish)


def is_persistent(effect: Effect) -> bool:
    return isinstance(effect, PERSISTENT)

