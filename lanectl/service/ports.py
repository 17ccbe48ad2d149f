"""Ports: what the service layer needs from the outside world. Adapters implement them; tests use fakes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Optional, Protocol, Sequence

from lanectl.core import effects as fx
from lanectl.core.events import Event
from lanectl.core.lane import InsideCar
from lanectl.core.settlement import Attempt

if TYPE_CHECKING:
    from lanectl.service.outbox import OutboxItem
    from lanectl.service.claims import PaymentClaim

# Adapters push events through this; it never blocks (it puts on the lane's queue).
Emit = Callable[[Event], None]


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware wall-clock time."""

    def monotonic(self) -> float:
        """Seconds, for intervals and deadlines."""

    async def sleep(self, seconds: float) -> None: ...


class Barrier(Protocol):
    """Barrier + loops IO. One adapter instance owns the device (and its bus)."""

    async def run(self, emit: Emit) -> None:
        """Connect, poll inputs, emit IoSnapshot on change, DeviceFault / DeviceRecovered; reconnect with
        backoff. Runs until cancelled."""

    async def open(self) -> None:
        """Pulse OPEN. Raises BarrierError when the command could not be delivered."""

    async def close(self) -> None:
        """Pulse CLOSE. Raises BarrierUnsafe (without writing) when the safety loop or anti-smash input is
        active at the moment of the command, BarrierError when it could not be delivered."""


class PlateSource(Protocol):
    async def run(self, emit: Emit) -> None:
        """Read plates and emit PlateRead; survive garbage and a vanishing port. Runs until cancelled."""


class Display(Protocol):
    """The lane's LED / voice board. Renders the lane's message (its key and fields through the lot's
    templates, or the default text/voice) and sends it; raises on a broken board (the runner logs it)."""

    async def show(self, message: fx.Display) -> None: ...


class BarrierError(Exception):
    """A barrier command could not be delivered (timeout, port gone, exception answer)."""


class BarrierUnsafe(BarrierError):
    """CLOSE refused: a car or obstacle is under the arm."""



class StorageUnavailable(Exception):
    """The local store cannot write now (disk full, read-only file system, I/O error, locked by another
    process). Raised only after a clean rollback: nothing of the failed write was kept. The caller does
    without it (a lane refuses what must be written ahead) or retries later; the store's StorageHealth has
    logged the fault once and probes for its end."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- the local store, one port per consumer (adapters/store/ implements them all over one unit of work) ----------

class LaneStore(Protocol):
    """What a lane runner needs: its saved state, one atomic commit per step, the barrier audit, and the
    projections of what was committed (live, read-only: a lane step reads them, never copies them)."""

    def inside_view(self) -> Mapping[str, InsideCar]: ...

    def balances_view(self) -> Mapping[str, int]: ...

    async def load_lane_state(self, lane_id: str) -> Optional[dict[str, Any]]: ...

    def commit_lane(self, lane_id: str, state: dict[str, Any], effects: list[fx.Effect],
                    now: datetime, claim: Optional[PaymentClaim] = None) -> Awaitable[None]:
        """The lane's new state and the persistent effects of one event, in one transaction (write ahead); with a
        `claim` (service/claims.py) only if its compare-and-set wins in that transaction, else ClaimLost. A
        coroutine (the runner shields it), or a future that finishes the transaction whatever its waiter does."""

    async def mark_action(self, action_id: str, ok: bool, error: str, now: datetime) -> None: ...

    def defer_action(self, lane_id: str, effect: fx.CloseBarrier | fx.AuditAction, now: datetime) -> bool:
        """Keep the audit row of a command sent while storage was down, to be written when it is back."""


class SettlementStore(Protocol):
    """Exit settlements and their payment attempts (service/settlement.py)."""

    async def open_settlements(self) -> list[fx.StartSettlement]: ...

    async def settlement_open(self, record_id: str) -> bool: ...

    async def settlement_order(self, record_id: str) -> Optional[fx.StartSettlement]: ...

    async def new_attempt(self, record_id: str, lane_id: str, provider: str, order_ref: str, amount_fen: int,
                          now: datetime) -> Attempt: ...

    async def attempts(self, *, record_id: Optional[str] = None, provider: Optional[str] = None,
                       order_ref: Optional[str] = None, statuses: Sequence[str] = ()) -> list[Attempt]: ...

    async def mark_attempt(self, attempt_id: int, status: str, detail: str, now: datetime,
                           *, only_from: Sequence[str] = ...) -> bool: ...

    async def settle_attempt(self, attempt_id: int, paid: bool, trade_no: str, paid_fen: int, method: str,
                             detail: str, now: datetime) -> bool: ...


class InboxStore(Protocol):
    """What the platforms told us, stored before it is acknowledged (a repeat changes nothing)."""

    async def inbox_put(self, provider: str, key: str, payload: str, now: datetime) -> bool: ...

    async def add_prepayment(self, provider: str, trade_no: str, *, order_id: str, plate: str, amount_fen: int,
                             paid_at: datetime, now: datetime) -> str: ...

    async def set_mark(self, provider: str, plate: str, name: str, value: str, now: datetime) -> None: ...

    async def add_renewal(self, provider: str, trade_no: str, card_id: str, plate: str, start: str, end: str,
                          amount_fen: int, now: datetime) -> bool: ...


class LedgerStore(Protocol):
    """Stored-value balances (a ledger of moves) and payments (the control socket, the daemon's start)."""

    def balances(self) -> dict[str, int]: ...

    async def balance_moves(self, plate: Optional[str] = None, limit: int = 50) -> list[dict[str, Any]]: ...

    async def seed_balances(self, opening: dict[str, int], now: datetime) -> list[str]: ...

    async def topup(self, plate: str, amount_fen: int, reference: str, now: datetime,
                    operator_uid: Optional[int] = None) -> int: ...

    async def payments(self, record_id: str) -> list[dict[str, Any]]: ...


class OutboxQueue(Protocol):
    """The outbox as the relay (service/outbox.py) takes it."""

    async def due(self, destination: str, now: datetime, limit: int) -> list["OutboxItem"]:
        """The oldest pending items of `destination`, in id order, at most `limit`, STOPPING before the first
        item whose next attempt is later than `now` (head-of-line: a waiting item holds back the ones after
        it, even across restarts). Done and dead items are not pending."""

    async def mark_done(self, item_id: int, now: datetime) -> None: ...

    async def mark_retry(self, item_id: int, attempts: int, next_at: datetime, error: str) -> None: ...

    async def mark_dead(self, item_id: int, error: str, now: datetime) -> None: ...


# --- metrics (adapters/metrics.py exports them; the service layer records where things happen) -------------------

class Metrics(Protocol):
    """What the service layer counts and times for /metrics. Each call is cheap and never raises."""

    def decision(self, lane_id: str, kind: str, outcome: str) -> None:
        """A lane decided about a car: a new record of `kind` (entry / exit / release) with `outcome`, its status
        as decided (inside, refused, leaving, awaiting_payment, released ...)."""

    def plate_to_command(self, lane_id: str, seconds: float) -> None:
        """From a plate read to the barrier command it caused reaching the wire (answered, either way)."""

    def barrier_command(self, lane_id: str, command: str, result: str) -> None:
        """A barrier command (open / close) and its result (ok / refused / failed / no_device)."""

    def device_fault(self, lane_id: str, device: str) -> None: ...

    def device_recovered(self, lane_id: str, device: str, seconds: float) -> None:
        """A device fault ended after `seconds` (monotonic)."""

    def settlement_attempt(self, provider: str, status: str) -> None:
        """A payment attempt reached `status` (charging when created, then pending / paid / failed ...)."""

    def late_payment(self, provider: str) -> None:
        """A payment confirmed after the car stopped waiting for it (reconciliation or the late check)."""


class NoMetrics:
    """The default: nothing recorded (tests and tools that build a runner without a daemon)."""

    def decision(self, lane_id: str, kind: str, outcome: str) -> None: ...
    def plate_to_command(self, lane_id: str, seconds: float) -> None: ...
    def barrier_command(self, lane_id: str, command: str, result: str) -> None: ...
    def device_fault(self, lane_id: str, device: str) -> None: ...
    def device_recovered(self, lane_id: str, device: str, seconds: float) -> None: ...
    def settlement_attempt(self, provider: str, status: str) -> None: ...
    def late_payment(self, provider: str) -> None: ...


NO_METRICS = NoMetrics()
