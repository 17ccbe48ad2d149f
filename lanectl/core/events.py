"""Events a lane reacts to. Plain immutable values; adapters build them, core/lane.py consumes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union


@dataclass(frozen=True, slots=True)
class PlateRead:
    """A plate recognition, already normalized at the edge (core.plates.normalize_plate)."""

    plate: str  # "" for a plate-less car
    color: str = ""  # blue, yellow, green, white, black, yellow-green, "" unknown
    confidence: int = 0  # 0..100
    source: str = ""  # device name, for the logs
    image: str = ""  # the camera's picture of this read, where it was saved (kept on the record)


@dataclass(frozen=True, slots=True)
class IoSnapshot:
    """The barrier controller's inputs after a change (every field is the current level)."""

    arming: bool  # arming loop occupied: a car stands in front of the barrier
    safety: bool  # safety loop occupied: a car is under the arm
    up_limit: bool  # arm fully raised
    down_limit: bool  # arm fully lowered
    anti_smash: bool = False  # radar / IR tripped


@dataclass(frozen=True, slots=True)
class DeviceFault:
    device: Literal["barrier", "plate_reader", "display", "scanner"]
    reason: str


@dataclass(frozen=True, slots=True)
class DeviceRecovered:
    device: Literal["barrier", "plate_reader", "display", "scanner"]


@dataclass(frozen=True, slots=True)
class CommandDone:
    """The device adapter's answer to an OpenBarrier / CloseBarrier effect."""

    action_id: str
    ok: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class OperatorOpen:
    """A booth operator releases the barrier: who and why are mandatory (audited). `operator_uid` is the
    caller's unix uid as the kernel reported it (SO_PEERCRED on the control socket); None when the release
    did not come through it (a platform's remote release). A release with a uid but no name is recorded
    under `uid:<n>`, never under an empty name."""

    operator: str
    reason: str
    amount_fen: Optional[int] = None  # cash taken at the booth, if any
    request_id: str = ""
    operator_uid: Optional[int] = None
    # the record of the car the operator saw waiting ("" = whatever car is there): a release meant for a car
    # that has gone since (refused, released, let out by another operator) is answered `car_gone`, never applied
    record_id: str = ""


# --- the booth's other actions (issue 18): each names its operator like OperatorOpen, and may name the record
# of the car the operator saw (record_id), so that of two operators acting on one car the second learns why
# nothing happened instead of acting on the next car.
@dataclass(frozen=True, slots=True)
class OperatorRefuse:
    """The operator turns away the car waiting at the lane (an exit car awaiting payment, or an entry car held
    for the booth: unreadable plate, refused by the rules). The barrier stays down."""

    operator: str
    reason: str
    request_id: str = ""
    operator_uid: Optional[int] = None
    record_id: str = ""


@dataclass(frozen=True, slots=True)
class OperatorCorrect:
    """The operator types the plate the camera misread for the car waiting at the lane: an exit re-matches it
    against the cars inside, an entry records the car under it and lets the rules decide."""

    operator: str
    plate: str
    request_id: str = ""
    operator_uid: Optional[int] = None
    record_id: str = ""


@dataclass(frozen=True, slots=True)
class OperatorAdmit:
    """The operator lets in the car held at an entry lane (plate-less, unreadable, refused by the rules) with a
    reason; `plate`, when typed, is the car's plate (a correction of the read)."""

    operator: str
    reason: str
    plate: str = ""
    request_id: str = ""
    operator_uid: Optional[int] = None
    record_id: str = ""


BoothAction = Union[OperatorRefuse, OperatorCorrect, OperatorAdmit]
BOOTH_ACTIONS = (OperatorRefuse, OperatorCorrect, OperatorAdmit)


@dataclass(frozen=True, slots=True)
class PaymentConfirmed:
    """A provider confirmed money for an exit record (`state=1`, `SUCCESS`, `00`, `code=200`), from a sync
    answer, a poll or a callback — verified, and delivered once per payment attempt by the settlement
    service. The lane still checks it is for the car waiting now and covers what it owes."""

    record_id: str
    provider: str  # bolink | xft | tdzn
    amount_fen: int
    trade_no: str = ""
    method: str = ""  # the provider's payment kind: wallet, sweepcode, scancode, etc, signfree ...


@dataclass(frozen=True, slots=True)
class PaymentFallback:
    """No provider settled the exit in time (or none could charge this car): the driver pays another way."""

    record_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class PlatformEntry:
    """A plate-less car at an entry lane identified itself to a platform (Bolink 5.7: the driver scanned the
    entry QR). `car_id` is the platform's id for it, kept whole: it stands in for the plate on the record."""

    car_id: str
    provider: str
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class IdentifyCar:
    """A platform names the plate-less car waiting at an exit (Bolink 5.1 scene 2: the driver scanned the exit
    QR): `car_id` is the id its entry was recorded under. The lane re-prices the exit against that stay."""

    record_id: str  # the waiting exit record
    car_id: str
    provider: str
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    """A platform asks what a car owes now (Bolink query_price, tdzn queryParkFee): the exit lane answers for
    the car waiting there, from its own state (a QuoteResult). `at_this_exit`: the platform named this lane's
    exit channel — a plate-less car waiting here is then the stay the platform knows as `plate`."""

    plate: str  # the plate, or the platform's id for a plate-less car ("" when not given)
    order_id: str  # the platform's order (our record id), "" when not given
    at_this_exit: bool
    provider: str
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class CodeScanned:
    """The booth scanner read a driver's payment code (auth_code) at this lane."""

    code: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed; the lane checks its deadlines (timers are data in the lane state)."""


Event = Union[PlateRead, IoSnapshot, DeviceFault, DeviceRecovered, CommandDone, OperatorOpen, PaymentConfirmed,
              PaymentFallback, PlatformEntry, IdentifyCar, QuoteRequest, CodeScanned, OperatorRefuse, OperatorCorrect,
              OperatorAdmit, Tick]

# Requests: events someone waits on. The lane answers each with one result effect of the same request_id
# (core/effects.py RESULTS); the runner hands that result to the waiting caller.
Request = Union[OperatorOpen, PlatformEntry, QuoteRequest, OperatorRefuse, OperatorCorrect, OperatorAdmit]
REQUESTS = (OperatorOpen, PlatformEntry, QuoteRequest, *BOOTH_ACTIONS)
